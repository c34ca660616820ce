//! The management socket's side of the tests: a socket path of each test's own and a
//! JSON-RPC client that reads answers line by line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use super::PATIENCE;

static SOCKETS: AtomicUsize = AtomicUsize::new(0);

/// A management socket path of this test's own.
pub fn socket_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "rpc-{}-{}.sock",
        std::process::id(),
        SOCKETS.fetch_add(1, Ordering::Relaxed)
    ))
}

/// One client connection, answers read line by line.
pub struct Client {
    stream: UnixStream,
    answers: BufReader<UnixStream>,
}

impl Client {
    pub fn open(socket: &Path) -> Self {
        let stream = UnixStream::connect(socket).expect("the management socket answers");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let answers = BufReader::new(stream.try_clone().unwrap());
        Self { stream, answers }
    }

    pub fn send(&mut self, bytes: &str) {
        self.stream.write_all(bytes.as_bytes()).unwrap();
    }

    /// The next answer (one line), or `None` once the target closed the connection.
    pub fn answer(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self
            .answers
            .read_line(&mut line)
            .expect("an answer in time")
        {
            0 => None,
            _ => Some(serde_json::from_str(&line).expect("answers are JSON")),
        }
    }

    /// The whole answer to `method` with `params`.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.send(&format!("{request}\n"));
        self.answer().expect("an answer")
    }

    /// The result of `method`, which must succeed.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let answer = self.request(method, params);
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// The error of `method`, which must fail: its code and message.
    pub fn error(&mut self, method: &str, params: Value) -> (i64, String) {
        let answer = self.request(method, params);
        let error = &answer["error"];
        assert!(error.is_object(), "{method} succeeded: {answer}");
        (
            error["code"].as_i64().unwrap(),
            error["message"].as_str().unwrap().to_owned(),
        )
    }
}

/// `nvmf_get_subsystems` without the identifiers RAM and simulated namespaces draw anew at
/// each start.
pub fn stable_view(client: &mut Client) -> Value {
    let mut subsystems = client.call("nvmf_get_subsystems", json!({}));
    for subsystem in subsystems.as_array_mut().unwrap() {
        for namespace in subsystem["namespaces"].as_array_mut().into_iter().flatten() {
            namespace.as_object_mut().unwrap().remove("nguid");
        }
    }
    subsystems
}
