//! Secret files are read only when their owner alone can reach them.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use vfnvme_auth::{read_dhchap_secret, read_secret_file, read_tls_psk, SecretFileError};

const SECRET: &str = "DHHC-1:01:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:";
const PSK: &str = "NVMeTLSkey-1:01:LFKHx3GLh/WxQ3Qix/hiXhgJO/Ixkvwbye6I1Ys3uH5JBiAx:";

fn secret_file(content: &str, mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.key");
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    (dir, path)
}

#[test]
fn an_owner_only_file_is_read_and_parsed() {
    for mode in [0o600, 0o400] {
        let (_dir, path) = secret_file(&format!("{SECRET}\n"), mode);
        assert_eq!(read_secret_file(&path).unwrap().as_str(), SECRET);
        let secret = read_dhchap_secret(&path).unwrap();
        assert_eq!(secret.representation().as_str(), SECRET);
    }
    let (_dir, path) = secret_file(PSK, 0o600);
    assert_eq!(read_tls_psk(&path).unwrap().representation().as_str(), PSK);
}

#[test]
fn a_file_group_or_others_can_reach_is_refused_with_the_chmod_to_run() {
    for mode in [0o640, 0o604, 0o660, 0o644, 0o602, 0o610] {
        let (_dir, path) = secret_file(SECRET, mode);
        let err = read_secret_file(&path).unwrap_err();
        assert!(
            matches!(err, SecretFileError::Permissions { mode: m, .. } if m == mode),
            "{err:?}"
        );
        let message = err.to_string();
        assert_eq!(
            message,
            format!(
                "secret file {p} is accessible by group or others (mode {mode:04o}); run \
                 `chmod 600 {p}` so that only its owner can read it",
                p = path.display()
            )
        );
        assert!(!message.contains("DHHC"));
    }
}

#[test]
fn missing_oversized_directory_and_malformed_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.key");
    assert!(matches!(
        read_secret_file(&missing),
        Err(SecretFileError::Io { .. })
    ));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    assert!(matches!(
        read_secret_file(dir.path()),
        Err(SecretFileError::NotAFile { .. })
    ));
    let (_d, big) = secret_file(&"A".repeat(5000), 0o600);
    assert!(matches!(
        read_secret_file(&big),
        Err(SecretFileError::TooLarge { .. })
    ));
    let (_d, bad) = secret_file("DHHC-1:01:AAAA:", 0o600);
    let err = read_dhchap_secret(&bad).unwrap_err();
    assert!(matches!(err, SecretFileError::Format { .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with(&format!("secret file {}: ", bad.display())));
}
