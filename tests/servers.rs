//! Server sources end to end, against the machine's PostgreSQL and MariaDB (each test in
//! databases of its own, dropped after; a server that cannot be reached fails the test):
//! the same fixture in SQLite, PostgreSQL (both namings, any schema), MariaDB and CSV
//! dumps exports the same records; connection strings and appsettings.json; every failure
//! in one line; and a writer committing during an export does not tear a user.

use std::path::Path;

use ferry_e2e::{options, run, MyDb, PgDb, Run, Workdir};
use ferry_fixtures::{Generation, KeyType, Options};
use mysql::prelude::Queryable as _;
use serde_json::Value;

fn export(w: &Workdir, source: &str, out: &str) -> Run {
    run(
        "ferry-export",
        &[
            "--source",
            source,
            "--out",
            &w.arg(out),
            "--part-size",
            "100000",
        ],
    )
}

/// The users of a bundle as parsed JSON, in bundle order.
fn users(dir: &Path) -> Vec<Value> {
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("users-")
        })
        .collect();
    parts.sort();
    parts
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

fn bytes_of(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

/// What a server keeps of a SQLite fixture's record: Npgsql and Pomelo write
/// `DateTimeOffset` as UTC to the microsecond, and a GUID key's text is
/// `Guid.ToString()` (lower case) where SQLite holds the upper-case text
/// Microsoft.Data.Sqlite wrote.
fn as_a_server_keeps_it(mut records: Vec<Value>, key_type: KeyType) -> Vec<Value> {
    for r in &mut records {
        if let Some(t) = r["LockoutEnd"].as_str() {
            let t = chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .with_timezone(&chrono::Utc);
            let micros = chrono::Timelike::with_nanosecond(
                &t,
                chrono::Timelike::nanosecond(&t) / 1000 * 1000,
            )
            .unwrap();
            r["LockoutEnd"] = serde_json::to_value(micros.fixed_offset()).unwrap();
        }
        if key_type == KeyType::Guid {
            let lower = |v: &mut Value| *v = Value::String(v.as_str().unwrap().to_lowercase());
            lower(&mut r["Id"]);
            for role in r["Roles"].as_array_mut().unwrap() {
                lower(role);
            }
        }
    }
    records
}

fn fixture(w: &Workdir, name: &str, opts: Options) -> std::path::PathBuf {
    w.fixture_with(name, opts)
}

/// `psql \copy` of every table of `schema` (and `columns.csv`) into `dir`.
fn psql_dump(db: &PgDb, schema: &str, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let psql = |command: &str| {
        let out = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                &db.name,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAtc",
                command,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for table in psql(&format!(
        "SELECT tablename FROM pg_tables WHERE schemaname = '{schema}'"
    ))
    .lines()
    {
        psql(&format!(
            "\\copy \"{schema}\".\"{table}\" TO '{}' CSV HEADER",
            dir.join(format!("{table}.csv")).display()
        ));
    }
    psql(&format!(
        "\\copy (SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = '{schema}') TO '{}' CSV HEADER",
        dir.join("columns.csv").display()
    ));
}

/// Every engine, every key type: PostgreSQL, MariaDB and their CSV dumps export the same
/// bytes, and the same records as the SQLite fixture, as a server keeps them.
#[test]
fn every_engine_exports_the_same_records_for_every_key_type() {
    for (key_type, real_world) in [
        (KeyType::String, true),
        (KeyType::Integer, false),
        (KeyType::Guid, false),
    ] {
        let w = Workdir::new();
        let tag = format!("same_{key_type:?}").to_lowercase();
        let db = fixture(
            &w,
            "app.db",
            Options {
                users: 250,
                generation: Generation::CoreV3,
                key_type,
                real_world,
                ..options()
            },
        );
        let pg = PgDb::create(&tag);
        pg.load(&db, key_type, "public");
        let my = MyDb::create(&tag);
        my.load(&db, key_type);
        export(&w, &db.display().to_string(), "sqlite").expect_code(0);
        export(&w, &pg.url(), "pg").expect_code(0);
        export(&w, &my.url(), "my").expect_code(0);
        psql_dump(&pg, "public", &w.path("dump"));
        export(&w, &format!("csv:{}", w.arg("dump")), "csv").expect_code(0);
        let what = format!("{key_type:?} keys");
        for (name, dir) in [("MariaDB", "my"), ("CSV", "csv")] {
            for file in ["users-00000.ndjson", "roles.ndjson"] {
                assert!(
                    bytes_of(&w.path("pg"), file) == bytes_of(&w.path(dir), file),
                    "{what}: {name}'s {file} differs from PostgreSQL's"
                );
            }
        }
        // A whole export sorts the tables it reads in storage order; with --limit they are
        // read in order through the engine (cursors ordered on the server, SQLite's
        // indexes): the same records either way.
        for (source, dir) in [(pg.url(), "pg"), (db.display().to_string(), "sqlite")] {
            let limited = format!("{dir}-limit");
            run(
                "ferry-export",
                &[
                    "--source",
                    &source,
                    "--out",
                    &w.arg(&limited),
                    "--part-size",
                    "100000",
                    "--limit",
                    "1000000",
                ],
            )
            .expect_code(0);
            assert!(
                bytes_of(&w.path(dir), "users-00000.ndjson")
                    == bytes_of(&w.path(&limited), "users-00000.ndjson"),
                "{what}: {dir} sorted here differs from {dir} read in order"
            );
        }
        let from_pg = users(&w.path("pg"));
        assert_eq!(from_pg.len(), 250, "{what}");
        assert_eq!(
            as_a_server_keeps_it(users(&w.path("sqlite")), key_type),
            from_pg,
            "{what}: the server's records differ from SQLite's"
        );
        let manifest = |dir: &str| -> Value {
            serde_json::from_str(
                &std::fs::read_to_string(w.path(dir).join("manifest.json")).unwrap(),
            )
            .unwrap()
        };
        let (p, m) = (manifest("pg"), manifest("my"));
        assert_eq!(p["source"]["engine"], "postgres");
        assert_eq!(
            p["source"]["location"],
            format!("postgres://127.0.0.1:5432/{}", pg.name)
        );
        assert!(p["source"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with("PostgreSQL "));
        assert_eq!(m["source"]["engine"], "mysql");
        assert!(m["source"]["server_version"]
            .as_str()
            .unwrap()
            .starts_with("MariaDB "));
        assert_eq!(p["counts"], m["counts"], "{what}");
        assert_eq!(
            p["password_hashes"],
            manifest("sqlite")["password_hashes"],
            "{what}"
        );
        let expected_key = match key_type {
            KeyType::String => "string",
            KeyType::Integer => "integer",
            KeyType::Guid => "guid",
        };
        assert_eq!(p["source"]["key_type"], expected_key, "{what}");
        assert_eq!(
            manifest("csv")["source"]["key_type"],
            expected_key,
            "{what}"
        );
    }
}

#[test]
fn postgres_snake_case_in_another_schema() {
    let w = Workdir::new();
    let db = fixture(
        &w,
        "app.db",
        Options {
            users: 120,
            generation: Generation::CoreV3,
            snake_case: true,
            ..options()
        },
    );
    let pg = PgDb::create("schema");
    pg.load(&db, KeyType::String, "identity");
    let r = export(&w, &pg.url(), "public").expect_code(2);
    assert!(
        r.stderr.contains("no AspNetUsers (or asp_net_users) table")
            && r.stderr.contains("the users table is in schema `identity`"),
        "{}",
        r.stderr
    );
    let r = export(&w, &format!("{}&schema=identity", pg.url()), "bundle").expect_code(0);
    assert!(r.stderr.contains("(core-v3, snake_case)"), "{}", r.stderr);
    // The Npgsql connection string with its Search Path says the same.
    let cs = format!("Host=127.0.0.1;Port=5432;Database={};Username=postgres;SSL Mode=Disable;Search Path=identity", pg.name);
    export(&w, &cs, "from-cs").expect_code(0);
    export(&w, &db.display().to_string(), "sqlite").expect_code(0);
    assert_eq!(users(&w.path("bundle")), users(&w.path("from-cs")));
    assert_eq!(
        as_a_server_keeps_it(users(&w.path("sqlite")), KeyType::String),
        users(&w.path("bundle"))
    );
}

#[test]
fn mariadb_lower_case_table_names() {
    let w = Workdir::new();
    let db = fixture(
        &w,
        "app.db",
        Options {
            users: 80,
            ..options()
        },
    );
    let my = MyDb::create("lower");
    my.load(&db, KeyType::String);
    export(&w, &my.url(), "before").expect_code(0);
    let mut conn = my.conn();
    let tables: Vec<String> = conn.query("SHOW TABLES").unwrap();
    for t in tables {
        conn.query_drop(format!("RENAME TABLE `{t}` TO `{}`", t.to_lowercase()))
            .unwrap();
    }
    export(&w, &my.url(), "after").expect_code(0);
    assert_eq!(users(&w.path("before")), users(&w.path("after")));
}

/// Connection strings as appsettings.json holds them, with the environment overlay; the
/// password appears nowhere.
#[test]
fn connection_strings_and_appsettings_json() {
    let w = Workdir::new();
    let db = fixture(
        &w,
        "app.db",
        Options {
            users: 60,
            ..options()
        },
    );
    let my = MyDb::create("appsettings");
    my.load(&db, KeyType::String);
    let pg = PgDb::create("appsettings");
    pg.load(&db, KeyType::String, "public");
    let mut admin = my.conn();
    admin
        .query_drop("CREATE USER IF NOT EXISTS 'ferry_app'@'%' IDENTIFIED BY 's3cr;et\"pw'")
        .unwrap();
    admin
        .query_drop(format!("GRANT SELECT ON {}.* TO 'ferry_app'@'%'", my.name))
        .unwrap();
    let mysql_cs = format!(
        "Server=127.0.0.1;Port=3306;Database={};User=ferry_app;Password=\"s3cr;et\"\"pw\";SslMode=Preferred",
        my.name
    );
    std::fs::write(
        w.path("appsettings.json"),
        format!(
            "{{\n  // the template's comment\n  \"ConnectionStrings\": {{ \"DefaultConnection\": \"Data Source={}\" }}\n}}\n",
            db.display()
        ),
    )
    .unwrap();
    std::fs::write(
        w.path("appsettings.Production.json"),
        serde_json::json!({ "ConnectionStrings": { "DefaultConnection": mysql_cs } }).to_string(),
    )
    .unwrap();
    let npgsql = format!("Host=127.0.0.1;Port=5432;Database={};Username=postgres;Password=hunter2-pg;SSL Mode=Prefer", pg.name);
    let settings = w.arg("appsettings.json");
    let runs = [
        (
            "sqlite",
            run(
                "ferry-export",
                &["--appsettings", &settings, "--out", &w.arg("sqlite")],
            ),
        ),
        (
            "production",
            run(
                "ferry-export",
                &[
                    "--appsettings",
                    &settings,
                    "--environment",
                    "Production",
                    "--out",
                    &w.arg("production"),
                ],
            ),
        ),
        ("mysql-cs", export(&w, &mysql_cs, "mysql-cs")),
        ("npgsql-cs", export(&w, &npgsql, "npgsql-cs")),
    ];
    for (name, r) in &runs {
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        for secret in ["s3cr;et", "hunter2-pg"] {
            assert!(
                !r.stderr.contains(secret) && !r.stdout.contains(secret),
                "{name}"
            );
            for entry in std::fs::read_dir(w.path(name)).unwrap() {
                let text = std::fs::read(entry.unwrap().path()).unwrap();
                assert!(!String::from_utf8_lossy(&text).contains(secret), "{name}");
            }
        }
    }
    let engine = |dir: &str| -> String {
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(w.path(dir).join("manifest.json")).unwrap(),
        )
        .unwrap();
        m["source"]["engine"].as_str().unwrap().to_string()
    };
    assert_eq!(engine("sqlite"), "sqlite");
    assert_eq!(engine("production"), "mysql");
    assert_eq!(engine("npgsql-cs"), "postgres");
    assert_eq!(users(&w.path("production")), users(&w.path("mysql-cs")));
    let missing = run(
        "ferry-export",
        &[
            "--appsettings",
            &settings,
            "--connection-name",
            "Identity",
            "--out",
            &w.arg("x"),
        ],
    )
    .expect_code(2);
    assert!(
        missing.stderr.contains("no connection string `Identity`")
            && missing.stderr.contains("DefaultConnection"),
        "{}",
        missing.stderr
    );
    admin.query_drop("DROP USER 'ferry_app'@'%'").unwrap();
}

fn one_line_error(r: &Run) -> &str {
    let line = r.stderr.trim_end();
    assert_eq!(line.lines().count(), 1, "one line:\n{}", r.stderr);
    assert!(line.starts_with("error: "), "{line}");
    line
}

/// Refused, wrong password, no such database, no Identity tables, no privilege on a
/// table: exit 2, one line naming host, database (and table), no password.
#[test]
fn every_failure_is_one_line_naming_the_server() {
    let w = Workdir::new();
    let db = fixture(
        &w,
        "app.db",
        Options {
            users: 30,
            ..options()
        },
    );
    let pg = PgDb::create("failures");
    pg.load(&db, KeyType::String, "public");
    let my = MyDb::create("failures");

    let r = export(&w, "postgres://postgres:topsecret@127.0.0.1:1/app", "a").expect_code(2);
    let line = one_line_error(&r);
    assert!(
        line.contains("postgres://127.0.0.1:1/app")
            && line.contains("refused")
            && !line.contains("topsecret"),
        "{line}"
    );

    let r = export(
        &w,
        "postgres://postgres@127.0.0.1/no_such_database_ferry",
        "a",
    )
    .expect_code(2);
    assert!(
        one_line_error(&r).contains("database \"no_such_database_ferry\" does not exist"),
        "{}",
        r.stderr
    );

    let r = export(
        &w,
        "mysql://root@127.0.0.1/no_such_database_ferry?sslmode=disable",
        "a",
    )
    .expect_code(2);
    assert!(
        one_line_error(&r).contains("Unknown database 'no_such_database_ferry'"),
        "{}",
        r.stderr
    );

    let mut admin = my.conn();
    admin
        .query_drop("CREATE USER IF NOT EXISTS 'ferry_wrong'@'%' IDENTIFIED BY 'right'")
        .unwrap();
    let r = export(
        &w,
        &format!(
            "mysql://ferry_wrong:wrong-pw@127.0.0.1/{}?sslmode=disable",
            my.name
        ),
        "a",
    )
    .expect_code(2);
    let line = one_line_error(&r);
    assert!(
        line.contains(&format!("mysql://127.0.0.1:3306/{}", my.name))
            && line.contains("Access denied")
            && line.contains("(check the user and password)")
            && !line.contains("wrong-pw"),
        "{line}"
    );
    admin.query_drop("DROP USER 'ferry_wrong'@'%'").unwrap();

    // A database without Identity tables.
    let r = export(&w, &my.url(), "a").expect_code(2);
    assert!(
        one_line_error(&r).contains("is not an ASP.NET Identity database: no AspNetUsers (or asp_net_users) table; the database has no tables"),
        "{}",
        r.stderr
    );

    // A user who may read every table but the claims.
    let mut client = pg.client();
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS ferry_reader_{pid}; CREATE ROLE ferry_reader_{pid} LOGIN;
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO ferry_reader_{pid};
             REVOKE SELECT ON \"AspNetUserClaims\" FROM ferry_reader_{pid};",
            pid = std::process::id()
        ))
        .unwrap();
    let r = export(
        &w,
        &format!(
            "postgres://ferry_reader_{}@127.0.0.1/{}?sslmode=disable",
            std::process::id(),
            pg.name
        ),
        "a",
    )
    .expect_code(2);
    let line = one_line_error(&r);
    assert!(
        line.contains(&format!("postgres://127.0.0.1:5432/{}", pg.name))
            && line.contains("AspNetUserClaims")
            && line.contains("permission denied")
            && line.contains("(the user needs SELECT on the Identity tables)"),
        "{line}"
    );
    assert!(!w.path("a").exists(), "no bundle is written");
    drop(client);
    let _ = pg.client().batch_execute(&format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ferry_reader_{pid}; DROP ROLE ferry_reader_{pid}",
        pid = std::process::id()
    ));
}

