//! Writes the seed corpus, `fuzz/corpus/<target>/seed-*`: valid PDUs of each type for both
//! receivers and digest settings, whole host sessions (admin, I/O, discovery), valid and
//! boundary Connect commands and data, admin command sequences, real configuration files, and DH-HMAC-CHAP exchanges.
//! Run from fuzz/: `cargo run --example seed_corpus`. Deterministic: rerunning it changes
//! nothing. Inputs libFuzzer adds to these directories are not committed (fuzz/.gitignore).

#![forbid(unsafe_code)]

mod auth;
mod config;
mod connection;
mod controllers;
mod pdu;
mod shared;

use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut written = 0;
    for (target, seeds) in [
        ("pdu", pdu::seeds()),
        ("connection", connection::seeds()),
        ("connect_data", controllers::connect_data_seeds()),
        ("admin", controllers::admin_seeds()),
        ("config", config::seeds()),
        ("auth", auth::seeds()),
    ] {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir).expect("corpus directory");
        for old in fs::read_dir(&dir).expect("corpus directory") {
            let path = old.expect("directory entry").path();
            if is_seed(&path) {
                fs::remove_file(&path).expect("old seed removed");
            }
        }
        for (name, bytes) in seeds {
            let path: PathBuf = dir.join(format!("seed-{name}"));
            fs::write(&path, bytes).expect("seed written");
            written += 1;
        }
    }
    println!("{written} seeds written under {}", corpus.display());
}

fn is_seed(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("seed-"))
}
