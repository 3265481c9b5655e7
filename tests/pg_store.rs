//! The store on PostgreSQL, end to end: `load`, `validate --target`, `verify --target` and
//! `login` with `--target postgres://…`, several loaders at once, shares of the parts, a
//! killed load. Each test has its own database on the machine's PostgreSQL, dropped after
//! it; a server that cannot be reached fails the test.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use ferry_e2e::{run, run_with, schema, PgDb, Run, Workdir};
use ferry_fixtures::Generation;
use rusqlite::Connection;

const SCIM: &str = "scim-user.json";

fn load_command(w: &Workdir, target: &str, extra: &[&str]) -> Command {
    let mut cmd = ferry_e2e::command("ferry-import");
    cmd.args([
        "load",
        &w.arg("bundle"),
        "--schema",
        &schema(SCIM),
        "--target",
        target,
    ])
    .args(extra);
    cmd
}

fn load(w: &Workdir, target: &str, extra: &[&str]) -> Run {
    load_command(w, target, extra).output().unwrap().into()
}

fn spawn_load(w: &Workdir, target: &str, extra: &[&str]) -> Child {
    load_command(w, target, extra)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for loads started with [`spawn_load`]; returns their JSON summaries.
fn summaries(loads: Vec<Child>) -> Vec<serde_json::Value> {
    loads
        .into_iter()
        .map(|load| {
            let out = load.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{:?}: {stderr}",
                out.status
            );
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
        })
        .collect()
}

fn total(summaries: &[serde_json::Value], key: &str) -> u64 {
    summaries.iter().map(|s| s[key].as_u64().unwrap()).sum()
}

fn login(target: &str, user: &str, password: &str) -> Run {
    run_with(
        "ferry-import",
        &["login", "--target", target, "--user", user],
        &format!("{password}\n"),
        &[],
    )
}

/// A table's rows as comparable text: (subject, row) pairs, sorted. The SQL is written
/// once, with `hex(…)` and `bool(…)` rewritten for each engine.
fn rows_sqlite(conn: &Connection, sql: &str) -> Vec<(String, String)> {
    let sql = sql.replace("bool(", "(0 + ");
    let mut stmt = conn.prepare(&sql).unwrap();
    let mut rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    rows
}

