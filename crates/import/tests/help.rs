//! The help is the documentation: pin it so it never rots unnoticed. After an intended
//! change, regenerate with `FERRY_UPDATE_SNAPSHOTS=1 cargo test -p ferry-import`.

use std::path::Path;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-import"))
        .args(args)
        .env("COLUMNS", "100")
        .output()
        .expect("runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_snapshots() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for (name, args) in [
        ("help.txt", &["--help"][..]),
        ("validate.txt", &["validate", "--help"][..]),
        ("load.txt", &["load", "--help"][..]),
        ("login.txt", &["login", "--help"][..]),
        ("seal.txt", &["seal", "--help"][..]),
        ("plan.txt", &["plan", "--help"][..]),
        ("verify.txt", &["verify", "--help"][..]),
        ("convert.txt", &["convert", "--help"][..]),
    ] {
        let text = help(args);
        let path = dir.join(name);
        if std::env::var_os("FERRY_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .expect("snapshot exists; run with FERRY_UPDATE_SNAPSHOTS=1");
        assert!(want == text, "{name} changed:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry-import"))
        .args(["load"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}
