//! `vfnvme rpc METHOD [--params JSON]` and its short forms (`vfnvme subsystems`): a JSON-RPC
//! client of the management socket of `vfnvme serve` (docs/rpc.md). The result is printed as
//! pretty JSON, a string result (the TOML of `save_config`) as it is.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Calls `method` with `params` (a JSON object's text) and prints the result.
pub fn run(socket: &Path, method: &str, params: Option<&str>) -> Result<()> {
    let params = params
        .map(|text| {
            serde_json::from_str::<Value>(text)
                .map_err(|error| Error::Invalid(format!("--params is not JSON: {error}")))
        })
        .transpose()?;
    let result = call(socket, method, params)?;
    let text = match result {
        Value::String(text) => text,
        other => serde_json::to_string_pretty(&other).expect("a JSON value prints"),
    };
    // A reader that stops early (`| head`) ends the output quietly.
    match writeln!(std::io::stdout().lock(), "{}", text.trim_end()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(error)),
        _ => Ok(()),
    }
}

/// One request on its own connection: the result, or the error the target answered.
pub fn call(socket: &Path, method: &str, params: Option<Value>) -> Result<Value> {
    let unreachable = |source| Error::RpcSocket {
        path: socket.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    let mut request = json!({"jsonrpc": "2.0", "id": 1, "method": method});
    if let Some(params) = params {
        request["params"] = params;
    }
    let mut line = request.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(unreachable)?;
    let answer = serde_json::Deserializer::from_reader(&stream)
        .into_iter::<Value>()
        .next()
        .ok_or_else(|| {
            Error::RpcAnswer("the target closed the connection without an answer".into())
        })?
        .map_err(|error| Error::RpcAnswer(format!("the answer is not JSON: {error}")))?;
    if let Some(error) = answer.get("error") {
        return Err(Error::Rpc {
            method: method.to_owned(),
            code: error["code"].as_i64().unwrap_or(0),
            message: error["message"]
                .as_str()
                .unwrap_or("(no message)")
                .to_owned(),
        });
    }
    answer
        .get("result")
        .cloned()
        .ok_or_else(|| Error::RpcAnswer("the answer has neither result nor error".into()))
}