fn rows_pg(client: &mut postgres::Client, schema: &str, sql: &str) -> Vec<(String, String)> {
    let mut sql = sql.replace("bool(", "int4(");
    while let Some(at) = sql.find("hex(") {
        // hex(x) → upper(encode(x, 'hex'))
        let close = at + sql[at..].find(')').unwrap();
        let inner = sql[at + 4..close].to_string();
        sql.replace_range(at..=close, &format!("upper(encode({inner}, 'hex'))"));
    }
    client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .unwrap();
    let mut rows: Vec<(String, String)> = client
        .query(&sql, &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    rows.sort();
    rows
}

/// What the store holds for each account, table by table, in terms both stores share.
const ACCOUNT_ROWS: [(&str, &str); 10] = [
    (
        "users",
        "SELECT subject_id, coalesce(user_name, '') || '|' || coalesce(normalized_user_name, '') || '|' ||
           bool(email_confirmed) || bool(phone_number_confirmed) || bool(two_factor_enabled) || bool(lockout_enabled)
           || '|' || access_failed_count || '|' || bool(lockout_end IS NULL) FROM users",
    ),
    (
        "passwords",
        "SELECT u.subject_id, p.algorithm || '|' || hex(p.hash) || '|' || hex(p.salt)
         FROM passwords p JOIN users u ON u.id = p.user_id",
    ),
    (
        "otp_addresses",
        "SELECT u.subject_id, o.channel || '|' || o.address || '|' || o.normalized || '|' || bool(o.verified)
         FROM otp_addresses o JOIN users u ON u.id = o.user_id",
    ),
    (
        "external_logins",
        "SELECT u.subject_id, l.provider || '|' || l.provider_key || '|' || coalesce(l.display_name, '')
         FROM external_logins l JOIN users u ON u.id = l.user_id",
    ),
    (
        "passkeys",
        "SELECT u.subject_id, hex(p.credential_id) || '|' || hex(p.public_key_cose) || '|' || p.algorithm || '|' ||
           p.sign_count || '|' || bool(p.backup_eligible) || bool(p.backed_up) || '|' || hex(p.aaguid) || '|' || p.name
         FROM passkeys p JOIN users u ON u.id = p.user_id",
    ),
    (
        "totp_devices",
        "SELECT u.subject_id, t.name || '|' || hex(t.key) FROM totp_devices t JOIN users u ON u.id = t.user_id",
    ),
    (
        "recovery_codes",
        "SELECT u.subject_id, count(*) || '|' || min(c.iterations) FROM recovery_codes c
         JOIN users u ON u.id = c.user_id GROUP BY u.subject_id",
    ),
    (
        "memberships",
        "SELECT u.subject_id, m.role_id FROM memberships m JOIN users u ON u.id = m.user_id",
    ),
    ("roles", "SELECT id, name FROM roles"),
    (
        "import_results",
        "SELECT coalesce(subject_id, '') || '@' || line, status || '|' || coalesce(reason, '') || '|' || coalesce(message, '')
         FROM import_results",
    ),
];

/// JSON columns, compared as values (PostgreSQL's jsonb keeps no key order).
const JSON_ROWS: [(&str, &str); 3] = [
    ("profiles", "SELECT subject_id, profile FROM users"),
    (
        "password parameters",
        "SELECT u.subject_id, p.parameters FROM passwords p JOIN users u ON u.id = p.user_id",
    ),
    ("role claims", "SELECT id, claims FROM roles"),
];

/// Fails with the first row that differs (the tables are long).
fn assert_same(table: &str, sqlite: &[(String, String)], pg: &[(String, String)]) {
    if let Some((a, b)) = sqlite.iter().zip(pg).find(|(a, b)| a != b) {
        panic!("{table} differs between the stores: SQLite has {a:?}, PostgreSQL {b:?}");
    }
    assert_eq!(
        sqlite.len(),
        pg.len(),
        "{table}: rows in SQLite, in PostgreSQL"
    );
}

/// `ferry-import COMMAND BUNDLE --schema … --target TARGET`.
fn against(command: &str, bundle: &str, target: &str) -> Run {
    run(
        "ferry-import",
        &[
            command,
            bundle,
            "--schema",
            &schema(SCIM),
            "--target",
            target,
        ],
    )
}

/// The lines of `verify --target` about the store.
fn verdict(bundle: &str, target: &str) -> Vec<String> {
    let v = against("verify", bundle, target);
    let lines: Vec<String> = v
        .stderr
        .lines()
        .filter(|l| l.starts_with("store: "))
        .map(String::from)
        .collect();
    assert!(!lines.is_empty(), "{}", v.stderr);
    lines
}

fn json_rows(rows: Vec<(String, String)>) -> BTreeMap<String, serde_json::Value> {
    rows.into_iter()
        .map(|(k, v)| (k, serde_json::from_str(&v).unwrap()))
        .collect()
}

#[test]
fn a_load_into_postgres_holds_what_a_load_into_sqlite_holds_and_every_command_reads_it() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 300, false);
    w.export(&db, "bundle");
    let pg = PgDb::create("store_same");
    let target = pg.url();
    // ken's e-mail duplicates judy's: one record fails in both stores.
    let sqlite = load(&w, &w.arg("users.db"), &[]).expect_code(1);
    let r = load(&w, &target, &[]).expect_code(1);
    let summary = |r: &Run| {
        r.stderr
            .lines()
            .find(|l| l.starts_with("Import complete."))
            .map(|l| l.split(" (").next().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(summary(&r), summary(&sqlite));
    assert!(
        r.stderr.contains("is already used by subject"),
        "{}",
        r.stderr
    );

    let conn = Connection::open(w.path("users.db")).unwrap();
    let mut client = pg.client();
    for (table, sql) in ACCOUNT_ROWS {
        let (a, b) = (rows_sqlite(&conn, sql), rows_pg(&mut client, "ferry", sql));
        assert!(!a.is_empty() || table == "passkeys", "{table} is empty");
        assert_same(table, &a, &b);
    }
    for (what, sql) in JSON_ROWS {
        let (a, b) = (
            json_rows(rows_sqlite(&conn, sql)),
            json_rows(rows_pg(
                &mut client,
                "ferry",
                &sql.replace("profile FROM", "profile::text FROM")
                    .replace("parameters FROM", "parameters::text FROM")
                    .replace("claims FROM", "claims::text FROM"),
            )),
        );
        assert_eq!(a, b, "{what} differ between the stores");
    }

    // validate --target and verify find the same in both stores; a re-run skips everything.
    let validate = |target: &str| {
        let r = against("validate", &w.arg("bundle"), target);
        assert_eq!(r.code, 1, "{}", r.stderr);
        r.stderr
    };
    let against_pg = validate(&target);
    assert!(against_pg.contains("already exists"), "{against_pg}");
    assert_eq!(against_pg, validate(&w.arg("users.db")));
    assert_eq!(
        verdict(&w.arg("bundle"), &target),
        verdict(&w.arg("bundle"), &w.arg("users.db"))
    );
    let again = load(&w, &target, &["--json"]).expect_code(1);
    let s: serde_json::Value = serde_json::from_str(again.stdout.trim()).unwrap();
    assert_eq!(
        (s["created"].as_u64(), s["updated"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        s["skipped"].as_u64().unwrap() + s["failed"].as_u64().unwrap(),
        300
    );

    // Login: by user name or e-mail in any case, re-hashed on first success; lockouts.
    login(&target, "BOB", "bob-Passw0rd!").expect_code(0);
    login(&target, "Bob@Example.COM", "bob-Passw0rd!").expect_code(0);
    login(&target, "bob", "not the password").expect_code(1);
    let r = login(&target, "ivan", "ivan-Passw0rd!");
    assert_eq!(r.code, 1, "ivan is locked out: {}", r.stderr);
    let algorithm: String = client
        .query_one(
            "SELECT p.algorithm FROM ferry.passwords p JOIN ferry.users u ON u.id = p.user_id WHERE u.user_name = 'bob'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(algorithm, "pbkdf2");
}

#[test]
fn verify_and_login_against_a_missing_store_say_so_and_create_nothing() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 20, false);
    w.export(&db, "bundle");
    let pg = PgDb::create("store_missing");
    let target = format!("{}&schema=nothing_here", pg.url());
    let r = run(
        "ferry-import",
        &[
            "verify",
            &w.arg("bundle"),
            "--schema",
            &schema(SCIM),
            "--target",
            &target,
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("no ferry store in schema `nothing_here`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("password"), "{}", r.stderr);
    let r = login(&target, "bob", "bob-Passw0rd!");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("no ferry store in schema `nothing_here`"),
        "{}",
        r.stderr
    );
    let exists: bool = pg
        .client()
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'nothing_here')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!exists);
}

#[test]
fn an_unreachable_server_is_one_line_naming_it_and_never_its_password() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 5, false);
    w.export(&db, "bundle");
    let r = load(
        &w,
        "Host=127.0.0.1;Port=1;Database=users;Username=ferry;Password=hunter2",
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("127.0.0.1:1/users"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
}

/// Every record exactly once, and the runs' counts add up to the truth.
fn assert_each_once(pg: &PgDb, users: u64, summaries: &[serde_json::Value]) {
    let mut client = pg.client();
    let count =
        |c: &mut postgres::Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    let failed = total(summaries, "failed");
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM ferry.users") as u64,
        total(summaries, "created"),
        "every created user is in the store once"
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT count(DISTINCT subject_id) FROM ferry.users"
        ),
        count(&mut client, "SELECT count(*) FROM ferry.users")
    );
    let stored: i64 = count(
        &mut client,
        "SELECT sum(created + updated + skipped + failed)::bigint FROM ferry.import_runs",
    );
    assert_eq!(
        stored as u64,
        total(summaries, "created") + total(summaries, "skipped") + failed
    );
    assert!(total(summaries, "created") <= users);
}

