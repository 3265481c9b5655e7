//! Helpers for the end-to-end tests: each test works in its own temporary folder and
//! runs the real binaries.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_fixtures::{generate, Generation, Options};
use sha2::{Digest, Sha256};

/// The folder holding the workspace's built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// A command for one of the workspace binaries.
pub fn command(name: &str) -> Command {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "`{}` is not built; run `cargo build --workspace` (or `cargo test --workspace`, which builds it)",
        path.display()
    );
    Command::new(path)
}

/// The result of running a binary.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panics with the output unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Runs a binary with arguments.
pub fn run(name: &str, args: &[&str]) -> Run {
    command(name)
        .args(args)
        .output()
        .expect("binary runs")
        .into()
}

/// Runs a binary with arguments, standard input and extra environment variables.
pub fn run_with(name: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    use std::io::Write as _;
    let mut cmd = command(name);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("binary ends").into()
}

/// `ferry-import login --target STORE --user USER EXTRA…` with `password` and a newline
/// on standard input.
pub fn login(store: &Path, user: &str, password: &str, extra: &[&str]) -> Run {
    let target = store.display().to_string();
    let mut args = vec!["login", "--target", &target, "--user", user];
    args.extend_from_slice(extra);
    run_with("ferry-import", &args, &format!("{password}\n"), &[])
}

/// Runs a binary that must end by itself within `limit`: a hang detector for commands
/// that must stop early (it kills the process and fails the test), not a measure of speed.
pub fn run_within(name: &str, args: &[&str], limit: std::time::Duration) -> Run {
    let child = command(name)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary runs");
    wait_within(child, limit, &format!("{name} {}", args.join(" ")))
}

