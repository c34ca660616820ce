//! `vfnvme serve` with RAM namespaces on loopback, driven by `vfnvme perf --connect`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{assert_clean_failure, json_of_success, vfnvme, ONE_SECOND_OF_READS};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use vfnvme_target::config::Config;
use vfnvme_test_support::{poll_until, ConfigText};

const NQN: &str = "nqn.2026-11.io.vfnvme:ram0";
const RAM_MIB: u64 = 16;
const READY_PREFIX: &str = "vfnvme: serving ";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

static CONFIGS: AtomicUsize = AtomicUsize::new(0);

/// A port nothing listens on (for a moment: the system may hand it out again later).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local address").port()
}

/// Writes `text` to a configuration file of its own and returns its path.
fn write_config(text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "serve-{}-{}.toml",
        std::process::id(),
        CONFIGS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).expect("write the configuration");
    path
}

/// A management socket path of its own (tests run at once; the default is the appliance's).
fn socket_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "serve-{}-{}.sock",
        std::process::id(),
        CONFIGS.fetch_add(1, Ordering::Relaxed)
    ))
}

/// `[target]` of one poll group with a management socket of its own.
fn target_lines() -> String {
    format!("cores = 1\nrpc_socket = \"{}\"", socket_path().display())
}

/// One RAM subsystem with key lines `subsystem` on a listener at `port`, TLS with `tls`.
fn ram_config(port: u16, subsystem: &str, tls: bool) -> String {
    let config = ConfigText::new(&target_lines());
    let address = format!("127.0.0.1:{port}");
    let config = if tls {
        config.tls_listener(&address)
    } else {
        config.listener(&address)
    };
    config
        .subsystem(NQN, subsystem)
        .namespace(1, &format!("ram_mib = {RAM_MIB}"))
        .text()
}

/// A running `vfnvme serve`, killed if a test ends without stopping it.
struct Served {
    child: Child,
    port: u16,
    socket: PathBuf,
    /// stderr, line by line, read by a thread of its own so the pipe never fills.
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    fn start() -> Self {
        Self::start_with("allow_any_host = true")
    }

    /// With the subsystem's key lines `subsystem` (who may connect).
    fn start_with(subsystem: &str) -> Self {
        Self::start_listening(subsystem, false)
    }

