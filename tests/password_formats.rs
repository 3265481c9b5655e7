//! Passwords beyond ASP.NET's own format (Membership, BCrypt, Argon2, PBKDF2 PHC strings),
//! end to end: census, `verify --credentials`, load, `login` with its re-hash, `plan`.

use ferry_e2e::{root, run, schema, Run, Workdir};
use ferry_fixtures::{other_format, Generation, Options, OtherFormat};
use rusqlite::Connection;

fn vectors() -> serde_json::Value {
    let path = root().join("crates/passwords/testdata/other-hash-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn load(w: &Workdir) -> Run {
    run(
        "ferry-import",
        &[
            "load",
            &w.arg("bundle"),
            "--schema",
            &schema("scim-user.json"),
            "--target",
            &w.arg("users.db"),
        ],
    )
}

fn login(w: &Workdir, user: &str, password: &str) -> Run {
    ferry_e2e::login(&w.path("users.db"), user, password, &["--explain"])
}

fn algorithm_of(w: &Workdir, user: &str) -> String {
    ferry_e2e::password_algorithm(&w.path("users.db"), user)
}

/// Every public vector of every format: `verify --credentials` verifies it and rejects
/// a wrong password; loaded, it logs in once with its own algorithm and is re-hashed to
/// pbkdf2; the malformed ones are named in the census with their reason.
#[test]
fn every_vector_of_every_format_verifies_logs_in_and_is_rehashed() {
    let v = vectors();
    let mut cases: Vec<(String, String, &str)> = Vec::new();
    for (format, algorithm) in [
        ("bcrypt", "bcrypt"),
        ("argon2", "argon2"),
        ("pbkdf2", "pbkdf2"),
        ("membership", "aspnet-membership"),
    ] {
        for c in v[format].as_array().unwrap() {
            let hash = c["hash"].as_str().unwrap().to_string();
            let algorithm = if hash.contains("|0|") {
                // Clear text is hashed at load.
                "pbkdf2"
            } else {
                algorithm
            };
            cases.push((hash, c["password"].as_str().unwrap().to_string(), algorithm));
        }
    }
    let malformed: Vec<(String, String)> = v["malformed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["hash"].as_str().unwrap().to_string(),
                c["malformed"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut hashes: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    hashes.extend(malformed.iter().map(|m| m.0.clone()));
    let w = Workdir::new();
    w.fixture_with_hashes(&hashes);

    // The census names every format and every reason.
    let r = run("ferry-import", &["verify", &w.arg("bundle"), "--json"]).expect_code(0);
    let summary: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let census = &summary["password_hashes"];
    let families: Vec<&str> = census["other"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["family"].as_str().unwrap())
        .collect();
    for family in ["BCrypt", "Argon2", "PBKDF2 (PHC)", "Membership"] {
        assert!(families.contains(&family), "{family} in {census}");
    }
    let reasons: Vec<&str> = census["malformed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["reason"].as_str().unwrap())
        .collect();
    for (_, reason) in &malformed {
        assert!(reasons.contains(&reason.as_str()), "{reason} in {census}");
    }

    // verify --credentials: right passwords verify, wrong ones do not.
    let mut rows: Vec<(String, String)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("vector-{i}"), c.1.clone()))
        .collect();
    rows.extend(
        cases
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("vector-{i}"), format!("x{}", c.1))),
    );
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
    let statuses: Vec<&str> = summary["credential_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["status"].as_str().unwrap())
        .collect();
    let n = cases.len();
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(statuses[i], "verified", "{}", case.0);
        assert_eq!(statuses[n + i], "wrong password", "{}", case.0);
    }
    for case in &cases {
        assert!(!r.stderr.contains(&case.0) && !r.stdout.contains(&case.0));
    }

    // Loaded, each format is stored under its own algorithm, and the clear-text password
    // is nowhere in the store.
    let r = load(&w);
    assert!(r.stderr.contains("Import complete."), "{}", r.stderr);
    assert!(
        r.stderr.contains("clear-text Membership password"),
        "{}",
        r.stderr
    );
    let store_bytes = std::fs::read(w.path("users.db")).unwrap();
    let clear = cases.iter().find(|c| c.0.contains("|0|")).unwrap();
    assert!(
        !store_bytes
            .windows(clear.1.len())
            .any(|win| win == clear.1.as_bytes()),
        "the clear-text password is not stored"
    );
    for (i, (hash, password, algorithm)) in cases.iter().enumerate() {
        let user = format!("vector-{i}");
        assert_eq!(&algorithm_of(&w, &user), algorithm, "{hash}");
        login(&w, &user, &format!("x{password}")).expect_code(1);
        assert_eq!(
            &algorithm_of(&w, &user),
            algorithm,
            "a failed login changes nothing"
        );
        let r = login(&w, &user, password);
        assert_eq!(r.code, 0, "{hash}: {}", r.stderr);
        let preferred = hash.contains("|0|");
        assert_eq!(
            r.stderr
                .contains(&format!("re-hashed from {algorithm} to pbkdf2")),
            !preferred,
            "{hash}: {}",
            r.stderr
        );
        // (That a re-hashed password then logs in as pbkdf2 is tests/import.rs's.)
        assert_eq!(algorithm_of(&w, &user), "pbkdf2");
    }
    // The malformed ones are stored as they are and never log in.
    for i in cases.len()..hashes.len() {
        login(&w, &format!("vector-{i}"), "U*U").expect_code(1);
    }
}