#[test]
fn postgres_over_tls() {
    let w = Workdir::new();
    let db = fixture(
        &w,
        "app.db",
        Options {
            users: 20,
            ..options()
        },
    );
    let pg = PgDb::create("tls");
    pg.load(&db, KeyType::String, "public");
    let url = format!("{}/{}", ferry_e2e::POSTGRES, pg.name);
    export(&w, &format!("{url}?sslmode=require"), "tls").expect_code(0);
    // The machine's server has a self-signed certificate.
    let r = export(&w, &format!("{url}?sslmode=verify-full"), "x").expect_code(2);
    assert!(one_line_error(&r).contains("certificate"), "{}", r.stderr);
}

/// While an export is under way (the roles read, the users not yet), another connection
/// adds a role, puts the last user in it, changes that user's e-mail and claims and adds
/// a user, in one commit: the bundle holds the database as it was when the export began,
/// whole (a user read after the commit would name a role the bundle lacks).
#[test]
fn a_writer_committing_during_the_export_does_not_tear_a_user() {
    let w = Workdir::new();
    let db = fixture(
        &w,
        "app.db",
        Options {
            users: 300,
            two_factor_percent: 0,
            ..options()
        },
    );
    let pg = PgDb::create("snapshot");
    pg.load(&db, KeyType::String, "public");
    let my = MyDb::create("snapshot");
    my.load(&db, KeyType::String);
    export(&w, &db.display().to_string(), "before").expect_code(0);
    let before = as_a_server_keeps_it(users(&w.path("before")), KeyType::String);
    let last = before.last().unwrap()["Id"].as_str().unwrap().to_string();
    for (engine, source) in [("postgres", pg.url()), ("mysql", my.url())] {
        let resume = w.path(&format!("resume-{engine}"));
        let out = w.path(&format!("during-{engine}"));
        let child = ferry_e2e::command("ferry-export")
            .args(["--source", &source, "--out"])
            .arg(&out)
            .env("FERRY_TEST_PAUSE_AFTER_ROLES", "1")
            .env("FERRY_TEST_RESUME_FILE", &resume)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        ferry_e2e::wait_until(
            std::time::Duration::from_secs(60),
            "the export to pause",
            || resume.with_extension("paused").exists(),
        );
        // The last user's e-mail and claims change, and a user is added, in one commit.
        let change = |q: char| {
            let i = |name: &str| format!("{q}{name}{q}");
            [
                format!(
                    "UPDATE {} SET {} = 'changed@example.com', {} = 'CHANGED@EXAMPLE.COM' WHERE {} = '{last}'",
                    i("AspNetUsers"), i("Email"), i("NormalizedEmail"), i("Id")
                ),
                format!("DELETE FROM {} WHERE {} = '{last}'", i("AspNetUserClaims"), i("UserId")),
                format!(
                    "INSERT INTO {} ({}, {}, {}) VALUES ('{last}', 'torn', 'yes')",
                    i("AspNetUserClaims"), i("UserId"), i("ClaimType"), i("ClaimValue")
                ),
                format!("INSERT INTO {} ({}, {}) VALUES ('late-role', 'Late')", i("AspNetRoles"), i("Id"), i("Name")),
                format!(
                    "INSERT INTO {} ({}, {}) VALUES ('{last}', 'late-role')",
                    i("AspNetUserRoles"), i("UserId"), i("RoleId")
                ),
                format!(
                    "INSERT INTO {} ({}, {}, {}, {}, {}, {}, {}) VALUES ('zzzz-new', 'newcomer', false, false, false, false, 0)",
                    i("AspNetUsers"), i("Id"), i("UserName"), i("EmailConfirmed"), i("PhoneNumberConfirmed"),
                    i("TwoFactorEnabled"), i("LockoutEnabled"), i("AccessFailedCount")
                ),
            ]
        };
        match engine {
            "postgres" => {
                let mut c = pg.client();
                let mut tx = c.transaction().unwrap();
                for sql in change('"') {
                    tx.batch_execute(&sql).unwrap();
                }
                tx.commit().unwrap();
            }
            _ => {
                let mut c = my.conn();
                c.query_drop("START TRANSACTION").unwrap();
                for sql in change('`') {
                    c.query_drop(sql).unwrap();
                }
                c.query_drop("COMMIT").unwrap();
            }
        }
        std::fs::write(&resume, b"").unwrap();
        let r = ferry_e2e::wait_within(child, std::time::Duration::from_secs(120), "the export")
            .expect_code(0);
        let during = users(&out);
        assert_eq!(
            during, before,
            "{engine}: the bundle is the database as the export began: {}",
            r.stderr
        );
        let roles = std::fs::read_to_string(out.join("roles.ndjson")).unwrap();
        assert!(!roles.contains("late-role"), "{engine}");
    }
}