#[test]
fn two_and_four_loads_of_one_bundle_at_once_create_every_user_once() {
    let w = Workdir::new();
    let n = 1500;
    let db = w.fixture("app.db", Generation::CoreV3, n, false);
    w.export(&db, "bundle");
    // One load alone tells how many records of the bundle a store takes.
    let alone = PgDb::create("store_alone");
    let one = summaries(vec![spawn_load(&w, &alone.url(), &[])]);
    let created_alone = total(&one, "created");
    for loaders in [2, 4] {
        let pg = PgDb::create(&format!("store_x{loaders}"));
        let loads = (0..loaders)
            .map(|_| spawn_load(&w, &pg.url(), &["--batch-size", "200"]))
            .collect();
        let s = summaries(loads);
        assert_eq!(total(&s, "created"), created_alone, "{loaders} loaders");
        assert_eq!(
            total(&s, "created") + total(&s, "skipped") + total(&s, "failed"),
            n * loaders,
            "every loader accounts for every record"
        );
        assert!(
            s.iter().all(|s| s["failed"] == one[0]["failed"]),
            "the same records fail in each load: {s:?}"
        );
        assert_each_once(&pg, n, &s);
    }
}

#[test]
fn disjoint_shares_of_the_parts_load_the_union_and_verify_proves_it() {
    let w = Workdir::new();
    let n = 2000;
    let db = w.fixture("app.db", Generation::CoreV3, n, false);
    let out = w.arg("bundle");
    run(
        "ferry-export",
        &[
            "--source",
            &db.display().to_string(),
            "--out",
            &out,
            "--part-size",
            "300",
        ],
    )
    .expect_code(0);
    load(&w, &w.arg("users.db"), &[]);
    let whole = verdict(&out, &w.arg("users.db"));
    for shares in [2, 4] {
        let pg = PgDb::create(&format!("store_parts{shares}"));
        let loads = (1..=shares)
            .map(|k| spawn_load(&w, &pg.url(), &["--parts", &format!("{k}/{shares}")]))
            .collect();
        let s = summaries(loads);
        assert_eq!(
            total(&s, "created") + total(&s, "skipped") + total(&s, "failed"),
            n,
            "the shares add up to the bundle: {s:?}"
        );
        assert_eq!(
            total(&s, "skipped"),
            0,
            "no two shares hold the same record"
        );
        assert_each_once(&pg, n, &s);
        let bundles: Vec<String> = pg
            .client()
            .query("SELECT bundle FROM ferry.import_runs ORDER BY bundle", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(bundles.len(), shares, "one run per share");
        assert!(
            bundles[0].ends_with(&format!("(parts 1/{shares})")),
            "{bundles:?}"
        );
        // The union holds as many of the bundle's users as one load of the whole bundle.
        // (Of two records in different shares that claim the same e-mail, whichever share
        // gets there first wins, so which one fails depends on timing; how many fail does
        // not.)
        assert_eq!(verdict(&out, &pg.url()).last(), whole.last());
    }
    let pg = PgDb::create("store_parts_bad");
    let bad = run(
        "ferry-import",
        &[
            "load",
            &out,
            "--schema",
            &schema(SCIM),
            "--target",
            &pg.url(),
            "--parts",
            "5/4",
        ],
    );
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("not a share"), "{}", bad.stderr);
}

