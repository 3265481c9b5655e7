//! Every input saved for the fuzzers (`fuzz/corpus/TARGET/`) and every input that once
//! crashed one (`fuzz/regressions/TARGET/`, each named after what it found) runs through
//! its harness: what the fuzzers found stays found. The corpora are small (they are
//! minimised with `cargo fuzz cmin`), so this takes seconds.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn run_target(target: &str) {
    let corpus = inputs(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is missing or empty: the corpus is kept in the repository"
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    for file in corpus.iter().chain(&regressions) {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| ferry_harness::run(target, &data));
        assert!(outcome.is_ok(), "{target} panicked on {}", file.display());
    }
}

#[test]
fn password_hash_corpus() {
    run_target("password_hash");
}

#[test]
fn record_corpus() {
    run_target("record");
}

#[test]
fn manifest_corpus() {
    run_target("manifest");
}

#[test]
fn schema_corpus() {
    run_target("schema");
}

#[test]
fn seal_corpus() {
    run_target("seal");
}

#[test]
fn every_target_has_its_test_and_its_fuzz_target() {
    for target in ferry_harness::TARGETS {
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .exists(),
            "fuzz/fuzz_targets/{target}.rs"
        );
    }
}