/// The tables dumped to CSV in any row order, and as SQL Server's PowerShell recipe in
/// the README writes them (quoted fields, a byte-order mark, True/False bits, round-trip
/// times, 0x hex bytes, upper-case GUIDs): the same records.
#[test]
fn csv_dumps_in_any_order_and_as_sql_server_writes_them() {
    let w = Workdir::new();
    let db = fixture(
        &w,
        "app.db",
        Options {
            users: 200,
            generation: Generation::CoreV3,
            ..options()
        },
    );
    let pg = PgDb::create("csv");
    pg.load(&db, KeyType::String, "public");
    psql_dump(&pg, "public", &w.path("dump"));
    export(&w, &format!("csv:{}", w.arg("dump")), "sorted").expect_code(0);
    // Shuffle every table's rows (a fixed permutation), keeping the header.
    for entry in std::fs::read_dir(w.path("dump")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut records: Vec<csv::StringRecord> = csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect();
        let header = csv::Reader::from_reader(text.as_bytes())
            .headers()
            .unwrap()
            .clone();
        let n = records.len();
        // 7919 is prime: i * 7919 mod n visits every row once (these tables are smaller).
        records = (0..n)
            .map(|i| records[(i * 7919) % n].clone())
            .collect::<Vec<_>>();
        let mut out = csv::Writer::from_path(&path).unwrap();
        out.write_record(&header).unwrap();
        for r in records {
            out.write_record(&r).unwrap();
        }
        out.flush().unwrap();
    }
    export(&w, &format!("csv:{}", w.arg("dump")), "shuffled").expect_code(0);
    assert!(
        bytes_of(&w.path("sorted"), "users-00000.ndjson")
            == bytes_of(&w.path("shuffled"), "users-00000.ndjson"),
        "a shuffled dump exports the same bytes"
    );

    // SQL Server, as the README's recipe writes it, from the SQLite fixture.
    let dir = w.path("mssql");
    std::fs::create_dir(&dir).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let tables: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'sqlite_sequence'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut columns = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_path(dir.join("columns.csv"))
        .unwrap();
    columns
        .write_record(["TABLE_NAME", "COLUMN_NAME", "DATA_TYPE"])
        .unwrap();
    let bools = [
        "EmailConfirmed",
        "PhoneNumberConfirmed",
        "TwoFactorEnabled",
        "LockoutEnabled",
    ];
    for t in &tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let decls: Vec<String> = conn
            .prepare(&format!("PRAGMA table_info(\"{t}\")"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(2))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (name, decl) in names.iter().zip(&decls) {
            let sql_type = if bools.contains(&name.as_str()) {
                "bit"
            } else if name == "LockoutEnd" {
                "datetimeoffset"
            } else if decl.contains("INT") {
                "int"
            } else if decl.contains("BLOB") {
                "varbinary"
            } else {
                "nvarchar"
            };
            columns.write_record([t.as_str(), name, sql_type]).unwrap();
        }
        let mut file = std::fs::File::create(dir.join(format!("{t}.csv"))).unwrap();
        std::io::Write::write_all(&mut file, b"\xEF\xBB\xBF").unwrap();
        let mut out = csv::WriterBuilder::new()
            .quote_style(csv::QuoteStyle::Always)
            .from_writer(file);
        out.write_record(&names).unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            let mut fields = Vec::new();
            for (i, name) in names.iter().enumerate() {
                use rusqlite::types::ValueRef;
                fields.push(match row.get_ref(i).unwrap() {
                    ValueRef::Null => String::new(),
                    ValueRef::Integer(v) if bools.contains(&name.as_str()) => {
                        (if v != 0 { "True" } else { "False" }).to_string()
                    }
                    ValueRef::Integer(v) => v.to_string(),
                    ValueRef::Real(v) => v.to_string(),
                    ValueRef::Text(t) if name == "LockoutEnd" => {
                        // DateTimeOffset.ToString("o")
                        let t = chrono::DateTime::parse_from_str(
                            std::str::from_utf8(t).unwrap(),
                            "%Y-%m-%d %H:%M:%S%.f%:z",
                        )
                        .unwrap();
                        format!(
                            "{}.{:07}{}",
                            t.format("%Y-%m-%dT%H:%M:%S"),
                            chrono::Timelike::nanosecond(&t) / 100,
                            t.format("%:z")
                        )
                    }
                    ValueRef::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
                    ValueRef::Blob(b) => b
                        .iter()
                        .fold("0x".to_string(), |s, x| s + &format!("{x:02X}")),
                });
            }
            out.write_record(&fields).unwrap();
        }
        out.flush().unwrap();
    }
    columns.flush().unwrap();
    export(&w, &format!("csv:{}", dir.display()), "from-mssql").expect_code(0);
    export(&w, &db.display().to_string(), "sqlite").expect_code(0);
    assert!(
        bytes_of(&w.path("sqlite"), "users-00000.ndjson")
            == bytes_of(&w.path("from-mssql"), "users-00000.ndjson"),
        "the SQL Server dump exports what SQLite does"
    );
}
