//! The help is the documentation: pin it so it never rots unnoticed. After an intended
//! change, regenerate with `FERRY_UPDATE_SNAPSHOTS=1 cargo test -p ferry-export`.

use std::path::Path;
use std::process::Command;

#[test]
fn help_snapshot() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-export"))
        .arg("--help")
        .env("COLUMNS", "100")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help.txt");
    if std::env::var_os("FERRY_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want =
        std::fs::read_to_string(&path).expect("snapshot exists; run with FERRY_UPDATE_SNAPSHOTS=1");
    assert!(want == text, "--help changed:\n{text}");
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-export"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--source <SOURCE>"), "{err}");
}