/// A classic Identity 2.x database migrated from Membership with Microsoft's recipe,
/// where some users still carry Membership hashes (SHA1, HMACSHA256, clear text) and
/// others BCrypt, Argon2 or passlib PBKDF2: exported, planned, loaded, every user logs in
/// with the password they had and is re-hashed.
#[test]
fn a_classic_database_with_membership_and_bcrypt_users_migrates_end_to_end() {
    let w = Workdir::new();
    let users = 60;
    let db = w.path("app.db");
    let mut credentials = Vec::new();
    ferry_fixtures::generate(
        &db,
        &Options {
            users,
            generation: Generation::Classic2,
            other_formats: true,
            two_factor_percent: 0,
            ..ferry_e2e::options()
        },
        Some(&mut credentials as &mut dyn std::io::Write),
    )
    .unwrap();
    let r = w.export(&db, "bundle");
    for family in ["Membership", "BCrypt", "Argon2", "PBKDF2 (PHC)"] {
        assert!(r.stderr.contains(family), "{family}: {}", r.stderr);
    }
    assert!(
        r.stderr.contains("clear-text Membership password"),
        "the export warns loudly: {}",
        r.stderr
    );

    // plan: every format with its own algorithm id, and no clear text.
    run(
        "ferry-import",
        &[
            "plan",
            &w.arg("bundle"),
            "--schema",
            &schema("scim-user.json"),
            "--out",
            &w.arg("plan"),
        ],
    );
    let plan = std::fs::read_to_string(w.path("plan/plan-00000.ndjson")).unwrap();
    for id in [
        "aspnet-membership",
        "bcrypt",
        "argon2",
        "pbkdf2",
        "aspnet-identity",
    ] {
        assert!(
            plan.contains(&format!("\"AlgorithmId\":\"{id}\"")),
            "{id} in the plan"
        );
    }
    assert!(!plan.contains("clear-text"));

    let conn = Connection::open(&db).unwrap();
    let hashes: Vec<String> = conn
        .prepare("SELECT PasswordHash FROM AspNetUsers WHERE PasswordHash IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(hashes.iter().any(|h| h.ends_with("|0|")), "clear text");
    assert!(hashes.iter().any(|h| h.starts_with("$2b$")), "BCrypt");
    assert!(hashes.iter().any(|h| h.starts_with("$argon2id$")), "Argon2");
    assert!(
        hashes.iter().any(|h| h.contains("|1|")),
        "Membership digests"
    );
    assert!(
        (0..users).any(|i| other_format(i) == Some(OtherFormat::MembershipHmacSha256)),
        "HMACSHA256 among the indexes"
    );
    let people: Vec<(String, String)> = csv::Reader::from_reader(credentials.as_slice())
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    let hash_of = |user: &str| -> String {
        conn.query_row(
            "SELECT PasswordHash FROM AspNetUsers WHERE UserName = ?1",
            [user],
            |r| r.get(0),
        )
        .unwrap()
    };

    load(&w);
    let mut logged_in = 0;
    let mut skipped = 0;
    for (user, password) in &people {
        let hash = hash_of(user);
        if ferry_passwords::PasswordHash::parse(&hash).is_err() {
            continue;
        }
        let r = login(&w, user, password);
        if r.stderr.contains("refused: locked out") || r.stderr.contains("refused: no user named") {
            // The fixture's locked-out showcase users are refused, and
            // the one with another's e-mail failed its load on purpose.
            skipped += 1;
            continue;
        }
        assert_eq!(r.code, 0, "{user} ({:.12}…): {}", hash, r.stderr);
        assert_eq!(algorithm_of(&w, user), "pbkdf2", "{user} is re-hashed");
        logged_in += 1;
    }
    assert!(logged_in >= 40, "{logged_in} users logged in");
    assert!(skipped <= 4, "{skipped} locked out or not loaded");
}
