//! Parquet bundles end to end: exported, converted both ways, read by every command,
//! loaded into the same store as NDJSON, and read by an independent reader (DuckDB).

use std::path::Path;

use ferry_e2e::{duckdb, options, run, schema, store_dump, Workdir};
use ferry_fixtures::{Generation, KeyType, Options};

fn export(w: &Workdir, db: &Path, out: &str, format: &str) {
    run(
        "ferry-export",
        &[
            "--source",
            &db.display().to_string(),
            "--out",
            &w.arg(out),
            "--format",
            format,
            "--part-size",
            "70",
        ],
    )
    .expect_code(0);
}

fn convert(w: &Workdir, from: &str, to: &str, out: &str) -> ferry_e2e::Run {
    run(
        "ferry-import",
        &[
            "convert",
            &w.arg(from),
            "--to",
            to,
            "--out",
            &w.arg(out),
            "--part-size",
            "70",
        ],
    )
}

/// The data files of a bundle, by name, with their bytes.
fn data_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "manifest.json")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Every generation, integer and GUID keys, and the shapes of real apps (template claims,
/// role names with spaces, e-mails that are not addresses), with custom columns, 2FA and
/// passkeys: NDJSON → Parquet → NDJSON gives back the same bytes, and an export straight
/// to Parquet is the same bundle as a converted one.
#[test]
fn ndjson_to_parquet_to_ndjson_is_byte_identical_for_every_shape() {
    let mut cases: Vec<(String, Options)> = Generation::ALL
        .iter()
        .map(|&generation| {
            (
                format!("{generation:?}"),
                Options {
                    users: 150,
                    generation,
                    ..options()
                },
            )
        })
        .collect();
    for key_type in [KeyType::Integer, KeyType::Guid] {
        cases.push((
            format!("{key_type:?} keys"),
            Options {
                users: 150,
                generation: Generation::CoreV3,
                key_type,
                ..options()
            },
        ));
    }
    cases.push((
        "real world".into(),
        Options {
            users: 150,
            generation: Generation::CoreV3,
            real_world: true,
            ..options()
        },
    ));
    let manifest_schema = jsonschema::validator_for(
        &serde_json::from_str(
            &std::fs::read_to_string(ferry_e2e::root().join("schemas/manifest.schema.json"))
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    for (name, opts) in cases {
        let w = Workdir::new();
        let db = w.fixture_with("app.db", opts);
        export(&w, &db, "ndjson", "ndjson");
        convert(&w, "ndjson", "parquet", "parquet").expect_code(0);
        convert(&w, "parquet", "ndjson", "again").expect_code(0);
        let original = data_files(&w.path("ndjson"));
        assert_eq!(
            original.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            [
                "roles.ndjson",
                "users-00000.ndjson",
                "users-00001.ndjson",
                "users-00002.ndjson"
            ],
            "{name}"
        );
        assert!(
            original == data_files(&w.path("again")),
            "{name}: NDJSON → Parquet → NDJSON changed the records"
        );

        export(&w, &db, "direct", "parquet");
        assert!(
            data_files(&w.path("direct")) == data_files(&w.path("parquet")),
            "{name}: an export to Parquet differs from a conversion to Parquet"
        );
        let (direct, converted) = (manifest(&w.path("direct")), manifest(&w.path("parquet")));
        assert_eq!(direct["counts"], converted["counts"], "{name}");
        assert_eq!(
            direct["password_hashes"], converted["password_hashes"],
            "{name}"
        );
        assert_eq!(direct["encoding"], "parquet");
        assert_eq!(direct["parquet_schema"], 1);
        let from = &converted["converted_from"];
        assert_eq!(from["encoding"], "ndjson", "{name}");
        assert_eq!(
            from["manifest_sha256"],
            ferry_e2e::sha256_file(&w.path("ndjson").join("manifest.json")),
            "{name}"
        );
        assert_eq!(
            manifest(&w.path("again"))["converted_from"]["encoding"],
            "parquet"
        );
        for dir in ["direct", "parquet", "again"] {
            let m = manifest(&w.path(dir));
            let errors: Vec<String> = manifest_schema
                .iter_errors(&m)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{name}: {dir}: {errors:?}");
        }
    }
}

#[test]
fn a_load_from_parquet_makes_the_same_store_as_a_load_from_ndjson() {
    let w = Workdir::new();
    let db = w.fixture_with(
        "app.db",
        Options {
            users: 300,
            generation: Generation::CoreV3,
            real_world: true,
            ..options()
        },
    );
    export(&w, &db, "ndjson", "ndjson");
    export(&w, &db, "parquet", "parquet");
    let load = |bundle: &str, store: &str| {
        let r = run(
            "ferry-import",
            &[
                "load",
                &w.arg(bundle),
                "--schema",
                &schema("scim-user.json"),
                "--target",
                &w.arg(store),
                "--json",
            ],
        )
        .expect_code(1);
        serde_json::from_str::<serde_json::Value>(r.stdout.trim()).unwrap()
    };
    let from_ndjson = load("ndjson", "a.db");
    let from_parquet = load("parquet", "b.db");
    for key in ["created", "updated", "skipped", "failed"] {
        assert_eq!(from_ndjson[key], from_parquet[key], "{key}");
    }
    assert!(from_parquet["created"].as_u64().unwrap() > 250);
    let dump = |store: &str| store_dump(&rusqlite::Connection::open(w.path(store)).unwrap());
    // The time of the load differs, and so do the random salts of the recovery-code
    // hashes (what they hash comes from the bundles, byte-identical above).
    let started = chrono::Utc::now() - chrono::Duration::hours(1);
    let mask = |rows: Vec<String>| -> Vec<String> {
        rows.into_iter()
            .map(|row| {
                row.split('|')
                    .map(|cell| {
                        let text = cell.trim_start_matches("Text(\"").trim_end_matches("\")");
                        match chrono::DateTime::parse_from_rfc3339(text) {
                            Ok(t) if t > started => "<load time>",
                            _ => cell,
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    };
    let dump = |store: &str| -> std::collections::BTreeMap<String, Vec<String>> {
        dump(store)
            .into_iter()
            .map(|(t, rows)| {
                let rows = if t == "recovery_codes" {
                    rows.iter()
                        .map(|r| {
                            let cells: Vec<&str> = r.split('|').collect();
                            format!("{}|<salt>|<hash>|{}", cells[0], cells[3..].join("|"))
                        })
                        .collect()
                } else {
                    rows
                };
                (t, mask(rows))
            })
            .collect()
    };
    let (a, b) = (dump("a.db"), dump("b.db"));
    for (table, rows) in &a {
        let other = &b[table];
        assert_eq!(rows.len(), other.len(), "{table}");
        for (x, y) in rows.iter().zip(other) {
            assert_eq!(x, y, "{table}");
        }
    }
}

#[test]
fn every_command_reads_parquet_and_names_file_and_record() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 200, false);
    export(&w, &db, "bundle", "parquet");
    let bundle = w.arg("bundle");
    let scim = schema("scim-user.json");
    let validate = run("ferry-import", &["validate", &bundle, "--schema", &scim]).expect_code(1);
    let ndjson_dir = w.path("n");
    export(&w, &db, "n", "ndjson");
    let validate_ndjson = run(
        "ferry-import",
        &[
            "validate",
            &ndjson_dir.display().to_string(),
            "--schema",
            &scim,
        ],
    )
    .expect_code(1);
    // The same problems, at the same record numbers, in files named .parquet (a Parquet
    // record has no columns: each is at column 1).
    assert_eq!(
        without_columns(&validate.stderr),
        without_columns(&validate_ndjson.stderr.replace(".ndjson:", ".parquet:"))
    );
    assert!(
        validate
            .stderr
            .lines()
            .filter(|l| l.starts_with("users-"))
            .all(|l| l.split(':').nth(2) == Some("1")),
        "{}",
        validate.stderr
    );
    assert!(
        validate.stderr.contains("users-00000.parquet:"),
        "{}",
        validate.stderr
    );
    let verify = run("ferry-import", &["verify", &bundle]).expect_code(0);
    assert!(
        verify.stderr.contains("password hashes of 200 users"),
        "{}",
        verify.stderr
    );
    run(
        "ferry-import",
        &["plan", &bundle, "--schema", &scim, "--out", &w.arg("plan")],
    )
    .expect_code(1);
    let seal = run("ferry-import", &["seal", &bundle]).expect_code(0);
    assert!(seal.stderr.contains("nothing to seal"), "{}", seal.stderr);
}

/// DuckDB, knowing nothing of ferry, reads a part and finds what the source holds.
#[test]
fn duckdb_reads_a_parquet_part_as_the_source_has_it() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 200, false);
    export(&w, &db, "bundle", "parquet");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let users = count(r#"SELECT COUNT(*) FROM "AspNetUsers""#);
    let claims = count(r#"SELECT COUNT(*) FROM "AspNetUserClaims""#);
    let passkeys = count(r#"SELECT COUNT(*) FROM "AspNetUserPasskeys""#);
    let (id, credential, first_name): (String, Vec<u8>, String) = conn
        .query_row(
            r#"SELECT u."Id", p."CredentialId", u."FirstName" FROM "AspNetUsers" u
               JOIN "AspNetUserPasskeys" p ON p."UserId" = u."Id" ORDER BY u."Id", p."CredentialId" LIMIT 1"#,
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let (locked, lockout_end): (String, String) = conn
        .query_row(
            r#"SELECT "Id", "LockoutEnd" FROM "AspNetUsers" WHERE "LockoutEnd" IS NOT NULL ORDER BY "Id" LIMIT 1"#,
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let files = w.path("bundle").join("users-*.parquet");
    let out = duckdb(&format!(
        r#"
import duckdb
c = duckdb.connect()
c.execute("CREATE VIEW u AS SELECT * FROM read_parquet('{files}')")
print(c.sql("SELECT count(*), sum(len(Claims)), sum(len(Passkeys)) FROM u").fetchone())
print(c.sql("SELECT hex(Passkeys[1].CredentialId), Extra->>'$.FirstName' FROM u WHERE Id = '{id}'").fetchone())
print(c.sql("SELECT strftime(LockoutEnd.Utc AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%f'), LockoutEnd.OffsetSeconds, LockoutEnd.Nanosecond FROM u WHERE Id = '{locked}'").fetchone())
"#,
        files = files.display()
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("({users}, {claims}, {passkeys})"));
    let hex: String = credential.iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(lines[1], format!("('{hex}', '{first_name}')"));
    // The source writes e.g. `2024-03-16 08:30:00.1234567+02:00`: DuckDB sees the same
    // instant in UTC, to the microsecond, and the offset and the 100 ns ticks are kept.
    let source = chrono::DateTime::parse_from_str(&lockout_end, "%Y-%m-%d %H:%M:%S%.f%:z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(&lockout_end))
        .unwrap();
    let utc = source.with_timezone(&chrono::Utc);
    assert_eq!(
        lines[2],
        format!(
            "('{}', {}, {})",
            utc.format("%Y-%m-%d %H:%M:%S%.6f"),
            source.offset().local_minus_utc(),
            chrono::Timelike::nanosecond(&source)
        )
    );
}

/// A part that another tool rewrote (DuckDB: other list item names, every column
/// nullable) is still read, a null where a record needs a value is that record's
/// problem, and a column ferry does not know is refused by name rather than lost.
#[test]
fn a_part_rewritten_by_duckdb_is_read_and_its_faults_are_named() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 40, false);
    export(&w, &db, "bundle", "parquet");
    let part = w.path("bundle").join("users-00000.parquet");
    let edited = w.path("edited.parquet");
    duckdb(&format!(
        r#"
import duckdb
c = duckdb.connect()
c.execute("""COPY (SELECT * REPLACE (CASE WHEN row_number() OVER () = 5 THEN NULL ELSE EmailConfirmed END AS EmailConfirmed)
              FROM read_parquet('{part}')) TO '{edited}' (FORMAT parquet, COMPRESSION zstd)""")
"#,
        part = part.display(),
        edited = edited.display()
    ));
    std::fs::rename(&edited, &part).unwrap();
    let bundle = w.arg("bundle");
    run("ferry-import", &["seal", &bundle]).expect_code(1);
    let validate = run(
        "ferry-import",
        &["validate", &bundle, "--schema", &schema("scim-user.json")],
    )
    .expect_code(2);
    assert!(
        validate.stderr.contains("users-00000.parquet:5:1: ")
            && validate.stderr.contains(": EmailConfirmed: is null"),
        "{}",
        validate.stderr
    );

    duckdb(&format!(
        r#"
import duckdb
c = duckdb.connect()
c.execute("COPY (SELECT *, 1 AS Shoe FROM read_parquet('{part}')) TO '{edited}' (FORMAT parquet)")
"#,
        part = part.display(),
        edited = edited.display()
    ));
    std::fs::rename(&edited, &part).unwrap();
    let seal = run("ferry-import", &["seal", &bundle]).expect_code(2);
    assert!(
        seal.stderr.contains("users-00000.parquet")
            && seal
                .stderr
                .contains("column `Shoe` is not part of a ferry bundle"),
        "{}",
        seal.stderr
    );
}

#[test]
fn convert_refuses_an_unsealed_bundle_and_writes_nothing_for_a_bad_record() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 30, false);
    export(&w, &db, "bundle", "ndjson");
    let part = w.path("bundle").join("users-00000.ndjson");
    let text = std::fs::read_to_string(&part).unwrap();
    let broken = text.replacen(
        "\"EmailConfirmed\":",
        "\"EmailConfirmed\":\"yes\",\"X\":",
        1,
    );
    std::fs::write(&part, broken).unwrap();
    let r = convert(&w, "bundle", "parquet", "out").expect_code(2);
    assert!(r.stderr.contains("seal the bundle first"), "{}", r.stderr);
    assert!(!w.path("out").exists());

    // A bad record cannot be sealed either; written around the manifest, convert meets
    // it and writes nothing.
    let manifest_path = w.path("bundle").join("manifest.json");
    let mut m = manifest(&w.path("bundle"));
    let sha = ferry_e2e::sha256_file(&part);
    m["parts"][0]["sha256"] = sha.into();
    m["parts"][0]["bytes"] = std::fs::metadata(&part).unwrap().len().into();
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let r = convert(&w, "bundle", "parquet", "out").expect_code(1);
    assert!(
        r.stderr.contains("users-00000.ndjson:1:")
            && r.stderr.contains("not converted: 1 record is not valid"),
        "{}",
        r.stderr
    );
    assert!(!w.path("out").exists(), "nothing is written");
    let leftovers: Vec<_> = std::fs::read_dir(w.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_parquet_part_whose_record_count_was_edited_is_refused_until_sealed() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 30, false);
    export(&w, &db, "bundle", "parquet");
    let path = w.path("bundle").join("manifest.json");
    let mut m = manifest(&w.path("bundle"));
    m["parts"][0]["records"] = 29.into();
    m["counts"]["users"] = 29.into();
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let scim = schema("scim-user.json");
    let v = run(
        "ferry-import",
        &["validate", &w.arg("bundle"), "--schema", &scim],
    )
    .expect_code(2);
    assert!(
        v.stderr.contains(
            "users-00000.parquet: holds 30 records but the manifest says 29; the manifest was edited by hand: run `ferry-import seal` to count them again"
        ),
        "{}",
        v.stderr
    );
    run("ferry-import", &["seal", &w.arg("bundle")]).expect_code(0);
    assert_eq!(manifest(&w.path("bundle"))["parts"][0]["records"], 30);
}

/// Quickfix lines `file:line:column: …` without their column.
fn without_columns(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| match l.splitn(4, ':').collect::<Vec<_>>()[..] {
            [file, line, column, rest] if column.parse::<u64>().is_ok() => {
                format!("{file}:{line}:{rest}")
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
