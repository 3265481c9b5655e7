//! End-to-end tests of `ferry-import`: bundles exported from generated Identity
//! databases are validated, loaded into a store and logged into, through the binaries.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_e2e::{run, run_with, schema, store_dump, vectors, Run, Workdir};
use ferry_fixtures::Generation;
use rusqlite::Connection;

const SCIM: &str = "scim-user.json";

fn load(w: &Workdir, extra: &[&str]) -> Run {
    let bundle = w.arg("bundle");
    let target = w.arg("users.db");
    let s = schema(SCIM);
    let mut args = vec![
        "load",
        bundle.as_str(),
        "--schema",
        s.as_str(),
        "--target",
        target.as_str(),
    ];
    args.extend_from_slice(extra);
    run("ferry-import", &args)
}

fn login(w: &Workdir, user: &str, password: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let target = w.arg("users.db");
    let mut args = vec!["login", "--target", target.as_str(), "--user", user];
    args.extend_from_slice(extra);
    run_with("ferry-import", &args, &format!("{password}\n"), env)
}

fn store(w: &Workdir) -> Connection {
    Connection::open(w.path("users.db")).unwrap()
}

fn algorithm_of(w: &Workdir, user: &str) -> String {
    ferry_e2e::password_algorithm(&w.path("users.db"), user)
}

#[test]
fn every_public_vector_logs_in_then_is_rehashed_to_pbkdf2() {
    let v = vectors();
    let mut cases: Vec<(String, String, bool)> = Vec::new();
    let password = v["password"].as_str().unwrap();
    for c in v["verifies"].as_array().unwrap() {
        cases.push((c["hash"].as_str().unwrap().into(), password.into(), true));
    }
    for c in v["never_verifies"].as_array().unwrap() {
        cases.push((c["hash"].as_str().unwrap().into(), password.into(), false));
    }
    for c in v["more"].as_array().unwrap() {
        cases.push((
            c["hash"].as_str().unwrap().into(),
            c["password"].as_str().unwrap().into(),
            c["verifies"].as_bool().unwrap(),
        ));
    }
    let w = Workdir::new();
    let hashes: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    w.fixture_with_hashes(&hashes);
    let r = load(&w, &[]).expect_code(1);
    assert!(r.stderr.contains("Import complete."), "{}", r.stderr);

    for (i, (hash, password, verifies)) in cases.iter().enumerate() {
        let user = format!("vector-{i}");
        let r = login(&w, &user, password, &["--explain"], &[]);
        if *verifies {
            assert_eq!(r.code, 0, "{hash} should log in: {}", r.stderr);
            assert!(
                r.stderr
                    .contains("password re-hashed from aspnet-identity to pbkdf2"),
                "{}",
                r.stderr
            );
            assert_eq!(algorithm_of(&w, &user), "pbkdf2");
            // The second login checks the new pbkdf2 hash, and re-hashes nothing.
            let again = login(&w, &user, password, &[], &[]).expect_code(0);
            assert!(!again.stderr.contains("re-hashed"), "{}", again.stderr);
            login(&w, &user, "not the password", &[], &[]).expect_code(1);
        } else {
            let r = r.expect_code(1);
            // Wrong, or a hash that can never verify (said as such, not run).
            assert!(
                r.stderr.contains("refused: wrong password")
                    || r.stderr
                        .contains("refused: this user's password hash is malformed"),
                "{}",
                r.stderr
            );
            assert_eq!(
                algorithm_of(&w, &user),
                "aspnet-identity",
                "a failed login changes nothing"
            );
        }
    }
}

