//! End-to-end tests of bundles as an attacker or a careless editor leaves them: links and
//! paths that lead outside the bundle, keys given twice, parts the manifest does not list,
//! counts edited by hand, and what login reads from standard input. Each is refused with a
//! message naming the file (and line and field where there is one), and nothing outside
//! the bundle is read or written.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use ferry_e2e::{run, schema, Workdir};
use ferry_fixtures::Generation;

const SCIM: &str = "scim-user.json";

fn bundle(w: &Workdir) {
    let db = w.fixture("app.db", Generation::CoreV3, 12, false);
    w.export(&db, "bundle");
}

fn validate(w: &Workdir, dir: &str) -> ferry_e2e::Run {
    run(
        "ferry-import",
        &["validate", &w.arg(dir), "--schema", &schema(SCIM)],
    )
}

/// validate accepts the bundle itself (exit 0, or 1 for the fixture's own planted record
/// problems; 2 is a bundle refused).
fn validate_ok(w: &Workdir, dir: &str) -> ferry_e2e::Run {
    let v = validate(w, dir);
    assert!(v.code == 0 || v.code == 1, "exit {}: {}", v.code, v.stderr);
    v
}

/// The number of records with errors that validate reports (`… N errors in M records`).
fn records_in_error(v: &ferry_e2e::Run) -> u64 {
    let summary = v
        .stderr
        .lines()
        .find(|l| l.starts_with("checked "))
        .unwrap_or_else(|| panic!("no summary in {}", v.stderr));
    let after = summary.split(" in ").nth(1).unwrap_or("0");
    after.split(' ').next().unwrap().parse().unwrap()
}

/// validate's summary says it checked `records` records: none was lost on the way.
fn assert_checked(v: &ferry_e2e::Run, records: usize) {
    assert!(
        v.stderr.contains(&format!("checked {records} records:")),
        "{}",
        v.stderr
    );
}

fn users_file(w: &Workdir) -> std::path::PathBuf {
    w.path("bundle/users-00000.ndjson")
}

fn load(w: &Workdir, extra: &[&str]) -> ferry_e2e::Run {
    let (bundle, target, s) = (w.arg("bundle"), w.arg("users.db"), schema(SCIM));
    let mut args = vec!["load", &bundle, "--schema", &s, "--target", &target];
    args.extend_from_slice(extra);
    run("ferry-import", &args)
}

fn plan(w: &Workdir, out: &str) -> ferry_e2e::Run {
    let (bundle, s, out) = (w.arg("bundle"), schema(SCIM), w.arg(out));
    run(
        "ferry-import",
        &["plan", &bundle, "--schema", &s, "--out", &out],
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_symlinked_part_is_refused_and_nothing_is_imported_from_it() {
    let w = Workdir::new();
    bundle(&w);
    std::fs::rename(users_file(&w), w.path("elsewhere.ndjson")).unwrap();
    std::os::unix::fs::symlink(w.path("elsewhere.ndjson"), users_file(&w)).unwrap();
    let v = validate(&w, "bundle").expect_code(2);
    assert!(
        v.stderr.contains("users-00000.ndjson`: is a symbolic link"),
        "{}",
        v.stderr
    );
    let l = load(&w, &[]).expect_code(2);
    assert!(l.stderr.contains("symbolic link"), "{}", l.stderr);
    if w.path("users.db").exists() {
        let conn = rusqlite::Connection::open(w.path("users.db")).unwrap();
        let users: i64 = conn
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 0);
    }
}

#[test]
fn seal_never_writes_through_a_symlinked_temporary_manifest() {
    let w = Workdir::new();
    bundle(&w);
    std::fs::write(w.path("precious.txt"), "keep me\n").unwrap();
    std::os::unix::fs::symlink(w.path("precious.txt"), w.path("bundle/.manifest.json.tmp"))
        .unwrap();
    // An edit to seal: a blank line at the end.
    let mut text = std::fs::read_to_string(users_file(&w)).unwrap();
    text.push('\n');
    std::fs::write(users_file(&w), text).unwrap();
    run("ferry-import", &["seal", &w.arg("bundle")]).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(w.path("precious.txt")).unwrap(),
        "keep me\n"
    );
    assert!(!w.path("bundle/.manifest.json.tmp").exists());
    assert_eq!(mode(&w.path("bundle/manifest.json")), 0o600);
    validate_ok(&w, "bundle");
}

