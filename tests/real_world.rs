//! What 22 real Identity databases and a new user hit, and our generated fixtures never
//! showed: each test pins one of those bugs and names it, asserting what a user sees
//! (messages, exit codes, files on disk, records in the store).

use std::path::Path;
use std::time::Duration;

use ferry_e2e::{
    listing, options, run, run_with, run_within, schema, wait_until, wait_within, Run, Workdir,
};
use ferry_fixtures::{Generation, KeyType, Options, NOT_AN_EMAIL};
use rusqlite::Connection;

const SCIM: &str = "scim-user.json";
/// Longer than any of these commands takes on a slow machine: only a hang gets there.
const HANG: Duration = Duration::from_secs(120);

fn records(bundle: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(bundle).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("users-") {
            let text = std::fs::read_to_string(bundle.join(&name)).unwrap();
            out.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
        }
    }
    out
}

fn manifest(bundle: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap()).unwrap()
}

fn export(w: &Workdir, db: &Path, extra: &[&str]) -> Run {
    let db = db.display().to_string();
    let out = w.arg("bundle");
    let mut args = vec!["--source", db.as_str(), "--out", out.as_str()];
    args.extend_from_slice(extra);
    run_within("ferry-export", &args, HANG)
}

fn load(w: &Workdir, extra: &[&str]) -> Run {
    let (bundle, target, s) = (w.arg("bundle"), w.arg("users.db"), schema(SCIM));
    let mut args = vec![
        "load", &bundle, "--schema", &s, "--target", &target, "--report",
    ];
    let report = w.arg("report.csv");
    args.push(&report);
    args.extend_from_slice(extra);
    run("ferry-import", &args)
}

fn report_rows(w: &Workdir) -> Vec<csv::StringRecord> {
    csv::Reader::from_path(w.path("report.csv"))
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect()
}

fn no_partial_left(w: &Workdir) {
    let left: Vec<String> = std::fs::read_dir(w.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect();
    assert!(left.is_empty(), "unfinished bundles left: {left:?}");
}

// 1. Every early stop ends promptly.

#[test]
fn limit_on_a_source_far_larger_than_the_channel_ends_with_the_first_users() {
    // Regression: `--limit N` hung forever on any source of more than about 2,300 users.
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 6000, false);
    export(&w, &db, &["--limit", "10"]).expect_code(0);
    assert_eq!(records(&w.path("bundle")).len(), 10);
    assert_eq!(manifest(&w.path("bundle"))["counts"]["users"], 10);
}

#[test]
fn a_corrupt_row_early_in_a_large_source_ends_promptly_with_exit_2() {
    // Regression: the same hang when the read stopped at a corrupt row of a 5,000+ source.
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 6000, false);
    let conn = Connection::open(&db).unwrap();
    let id: String = conn
        .query_row(
            r#"SELECT "Id" FROM "AspNetUsers" ORDER BY "Id" LIMIT 1 OFFSET 20"#,
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute(
        r#"UPDATE "AspNetUsers" SET "AccessFailedCount" = 'many' WHERE "Id" = ?1"#,
        [&id],
    )
    .unwrap();
    drop(conn);
    let r = export(&w, &db, &[]).expect_code(2);
    assert!(
        r.stderr.contains(&format!(
            "table AspNetUsers, column AccessFailedCount, row {id}: expected an integer, found text `many`"
        )),
        "{}",
        r.stderr
    );
    assert!(!w.path("bundle").exists());
    no_partial_left(&w);
}