#[test]
fn a_refused_login_says_the_same_whatever_the_reason_unless_explained() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 30, false);
    w.export(&db, "bundle");
    load(&w, &[]).expect_code(1);
    // No such user, a wrong password, no password at all, and locked out (with the
    // right password).
    let cases = [
        ("nobody", "x", "no user named `nobody`"),
        ("bob", "not bob's", "wrong password"),
        ("frank", "anything", "this user has no password"),
        ("ivan", "ivan-Passw0rd!", "locked out until 2099-01-01"),
    ];
    let mut plain = Vec::new();
    for (user, password, why) in cases {
        let r = login(&w, user, password, &[], &[]).expect_code(1);
        assert!(!r.stderr.contains(why), "{user}: {}", r.stderr);
        plain.push((r.stderr, r.stdout));
        let json = login(&w, user, password, &["--json"], &[]).expect_code(1);
        let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
        assert_eq!(v["subject"], serde_json::Value::Null, "{user}: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("the user name or password is wrong"),
            "{user}: {v}"
        );
        let explained = login(&w, user, password, &["--explain"], &[]).expect_code(1);
        assert!(
            explained.stderr.contains(why),
            "{user}: {}",
            explained.stderr
        );
    }
    assert!(
        plain.windows(2).all(|p| p[0] == p[1]),
        "one message for every refusal: {plain:?}"
    );
    assert_eq!(
        plain[0].0.trim(),
        "refused: the user name or password is wrong, or this account cannot sign in with a password now (--explain says which)"
    );
}

#[test]
fn login_finds_users_ignoring_case_refuses_lockouts_and_checks_totp_vectors() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 30, false);
    w.export(&db, "bundle");
    load(&w, &[]).expect_code(1); // ken's e-mail duplicates judy's
                                  // bob: V3 SHA256 10,000, found by user name or e-mail in any case.
    login(&w, "BOB", "bob-Passw0rd!", &[], &[]).expect_code(0);
    login(&w, "Bob@Example.COM", "bob-Passw0rd!", &[], &[]).expect_code(0);
    // carol: V2.
    login(&w, "carol", "carol-Passw0rd!", &[], &[]).expect_code(0);
    // A password line ending in CRLF is the same password.
    let r = run_with(
        "ferry-import",
        &["login", "--target", &w.arg("users.db"), "--user", "erin"],
        "erin-Passw0rd!\r\n",
        &[],
    );
    r.expect_code(0);
    // ivan is locked out until 2099.
    let r = login(&w, "ivan", "ivan-Passw0rd!", &["--explain"], &[]).expect_code(1);
    assert!(
        r.stderr.contains("locked out until 2099-01-01"),
        "{}",
        r.stderr
    );
    // grace and heidi have malformed hashes: they can never log in.
    login(&w, "grace", "grace-Passw0rd!", &[], &[]).expect_code(1);
    login(&w, "heidi", "heidi-Passw0rd!", &[], &[]).expect_code(1);
    // frank has no password at all.
    let r = login(&w, "frank", "anything", &["--explain"], &[]).expect_code(1);
    assert!(r.stderr.contains("no password"), "{}", r.stderr);
    login(&w, "nobody", "x", &[], &[]).expect_code(1);

    // alice has 2FA with the RFC 6238 key: every published code passes at its time.
    let v = vectors();
    for (time, code) in v["totp_rfc6238_sha1"]["codes"].as_object().unwrap() {
        let code = code.as_str().unwrap();
        let r = login(
            &w,
            "alice",
            "alice-Passw0rd!",
            &["--totp", code],
            &[("FERRY_NOW", time)],
        );
        assert_eq!(r.code, 0, "code {code} at {time}: {}", r.stderr);
    }
    let r = login(
        &w,
        "alice",
        "alice-Passw0rd!",
        &["--totp", "000000"],
        &[("FERRY_NOW", "59")],
    )
    .expect_code(1);
    assert!(
        r.stderr.contains("two-factor code is wrong"),
        "{}",
        r.stderr
    );
    let r = login(&w, "alice", "alice-Passw0rd!", &[], &[]).expect_code(1);
    assert!(r.stderr.contains("give --totp"), "{}", r.stderr);
}