    /// As [`Self::start_with`], on a TLS listener with `tls`.
    fn start_listening(subsystem: &str, tls: bool) -> Self {
        let port = free_port();
        let text = ram_config(port, subsystem, tls);
        let socket = Config::parse(&text, "serve.toml")
            .expect("a valid configuration")
            .target
            .rpc_socket
            .expect("a management socket");
        let config = write_config(&text);
        let mut child = Command::new(env!("CARGO_BIN_EXE_vfnvme"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vfnvme serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Self {
            child,
            port,
            socket,
            lines,
            seen: Vec::new(),
        };
        let ready = served.wait_for_line(|line| line.starts_with(READY_PREFIX), READY_TIMEOUT);
        assert_eq!(
            ready.as_deref(),
            Some(format!("{READY_PREFIX}{NQN} on 127.0.0.1:{port}").as_str()),
            "no ready line; stderr so far:\n{}",
            served.seen.join("\n")
        );
        served
    }

    /// The first stderr line `wanted` accepts, within `timeout`.
    fn wait_for_line(
        &mut self,
        wanted: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}/{NQN}", self.port)
    }

    fn perf(&self, args: &[&str]) -> Output {
        let url = self.url();
        vfnvme(&[&["perf", "--connect", url.as_str(), "--json"], args].concat())
    }

    /// Sends `signal` and returns the exit code and all of stderr.
    fn stop(mut self, signal: Signal) -> (Option<i32>, String) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        kill(pid, signal).expect("signal serve");
        let status = poll_until(
            EXIT_TIMEOUT,
            Duration::from_millis(20),
            || self.child.try_wait().expect("wait for serve"),
            || format!("serve still running {EXIT_TIMEOUT:?} after {signal}"),
        );
        while self
            .wait_for_line(|_| false, Duration::from_secs(1))
            .is_some()
        {}
        (status.code(), self.seen.join("\n"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn perf_connect_verifies_and_reads_then_sigterm_stops_serve() {
    let served = Served::start();

    let verify = json_of_success(&served.perf(&[
        "-w", "verify", "-q", "8", "--qpairs", "2", "-o", "4096", "-t", "60",
    ]));
    assert_eq!(verify["device"], served.url());
    assert_eq!(verify["verified_bytes"], RAM_MIB << 20);
    assert_eq!(verify["verify_complete"], true);
    assert_eq!(verify["errors"], 0);
    assert_eq!(verify["verify_mismatches"], 0);
    assert_eq!(verify["ios"], 2 * (RAM_MIB << 20) / 4096);

    // What the first run wrote is there for a second connection, with digests on.
    let existing = json_of_success(&served.perf(&[
        "-w",
        "verify",
        "--verify-existing",
        "-q",
        "4",
        "-o",
        "64k",
        "-t",
        "60",
        "--header-digest",
        "--data-digest",
    ]));
    assert_eq!(existing["verified_bytes"], RAM_MIB << 20);
    assert_eq!(existing["verify_mismatches"], 0);

    // Deep queues of large commands: a round's writes fill the socket's send buffer (the
    // busy-polling initiator then finishes each PDU waiting), reads arrive in pieces.
    let deep =
        json_of_success(&served.perf(&["-w", "verify", "-q", "32", "-o", "128k", "-t", "60"]));
    assert_eq!(deep["verified_bytes"], RAM_MIB << 20);
    assert_eq!(deep["errors"], 0);
    assert_eq!(deep["verify_mismatches"], 0);

    let randread =
        json_of_success(&served.perf(&["-w", "randread", "-q", "16", "-o", "4k", "-t", "1"]));
    assert!(randread["ios"].as_u64().unwrap_or(0) > 0, "{randread}");
    assert!(randread["iops"].as_f64().unwrap_or(0.0) > 0.0, "{randread}");
    assert_eq!(randread["errors"], 0);

    let (code, stderr) = served.stop(Signal::SIGTERM);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // An admin and two I/O connections, then three times an admin and one I/O connection.
    assert!(
        stderr.contains("stopped: 9 connections served, 0 commands abandoned"),
        "{stderr}"
    );
}

#[test]
fn rpc_and_subsystems_call_the_management_socket_of_serve() {
    let served = Served::start();
    let socket = served.socket.to_str().expect("UTF-8 path").to_owned();
    let listed = json_of_success(&vfnvme(&["subsystems", "--socket", &socket]));
    assert_eq!(listed[1]["nqn"], NQN);
    assert_eq!(listed[1]["namespaces"][0]["size"], RAM_MIB << 20);
    assert_eq!(
        listed[1]["listen_addresses"][0]["trsvcid"],
        served.port.to_string()
    );

    let host = "nqn.2014-08.org.nvmexpress:uuid:serve-test";
    let params = format!(r#"{{"nqn": "{NQN}", "allow_any_host": false}}"#);
    let done = vfnvme(&[
        "rpc",
        "nvmf_subsystem_allow_any_host",
        "--params",
        &params,
        "--socket",
        &socket,
    ]);
    assert_eq!(json_of_success(&done), serde_json::json!(true));
    let params = format!(r#"{{"nqn": "{NQN}", "host": "{host}"}}"#);
    let done = vfnvme(&[
        "rpc",
        "nvmf_subsystem_add_host",
        "--params",
        &params,
        "--socket",
        &socket,
    ]);
    assert_eq!(json_of_success(&done), serde_json::json!(true));
    let saved = vfnvme(&["rpc", "save_config", "--socket", &socket]);
    let text = String::from_utf8(saved.stdout.clone()).expect("UTF-8");
    assert!(saved.status.success(), "{}", common::stderr(&saved));
    let config = Config::parse(&text, "saved.toml").expect("save_config reads back");
    assert_eq!(config.subsystems[0].hosts, vec![host.to_owned()]);
    assert!(!config.subsystems[0].allow_any_host);

    let unknown = vfnvme(&["rpc", "nvmf_bogus", "--socket", &socket]);
    assert_clean_failure(
        &unknown,
        "nvmf_bogus: no method nvmf_bogus; rpc_get_methods lists them (JSON-RPC error -32601)",
    );
    let bad = vfnvme(&[
        "rpc",
        "nvmf_delete_subsystem",
        "--params",
        "{\"nqn\": 5}",
        "--socket",
        &socket,
    ]);
    assert_clean_failure(
        &bad,
        "params.nqn: invalid type: integer `5`, expected a string",
    );
    let not_json = vfnvme(&[
        "rpc",
        "rpc_get_methods",
        "--params",
        "{",
        "--socket",
        &socket,
    ]);
    assert_clean_failure(&not_json, "--params is not JSON");
    let (code, _) = served.stop(Signal::SIGTERM);
    assert_eq!(code, Some(0));
    assert!(
        !PathBuf::from(&socket).exists(),
        "the socket file goes with serve"
    );
    let gone = vfnvme(&["subsystems", "--socket", &socket]);
    assert_clean_failure(&gone, "is vfnvme serve running");
}

#[test]
fn sigint_stops_an_idle_serve() {
    let served = Served::start();
    let (code, stderr) = served.stop(Signal::SIGINT);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("stopped: 0 connections served, 0 commands abandoned"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_is_one_line_naming_file_and_line() {
    let path = write_config("[target]\ncores = 1\nbogus = 2\n");
    let output = vfnvme(&["serve", "--config", path.to_str().expect("UTF-8 path")]);
    assert_clean_failure(
        &output,
        &format!("{}:3: unknown field `bogus`", path.display()),
    );
}

#[test]
fn a_limit_out_of_range_is_one_line_naming_the_key_and_its_range() {
    let path = write_config("[limits]\nconnections_per_address = 0\n");
    let output = vfnvme(&["serve", "--config", path.to_str().expect("UTF-8 path")]);
    assert_clean_failure(
        &output,
        &format!(
            "{}:2: connections_per_address = 0 is out of range; give 1 to 1048576",
            path.display()
        ),
    );
}

#[test]
fn a_port_in_use_is_one_line() {
    let holder = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = holder.local_addr().expect("local address").port();
    let path = write_config(&ram_config(port, "allow_any_host = true", false));
    let output = vfnvme(&["serve", "--config", path.to_str().expect("UTF-8 path")]);
    assert_clean_failure(&output, &format!("cannot listen on 127.0.0.1:{port}"));
}

#[test]
fn a_namespace_formatted_with_metadata_is_refused_at_start_with_what_to_do() {
    let text = ConfigText::new(&target_lines())
        .listener(&format!("127.0.0.1:{}", free_port()))
        .subsystem(NQN, "allow_any_host = true")
        .namespace(1, "sim_mib = 8\nsim_metadata_bytes = 8")
        .text();
    let path = write_config(&text);
    let output = vfnvme(&["serve", "--config", path.to_str().expect("UTF-8 path")]);
    // The drive was opened (and logged as it came up and shut down) before its namespace was
    // looked at: the error is the last line.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("vfnvme: ")
            && last.contains(
                "namespace 1 is formatted with 8 bytes of metadata per block (LBA format 1, \
                 extended); vfnvme exports namespaces without metadata: reformat it with \
                 `nvme format /dev/nvmeXnY --namespace-id=1 --lbaf=0` (512-byte blocks, no \
                 metadata)"
            ),
        "{stderr}"
    );
}

/// `vfnvme perf --connect url` for a second of reads.
fn perf_connect(url: &str) -> Output {
    vfnvme(&[&["perf", "--connect", url], ONE_SECOND_OF_READS].concat())
}

#[test]
fn connecting_where_nothing_listens_is_one_line() {
    let url = format!("tcp://127.0.0.1:{}/{NQN}", free_port());
    assert_clean_failure(&perf_connect(&url), "connect: Connection refused");
}

#[test]
fn a_malformed_url_is_one_line() {
    assert_clean_failure(
        &perf_connect("127.0.0.1:4420"),
        "expected tcp://HOST:PORT/NQN",
    );
}

#[test]
fn the_deploy_example_configuration_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/vfnvme.toml");
    if let Err(error) = vfnvme_target::config::Config::load(&path) {
        panic!("{error}");
    }
}

/// A secret file readable by its owner only, holding `representation`.
fn secret_file(name: &str, representation: &str) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}.key", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("create the key file");
    writeln!(file, "{representation}").expect("write the key");
    path
}

#[test]
fn perf_connect_authenticates_with_dhchap_secret_as_string_or_file() {
    let host_key = vfnvme_auth::DhchapSecret::new(&[7; 32], None).unwrap();
    let ctrl_key = vfnvme_auth::DhchapSecret::new(&[8; 48], None).unwrap();
    let host_file = secret_file("perf-host", &host_key.representation());
    let ctrl_file = secret_file("perf-ctrl", &ctrl_key.representation());
    let host_nqn = vfnvme_host::HostOptions::default().host_nqn;
    let served = Served::start_with(&format!(
        "require_authentication = true\n[[subsystem.host]]\nnqn = \"{host_nqn}\"\n\
         dhchap_secret_file = \"{}\"\ndhchap_ctrl_secret_file = \"{}\"\n",
        host_file.display(),
        ctrl_file.display()
    ));
    let as_string = host_key.representation();
    let reads = ["-w", "randread", "-q", "4", "-o", "4k", "-t", "1"];
    json_of_success(&served.perf(&[&["--dhchap-secret", as_string.as_str()], &reads[..]].concat()));
    let host_path = host_file.display().to_string();
    let ctrl_path = ctrl_file.display().to_string();
    json_of_success(
        &served.perf(
            &[
                &[
                    "--dhchap-secret",
                    host_path.as_str(),
                    "--dhchap-ctrl-secret",
                    ctrl_path.as_str(),
                ],
                &reads[..],
            ]
            .concat(),
        ),
    );
    assert_clean_failure(
        &served.perf(&reads),
        "the target requires DH-HMAC-CHAP authentication and no secret is set",
    );
}

#[test]
fn perf_connect_runs_over_tls_with_tls_key_and_hostnqn() {
    const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:6d1e5c1a-0b7e-4c51-9a3b-5f5e0c1d2e3f";
    let psk = vfnvme_auth::TlsPsk::new(&[9; 32], Some(vfnvme_auth::PskHash::Sha256)).unwrap();
    let psk_path = secret_file("perf-psk", &psk.representation());
    let served = Served::start_listening(
        &format!(
            "[[subsystem.host]]\nnqn = \"{HOST}\"\ntls_psk_file = \"{}\"\n",
            psk_path.display()
        ),
        true,
    );
    let path = psk_path.display().to_string();
    let verify = json_of_success(&served.perf(&[
        "--tls-key",
        path.as_str(),
        "--hostnqn",
        HOST,
        "-w",
        "verify",
        "-q",
        "8",
        "-o",
        "64k",
        "-t",
        "60",
    ]));
    assert_eq!(verify["verified_bytes"], RAM_MIB << 20);
    assert_eq!(verify["verify_mismatches"], 0);
    assert_eq!(verify["errors"], 0);
    let as_string = psk.representation();
    let reads = ["-w", "randread", "-q", "4", "-o", "4k", "-t", "1"];
    json_of_success(
        &served.perf(
            &[
                &["--tls-key", as_string.as_str(), "--hostnqn", HOST],
                &reads[..],
            ]
            .concat(),
        ),
    );
    let wrong = vfnvme_auth::TlsPsk::new(&[10; 32], Some(vfnvme_auth::PskHash::Sha256)).unwrap();
    let wrong = wrong.representation();
    assert_clean_failure(
        &served.perf(
            &[
                &["--tls-key", wrong.as_str(), "--hostnqn", HOST],
                &reads[..],
            ]
            .concat(),
        ),
        "TLS handshake with PSK identity",
    );
    let (code, stderr) = served.stop(Signal::SIGTERM);
    assert_eq!(code, Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "TLS handshake refused: host {HOST} for subsystem {NQN} presented a PSK that is \
             not the configured one"
        )),
        "{stderr}"
    );
}

/// `vfnvme stats --json` once the poll group has published `ios` commands.
fn stats_showing(socket: &str, ios: u64) -> serde_json::Value {
    poll_until(
        EXIT_TIMEOUT,
        Duration::from_millis(20),
        || {
            let stats = json_of_success(&vfnvme(&["stats", "--json", "--socket", socket]));
            let ns = stats["namespaces"].get(0)?.clone();
            let seen = ns["reads"].as_u64()? + ns["writes"].as_u64()?;
            (seen == ios).then_some(stats)
        },
        || format!("vfnvme stats never showed {ios} commands"),
    )
}

#[test]
fn stats_shows_what_perf_did_and_watch_ends_on_ctrl_c() {
    let served = Served::start();
    let socket = served.socket.to_str().expect("UTF-8 path").to_owned();
    let verify =
        json_of_success(&served.perf(&["-w", "verify", "-q", "4", "-o", "4096", "-t", "60"]));
    assert_eq!(verify["errors"], 0);
    let ios = verify["ios"].as_u64().expect("perf counts its I/Os");
    assert_eq!(ios, 2 * (RAM_MIB << 20) / 4096);

    let stats = stats_showing(&socket, ios);
    let ns = &stats["namespaces"][0];
    assert_eq!(ns["subsystem_nqn"], NQN);
    // verify writes the namespace once, then reads it back.
    assert_eq!(ns["writes"], ios / 2);
    assert_eq!(ns["reads"], ios / 2);
    assert_eq!(ns["bytes_written"], RAM_MIB << 20);
    assert_eq!(ns["bytes_read"], RAM_MIB << 20);
    assert_eq!(ns["latency"]["count"], ios);
    assert_eq!(stats["tick_rate"], 1_000_000_000u64);

    let table = vfnvme(&["stats", "--socket", &socket]);
    common::assert_success(&table);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("POLL GROUP") && text.contains("poll-group-0"),
        "{text}"
    );
    assert!(text.contains(&format!("{NQN} ns 1")), "{text}");

    let mut watch = Command::new(env!("CARGO_BIN_EXE_vfnvme"))
        .args(["stats", "--watch", "--socket", &socket])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vfnvme stats --watch starts");
    let mut stdout = watch.stdout.take().expect("stdout is piped");
    // The first refresh is out: the signal is read from then on.
    let mut first = [0u8; 64];
    let read = std::io::Read::read(&mut stdout, &mut first).expect("a first refresh");
    assert!(read > 0);
    let pid = Pid::from_raw(i32::try_from(watch.id()).expect("pid fits"));
    kill(pid, Signal::SIGINT).expect("signal stats --watch");
    let status = poll_until(
        EXIT_TIMEOUT,
        Duration::from_millis(20),
        || watch.try_wait().expect("wait for stats --watch"),
        || "stats --watch did not end on SIGINT".into(),
    );
    assert_eq!(status.code(), Some(0));
}