/// Waits for `child` to end by itself within `limit`; kills it and fails the test if not.
pub fn wait_within(mut child: std::process::Child, limit: std::time::Duration, what: &str) -> Run {
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().expect("waits").is_some() {
            return child.wait_with_output().expect("output").into();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out: Run = child.wait_with_output().expect("output").into();
            panic!(
                "`{what}` did not end within {limit:?} (hung?)\n--- stderr\n{}",
                out.stderr
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Polls `ready` until it holds, failing the test after `limit` (for a state a process
/// under test reaches and then waits in, never for a time).
pub fn wait_until(limit: std::time::Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The entries of a folder with their size and modification time, to show that nothing
/// in it changed.
pub fn listing(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("readable folder")
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The path of a shipped schema file, as an argument.
pub fn schema(name: &str) -> String {
    root().join("schemas").join(name).display().to_string()
}

/// A temporary folder for one test.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

impl Workdir {
    /// A new empty folder.
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A path inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path inside the folder, as a string argument.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Generates a fixture database `name` and returns its path.
    pub fn fixture(
        &self,
        name: &str,
        generation: Generation,
        users: u64,
        snake_case: bool,
    ) -> PathBuf {
        self.fixture_with(
            name,
            Options {
                users,
                generation,
                snake_case,
                ..options()
            },
        )
    }

    /// Generates a fixture database `name` with `opts` and returns its path.
    pub fn fixture_with(&self, name: &str, opts: Options) -> PathBuf {
        let path = self.path(name);
        generate(&path, &opts, None).expect("fixture");
        path
    }

    /// A fixture whose users `vector-N` (bulk users, after the showcase ones) carry the
    /// given hashes, each with its own e-mail, no 2FA, no lockout and no roles, exported
    /// to `bundle`.
    pub fn fixture_with_hashes(&self, hashes: &[String]) {
        let db = self.fixture(
            "app.db",
            Generation::CoreV3,
            40 + hashes.len() as u64,
            false,
        );
        let conn = rusqlite::Connection::open(&db).unwrap();
        let ids: Vec<String> = conn
            .prepare(r#"SELECT "Id" FROM "AspNetUsers" ORDER BY rowid LIMIT -1 OFFSET 12"#)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (i, hash) in hashes.iter().enumerate() {
            conn.execute(
                r#"UPDATE "AspNetUsers" SET "PasswordHash" = ?1, "UserName" = ?2, "NormalizedUserName" = upper(?2),
                   "Email" = ?2 || '@example.com', "NormalizedEmail" = upper(?2 || '@example.com'),
                   "TwoFactorEnabled" = 0, "LockoutEnd" = NULL WHERE "Id" = ?3"#,
                (hash, format!("vector-{i}"), &ids[i]),
            )
            .unwrap();
            conn.execute(
                r#"DELETE FROM "AspNetUserRoles" WHERE "UserId" = ?1"#,
                [&ids[i]],
            )
            .unwrap();
        }
        drop(conn);
        self.export(&db, "bundle");
    }

    /// Exports `db` into `out` and returns the run, which must succeed.
    pub fn export(&self, db: &Path, out: &str) -> Run {
        run(
            "ferry-export",
            &[
                "--source",
                &db.display().to_string(),
                "--out",
                &self.arg(out),
            ],
        )
        .expect_code(0)
    }
}

/// The public hash and TOTP vectors (`crates/passwords/testdata/aspnet-hash-vectors.json`,
/// kept in the repository so that a fresh clone runs its tests alone).
pub fn vectors() -> serde_json::Value {
    let path = root().join("crates/passwords/testdata/aspnet-hash-vectors.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("`{}`: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("readable");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fixture options the tests start from: custom columns, seed 7, 10% with 2FA.
pub fn options() -> Options {
    Options {
        custom_columns: true,
        seed: 7,
        two_factor_percent: 10,
        ..Options::default()
    }
}

/// Generates a fixture database with the given seed (not through a Workdir).
pub fn fixture_seeded(path: &Path, generation: Generation, users: u64, seed: u64) {
    let opts = Options {
        users,
        generation,
        seed,
        ..options()
    };
    generate(path, &opts, None).expect("fixture");
}

/// Every row of the store's account tables, as text, table by table in key order: two
/// stores that hold the same accounts dump the same.
pub fn store_dump(conn: &rusqlite::Connection) -> std::collections::BTreeMap<String, Vec<String>> {
    let tables = [
        "users",
        "unique_keys",
        "passwords",
        "otp_addresses",
        "external_logins",
        "passkeys",
        "totp_devices",
        "recovery_codes",
        "memberships",
        "roles",
    ];
    tables
        .iter()
        .map(|t| {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            (t.to_string(), rows)
        })
        .collect()
}

/// The DuckDB release the tests read Parquet parts with: a reader independent of ferry.
pub const DUCKDB: &str = "duckdb==1.5.5";

/// The folder DuckDB's Python package is installed into (`target/pydeps`), installing
/// it from PyPI with pip the first time. Fails loudly when it cannot be installed: the
/// Parquet tests are never skipped.
pub fn duckdb_path() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let target = bin_dir().parent().expect("target dir").join("pydeps");
            let works = |dir: &Path| {
                Command::new("python3")
                    .args(["-c", "import duckdb"])
                    .env("PYTHONPATH", dir)
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if works(&target) {
                return target;
            }
            // Installed beside, then renamed into place, so that test binaries running at
            // the same time never see half an installation.
            let staging = target.with_file_name(format!("pydeps.partial-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            let out = Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
                .arg(&staging)
                .arg(DUCKDB)
                .output()
                .unwrap_or_else(|e| panic!("cannot run python3 to install {DUCKDB}: {e}"));
            assert!(
                out.status.success(),
                "cannot install {DUCKDB} from PyPI into `{}` (the Parquet tests read parts with it and are never skipped):\n{}",
                staging.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            if std::fs::rename(&staging, &target).is_err() {
                // Another test binary installed it first.
                let _ = std::fs::remove_dir_all(&staging);
            }
            assert!(works(&target), "{DUCKDB} is installed in `{}` but does not import", target.display());
            target
        })
        .clone()
}

/// Runs a Python script with DuckDB importable and returns its standard output; panics
/// with its standard error when it fails.
pub fn duckdb(script: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", duckdb_path())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the DuckDB script failed:\n{script}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The machine's PostgreSQL, as the tests reach it (trust authentication).
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
/// The machine's MariaDB, as the tests reach it (root without a password).
pub const MARIADB: &str = "mysql://root@127.0.0.1:3306";

fn server(url: &str) -> ferry_connect::ServerAddress {
    match ferry_connect::Spec::parse(url).expect("a test URL") {
        ferry_connect::Spec::Server(s) => s,
        other => panic!("{other:?}"),
    }
}

/// A PostgreSQL database of the test's own, dropped at the end. Fails loudly when the
/// server cannot be reached: the server tests are never skipped.
pub struct PgDb {
    /// The database name.
    pub name: String,
}

impl PgDb {
    /// Creates `ferry_TAG_PID`.
    pub fn create(tag: &str) -> PgDb {
        let name = format!("ferry_{tag}_{}", std::process::id());
        let mut admin = PgDb::admin();
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        PgDb { name }
    }

    fn admin() -> postgres::Client {
        ferry_connect::postgres::connect(&server(&format!("{POSTGRES}/test?sslmode=disable")))
            .unwrap_or_else(|e| panic!("the server tests need PostgreSQL on 127.0.0.1:5432: {e}"))
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        format!("{POSTGRES}/{}?sslmode=disable", self.name)
    }

    /// A connection to it.
    pub fn client(&self) -> postgres::Client {
        ferry_connect::postgres::connect(&server(&self.url())).unwrap()
    }

    /// Copies a fixture into schema `schema`.
    pub fn load(&self, sqlite: &Path, key_type: ferry_fixtures::KeyType, schema: &str) {
        let mut client = self.client();
        ferry_fixtures::server::copy(
            sqlite,
            key_type,
            ferry_fixtures::server::Server::Postgres {
                client: &mut client,
                schema,
            },
        )
        .unwrap();
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = PgDb::admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// A MariaDB database of the test's own, dropped at the end.
pub struct MyDb {
    /// The database name.
    pub name: String,
}

impl MyDb {
    /// Creates `ferry_TAG_PID`.
    pub fn create(tag: &str) -> MyDb {
        use mysql::prelude::Queryable as _;
        let name = format!("ferry_{tag}_{}", std::process::id());
        let mut admin = MyDb::admin();
        admin
            .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
            .unwrap();
        admin
            .query_drop(format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
            .unwrap();
        MyDb { name }
    }

    fn admin() -> mysql::Conn {
        ferry_connect::mysql::connect(&server(&format!("{MARIADB}/test?sslmode=disable")))
            .unwrap_or_else(|e| panic!("the server tests need MariaDB on 127.0.0.1:3306: {e}"))
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        format!("{MARIADB}/{}?sslmode=disable", self.name)
    }

    /// A connection to it.
    pub fn conn(&self) -> mysql::Conn {
        ferry_connect::mysql::connect(&server(&self.url())).unwrap()
    }

    /// Copies a fixture into it.
    pub fn load(&self, sqlite: &Path, key_type: ferry_fixtures::KeyType) {
        let mut conn = self.conn();
        ferry_fixtures::server::copy(
            sqlite,
            key_type,
            ferry_fixtures::server::Server::Mysql(&mut conn),
        )
        .unwrap();
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        use mysql::prelude::Queryable as _;
        let _ = MyDb::admin().query_drop(format!("DROP DATABASE IF EXISTS {}", self.name));
    }
}

/// A credentials file's text: a `user,password` header, then the rows.
pub fn credentials_csv(rows: &[(String, String)]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["user", "password"]).unwrap();
    for (u, p) in rows {
        w.write_record([u, p]).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

/// The algorithm of `user`'s stored password in the SQLite store at `store`.
pub fn password_algorithm(store: &Path, user: &str) -> String {
    rusqlite::Connection::open(store)
        .unwrap()
        .query_row(
            "SELECT p.algorithm FROM passwords p JOIN users u ON u.id = p.user_id WHERE u.user_name = ?1",
            [user],
            |r| r.get(0),
        )
        .unwrap()
}