#[test]
fn a_second_load_skips_everything_and_overwrite_updates() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 60, false);
    w.export(&db, "bundle");
    let first = load(&w, &["--json"]).expect_code(1);
    let first: serde_json::Value = serde_json::from_str(first.stdout.trim()).unwrap();
    let created = first["created"].as_u64().unwrap();
    let failed = first["failed"].as_u64().unwrap();
    assert!(created >= 55, "{first}");
    assert_eq!(created + failed, 60);
    let before = store_dump(&store(&w));

    let second = load(&w, &["--json"]).expect_code(1);
    let second: serde_json::Value = serde_json::from_str(second.stdout.trim()).unwrap();
    assert_eq!(second["created"], 0);
    assert_eq!(
        second["skipped"].as_u64().unwrap(),
        created,
        "every loaded record is Skipped"
    );
    assert_eq!(
        second["failed"].as_u64().unwrap(),
        failed,
        "the same records fail again"
    );
    assert_eq!(store_dump(&store(&w)), before, "a re-run changes nothing");

    let third = load(&w, &["--on-conflict", "overwrite", "--json"]).expect_code(1);
    let third: serde_json::Value = serde_json::from_str(third.stdout.trim()).unwrap();
    assert_eq!(third["updated"].as_u64().unwrap(), created);
    assert_eq!(third["created"], 0);
    let runs: i64 = store(&w)
        .query_row(
            "SELECT COUNT(*) FROM import_runs WHERE status = 'completed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(runs, 3);
    let counts: Vec<[u64; 4]> = store(&w)
        .prepare("SELECT created, updated, skipped, failed FROM import_runs ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        counts,
        [
            [created, 0, 0, failed],
            [0, 0, created, failed],
            [0, created, 0, failed]
        ],
        "each run keeps its counts"
    );

    // Smaller transactions: one log line per committed batch, and still no change.
    let after_overwrite = store_dump(&store(&w));
    let fourth = load(&w, &["--batch-size", "25"]).expect_code(1);
    assert!(
        fourth
            .stderr
            .contains("Batch 1: created=0, updated=0, skipped=")
            && fourth
                .stderr
                .contains("Batch 3: created=0, updated=0, skipped=")
            && !fourth.stderr.contains("Batch 4:"),
        "{}",
        fourth.stderr
    );
    assert_eq!(store_dump(&store(&w)), after_overwrite);
}

fn edit_line(
    path: &Path,
    pick: impl Fn(&serde_json::Value) -> bool,
    edit: impl Fn(&mut serde_json::Value),
) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    let mut edited = 0;
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if pick(&v) {
            edit(&mut v);
            edited += 1;
        }
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
    }
    assert_eq!(edited, 1);
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_hand_edited_duplicate_user_name_fails_only_that_record_naming_the_other() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV2, 40, false);
    w.export(&db, "bundle");
    let part = w.path("bundle/users-00000.ndjson");
    let id_of = |name: &str| {
        std::fs::read_to_string(&part)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["UserName"] == name)
            .unwrap()["Id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (alice_id, bob_id) = (id_of("alice"), id_of("bob"));
    edit_line(
        &part,
        |v| v["UserName"] == "bob",
        |v| v["UserName"] = "Alice".into(),
    );

    // Unsealed edits are refused.
    let r = load(&w, &[]).expect_code(2);
    assert!(r.stderr.contains("ferry-import seal"), "{}", r.stderr);
    let r = run("ferry-import", &["seal", &w.arg("bundle")]).expect_code(0);
    assert!(
        r.stderr.contains("sealed users-00000.ndjson: 40 records"),
        "{}",
        r.stderr
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("bundle/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["edits"].as_array().unwrap().len(), 1);

    // Whichever of the two comes later in the file is the duplicate; it names the other.
    let named_pair =
        |line: &str| (line.contains(&alice_id) && line.contains(&bob_id)).then_some(());
    let r = run(
        "ferry-import",
        &["validate", &w.arg("bundle"), "--schema", &schema(SCIM)],
    )
    .expect_code(1);
    let dup: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| {
            l.contains(": UserName: user name '") && l.contains("is already used by subject")
        })
        .collect();
    assert_eq!(dup.len(), 1, "{}", r.stderr);
    assert!(
        dup[0].starts_with("users-00000.ndjson:") && dup[0].contains(": UserName: user name '"),
        "{}",
        dup[0]
    );
    assert!(named_pair(dup[0]).is_some(), "{}", dup[0]);

    let report = w.arg("report.csv");
    load(&w, &["--report", &report]).expect_code(1);
    let mut reader = csv::Reader::from_path(&report).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let dup_rows: Vec<_> = rows
        .iter()
        .filter(|r| r[5].starts_with("user name "))
        .collect();
    assert_eq!(dup_rows.len(), 1, "only that record fails for it: {rows:?}");
    assert_eq!(&dup_rows[0][3], "Failed");
    assert_eq!(&dup_rows[0][4], "ProfileUniqueKeyConflict");
    let other = if &dup_rows[0][0] == alice_id.as_str() {
        &bob_id
    } else {
        &alice_id
    };
    assert!(
        dup_rows[0][5].contains(other.as_str()),
        "names the other subject: {:?}",
        dup_rows[0]
    );
    // Everyone else is there.
    let users: i64 = store(&w)
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        users as usize,
        40 - rows.iter().filter(|r| &r[3] == "Failed").count()
    );
}