#[test]
fn a_killed_load_then_a_rerun_ends_complete() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 600, false);
    w.export(&db, "bundle");
    let pg = PgDb::create("store_killed");
    let killed = load_command(&w, &pg.url(), &["--batch-size", "100"])
        .env("FERRY_TEST_ABORT_AFTER_COMMITS", "2")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "the load was cut short");
    let mut client = pg.client();
    let results: i64 = client
        .query_one("SELECT count(*) FROM ferry.import_results", &[])
        .unwrap()
        .get(0);
    assert_eq!(results, 200, "two committed batches, nothing of the third");
    let s = summaries(vec![spawn_load(&w, &pg.url(), &[])]);
    let runs: Vec<(String, i64)> = client
        .query(
            "SELECT status, created + updated + skipped + failed FROM ferry.import_runs ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        runs,
        [
            ("interrupted".to_string(), 200),
            ("completed".to_string(), 600)
        ],
        "the killed run's session ended, so its run is interrupted, with what it committed"
    );
    let created_before: i64 = client
        .query_one("SELECT created FROM ferry.import_runs WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        s[0]["skipped"].as_u64(),
        Some(created_before as u64),
        "the re-run skips what is there"
    );
    let users: i64 = client
        .query_one("SELECT count(*) FROM ferry.users", &[])
        .unwrap()
        .get(0);
    let created: i64 = client
        .query_one("SELECT sum(created)::bigint FROM ferry.import_runs", &[])
        .unwrap()
        .get(0);
    assert_eq!(users, created);
}

#[test]
fn logins_racing_to_rehash_one_user_end_with_one_valid_pbkdf2_hash() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 20, false);
    w.export(&db, "bundle");
    let pg = PgDb::create("store_rehash");
    let target = pg.url();
    let r = load(&w, &target, &[]);
    assert!(r.stderr.contains("Import complete."), "{}", r.stderr);
    let logins: Vec<Child> = (0..4)
        .map(|_| {
            let mut child = ferry_e2e::command("ferry-import")
                .args(["login", "--target", &target, "--user", "bob"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"bob-Passw0rd!\n")
                .unwrap();
            child
        })
        .collect();
    for child in logins {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rows: Vec<String> = pg
        .client()
        .query(
            "SELECT p.algorithm FROM ferry.passwords p JOIN ferry.users u ON u.id = p.user_id WHERE u.user_name = 'bob'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["pbkdf2"]);
    login(&target, "bob", "bob-Passw0rd!").expect_code(0);
    login(&target, "bob", "bob-passw0rd!").expect_code(1);
}
