//! The README's tour runs as written: every `ferry-` command in its console blocks, in
//! order, from a folder laid out like the repository (`samples/`, `schemas/`), with the
//! built binaries on `PATH`. A command may report problems (exit 1: the sample has them on
//! purpose); none may fail to run (exit 2), which is what a new user met when the tour
//! named files that did not exist.

use ferry_e2e::{bin_dir, root, Run, Workdir};

/// The commands of the README's "A tour" section that run ferry, in order.
fn tour_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let tour = readme
        .split("\n## A tour\n")
        .nth(1)
        .expect("the README has a tour")
        .split("\n## ")
        .next()
        .unwrap();
    let mut commands = Vec::new();
    let mut in_console = false;
    for line in tour.lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
            continue;
        }
        let Some(command) = line.strip_prefix("$ ").filter(|_| in_console) else {
            continue;
        };
        // Drop a trailing comment.
        let command = match command.find("  #") {
            Some(i) => command[..i].trim_end(),
            None => command,
        };
        if command.starts_with("ferry-") || command.contains("| ferry-") {
            commands.push(command.to_string());
        }
    }
    commands
}

#[test]
fn the_readme_tour_runs_as_written() {
    let commands = tour_commands();
    assert!(commands.len() >= 8, "{commands:?}");
    let w = Workdir::new();
    for dir in ["samples", "schemas"] {
        std::os::unix::fs::symlink(root().join(dir), w.path(dir)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for command in &commands {
        let r: Run = std::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(w.path(""))
            .env("PATH", &path)
            .output()
            .unwrap()
            .into();
        assert!(
            r.code == 0 || r.code == 1,
            "`{command}` did not run (exit {}):\n{}",
            r.code,
            r.stderr
        );
    }
}

/// The README's DuckDB queries over a Parquet bundle run as written, on the sample's
/// bundle, and each finds something.
#[test]
fn the_readme_duckdb_queries_run() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```sql\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 4, "the README has four DuckDB queries");
    let w = Workdir::new();
    ferry_e2e::run(
        "ferry-export",
        &[
            "--source",
            &root().join("samples/identity.db").display().to_string(),
            "--out",
            &w.arg("bundle-parquet"),
            "--format",
            "parquet",
        ],
    )
    .expect_code(0);
    for sql in blocks {
        let script = format!(
            "import duckdb, os\nos.chdir({dir:?})\nrows = duckdb.connect().sql({sql:?}).fetchall()\nprint(len(rows))\n",
            dir = w.path("").display().to_string(),
        );
        let out = ferry_e2e::duckdb(&script);
        let rows: usize = out.trim().parse().unwrap();
        assert!(rows > 0, "no rows from:\n{sql}");
    }
}