#[test]
fn roles_come_first_and_every_role_gets_a_role_id() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 200, false);
    w.export(&db, "bundle");
    let report = w.arg("report.csv");
    load(&w, &["--report", &report]).expect_code(1); // duplicate e-mails, not roles
    let roles: Vec<String> = store(&w)
        .prepare("SELECT id FROM roles ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        roles,
        [
            "Admin",
            "Auditors",
            "Billing-Manager",
            "Editor",
            "Support",
            "Viewer"
        ]
    );
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(!text.contains("MembershipRoleMissing"), "{text}");
    let alice_role: String = store(&w)
        .query_row(
            "SELECT m.role_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.user_name = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(alice_role, "Admin");
}

#[test]
fn a_killed_load_then_a_rerun_has_every_record_exactly_once() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 600, false);
    w.export(&db, "bundle");
    // The load ends abruptly, as kill -9 would, right after its second commit: exactly
    // two batches of 100 are in the store.
    let killed = load_command(&w, &["--batch-size", "100"])
        .env("FERRY_TEST_ABORT_AFTER_COMMITS", "2")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "the load was cut short");
    let results_when_killed: i64 = store(&w)
        .query_row("SELECT COUNT(*) FROM import_results", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        results_when_killed, 200,
        "two committed batches, nothing of the third"
    );
    // The killed run's counts are those of what it committed, not 0.
    let killed_counts = || -> (String, i64) {
        store(&w)
            .query_row(
                "SELECT status, created + updated + skipped + failed FROM import_runs WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    assert_eq!(killed_counts(), ("running".to_string(), 200));
    let r = load(&w, &["--json"]).expect_code(1);
    let summary: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let conn = store(&w);
    let users: i64 = conn
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .unwrap();
    let distinct: i64 = conn
        .query_row("SELECT COUNT(DISTINCT subject_id) FROM users", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(users, distinct);
    assert_eq!(
        users as u64 + summary["failed"].as_u64().unwrap(),
        600,
        "{summary}"
    );
    assert_eq!(
        summary["created"].as_u64().unwrap() + summary["skipped"].as_u64().unwrap(),
        users as u64
    );
    let interrupted: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM import_runs WHERE status = 'interrupted'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(interrupted, 1, "the killed run is marked interrupted");
    assert_eq!(killed_counts(), ("interrupted".to_string(), 200));
}

/// `ferry-import load BUNDLE --schema … --target users.db EXTRA…`, to run.
fn load_command(w: &Workdir, extra: &[&str]) -> std::process::Command {
    let mut cmd = ferry_e2e::command("ferry-import");
    cmd.args([
        "load",
        &w.arg("bundle"),
        "--schema",
        &schema(SCIM),
        "--target",
        &w.arg("users.db"),
    ])
    .args(extra);
    cmd
}

/// `ferry-import load … --json` started now, to be waited for.
fn spawn_load(w: &Workdir, extra: &[&str]) -> std::process::Child {
    load_command(w, extra)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The store's runs: (status, created, updated, skipped, failed), oldest first.
fn runs(w: &Workdir) -> Vec<(String, u64, u64, u64, u64)> {
    store(w)
        .prepare("SELECT status, created, updated, skipped, failed FROM import_runs ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn two_loads_of_one_bundle_into_one_new_store_at_once_both_end_well() {
    two_loads_at_once(false);
}

#[test]
fn two_loads_of_one_bundle_into_one_existing_store_at_once_both_end_well() {
    two_loads_at_once(true);
}

/// Two loads of one bundle at once, into a new store or one that has a user of it already.
fn two_loads_at_once(existing: bool) {
    let w = Workdir::new();
    let n = 1500;
    let db = w.fixture("app.db", Generation::CoreV3, n, false);
    w.export(&db, "bundle");
    let before = if existing {
        load(&w, &["--limit", "1"]).expect_code(0);
        1
    } else {
        0
    };
    // Small batches, so that the two take turns many times; both create the store. (Which
    // one creates which users depends on timing, so only the sums are asserted.)
    let loads = [
        spawn_load(&w, &["--batch-size", "50"]),
        spawn_load(&w, &["--batch-size", "50"]),
    ];
    let mut summaries = Vec::new();
    for load in loads {
        let out = load.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{:?}: {stderr}",
            out.status
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        summaries.push(summary);
    }
    let get = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap();
    let conn = store(&w);
    let users: u64 = conn
        .query_row("SELECT COUNT(DISTINCT subject_id) FROM users", [], |r| {
            r.get(0)
        })
        .unwrap();
    let rows: u64 = conn
        .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, users, "every record once");
    let (a, b) = (&summaries[0], &summaries[1]);
    // Each user was created by one load and skipped by the other; a record that fails
    // (the fixture plants a few) fails in both, and nothing fails for being concurrent.
    assert_eq!(
        get(a, "created") + get(b, "created"),
        users - before,
        "{a} {b}"
    );
    assert_eq!(
        get(a, "skipped") + get(b, "skipped"),
        users + before,
        "{a} {b}"
    );
    assert_eq!(get(a, "failed"), n - users, "{a}");
    assert_eq!(get(b, "failed"), n - users, "{b}");
    let mut recorded = runs(&w);
    recorded.drain(..before as usize);
    recorded.sort();
    let mut reported: Vec<_> = summaries
        .iter()
        .map(|s| {
            let c = |k| get(s, k);
            (
                "completed".to_string(),
                c("created"),
                c("updated"),
                c("skipped"),
                c("failed"),
            )
        })
        .collect();
    reported.sort();
    assert_eq!(recorded, reported, "each run's counts are what it reported");
}

#[test]
fn a_load_that_runs_out_of_room_ends_its_run_failed_with_what_it_committed() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 600, false);
    w.export(&db, "bundle");
    // The store is created first, then allowed to grow by a few pages only.
    load(&w, &["--limit", "1"]).expect_code(0);
    let out = load_command(&w, &["--batch-size", "50"])
        .env("FERRY_TEST_STORE_ROOM_PAGES", "12")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("database or disk is full"), "{stderr}");
    assert!(stderr.contains("run 2 ended `failed`"), "{stderr}");
    let (status, reason, counted): (String, String, u64) = store(&w)
        .query_row(
            "SELECT status, reason, created + updated + skipped + failed FROM import_runs WHERE id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(status, "failed");
    assert!(reason.contains("full"), "{reason}");
    let results: u64 = store(&w)
        .query_row(
            "SELECT COUNT(*) FROM import_results WHERE run_id = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        counted, results,
        "the counts are those of the committed batches"
    );
    assert!(results < 600, "it stopped early");
    // With room again, a re-run completes the bundle.
    let r = load(&w, &["--json"]);
    assert!(matches!(r.code, 0 | 1), "{}", r.stderr);
}

#[test]
fn bad_schema_and_mapping_files_are_rejected_with_the_path_of_the_fault() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 5, false);
    w.export(&db, "bundle");
    std::fs::write(
        w.path("bad.json"),
        r#"{"attributes":[{"code":"userName","type":"string","unique":true},{"code":"age","type":"int"}]}"#,
    )
    .unwrap();
    let r = run(
        "ferry-import",
        &["validate", &w.arg("bundle"), "--schema", &w.arg("bad.json")],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("attributes[1].type: unknown type `int`"),
        "{}",
        r.stderr
    );
    std::fs::write(
        w.path("map.json"),
        r#"{"rules":[{"from":"claim:given_name","to":"userName.first"}]}"#,
    )
    .unwrap();
    let r = run(
        "ferry-import",
        &[
            "validate",
            &w.arg("bundle"),
            "--schema",
            &schema(SCIM),
            "--mapping",
            &w.arg("map.json"),
        ],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("rules[0]: `userName.first`"),
        "{}",
        r.stderr
    );
}