#[test]
fn a_writer_that_fails_part_way_ends_the_export_promptly_with_exit_2() {
    // Regression: the same hang when writing failed (a full disk). A file size limit
    // makes the writes fail the same way, with EFBIG instead of ENOSPC.
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 6000, false);
    let bin = ferry_e2e::bin_dir().join("ferry-export");
    let child = std::process::Command::new("sh")
        .args([
            "-c",
            r#"ulimit -f 256; trap '' XFSZ; exec "$0" "$@""#,
            bin.to_str().unwrap(),
            "--source",
            db.to_str().unwrap(),
            "--out",
            &w.arg("bundle"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let r = wait_within(child, HANG, "ferry-export into a limited file size").expect_code(2);
    assert!(r.stderr.contains("users-00000.ndjson"), "{}", r.stderr);
    assert!(r.stderr.contains("File too large"), "{}", r.stderr);
    assert!(!w.path("bundle").exists());
    no_partial_left(&w);
}

// 3. Integer and GUID keys.

#[test]
fn integer_keys_export_in_numeric_order_with_their_children_and_load() {
    // Regression: `IdentityUser<int>` failed with "rows are not in UserId order ('10'
    // came after '9')" on any database of 10 users or more.
    let w = Workdir::new();
    let db = w.fixture_with(
        "app.db",
        Options {
            users: 150,
            key_type: KeyType::Integer,
            ..options()
        },
    );
    export(&w, &db, &[]).expect_code(0);
    let bundle = w.path("bundle");
    assert_eq!(manifest(&bundle)["source"]["key_type"], "integer");
    let users = records(&bundle);
    let ids: Vec<&str> = users.iter().map(|u| u["Id"].as_str().unwrap()).collect();
    let expected: Vec<String> = (1..=150).map(|i| i.to_string()).collect();
    assert_eq!(
        ids, expected,
        "ids as the app writes them, in numeric order"
    );
    // Every user has exactly its own children, read independently from the source.
    let conn = Connection::open(&db).unwrap();
    for user in &users {
        let id: i64 = user["Id"].as_str().unwrap().parse().unwrap();
        let claims: i64 = conn
            .query_row(
                r#"SELECT COUNT(*) FROM "AspNetUserClaims" WHERE "UserId" = ?1"#,
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            user["Claims"].as_array().unwrap().len() as i64,
            claims,
            "user {id}"
        );
        let roles: Vec<String> = conn
            .prepare(
                r#"SELECT "RoleId" FROM "AspNetUserRoles" WHERE "UserId" = ?1 ORDER BY "RoleId""#,
            )
            .unwrap()
            .query_map([id], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert_eq!(user["Roles"], serde_json::json!(roles), "user {id}");
    }
    let roles = std::fs::read_to_string(bundle.join("roles.ndjson")).unwrap();
    assert!(roles.starts_with(r#"{"Id":"1","Name":"Admin""#), "{roles}");
    load(&w, &[]).expect_code(1); // ken's e-mail duplicates judy's
    let r = run_with(
        "ferry-import",
        &["login", "--target", &w.arg("users.db"), "--user", "bob"],
        "bob-Passw0rd!\n",
        &[],
    )
    .expect_code(0);
    assert!(r.stderr.contains("(subject 2)"), "{}", r.stderr);
}

#[test]
fn guid_keys_keep_the_text_the_app_stored() {
    // `IdentityUser<Guid>` on SQLite: upper-case GUID text, kept as it is.
    let w = Workdir::new();
    let db = w.fixture_with(
        "app.db",
        Options {
            users: 60,
            key_type: KeyType::Guid,
            ..options()
        },
    );
    export(&w, &db, &[]).expect_code(0);
    let conn = Connection::open(&db).unwrap();
    let source: Vec<String> = conn
        .prepare(r#"SELECT "Id" FROM "AspNetUsers" ORDER BY "Id""#)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let users = records(&w.path("bundle"));
    let ids: Vec<&str> = users.iter().map(|u| u["Id"].as_str().unwrap()).collect();
    assert_eq!(ids, source);
    assert!(ids
        .iter()
        .all(|id| id.len() == 36 && *id == id.to_uppercase()));
    assert_eq!(manifest(&w.path("bundle"))["source"]["key_type"], "string");
}

// 4. Nothing is written beside the source, and committed WAL content is read.

/// Commits changes to `db` in WAL mode without a checkpoint and returns the open
/// connection (the application, still running).
fn app_writes_without_checkpoint(db: &Path) -> Connection {
    let app = Connection::open(db).unwrap();
    app.execute_batch(
        r#"PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
           UPDATE "AspNetUsers" SET "Email" = 'bob@new.example' WHERE "UserName" = 'bob';"#,
    )
    .unwrap();
    app
}

#[test]
fn a_wal_database_in_a_read_only_folder_is_read_with_its_wal_and_left_as_it_was() {
    // Regression: opening a WAL database wrote -shm and -wal beside it, and in a
    // read-only folder without a -shm the export failed with `unable to open database file`.
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 40, false);
    let ro = w.path("ro");
    std::fs::create_dir(&ro).unwrap();
    {
        // What a crashed app, or a copy of a live one, leaves: the database and its -wal.
        let _app = app_writes_without_checkpoint(&db);
        std::fs::copy(&db, ro.join("app.db")).unwrap();
        std::fs::copy(w.path("app.db-wal"), ro.join("app.db-wal")).unwrap();
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(&ro.join("app.db"), 0o444).unwrap();
    mode(&ro.join("app.db-wal"), 0o444).unwrap();
    mode(&ro, 0o555).unwrap();
    let out = w.path("out");
    std::fs::create_dir(&out).unwrap();
    mode(&out, 0o777).unwrap();
    mode(&w.path(""), 0o755).unwrap();
    let before = listing(&ro);

    // As a user who may not write to the folder (root may write anywhere).
    let bin = ferry_e2e::bin_dir().join("ferry-export");
    let source = ro.join("app.db");
    let bundle = out.join("bundle");
    let args = [
        "--source",
        source.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ];
    let is_root = rustix::process::getuid().is_root();
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        std::process::Command::new(&bin)
    };
    let r: Run = cmd.args(args).output().unwrap().into();
    let r = r.expect_code(0);
    assert!(r.stderr.contains("is in WAL mode"), "{}", r.stderr);
    assert_eq!(
        listing(&ro),
        before,
        "the source folder is exactly as it was"
    );
    let users = records(&bundle);
    let bob = users.iter().find(|u| u["UserName"] == "bob").unwrap();
    assert_eq!(
        bob["Email"], "bob@new.example",
        "the committed WAL content is read"
    );
}

#[test]
fn a_live_wal_database_is_read_without_touching_its_side_files() {
    // Regression: an export rewrote the running application's -shm.
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 40, false);
    let app = app_writes_without_checkpoint(&db);
    let before = listing(&w.path(""));
    assert!(before.iter().any(|(n, _, _)| n == "app.db-shm"));
    export(&w, &db, &[]).expect_code(0);
    let after: Vec<_> = listing(&w.path(""))
        .into_iter()
        .filter(|(n, _, _)| n != "bundle")
        .collect();
    assert_eq!(after, before, "app.db, -wal and -shm are untouched");
    let users = records(&w.path("bundle"));
    assert!(users.iter().any(|u| u["Email"] == "bob@new.example"));
    drop(app);
}

// 5. An interrupted export leaves no account data behind.

fn paused_export(w: &Workdir, db: &Path) -> std::process::Child {
    let child = ferry_e2e::command("ferry-export")
        .args(["--source", db.to_str().unwrap(), "--out", &w.arg("bundle")])
        .env("FERRY_TEST_PAUSE_AFTER_USERS", "5")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let staging = w.path(&format!(".bundle.partial-{}", child.id()));
    wait_until(HANG, "the export's first part", || {
        staging.join("users-00000.ndjson").exists()
    });
    child
}

#[test]
fn sigterm_and_sigint_remove_the_unfinished_bundle() {
    // Regression: Ctrl-C or SIGTERM left a hidden `.NAME.partial-PID/` holding account data.
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let w = Workdir::new();
        let db = w.fixture("app.db", Generation::CoreV3, 40, false);
        let child = paused_export(&w, &db);
        let pid = child.id().to_string();
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        let r = wait_within(child, HANG, "the interrupted export").expect_code(code);
        assert!(
            r.stderr.contains(&format!(
                "interrupted by SIG{signal}: the unfinished bundle was removed"
            )),
            "{}",
            r.stderr
        );
        no_partial_left(&w);
        assert!(!w.path("bundle").exists());
    }
}

#[test]
fn the_next_export_removes_what_a_killed_one_left_and_leaves_strangers_alone() {
    // Regression: a `kill -9` left account data in `.NAME.partial-PID/` for good.
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 40, false);
    let mut child = paused_export(&w, &db);
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let left = w.path(&format!(".bundle.partial-{pid}"));
    assert!(left.exists(), "kill -9 cannot be caught: the folder stays");
    // A folder of the same pattern that is not an owner-only folder of ours is kept.
    let stranger = w.path(".bundle.partial-4194300");
    std::fs::create_dir(&stranger).unwrap();
    let r = export(&w, &db, &[]).expect_code(0);
    assert!(
        r.stderr.contains(&format!(
            "removed `{}`, the unfinished bundle of a run that was killed (process {pid} is gone)",
            left.display()
        )),
        "{}",
        r.stderr
    );
    assert!(!left.exists());
    assert!(stranger.exists());
    assert!(r.stderr.contains("it is left alone"), "{}", r.stderr);
}

// 6. Role names with spaces.

#[test]
fn members_of_roles_named_with_spaces_load_under_a_derived_id() {
    // Regression: `Billing Manager` and `Help Desk` are normal role names, yet every
    // member failed at load.
    let w = Workdir::new();
    let db = w.fixture_with(
        "app.db",
        Options {
            users: 120,
            real_world: true,
            ..options()
        },
    );
    export(&w, &db, &[]).expect_code(0);
    let r = load(&w, &[]).expect_code(1);
    assert!(
        r.stderr
            .contains("note: role 'Help Desk' gets role id `Help-Desk`, made from its name"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.matches("gets role id").count(),
        2,
        "each derived id is reported once: {}",
        r.stderr
    );
    assert!(
        report_rows(&w)
            .iter()
            .all(|row| !row[5].contains("role") && &row[4] != "MembershipRoleMissing"),
        "no user fails because of a role name"
    );
    let store = Connection::open(w.path("users.db")).unwrap();
    let alice: Vec<String> = store
        .prepare("SELECT m.role_id FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.user_name = 'alice' ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(alice, ["Admin", "Help-Desk"]);
    let name: String = store
        .query_row("SELECT name FROM roles WHERE id = 'Help-Desk'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(name, "Help Desk", "the name stays the display name");

    // A mapping file may choose another id.
    let mut mapping: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ferry_e2e::root().join("schemas/mapping.default.json")).unwrap(),
    )
    .unwrap();
    mapping["roles"] = serde_json::json!({"Help Desk": "support-desk"});
    std::fs::write(w.path("mapping.json"), mapping.to_string()).unwrap();
    std::fs::remove_file(w.path("users.db")).unwrap();
    let r = load(&w, &["--mapping", &w.arg("mapping.json")]).expect_code(1);
    assert!(
        !r.stderr.contains("'Help Desk' gets role id"),
        "{}",
        r.stderr
    );
    let ids: Vec<String> = Connection::open(w.path("users.db"))
        .unwrap()
        .prepare("SELECT id FROM roles ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(ids.contains(&"support-desk".to_string()), "{ids:?}");
}

// 7. An e-mail that is not an address.

#[test]
fn a_user_whose_email_is_not_an_address_is_created_without_the_otp_address() {
    // Regression: `notanemail` failed the whole user.
    let w = Workdir::new();
    let db = w.fixture_with(
        "app.db",
        Options {
            users: NOT_AN_EMAIL + 20,
            real_world: true,
            ..options()
        },
    );
    export(&w, &db, &[]).expect_code(0);
    let text = std::fs::read_to_string(w.path("bundle/users-00000.ndjson")).unwrap();
    let (line, column, id) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(r#""Email":"notanemail""#))
        .map(|(n, l)| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let column = l.find(r#""Email":"#).unwrap() + 1;
            (n + 1, column, v["Id"].as_str().unwrap().to_string())
        })
        .expect("the fixture has it");
    let r = load(&w, &[]).expect_code(1);
    let warning = format!(
        "users-00000.ndjson:{line}:{column}: warning: {id}: Email: `notanemail` is not an e-mail address"
    );
    assert!(r.stderr.contains(&warning), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("PhoneNumber: `call me` is not a phone number"),
        "the same rule for a confirmed phone: {}",
        r.stderr
    );
    let store = Connection::open(w.path("users.db")).unwrap();
    let otp: i64 = store
        .query_row(
            "SELECT COUNT(*) FROM otp_addresses o JOIN users u ON u.id = o.user_id WHERE u.subject_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(otp, 0);
    let row = report_rows(&w)
        .into_iter()
        .find(|row| row[0] == *id)
        .expect("a report row for the user");
    assert_eq!(&row[3], "Created");
    assert!(row[5].contains("without an e-mail OTP address"), "{row:?}");
}

// 8. No claim vanishes silently.

#[test]
fn template_claims_are_imported_or_reported_with_their_counts() {
    // Regression: the Duende and IdentityServer templates' `name`, `website` and JSON
    // `address` claims vanished, and validate said `0 warnings`.
    let w = Workdir::new();
    let db = w.fixture_with(
        "app.db",
        Options {
            users: 30,
            real_world: true,
            custom_columns: false,
            ..options()
        },
    );
    export(&w, &db, &[]).expect_code(0);
    let r = run(
        "ferry-import",
        &[
            "validate",
            &w.arg("bundle"),
            "--schema",
            &schema(SCIM),
            "--json",
        ],
    )
    .expect_code(1);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    // The users that have each claim type, counted from the bundle itself.
    let users = records(&w.path("bundle"));
    let having = |t: &str| {
        users
            .iter()
            .filter(|u| {
                u["Claims"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["Type"] == t)
            })
            .count()
    };
    let claims = &v["not_imported"]["claims"];
    for t in ["website", "email_verified", "location"] {
        assert!(having(t) >= 1);
        assert_eq!(claims[t], having(t), "{t}: {v}");
    }
    assert!(
        claims.get("address").is_none() && claims.get("name").is_none(),
        "{v}"
    );
    let r = run(
        "ferry-import",
        &["validate", &w.arg("bundle"), "--schema", &schema(SCIM)],
    )
    .expect_code(1);
    let website = format!("claim website ({} users)", having("website"));
    assert!(
        r.stderr.contains("claim location (1 user)") && r.stderr.contains(&website),
        "{}",
        r.stderr
    );

    let r = load(&w, &[]).expect_code(1);
    assert!(r.stderr.contains(&website), "{}", r.stderr);
    let store = Connection::open(w.path("users.db")).unwrap();
    let profile: String = store
        .query_row(
            "SELECT profile FROM users WHERE user_name = 'bob'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let profile: serde_json::Value = serde_json::from_str(&profile).unwrap();
    assert_eq!(profile["name"]["formatted"], "Bob Smith");
    assert_eq!(profile["addresses"][0]["streetAddress"], "One Hacker Way");
    assert_eq!(profile["addresses"][0]["postalCode"], "69118");
    // The report says it per user.
    let bob_id: String = store
        .query_row(
            "SELECT subject_id FROM users WHERE user_name = 'bob'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let row = report_rows(&w)
        .into_iter()
        .find(|row| row[0] == *bob_id)
        .unwrap();
    assert!(
        row[5].contains("claim email_verified, claim location, claim website"),
        "{row:?}"
    );

    // With the OIDC schema and its mapping, only the app's own claim is left.
    let r = run(
        "ferry-import",
        &[
            "validate",
            &w.arg("bundle"),
            "--schema",
            &schema("oidc-standard.json"),
            "--mapping",
            &schema("mapping.oidc.json"),
            "--json",
        ],
    )
    .expect_code(1);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let claims = v["not_imported"]["claims"].as_object().unwrap();
    assert!(claims.contains_key("location"), "the app's own claim: {v}");
    for t in [
        "name",
        "website",
        "email",
        "email_verified",
        "address",
        "given_name",
    ] {
        assert!(
            !claims.contains_key(t),
            "{t} has a home in the OIDC schema: {v}"
        );
    }
}

// 9. plan makes the checks validate makes.

#[test]
fn plan_leaves_out_what_validate_rejects() {
    // Regression: plan wrote the sample's duplicate e-mail, which validate rejects.
    let w = Workdir::new();
    w.export(&ferry_e2e::root().join("samples/identity.db"), "bundle");
    let v = run(
        "ferry-import",
        &[
            "validate",
            &w.arg("bundle"),
            "--schema",
            &schema(SCIM),
            "--json",
        ],
    )
    .expect_code(1);
    let v: serde_json::Value = serde_json::from_str(v.stdout.trim()).unwrap();
    assert_eq!(v["failed_records"], 1);
    let r = run(
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
    .expect_code(1);
    assert!(
        r.stderr.contains("planned 23 records into")
            && r.stderr.contains("1 record left out with errors"),
        "{}",
        r.stderr
    );
    let plan = std::fs::read_to_string(w.path("plan/plan-00000.ndjson")).unwrap();
    assert_eq!(plan.lines().count(), 23);
    assert!(
        !plan.contains("JUDY@EXAMPLE.COM"),
        "ken, the duplicate, is left out"
    );
}

// 10. Exit codes scripts can use.

#[test]
fn malformed_hashes_are_warnings_unless_asked_to_fail() {
    // Regression: verify --credentials and --target exited 1 for a bundle that merely had
    // malformed hashes, even when every check asked for held.
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 30, false);
    // ken's e-mail duplicates judy's; give him his own so every record loads.
    Connection::open(&db)
        .unwrap()
        .execute(
            r#"UPDATE "AspNetUsers" SET "Email" = 'ken@example.com', "NormalizedEmail" = 'KEN@EXAMPLE.COM' WHERE "UserName" = 'ken'"#,
            [],
        )
        .unwrap();
    w.export(&db, "bundle");
    let bundle = w.arg("bundle");
    let r = run("ferry-import", &["verify", &bundle]).expect_code(0);
    assert!(
        r.stderr.contains(": warning: ") && r.stderr.contains("users-00000.ndjson:"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("PasswordHash: malformed"), "{}", r.stderr);
    run("ferry-import", &["verify", &bundle, "--fail-on-malformed"]).expect_code(1);
    std::fs::write(
        w.path("creds.csv"),
        "user,password\nalice,alice-Passw0rd!\nbob,bob-Passw0rd!\n",
    )
    .unwrap();
    let creds = w.arg("creds.csv");
    run(
        "ferry-import",
        &["verify", &bundle, "--credentials", &creds],
    )
    .expect_code(0);
    std::fs::write(w.path("bad.csv"), "user,password\nbob,wrong\n").unwrap();
    run(
        "ferry-import",
        &["verify", &bundle, "--credentials", &w.arg("bad.csv")],
    )
    .expect_code(1);
    let (target, s) = (w.arg("users.db"), schema(SCIM));
    run(
        "ferry-import",
        &["load", &bundle, "--schema", &s, "--target", &target],
    )
    .expect_code(0);
    let r = run(
        "ferry-import",
        &["verify", &bundle, "--target", &target, "--schema", &s],
    )
    .expect_code(0);
    assert!(
        r.stderr.contains("store: all 30 loaded records match"),
        "{}",
        r.stderr
    );
}

#[test]
fn validate_reports_an_unsealed_edit_and_exits_2() {
    // Regression: validate exited 1 on an unsealed edit, not 2 as its help says.
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 20, false);
    w.export(&db, "bundle");
    let part = w.path("bundle/users-00000.ndjson");
    let text = std::fs::read_to_string(&part).unwrap();
    std::fs::write(
        &part,
        text.replacen(r#""UserName":"bob""#, r#""UserName":"alice""#, 1),
    )
    .unwrap();
    let r = run(
        "ferry-import",
        &["validate", &w.arg("bundle"), "--schema", &schema(SCIM)],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("is already used by subject"),
        "still checked: {}",
        r.stderr
    );
    assert!(r.stderr.contains("run `ferry-import seal`"), "{}", r.stderr);
}

// 12. The messages a new user met.

#[test]
fn first_steps_meet_messages_that_say_what_to_do() {
    let w = Workdir::new();
    std::fs::create_dir(w.path("folder")).unwrap();
    let r = run(
        "ferry-export",
        &["--source", &w.arg("folder"), "--out", &w.arg("b")],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("is a folder, not a SQLite database file"),
        "not `disk I/O error`: {}",
        r.stderr
    );
    let db = w.fixture("app.db", Generation::CoreV3, 10, false);
    let r = run(
        "ferry-export",
        &[
            "--source",
            db.to_str().unwrap(),
            "--out",
            &w.arg("missing/b"),
        ],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains(&format!(
            "the folder `{}` does not exist; create it first",
            w.path("missing").display()
        )),
        "{}",
        r.stderr
    );
    w.export(&db, "bundle");
    let s = schema(SCIM);
    let r = run(
        "ferry-import",
        &[
            "load",
            &w.arg("bundle"),
            "--schema",
            &s,
            "--target",
            &w.arg("missing/users.db"),
        ],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("the folder") && r.stderr.contains("does not exist; create it first"),
        "not `unable to open database file`: {}",
        r.stderr
    );
    let r = run(
        "ferry-import",
        &[
            "load",
            &w.arg("bundle"),
            "--schema",
            &s,
            "--target",
            "postgres://postgres@127.0.0.1:5432/ferry_no_such_database?sslmode=disable",
        ],
    )
    .expect_code(2);
    assert!(
        r.stderr
            .contains("postgres://postgres@127.0.0.1:5432/ferry_no_such_database")
            && r.stderr
                .contains("does not exist (check the database name)"),
        "{}",
        r.stderr
    );
    let r = run(
        "ferry-import",
        &["validate", &w.arg("bundle/manifest.json"), "--schema", &s],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("is a file, not a bundle folder"),
        "{}",
        r.stderr
    );
    let r = run(
        "ferry-import",
        &[
            "validate",
            &w.arg("bundle"),
            "--schema",
            &schema("oidc-standard.json"),
        ],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("--mapping schemas/mapping.oidc.json"),
        "a hint for the OIDC schema with the default mapping: {}",
        r.stderr
    );
}

#[test]
fn counts_are_worded_for_one_and_many() {
    // Regression: "1 errors", "1 differences".
    let w = Workdir::new();
    w.export(&ferry_e2e::root().join("samples/identity.db"), "bundle");
    let r = run(
        "ferry-import",
        &["validate", &w.arg("bundle"), "--schema", &schema(SCIM)],
    )
    .expect_code(1);
    assert!(r.stderr.contains("1 error in 1 record,"), "{}", r.stderr);
    assert!(!r.stderr.contains("1 errors"), "{}", r.stderr);
}

// 11. Generation evidence.

#[test]
fn ef_migration_history_is_evidence_in_the_manifest() {
    let w = Workdir::new();
    // A Core 1 to 7 app: every migration made by EF Core 7 or earlier is schema v1.
    let db = w.fixture("v1.db", Generation::CoreV1, 10, false);
    Connection::open(&db)
        .unwrap()
        .execute(
            r#"INSERT INTO "__EFMigrationsHistory" VALUES ('20220301000000_AddProfile', '6.0.27')"#,
            [],
        )
        .unwrap();
    w.export(&db, "v1");
    let m = manifest(&w.path("v1"));
    assert_eq!(m["source"]["generation"], "core-v1");
    assert_eq!(m["source"]["migrations"]["count"], 2);
    assert_eq!(
        m["source"]["migrations"]["first"]["id"],
        "00000000000000_CreateIdentitySchema"
    );
    assert_eq!(
        m["source"]["migrations"]["last"]["product_version"],
        "6.0.27"
    );
    // EF Core 8 and later may have opted into v2: SQLite cannot tell, and ferry says so.
    let db = w.fixture("v2.db", Generation::CoreV2, 10, false);
    w.export(&db, "v2");
    let m = manifest(&w.path("v2"));
    assert_eq!(m["source"]["generation"], "core-v1-or-v2");
    let evidence = m["source"]["evidence"].to_string();
    assert!(evidence.contains("EF 8.0.11"), "{evidence}");
    // Classic Identity's EF6 history.
    let db = w.fixture("classic.db", Generation::Classic2, 10, false);
    w.export(&db, "classic");
    let m = manifest(&w.path("classic"));
    assert_eq!(m["source"]["migrations"]["table"], "__MigrationHistory");
    assert_eq!(
        m["source"]["migrations"]["first"]["product_version"],
        "6.1.3-40302"
    );
}
