//! End-to-end tests of `ferry-import verify`.

use ferry_e2e::{run, schema, vectors, Workdir};
use ferry_fixtures::Generation;
use ferry_passwords::{AspNetHash, Prf};
use rusqlite::Connection;

#[test]
fn every_public_vector_through_verify_credentials() {
    let v = vectors();
    let password = v["password"].as_str().unwrap().to_string();
    // (hash, password, expected status)
    let mut cases: Vec<(String, String, &str)> = Vec::new();
    for c in v["verifies"].as_array().unwrap() {
        cases.push((
            c["hash"].as_str().unwrap().into(),
            password.clone(),
            "verified",
        ));
    }
    for c in v["never_verifies"].as_array().unwrap() {
        let hash = c["hash"].as_str().unwrap().to_string();
        // The vector file's own verdict: refused as malformed, or another password's hash.
        let expected = if c["malformed"].is_null() {
            "wrong password"
        } else {
            "malformed hash"
        };
        cases.push((hash, password.clone(), expected));
    }
    for c in v["more"].as_array().unwrap() {
        let expected = if c["verifies"].as_bool().unwrap() {
            "verified"
        } else {
            "wrong password"
        };
        cases.push((
            c["hash"].as_str().unwrap().into(),
            c["password"].as_str().unwrap().into(),
            expected,
        ));
    }
    // A password with a comma, quotes and non-ASCII letters survives the CSV.
    let tricky = r#"pa,ss "quoted" — zoë"#.to_string();
    cases.push((
        AspNetHash::create(&tricky, Prf::Sha256, 10, &[3; 16], 32).to_base64(),
        tricky,
        "verified",
    ));

    let w = Workdir::new();
    w.fixture_with_hashes(&cases.iter().map(|c| c.0.clone()).collect::<Vec<_>>());
    let mut rows: Vec<(String, String)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("VECTOR-{i}@EXAMPLE.COM"), c.1.clone()))
        .collect();
    rows.push(("nobody".into(), "x".into()));
    rows.push(("frank".into(), "whatever".into()));
    std::fs::write(w.path("creds.csv"), ferry_e2e::credentials_csv(&rows)).unwrap();

    let r = run(
        "ferry-import",
        &[
            "verify",
            &w.arg("bundle"),
            "--credentials",
            &w.arg("creds.csv"),
            "--json",
        ],
    )
    .expect_code(1);
    let summary: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let statuses: Vec<String> = summary["credential_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["status"].as_str().unwrap().to_string())
        .collect();
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(statuses[i], case.2, "row for {}", case.0);
    }
    assert_eq!(statuses[cases.len()], "no such user");
    assert_eq!(statuses[cases.len() + 1], "no password");
    // Neither a password nor a hash is ever printed.
    for case in &cases {
        assert!(!r.stdout.contains(&case.0) && !r.stderr.contains(&case.0));
        assert!(
            !r.stdout.contains(&case.1) && !r.stderr.contains(&case.1),
            "{}",
            case.1
        );
    }

    // Only verifiable rows, on one thread: exit 0.
    let good: Vec<(String, String)> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| c.2 == "verified")
        .map(|(i, c)| (format!("vector-{i}"), c.1.clone()))
        .collect();
    std::fs::write(w.path("good.csv"), ferry_e2e::credentials_csv(&good)).unwrap();
    let r = run(
        "ferry-import",
        &[
            "verify",
            &w.arg("bundle"),
            "--credentials",
            &w.arg("good.csv"),
            "--threads",
            "1",
        ],
    )
    .expect_code(0);
    assert!(
        r.stderr.contains(&format!(
            "credentials: {} of {} verified",
            good.len(),
            good.len()
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn every_malformed_kind_is_reported_with_its_reason_and_location() {
    let kinds = [
        ("not-base64!!", "bad-base64"),
        (
            "BQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHwAAAAAAAAAAAA",
            "unknown-version",
        ),
        ("AQAAAAIA", "truncated-header"),
        (
            "AQAAAAEAACcQAAAADwgXTwPfMz/1hZrAcmJdRM04f0nJxC4vzsW82I71yiX07QCuttE2Sg3ly9yPUoYM",
            "salt-too-short",
        ),
        (
            "AQAAAAMAACcQAAAAEB98ik4rMnThQzVdtfVfStpq0EpSA4tnEhciZTU8kznWADk4TOPsjRjqrA7PGIfxlQ==",
            "unknown-prf",
        ),
        (
            "AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4A=",
            "subkey-too-short",
        ),
        ("AAABAgMEBQYHCAkKCwwNDg+ukCEMDf0yyQ29NYubggE=", "v2-length"),
        (
            "AQAAAAIAAAAAAAAAEAABAgMEBQYHCAkKCwwNDg8AAQIDBAUGBwgJCgsMDQ4P",
            "zero-iterations",
        ),
        (
            "AQAAAAKAAAAAAAAAEAABAgMEBQYHCAkKCwwNDg8AAQIDBAUGBwgJCgsMDQ4P",
            "iterations-too-large",
        ),
    ];
    let w = Workdir::new();
    w.fixture_with_hashes(&kinds.iter().map(|k| k.0.to_string()).collect::<Vec<_>>());
    // Malformed hashes are warnings (exit 0); --fail-on-malformed makes them fail.
    run(
        "ferry-import",
        &["verify", &w.arg("bundle"), "--fail-on-malformed"],
    )
    .expect_code(1);
    let r = run("ferry-import", &["verify", &w.arg("bundle")]).expect_code(0);
    let text = std::fs::read_to_string(w.path("bundle/users-00000.ndjson")).unwrap();
    for (i, (_, reason)) in kinds.iter().enumerate() {
        let (line, record) = text
            .lines()
            .enumerate()
            .map(|(n, l)| (n + 1, serde_json::from_str::<serde_json::Value>(l).unwrap()))
            .find(|(_, v)| v["UserName"] == format!("vector-{i}"))
            .unwrap();
        let expected = format!(
            "users-00000.ndjson:{line}:{}: warning: {}: PasswordHash: malformed: {reason} (",
            text.lines()
                .nth(line - 1)
                .unwrap()
                .find("\"PasswordHash\"")
                .unwrap()
                + 1,
            record["Id"].as_str().unwrap()
        );
        assert!(
            r.stderr.contains(&expected),
            "missing `{expected}` in:\n{}",
            r.stderr
        );
    }
    assert!(
        r.stderr
            .contains("users will not be able to log in with a password until it is reset"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_store_changed_behind_ferrys_back_fails_verify_naming_the_subject() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 60, false);
    w.export(&db, "bundle");
    let target = w.arg("users.db");
    let scim = schema("scim-user.json");
    run(
        "ferry-import",
        &[
            "load",
            &w.arg("bundle"),
            "--schema",
            &scim,
            "--target",
            &target,
        ],
    )
    .expect_code(1); // ken's e-mail duplicates judy's
                     // Right after a load, the only differences are the records that failed to load.
    let clean = run(
        "ferry-import",
        &[
            "verify",
            &w.arg("bundle"),
            "--target",
            &target,
            "--schema",
            &scim,
            "--json",
        ],
    )
    .expect_code(1);
    let clean: serde_json::Value = serde_json::from_str(clean.stdout.trim()).unwrap();
    let baseline = clean["store_differences"].as_u64().unwrap();

    let conn = Connection::open(w.path("users.db")).unwrap();
    let subjects: Vec<String> = conn
        .prepare("SELECT u.subject_id FROM users u JOIN passwords p ON p.user_id = u.id WHERE p.algorithm = 'aspnet-identity' ORDER BY u.id LIMIT 3")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    conn.execute("DELETE FROM users WHERE subject_id = ?1", [&subjects[0]])
        .unwrap();
    conn.execute(
        "UPDATE passwords SET parameters = '{\"blob\":\"AQAAAAEAACcQAAAAEAABAgMEBQYHCAkKCwwNDg+yWU7rLgUwPZb1Itsmra7cbxw2EFpwpVFIEtP+JIuUEw==\"}'
         WHERE user_id = (SELECT id FROM users WHERE subject_id = ?1)",
        [&subjects[1]],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO users (subject_id, profile, email_confirmed, phone_number_confirmed, two_factor_enabled, lockout_enabled,
           access_failed_count, created_at, updated_at) VALUES ('intruder', '{}', 0, 0, 0, 0, 0, 'x', 'x')",
        [],
    )
    .unwrap();
    drop(conn);
    let r = run(
        "ferry-import",
        &[
            "verify",
            &w.arg("bundle"),
            "--target",
            &target,
            "--schema",
            &scim,
        ],
    )
    .expect_code(1);
    assert!(
        r.stderr
            .contains(&format!("store: {}: not in the store", subjects[0])),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "store: {}: the stored password blob differs from the bundle's",
            subjects[1]
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("store: intruder: in the store but not in the bundle"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "store: {} differences from the bundle",
            baseline + 3
        )),
        "{}",
        r.stderr
    );

    // A login re-hashes a password to pbkdf2: that is not a difference.
    let r = ferry_e2e::run_with(
        "ferry-import",
        &["login", "--target", &target, "--user", "bob"],
        "bob-Passw0rd!\n",
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(
        "ferry-import",
        &[
            "verify",
            &w.arg("bundle"),
            "--target",
            &target,
            "--schema",
            &scim,
        ],
    )
    .expect_code(1);
    assert!(
        r.stderr.contains(&format!(
            "store: {} differences from the bundle",
            baseline + 3
        )),
        "{}",
        r.stderr
    );
}