#[test]
fn a_part_name_that_is_a_path_is_refused_naming_the_entry() {
    let w = Workdir::new();
    bundle(&w);
    std::fs::copy(users_file(&w), w.path("outside.ndjson")).unwrap();
    for bad in ["../outside.ndjson", "/etc/passwd", "sub\\\\x.ndjson"] {
        let manifest = std::fs::read_to_string(w.path("bundle/manifest.json")).unwrap();
        let edited = manifest.replace("\"users-00000.ndjson\"", &format!("\"{bad}\""));
        std::fs::write(w.path("bundle/manifest.json"), &edited).unwrap();
        let v = validate(&w, "bundle").expect_code(2);
        assert!(
            v.stderr.contains("manifest.json`: parts[0].file")
                && v.stderr
                    .contains("is a path, not a plain file name inside the bundle"),
            "{bad}: {}",
            v.stderr
        );
        std::fs::write(w.path("bundle/manifest.json"), &manifest).unwrap();
    }
    validate_ok(&w, "bundle");
}

#[test]
fn a_part_the_manifest_does_not_list_is_refused() {
    let w = Workdir::new();
    bundle(&w);
    std::fs::copy(users_file(&w), w.path("bundle/users-00001.ndjson")).unwrap();
    let v = validate(&w, "bundle").expect_code(2);
    assert!(
        v.stderr.contains(
            "users-00001.ndjson: is in the bundle folder but not in its manifest, so none of its records would be read"
        ),
        "{}",
        v.stderr
    );
    std::fs::remove_file(w.path("bundle/users-00001.ndjson")).unwrap();
    validate_ok(&w, "bundle");
}

#[test]
fn counts_edited_by_hand_are_refused_until_sealed() {
    let w = Workdir::new();
    bundle(&w);
    let path = w.path("bundle/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let users = m["counts"]["users"].as_u64().unwrap();
    m["counts"]["users"] = (users + 1).into();
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let v = validate(&w, "bundle").expect_code(2);
    assert!(
        v.stderr.contains(&format!(
            "manifest.json: counts.users is {} but its users parts list {users} records",
            users + 1
        )),
        "{}",
        v.stderr
    );
    // A part's own count, edited.
    m["counts"]["users"] = users.into();
    m["parts"][0]["records"] = (users - 1).into();
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let v = validate(&w, "bundle").expect_code(2);
    assert!(
        v.stderr.contains(&format!(
            "users-00000.ndjson: holds {users} records but the manifest says {}",
            users - 1
        )),
        "{}",
        v.stderr
    );
    let s = run("ferry-import", &["seal", &w.arg("bundle")]).expect_code(0);
    assert!(s.stderr.contains("sealed"), "{}", s.stderr);
    validate_ok(&w, "bundle");
}

#[test]
fn an_unsealed_edit_of_the_same_size_says_the_checksum_differs() {
    let w = Workdir::new();
    bundle(&w);
    let text = std::fs::read_to_string(users_file(&w)).unwrap();
    let edited = text.replacen("@example.com", "@EXAMPLE.com", 1);
    assert!(edited != text && edited.len() == text.len());
    std::fs::write(users_file(&w), edited).unwrap();
    let v = validate(&w, "bundle").expect_code(2);
    assert!(
        v.stderr
            .contains("users-00000.ndjson: changed since the manifest was written (the same")
            && v.stderr.contains("its SHA-256 differs from the manifest's"),
        "{}",
        v.stderr
    );
}

/// The column a message gives, from `at column N)`.
fn column_in(message: &str) -> usize {
    message
        .split("at column ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no column in {message}"))
}