#[test]
fn mapping_targets_the_schema_lacks_are_reported_once() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 30, false);
    w.export(&db, "bundle");
    std::fs::write(
        w.path("small.json"),
        r#"{"attributes":[{"code":"userName","type":"string","unique":true},{"code":"active","type":"boolean"}]}"#,
    )
    .unwrap();
    let r = run(
        "ferry-import",
        &[
            "validate",
            &w.arg("bundle"),
            "--schema",
            &w.arg("small.json"),
        ],
    )
    .expect_code(1);
    assert_eq!(
        r.stderr.matches("the schema has no attribute for").count(),
        1,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("addresses[0].streetAddress (from claim street_address)"),
        "{}",
        r.stderr
    );
    // With the OIDC mapping everything has a home.
    let r = run(
        "ferry-import",
        &[
            "validate",
            &w.arg("bundle"),
            "--schema",
            &schema("oidc-standard.json"),
            "--mapping",
            &schema("mapping.oidc.json"),
        ],
    )
    .expect_code(1);
    assert!(
        !r.stderr.contains("the schema has no attribute"),
        "{}",
        r.stderr
    );
}

#[test]
fn plan_writes_user_import_records() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 30, false);
    w.export(&db, "bundle");
    run(
        "ferry-import",
        &[
            "plan",
            &w.arg("bundle"),
            "--schema",
            &schema(SCIM),
            "--out",
            &w.arg("plan"),
        ],
    )
    .expect_code(1); // ken is left out: his e-mail duplicates judy's
    let text = std::fs::read_to_string(w.path("plan/plan-00000.ndjson")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.len() >= 28);
    let alice = records
        .iter()
        .find(|r| r["ProfileAttributes"]["userName"] == "alice")
        .unwrap();
    let pw = &alice["Authenticators"]["Password"]["HashedPasswordData"];
    assert_eq!(pw["AlgorithmId"], "aspnet-identity");
    assert!(pw["Parameters"]["blob"]
        .as_str()
        .unwrap()
        .starts_with("AQAAAAIAAYag"));
    assert_eq!(alice["Authenticators"]["TotpDevices"][0]["Name"], "Default");
    assert_eq!(
        alice["Authenticators"]["RecoveryCodes"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    assert_eq!(alice["Memberships"]["DirectRoles"][0], "Admin");
    let dave = records
        .iter()
        .find(|r| r["ProfileAttributes"]["userName"] == "dave")
        .unwrap();
    assert_eq!(dave["Authenticators"]["Passkeys"][0]["Algorithm"], -7);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(w.path("plan/plan-00000.ndjson"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

/// Every recovery code of every 2FA user is in the store as PBKDF2-HMAC-SHA512 of the code
/// the bundle holds, with a salt of its own, at the store's iteration count: load hashes
/// them many at a time in SIMD lanes, across users; this test checks them one at a time
/// with the `pbkdf2` crate.
#[test]
fn recovery_codes_are_stored_as_pbkdf2_of_the_bundles_codes() {
    let w = Workdir::new();
    let db = w.fixture_with(
        "app.db",
        ferry_fixtures::Options {
            users: 80,
            generation: Generation::CoreV3,
            two_factor_percent: 60,
            ..ferry_e2e::options()
        },
    );
    w.export(&db, "bundle");
    load(&w, &[]);
    let mut codes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let text = std::fs::read_to_string(w.path("bundle/users-00000.ndjson")).unwrap();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        for t in r["Tokens"].as_array().unwrap() {
            if t["Name"] == "RecoveryCodes" {
                let list = t["Value"].as_str().unwrap().split(';').map(String::from);
                codes.insert(r["Id"].as_str().unwrap().to_string(), list.collect());
            }
        }
    }
    let conn = store(&w);
    let mut stmt = conn
        .prepare(
            "SELECT u.subject_id, c.salt, c.hash, c.iterations FROM recovery_codes c \
             JOIN users u ON u.id = c.user_id ORDER BY c.rowid",
        )
        .unwrap();
    // Salt, hash and iterations of each stored code, by subject.
    type Stored = Vec<(Vec<u8>, Vec<u8>, u32)>;
    let mut stored: BTreeMap<String, Stored> = BTreeMap::new();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap();
    for row in rows {
        let (subject, salt, hash, iterations): (String, _, _, u32) = row.unwrap();
        stored
            .entry(subject)
            .or_default()
            .push((salt, hash, iterations));
    }
    assert!(codes.len() >= 30, "{} users with codes", codes.len());
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        codes.keys().collect::<Vec<_>>(),
        "the users with recovery codes"
    );
    let mut salts = std::collections::HashSet::new();
    for (subject, plain) in &codes {
        let hashed = &stored[subject];
        assert_eq!(hashed.len(), plain.len(), "{subject}: codes stored");
        for (code, (salt, hash, iterations)) in plain.iter().zip(hashed) {
            assert_eq!(*iterations, 10_000);
            assert_eq!(salt.len(), 16);
            assert!(
                salts.insert(salt.clone()),
                "{subject}: a salt is used twice"
            );
            let mut want = [0u8; 32];
            pbkdf2::pbkdf2::<hmac::Hmac<sha2::Sha512>>(
                code.as_bytes(),
                salt,
                *iterations,
                &mut want,
            )
            .unwrap();
            assert_eq!(hash.as_slice(), want, "{subject}: code {code}");
        }
    }
}

/// Error lines of `validate`, by subject, without the location of the other record (which
/// validate adds and a load, which does not know it, cannot).
fn validate_errors(stderr: &str) -> BTreeMap<String, String> {
    stderr
        .lines()
        // Errors only: a warning's quickfix line says so after its location.
        .filter(|l| l.starts_with("users-") && l.split(": ").nth(1) != Some("warning"))
        .map(|l| {
            let mut parts = l.splitn(4, ": ");
            let (_at, subject, _field, message) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let message = match message.rfind(" (users-") {
                Some(i) if message.ends_with(')') => &message[..i],
                _ => message,
            };
            (subject.to_string(), message.to_string())
        })
        .collect()
}

/// Failed rows of a load report, by subject.
fn load_failures(report: &Path) -> BTreeMap<String, String> {
    csv::Reader::from_path(report)
        .unwrap()
        .records()
        .map(Result::unwrap)
        .filter(|r| &r[3] == "Failed")
        .map(|r| (r[0].to_string(), r[5].to_string()))
        .collect()
}

#[test]
fn validate_reports_exactly_the_records_load_fails_with_the_same_messages() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 80, false);
    // Every kind of claim held twice, each by a pair of users of its own (a record stops
    // at its first conflict, so pairs must not overlap): a user name (other case), an
    // e-mail OTP address (other case), a confirmed phone, an external login, a passkey,
    // a unique attribute value.
    let conn = Connection::open(&db).unwrap();
    let bulk =
        |n: u32| format!(r#"(SELECT "Id" FROM "AspNetUsers" ORDER BY rowid LIMIT 1 OFFSET {n})"#);
    conn.execute_batch(&format!(
        r#"UPDATE "AspNetUsers" SET "UserName" = 'ALICE' WHERE "UserName" = 'bob';
           UPDATE "AspNetUsers" SET "Email" = 'Carol@Example.com' WHERE "UserName" = 'dave';
           UPDATE "AspNetUsers" SET "PhoneNumber" = '+1 555 000 0001', "PhoneNumberConfirmed" = 1 WHERE "UserName" IN ('erin', 'zoë');
           DELETE FROM "AspNetUserLogins" WHERE "UserId" IN ({a}, {b});
           INSERT INTO "AspNetUserLogins" VALUES ('Google', 'shared-key', 'Google', {a});
           INSERT INTO "AspNetUserLogins" VALUES ('Google', 'shared-key-2', 'Google', {b});
           DELETE FROM "AspNetUserPasskeys" WHERE "UserId" IN ({c}, {d});
           INSERT INTO "AspNetUserPasskeys" SELECT x'0102030405', {c}, "Data" FROM "AspNetUserPasskeys" LIMIT 1;
           INSERT INTO "AspNetUserPasskeys" SELECT x'0102030406', {d}, "Data" FROM "AspNetUserPasskeys" LIMIT 1;
           UPDATE "AspNetUsers" SET "DateOfBirth" = '1999-09-19' WHERE "Id" IN ({e}, {f});"#,
        a = bulk(20),
        b = bulk(21),
        c = bulk(22),
        d = bulk(23),
        e = bulk(24),
        f = bulk(25),
    ))
    .unwrap();
    drop(conn);
    w.export(&db, "bundle");
    // By hand: the second login and passkey become the first's.
    let part = w.path("bundle/users-00000.ndjson");
    let text = std::fs::read_to_string(&part)
        .unwrap()
        .replace("shared-key-2", "shared-key")
        .replace("AQIDBAY", "AQIDBAU");
    std::fs::write(&part, text).unwrap();
    run("ferry-import", &["seal", &w.arg("bundle")]).expect_code(0);
    // A unique attribute (birth dates are unique in this fixture but for ivan and judy).
    let mut schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ferry_e2e::root().join("schemas/scim-user.json")).unwrap(),
    )
    .unwrap();
    schema["attributes"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"code": "birthKey", "type": "string", "unique": true}));
    std::fs::write(w.path("schema.json"), schema.to_string()).unwrap();
    let mut mapping: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ferry_e2e::root().join("schemas/mapping.default.json")).unwrap(),
    )
    .unwrap();
    mapping["rules"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"from": "extra:DateOfBirth", "to": "birthKey"}));
    std::fs::write(w.path("mapping.json"), mapping.to_string()).unwrap();
    let (bundle, s, m) = (w.arg("bundle"), w.arg("schema.json"), w.arg("mapping.json"));

    let v = run(
        "ferry-import",
        &["validate", &bundle, "--schema", &s, "--mapping", &m],
    )
    .expect_code(1);
    let validated = validate_errors(&v.stderr);
    for kind in [
        "user name '",
        "Email OTP address '",
        "SMS OTP address '15550000001'",
        "external login Google 'shared-key'",
        "passkey credential",
        "attribute 'birthKey' value '1999-09-19'",
    ] {
        assert!(
            validated.values().any(|m| m.starts_with(kind)),
            "no conflict on {kind}: {validated:#?}"
        );
    }
    let report = w.arg("report.csv");
    let (target, first) = (w.arg("users.db"), w.arg("first.db"));
    run(
        "ferry-import",
        &[
            "load",
            &bundle,
            "--schema",
            &s,
            "--mapping",
            &m,
            "--target",
            &target,
            "--report",
            &report,
        ],
    )
    .expect_code(1);
    assert_eq!(load_failures(w.path("report.csv").as_path()), validated);

    // Against a store that has part of the bundle already: validate --target says what a
    // load into it fails, and warns of what it skips.
    run(
        "ferry-import",
        &[
            "load",
            &bundle,
            "--schema",
            &s,
            "--mapping",
            &m,
            "--target",
            &first,
            "--limit",
            "30",
        ],
    )
    .expect_code(1);
    let v = run(
        "ferry-import",
        &[
            "validate",
            &bundle,
            "--schema",
            &s,
            "--mapping",
            &m,
            "--target",
            &first,
        ],
    )
    .expect_code(1);
    let validated = validate_errors(&v.stderr);
    let skipped = v
        .stderr
        .matches("subject already exists in the target")
        .count();
    let r = run(
        "ferry-import",
        &[
            "load",
            &bundle,
            "--schema",
            &s,
            "--mapping",
            &m,
            "--target",
            &first,
            "--report",
            &report,
            "--json",
        ],
    )
    .expect_code(1);
    assert_eq!(load_failures(w.path("report.csv").as_path()), validated);
    let summary: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(summary["skipped"].as_u64().unwrap() as usize, skipped);
}