#[test]
fn a_key_given_twice_is_an_error_and_every_other_record_is_unchanged() {
    let w = Workdir::new();
    bundle(&w);
    let before = records_in_error(&validate_ok(&w, "bundle"));
    let text = std::fs::read_to_string(users_file(&w)).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let ids: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["Id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let strip = |l: &str| l.strip_suffix('}').unwrap().to_string();
    lines[1] = format!("{},\"UserName\":\"mallory\"}}", strip(&lines[1]));
    lines[3] = format!("{},\"PasswordHash\":null}}", strip(&lines[3]));
    lines[5] = lines[5].replacen("\"Extra\":{", "\"Extra\":{\"Age\":1,\"Age\":2,", 1);
    assert!(
        lines[5].contains("\"Age\":2"),
        "the fixture's users have Extra"
    );
    std::fs::write(users_file(&w), lines.join("\n") + "\n").unwrap();
    // seal refuses the bundle, naming each line.
    let s = run("ferry-import", &["seal", &w.arg("bundle")]).expect_code(1);
    assert!(s.stderr.contains("users-00000.ndjson:2:"), "{}", s.stderr);
    // validate checks every record, reports the three, and ends with exit 2 (unsealed).
    let v = validate(&w, "bundle").expect_code(2);
    let line_of = |n: usize| error_at(&v, n);
    let two = line_of(2);
    let second = lines[1].rfind("\"UserName\"").unwrap() + 1;
    assert!(
        two.starts_with(&format!(
            "users-00000.ndjson:2:{second}: {}: UserName: this key is given twice (the second time at column {second})",
            ids[1]
        )),
        "{two}"
    );
    let four = line_of(4);
    assert!(
        four.contains(&format!(
            "{}: PasswordHash: this key is given twice",
            ids[3]
        )),
        "{four}"
    );
    // The column is where the second key starts.
    let col = column_in(&four);
    assert_eq!(
        col - 1,
        lines[3].rfind("\"PasswordHash\"").unwrap(),
        "{four}"
    );
    assert_eq!(quickfix_column(&four), col, "{four}");
    let six = line_of(6);
    assert!(six.contains("Extra.Age: this key is given twice"), "{six}");
    assert_eq!(records_in_error(&v), before + 3, "{}", v.stderr);
    assert_checked(&v, lines.len());
}

#[test]
fn login_refuses_a_password_line_without_end() {
    let w = Workdir::new();
    bundle(&w);
    load(&w, &[]);
    // A megabyte with no newline, as `login < /dev/zero` would give (from a file: login
    // stops reading long before the end).
    std::fs::write(w.path("stdin"), vec![b'a'; 1 << 20]).unwrap();
    let out = ferry_e2e::command("ferry-import")
        .args(["login", "--target", &w.arg("users.db"), "--user", "alice"])
        .stdin(std::fs::File::open(w.path("stdin")).unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the password line on standard input is longer than 4 KiB"),
        "{stderr}"
    );
}

#[test]
fn reports_and_plans_are_owner_only_whatever_the_umask() {
    let w = Workdir::new();
    bundle(&w);
    // A report file that exists with wider permissions is narrowed.
    std::fs::write(w.path("load.csv"), "old").unwrap();
    std::fs::set_permissions(w.path("load.csv"), std::fs::Permissions::from_mode(0o644)).unwrap();
    load(&w, &["--report", &w.arg("load.csv")]);
    assert_eq!(mode(&w.path("load.csv")), 0o600);
    assert!(std::fs::read_to_string(w.path("load.csv"))
        .unwrap()
        .starts_with("subject_id,"));
    plan(&w, "plan/new");
    assert_eq!(mode(&w.path("plan/new")), 0o700);
    assert_eq!(mode(&w.path("plan/new/plan-00000.ndjson")), 0o600);
}

#[test]
fn a_store_with_wider_permissions_is_narrowed_to_its_owner() {
    let w = Workdir::new();
    bundle(&w);
    load(&w, &[]);
    assert_eq!(mode(&w.path("users.db")), 0o600);
    std::fs::set_permissions(w.path("users.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    // A second load of the same bundle (every user skipped) opens it for writing.
    load(&w, &[]);
    assert_eq!(mode(&w.path("users.db")), 0o600);
}

/// Writes the users part with `edit` applied to its lines, and returns the edited lines.
fn edit_lines(w: &Workdir, edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> Vec<Vec<u8>> {
    let text = std::fs::read(users_file(w)).unwrap();
    let mut lines: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    edit(&mut lines);
    let mut out = Vec::new();
    for l in &lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    std::fs::write(users_file(w), out).unwrap();
    lines
}

/// The error validate gives for line `n` of the users part (a quickfix line,
/// `users-00000.ndjson:N:COLUMN: …`).
fn error_at(v: &ferry_e2e::Run, n: usize) -> String {
    v.stderr
        .lines()
        .find(|l| l.starts_with(&format!("users-00000.ndjson:{n}:")))
        .unwrap_or_else(|| panic!("no error for line {n}: {}", v.stderr))
        .to_string()
}

/// The column of a quickfix line `file:line:column: …`.
fn quickfix_column(line: &str) -> usize {
    line.split(':')
        .nth(2)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no column in {line}"))
}

#[test]
fn a_byte_order_mark_is_accepted_on_a_part_and_a_schema() {
    let w = Workdir::new();
    bundle(&w);
    let before = records_in_error(&validate_ok(&w, "bundle"));
    edit_lines(&w, |lines| {
        lines[0].splice(0..0, *b"\xEF\xBB\xBF");
    });
    run("ferry-import", &["seal", &w.arg("bundle")]).expect_code(0);
    let mut schema_text = b"\xEF\xBB\xBF".to_vec();
    schema_text.extend(std::fs::read(schema(SCIM)).unwrap());
    std::fs::write(w.path("schema.json"), schema_text).unwrap();
    let v = run(
        "ferry-import",
        &[
            "validate",
            &w.arg("bundle"),
            "--schema",
            &w.arg("schema.json"),
        ],
    );
    assert!(v.code == 0 || v.code == 1, "{}", v.stderr);
    assert_eq!(records_in_error(&v), before, "{}", v.stderr);
}

#[test]
fn unreadable_lines_are_named_and_every_other_line_is_still_checked() {
    let w = Workdir::new();
    bundle(&w);
    let before = records_in_error(&validate_ok(&w, "bundle"));
    let lines = edit_lines(&w, |lines| {
        // Line 2: a byte that is not UTF-8, inside a user name.
        let at = lines[1]
            .windows(11)
            .position(|x| x == b"\"UserName\":")
            .unwrap()
            + 12;
        lines[1][at] = 0xFF;
        // Line 4: cut off in the middle.
        let half = lines[3].len() / 2;
        lines[3].truncate(half);
        // Line 6: two records joined by a CR, as a file with CR-only endings reads.
        let next = lines.remove(6);
        lines[5].push(b'\r');
        lines[5].extend(next);
    });
    let v = validate(&w, "bundle").expect_code(2);
    let two = error_at(&v, 2);
    let byte = lines[1].iter().position(|&b| b == 0xFF).unwrap() + 1;
    assert_eq!(quickfix_column(&two), byte, "{two}");
    assert!(
        two.ends_with(&format!(
            "not valid UTF-8 at byte {byte} of the line; save the file as UTF-8"
        )),
        "{two}"
    );
    let four = error_at(&v, 4);
    let end = lines[3].len() + 1;
    assert!(
        four.contains(&format!("the line ends early, at column {end}"))
            && four.contains("the record is cut off"),
        "{four}"
    );
    assert_eq!(quickfix_column(&four), end, "{four}");
    let six = error_at(&v, 6);
    assert!(six.contains("CR-only line endings"), "{six}");
    let cr = lines[5].iter().position(|&b| b == b'\r').unwrap() + 1;
    assert_eq!(quickfix_column(&six), cr, "{six}");
    assert_checked(&v, lines.len());
    // The three, and the records with the fixture's own problems (one of which may be the
    // record joined onto line 6).
    let now = records_in_error(&v);
    assert!(
        now == before + 3 || now == before + 2,
        "{before} -> {now}: {}",
        v.stderr
    );
}

#[test]
fn a_line_longer_than_16_mib_is_refused_and_the_next_is_read() {
    let w = Workdir::new();
    bundle(&w);
    let lines = edit_lines(&w, |lines| lines.insert(1, vec![b' '; (16 << 20) + 10]));
    let v = validate(&w, "bundle").expect_code(2);
    let two = error_at(&v, 2);
    assert!(
        two.contains("the line is longer than 16 MiB, the most a record may be"),
        "{two}"
    );
    assert_checked(&v, lines.len());
}

#[test]
fn a_second_record_with_an_earlier_ones_id_is_an_error_in_seal_validate_plan_and_load() {
    let w = Workdir::new();
    bundle(&w);
    let text = std::fs::read_to_string(users_file(&w)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    let id = first["Id"].as_str().unwrap().to_string();
    // A new record pasted from line 3 and given its own user name and e-mail, but not
    // its own Id: only the Id collides.
    let mut copy: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(lines[2]).unwrap();
    for (k, v) in [
        ("UserName", "newcomer"),
        ("NormalizedUserName", "NEWCOMER"),
        ("Email", "newcomer@example.org"),
        ("NormalizedEmail", "NEWCOMER@EXAMPLE.ORG"),
    ] {
        copy.insert(k.into(), v.into());
    }
    for k in ["Logins", "Passkeys", "Claims"] {
        copy.insert(k.into(), serde_json::json!([]));
    }
    let copied = serde_json::to_string(&copy).unwrap();
    let n = lines.len() + 1;
    std::fs::write(users_file(&w), format!("{text}{copied}\n")).unwrap();
    let expected = format!(
        "users-00000.ndjson:{n}:2: {id}: Id: an earlier record has this Id; a bundle holds each account once: merge the two records by hand or remove one, then seal (users-00000.ndjson:3)"
    );
    // seal refuses it, naming both records.
    let s = run("ferry-import", &["seal", &w.arg("bundle")]).expect_code(1);
    assert!(s.stderr.contains(&expected), "{}", s.stderr);
    assert!(s.stderr.contains("not sealed"), "{}", s.stderr);
    // validate reports it (exit 2: unsealed), the first record unblamed.
    let v = validate(&w, "bundle").expect_code(2);
    assert!(v.stderr.contains(&expected), "{}", v.stderr);
    assert!(
        !v.stderr
            .lines()
            .any(|l| l.starts_with("users-00000.ndjson:3:") && l.contains(": Id: ")),
        "{}",
        v.stderr
    );
    // A manifest brought up to date by hand (as an older ferry's seal would have): plan
    // and load fail the second record and keep the first whole.
    let path = w.path("bundle/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let part = users_file(&w);
    m["parts"][0]["sha256"] = ferry_e2e::sha256_file(&part).into();
    m["parts"][0]["bytes"] = std::fs::metadata(&part).unwrap().len().into();
    m["parts"][0]["records"] = (n as u64).into();
    m["counts"]["users"] = (n as u64).into();
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let p = plan(&w, "plan");
    assert!(p.stderr.contains(&expected), "{}", p.stderr);
    let l = load(&w, &["--report", &w.arg("report.csv")]).expect_code(1);
    assert!(
        l.stderr.contains(&format!(
            "FAILED {id} (users-00000.ndjson:{n}): Id: an earlier record has this Id"
        )),
        "{}",
        l.stderr
    );
    let conn = rusqlite::Connection::open(w.path("users.db")).unwrap();
    let (user_name, rows): (String, i64) = conn
        .query_row(
            "SELECT MAX(user_name), COUNT(*) FROM users WHERE subject_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(
        user_name,
        first["UserName"].as_str().unwrap(),
        "the first record, unchanged"
    );
    let report = std::fs::read_to_string(w.path("report.csv")).unwrap();
    assert!(
        report
            .lines()
            .any(|l| l.starts_with(&format!("{id},users-00000.ndjson,{n},Failed,"))),
        "{report}"
    );
}

#[test]
fn names_and_values_over_their_limits_are_errors_of_their_record_alone() {
    let w = Workdir::new();
    bundle(&w);
    let before = records_in_error(&validate_ok(&w, "bundle"));
    let text = std::fs::read_to_string(users_file(&w)).unwrap();
    let mut lines: Vec<serde_json::Map<String, serde_json::Value>> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[1].insert("UserName".into(), "u".repeat(257).into());
    lines[3].insert("Email".into(), "bob\u{7}@example.org".into());
    lines[5].insert(
        "Claims".into(),
        serde_json::json!([{"Type": "bio", "Value": "x".repeat((1 << 20) + 1)}]),
    );
    let ids: Vec<String> = lines
        .iter()
        .map(|l| l["Id"].as_str().unwrap().to_string())
        .collect();
    let out: String = lines
        .iter()
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect();
    std::fs::write(users_file(&w), out).unwrap();
    run("ferry-import", &["seal", &w.arg("bundle")]).expect_code(0);
    let v = validate(&w, "bundle").expect_code(1);
    let two = error_at(&v, 2);
    assert!(
        two.contains(&format!(
            "{}: UserName: is 257 characters long; ASP.NET Identity holds at most 256",
            ids[1]
        )),
        "{two}"
    );
    let four = error_at(&v, 4);
    assert!(
        four.contains(&format!(
            "{}: Email: holds a control character (U+0007) at character 4",
            ids[3]
        )),
        "{four}"
    );
    let six = error_at(&v, 6);
    assert!(
        six.contains("Claims[0].Value: is 1048577 bytes long; ferry takes values of at most 1 MiB"),
        "{six}"
    );
    assert_eq!(records_in_error(&v), before + 3, "{}", v.stderr);
    // A load fails those three and no other.
    let l = load(&w, &["--json"]);
    let summary: serde_json::Value = serde_json::from_str(l.stdout.trim()).unwrap();
    let failed_before = {
        let w2 = Workdir::new();
        bundle(&w2);
        let l = load(&w2, &["--json"]);
        serde_json::from_str::<serde_json::Value>(l.stdout.trim()).unwrap()["failed"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        summary["failed"].as_u64().unwrap(),
        failed_before + 3,
        "{summary}"
    );
}

#[test]
fn schema_and_mapping_files_over_their_limits_are_refused() {
    let w = Workdir::new();
    bundle(&w);
    let attributes: Vec<serde_json::Value> = (0..10_001)
        .map(|i| serde_json::json!({"code": format!("a{i}"), "type": "string"}))
        .collect();
    std::fs::write(
        w.path("many.json"),
        serde_json::json!({ "attributes": attributes }).to_string(),
    )
    .unwrap();
    std::fs::write(w.path("big.json"), vec![b' '; (4 << 20) + 1]).unwrap();
    let rules: Vec<serde_json::Value> = (0..10_001)
        .map(|_| serde_json::json!({"from": "column:Email", "to": "email"}))
        .collect();
    std::fs::write(
        w.path("rules.json"),
        serde_json::json!({ "rules": rules }).to_string(),
    )
    .unwrap();
    let (bundle, scim) = (w.arg("bundle"), schema(SCIM));
    let (many, big, rules) = (w.arg("many.json"), w.arg("big.json"), w.arg("rules.json"));
    for (args, expected) in [
        (
            vec!["--schema", &many],
            "many.json: attributes: defines 10001 attributes; ferry takes at most 10000"
                .to_string(),
        ),
        (
            vec!["--schema", &big],
            "big.json: is larger than 4 MiB, the most ferry reads as a schema or mapping file"
                .into(),
        ),
        (
            vec!["--schema", &scim, "--mapping", &rules],
            "rules.json: rules: 10001 rules; ferry takes at most 10000".into(),
        ),
    ] {
        let mut all = vec!["validate", bundle.as_str()];
        all.extend(args);
        let v = run("ferry-import", &all).expect_code(2);
        assert!(v.stderr.contains(&expected), "{expected}: {}", v.stderr);
    }
}

/// A V3 hash (HMAC-SHA256) with this iteration count and subkey length.
fn v3_hash(iterations: u32, subkey_len: usize) -> String {
    use base64::Engine as _;
    let mut bytes = vec![1u8];
    bytes.extend(1u32.to_be_bytes());
    bytes.extend(iterations.to_be_bytes());
    bytes.extend(16u32.to_be_bytes());
    bytes.extend([7u8; 16]);
    bytes.extend(vec![9u8; subkey_len]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn hashes_above_the_cost_ceilings_are_flagged_and_never_run() {
    let w = Workdir::new();
    // 10,000,001 iterations, and a 1 MiB subkey (a check would be 16,384 PBKDF2 runs).
    w.fixture_with_hashes(&[v3_hash(10_000_001, 32), v3_hash(1000, 1 << 20)]);
    let v = validate(&w, "bundle");
    for reason in [
        "iteration count 10000001 is above ferry's ceiling of 10000000 (flagged, not run)",
        "subkey is 1048576 bytes (maximum 64; flagged, not run)",
    ] {
        assert!(
            v.stderr
                .contains(&format!("PasswordHash: malformed hash ({reason})")),
            "{reason}: {}",
            v.stderr
        );
    }
    load(&w, &[]);
    for (user, reason) in [
        ("vector-0", "iteration count 10000001 is above"),
        ("vector-1", "subkey is 1048576 bytes"),
    ] {
        let r = ferry_e2e::login(&w.path("users.db"), user, "any password", &["--explain"])
            .expect_code(1);
        assert!(
            r.stderr.contains(&format!(
                "refused: this user's password hash is malformed ({reason}"
            )),
            "{user}: {}",
            r.stderr
        );
    }
}
