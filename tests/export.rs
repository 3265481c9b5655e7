//! End-to-end tests of `ferry-export`: generated Identity databases of every generation
//! go in, bundles come out, and every field is checked against the source read
//! independently with plain SQL.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ferry_bundle::{BundleReader, Manifest, UserRecord};
use ferry_e2e::{fixture_seeded, run, sha256_file, Workdir};
use ferry_fixtures::ddl::snake_identifier;
use ferry_fixtures::Generation;
use rusqlite::types::Value as Sql;
use rusqlite::Connection;

fn read_bundle(dir: &Path) -> (Manifest, Vec<UserRecord>) {
    let bundle = BundleReader::open(dir).expect("bundle opens");
    assert!(bundle.check_parts().unwrap().is_empty(), "checksums match");
    let users = bundle
        .users()
        .map(|item| {
            let (loc, rec) = item.unwrap();
            rec.unwrap_or_else(|e| panic!("{loc}: {e}"))
        })
        .collect();
    (bundle.manifest().clone(), users)
}

/// Reads the source with plain SQL, independently of ferry's reader.
struct Source {
    conn: Connection,
    snake: bool,
    generation: Generation,
}

impl Source {
    fn n(&self, ident: &str) -> String {
        let name = if self.snake {
            snake_identifier(ident)
        } else {
            ident.to_string()
        };
        format!("\"{name}\"")
    }

    fn rows(&self, sql: &str, id: &str) -> Vec<Vec<Sql>> {
        let mut stmt = self.conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([id], |r| (0..n).map(|i| r.get::<_, Sql>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn user(&self, id: &str) -> BTreeMap<String, Sql> {
        let sql = format!(
            "SELECT * FROM {} WHERE {} = ?1",
            self.n("AspNetUsers"),
            self.n("Id")
        );
        let mut stmt = self.conn.prepare(&sql).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        stmt.query_row([id], |r| {
            Ok(names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), r.get::<_, Sql>(i).unwrap()))
                .collect())
        })
        .unwrap()
    }
}

fn text(v: &Sql) -> Option<String> {
    match v {
        Sql::Null => None,
        Sql::Text(t) => Some(t.clone()),
        other => panic!("expected text, got {other:?}"),
    }
}

fn flag(v: &Sql) -> bool {
    match v {
        Sql::Integer(i) => *i == 1,
        other => panic!("expected 0/1, got {other:?}"),
    }
}

fn check_user(src: &Source, user: &UserRecord) {
    let row = src.user(user.id.as_str());
    let col = |name: &str| {
        let key = if src.snake {
            snake_identifier(name)
        } else {
            name.to_string()
        };
        row.get(&key)
            .cloned()
            .unwrap_or_else(|| panic!("source has no column {key}"))
    };
    let classic = src.generation == Generation::Classic2;
    let id = user.id.as_str();
    assert_eq!(user.user_name, text(&col("UserName")), "{id} UserName");
    assert_eq!(user.email, text(&col("Email")), "{id} Email");
    assert_eq!(
        user.password_hash,
        text(&col("PasswordHash")),
        "{id} PasswordHash"
    );
    assert_eq!(
        user.security_stamp,
        text(&col("SecurityStamp")),
        "{id} SecurityStamp"
    );
    assert_eq!(
        user.phone_number,
        text(&col("PhoneNumber")),
        "{id} PhoneNumber"
    );
    assert_eq!(
        user.email_confirmed,
        flag(&col("EmailConfirmed")),
        "{id} EmailConfirmed"
    );
    assert_eq!(
        user.phone_number_confirmed,
        flag(&col("PhoneNumberConfirmed"))
    );
    assert_eq!(user.two_factor_enabled, flag(&col("TwoFactorEnabled")));
    assert_eq!(user.lockout_enabled, flag(&col("LockoutEnabled")));
    assert_eq!(
        Sql::Integer(user.access_failed_count.into()),
        col("AccessFailedCount")
    );
    if classic {
        assert_eq!(user.normalized_user_name, None);
        assert_eq!(user.concurrency_stamp, None);
        let expected = text(&col("LockoutEndDateUtc")).map(|t| {
            let naive = chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f").unwrap();
            naive.and_utc().fixed_offset()
        });
        assert_eq!(user.lockout_end, expected, "{id} LockoutEndDateUtc");
    } else {
        assert_eq!(user.normalized_user_name, text(&col("NormalizedUserName")));
        assert_eq!(user.normalized_email, text(&col("NormalizedEmail")));
        assert_eq!(user.concurrency_stamp, text(&col("ConcurrencyStamp")));
        let expected = text(&col("LockoutEnd"))
            .map(|t| chrono::DateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f%:z").unwrap());
        assert_eq!(user.lockout_end, expected, "{id} LockoutEnd");
        if let (Some(a), Some(b)) = (user.lockout_end, expected) {
            assert_eq!(a.offset(), b.offset(), "{id} LockoutEnd keeps its offset");
        }
    }
    // Custom ApplicationUser columns.
    let extra = |name: &str| {
        user.extra
            .get(&if src.snake {
                snake_identifier(name)
            } else {
                name.to_string()
            })
            .cloned()
    };
    assert_eq!(extra("FirstName"), text(&col("FirstName")).map(Into::into));
    assert_eq!(extra("LastName"), text(&col("LastName")).map(Into::into));
    assert_eq!(
        extra("DateOfBirth").unwrap(),
        text(&col("DateOfBirth"))
            .map(Into::into)
            .unwrap_or(serde_json::Value::Null)
    );
    let avatar = match col("Avatar") {
        Sql::Blob(b) => serde_json::Value::String(STANDARD.encode(b)),
        Sql::Null => serde_json::Value::Null,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        extra("Avatar").unwrap(),
        avatar,
        "{id} Avatar blob as base64"
    );
    assert_eq!(
        user.extra.len(),
        5,
        "{id}: exactly the custom columns land in Extra"
    );

    // Children, in the order the reader promises.
    let claims = src.rows(
        &format!(
            "SELECT {}, {} FROM {} WHERE {} = ?1 ORDER BY {}",
            src.n("ClaimType"),
            src.n("ClaimValue"),
            src.n("AspNetUserClaims"),
            src.n("UserId"),
            src.n("Id")
        ),
        id,
    );
    let got: Vec<(Option<String>, Option<String>)> = user
        .claims
        .iter()
        .map(|c| (c.claim_type.clone(), c.value.clone()))
        .collect();
    let want: Vec<_> = claims.iter().map(|r| (text(&r[0]), text(&r[1]))).collect();
    assert_eq!(got, want, "{id} claims");

    let display = if classic {
        "NULL".to_string()
    } else {
        src.n("ProviderDisplayName")
    };
    let logins = src.rows(
        &format!(
            "SELECT {}, {}, {display} FROM {} WHERE {} = ?1 ORDER BY 1, 2",
            src.n("LoginProvider"),
            src.n("ProviderKey"),
            src.n("AspNetUserLogins"),
            src.n("UserId")
        ),
        id,
    );
    let got: Vec<_> = user
        .logins
        .iter()
        .map(|l| {
            (
                l.login_provider.clone(),
                l.provider_key.clone(),
                l.provider_display_name.clone(),
            )
        })
        .collect();
    let want: Vec<_> = logins
        .iter()
        .map(|r| (text(&r[0]).unwrap(), text(&r[1]).unwrap(), text(&r[2])))
        .collect();
    assert_eq!(got, want, "{id} logins");

    if !classic {
        let tokens = src.rows(
            &format!(
                "SELECT {}, {}, {} FROM {} WHERE {} = ?1 ORDER BY 1, 2",
                src.n("LoginProvider"),
                src.n("Name"),
                src.n("Value"),
                src.n("AspNetUserTokens"),
                src.n("UserId")
            ),
            id,
        );
        let got: Vec<_> = user
            .tokens
            .iter()
            .map(|t| (t.login_provider.clone(), t.name.clone(), t.value.clone()))
            .collect();
        let want: Vec<_> = tokens
            .iter()
            .map(|r| (text(&r[0]).unwrap(), text(&r[1]).unwrap(), text(&r[2])))
            .collect();
        assert_eq!(got, want, "{id} tokens");
    } else {
        assert!(user.tokens.is_empty());
    }

    let roles = src.rows(
        &format!(
            "SELECT {} FROM {} WHERE {} = ?1 ORDER BY 1",
            src.n("RoleId"),
            src.n("AspNetUserRoles"),
            src.n("UserId")
        ),
        id,
    );
    let want: Vec<String> = roles.iter().map(|r| text(&r[0]).unwrap()).collect();
    assert_eq!(user.roles, want, "{id} roles");

    match src.generation {
        Generation::CoreV3 => {
            let rows = src.rows(
                &format!(
                    "SELECT {}, {} FROM {} WHERE {} = ?1 ORDER BY 1",
                    src.n("CredentialId"),
                    src.n("Data"),
                    src.n("AspNetUserPasskeys"),
                    src.n("UserId")
                ),
                id,
            );
            assert_eq!(user.passkeys.len(), rows.len(), "{id} passkeys");
            for (pk, row) in user.passkeys.iter().zip(&rows) {
                assert_eq!(Sql::Blob(pk.credential_id.0.clone()), row[0]);
                let data: serde_json::Value =
                    serde_json::from_str(&text(&row[1]).unwrap()).unwrap();
                assert_eq!(
                    serde_json::Value::Object(pk.data.clone()),
                    data,
                    "{id} passkey Data kept as it was"
                );
            }
        }
        Generation::CoreV3Preview => {
            let rows = src.rows(
                &format!(
                    "SELECT {}, {}, {}, {} FROM {} WHERE {} = ?1 ORDER BY 1",
                    src.n("CredentialId"),
                    src.n("PublicKey"),
                    src.n("SignCount"),
                    src.n("IsBackupEligible"),
                    src.n("AspNetUserPasskeys"),
                    src.n("UserId")
                ),
                id,
            );
            assert_eq!(user.passkeys.len(), rows.len(), "{id} passkeys");
            for (pk, row) in user.passkeys.iter().zip(&rows) {
                assert_eq!(Sql::Blob(pk.credential_id.0.clone()), row[0]);
                let Sql::Blob(key) = &row[1] else { panic!() };
                assert_eq!(pk.data["PublicKey"], STANDARD.encode(key));
                let Sql::Integer(count) = row[2] else {
                    panic!()
                };
                assert_eq!(pk.data["SignCount"], count);
                assert_eq!(pk.data["IsBackupEligible"], flag(&row[3]));
                assert!(pk.data["Transports"].is_array());
            }
        }
        _ => assert!(user.passkeys.is_empty()),
    }
}

fn export_and_compare(generation: Generation, snake: bool, expected_generation: &str) {
    let w = Workdir::new();
    let db = w.fixture("app.db", generation, 150, snake);
    w.export(&db, "bundle");
    let (manifest, users) = read_bundle(&w.path("bundle"));
    assert_eq!(manifest.source.generation, expected_generation);
    assert_eq!(
        manifest.source.naming,
        if snake { "snake_case" } else { "PascalCase" }
    );
    assert_eq!(manifest.counts.users, 150);
    assert_eq!(users.len(), 150);
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "users come in Id order");

    let src = Source {
        conn: Connection::open(&db).unwrap(),
        snake,
        generation,
    };
    let count: i64 = src
        .conn
        .query_row(
            &format!("SELECT COUNT(*) FROM {}", src.n("AspNetUserClaims")),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(manifest.counts.claims, count as u64);
    for user in &users {
        check_user(&src, user);
    }
    let extra: Vec<String> = ["FirstName", "LastName", "DateOfBirth", "IsActive", "Avatar"]
        .iter()
        .map(|c| {
            if snake {
                snake_identifier(c)
            } else {
                c.to_string()
            }
        })
        .collect();
    assert_eq!(manifest.source.extra_user_columns, extra);

    // Roles with their claims.
    let bundle = BundleReader::open(&w.path("bundle")).unwrap();
    let roles: Vec<_> = bundle
        .roles()
        .unwrap()
        .map(|r| r.unwrap().1.unwrap())
        .collect();
    assert_eq!(roles.len(), 6);
    if generation != Generation::Classic2 {
        let admin = roles
            .iter()
            .find(|r| r.name.as_deref() == Some("Admin"))
            .unwrap();
        assert_eq!(admin.normalized_name.as_deref(), Some("ADMIN"));
        assert_eq!(admin.claims.len(), 1);
        assert_eq!(manifest.counts.role_claims, 6);
    }
}

#[test]
fn classic_identity_2_exports_with_every_field_intact() {
    export_and_compare(Generation::Classic2, false, "classic-2");
}

#[test]
fn core_v1_exports_with_every_field_intact() {
    // Its EF migration history (EF Core 7) rules schema version 2 out.
    export_and_compare(Generation::CoreV1, false, "core-v1");
}

#[test]
fn core_v2_exports_with_every_field_intact() {
    export_and_compare(Generation::CoreV2, false, "core-v1-or-v2");
}

#[test]
fn core_v3_exports_with_every_field_intact() {
    export_and_compare(Generation::CoreV3, false, "core-v3");
}

#[test]
fn core_v3_preview_flat_passkeys_export_in_the_json_shape() {
    export_and_compare(Generation::CoreV3Preview, false, "core-v3-preview");
}

#[test]
fn snake_case_naming_exports_with_every_field_intact() {
    export_and_compare(Generation::CoreV3, true, "core-v3");
}

#[test]
fn the_source_file_is_not_modified() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 200, false);
    let before = sha256_file(&db);
    let modified = std::fs::metadata(&db).unwrap().modified().unwrap();
    w.export(&db, "bundle");
    assert_eq!(sha256_file(&db), before);
    assert_eq!(
        std::fs::metadata(&db).unwrap().modified().unwrap(),
        modified
    );
}

fn no_bundle_left(w: &Workdir) {
    assert!(!w.path("bundle").exists(), "no bundle may be left behind");
    let leftovers: Vec<_> = std::fs::read_dir(w.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left: {leftovers:?}");
}

#[test]
fn bad_sources_give_clear_errors_and_no_bundle() {
    let w = Workdir::new();
    let out = w.arg("bundle");

    let r = run(
        "ferry-export",
        &["--source", &w.arg("missing.db"), "--out", &out],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("missing.db`: no such file"),
        "{}",
        r.stderr
    );

    std::fs::write(
        w.path("notes.txt"),
        "these are not the tables you are looking for\n".repeat(100),
    )
    .unwrap();
    let r = run(
        "ferry-export",
        &["--source", &w.arg("notes.txt"), "--out", &out],
    )
    .expect_code(2);
    assert!(r.stderr.contains("not a SQLite database"), "{}", r.stderr);

    let other = w.path("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE Customers (Id TEXT PRIMARY KEY, Name TEXT);")
        .unwrap();
    let r = run(
        "ferry-export",
        &["--source", &w.arg("other.db"), "--out", &out],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("is not an ASP.NET Identity database"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("no AspNetUsers (or asp_net_users) table; tables found: Customers"),
        "{}",
        r.stderr
    );

    std::fs::write(w.path("empty.db"), b"").unwrap();
    let r = run(
        "ferry-export",
        &["--source", &w.arg("empty.db"), "--out", &out],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains("the database has no tables"),
        "{}",
        r.stderr
    );

    let partial = w.path("partial.db");
    Connection::open(&partial)
        .unwrap()
        .execute_batch(r#"CREATE TABLE "AspNetUsers" ("Id" TEXT PRIMARY KEY, "Email" TEXT);"#)
        .unwrap();
    let r = run(
        "ferry-export",
        &["--source", &w.arg("partial.db"), "--out", &out],
    )
    .expect_code(2);
    assert!(
        r.stderr
            .contains("table AspNetUsers has no UserName column"),
        "{}",
        r.stderr
    );
    no_bundle_left(&w);
}

#[test]
fn a_corrupt_row_names_table_column_and_row_and_leaves_no_bundle() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 300, false);
    let conn = Connection::open(&db).unwrap();
    // A user late in Id order, so that parts have been written when the read fails.
    let id: String = conn
        .query_row(
            r#"SELECT "Id" FROM "AspNetUsers" ORDER BY "Id" DESC LIMIT 1"#,
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute(
        r#"UPDATE "AspNetUsers" SET "LockoutEnd" = 'next tuesday' WHERE "Id" = ?1"#,
        [&id],
    )
    .unwrap();
    drop(conn);
    let r = run(
        "ferry-export",
        &[
            "--source",
            &db.display().to_string(),
            "--out",
            &w.arg("bundle"),
            "--part-size",
            "10",
        ],
    )
    .expect_code(2);
    assert!(
        r.stderr.contains(&format!(
            "table AspNetUsers, column LockoutEnd, row {id}: not a date and time: `next tuesday`"
        )),
        "{}",
        r.stderr
    );
    no_bundle_left(&w);

    // A boolean that is not 0 or 1.
    let db2 = w.fixture("app2.db", Generation::CoreV1, 20, false);
    Connection::open(&db2)
        .unwrap()
        .execute(
            r#"UPDATE "AspNetUsers" SET "EmailConfirmed" = 7 WHERE "UserName" = 'bob'"#,
            [],
        )
        .unwrap();
    let r = run(
        "ferry-export",
        &[
            "--source",
            &db2.display().to_string(),
            "--out",
            &w.arg("bundle"),
        ],
    )
    .expect_code(2);
    assert!(r.stderr.contains("column EmailConfirmed"), "{}", r.stderr);
    assert!(
        r.stderr.contains("expected a boolean (0 or 1), found 7"),
        "{}",
        r.stderr
    );
    no_bundle_left(&w);
}

#[test]
fn limit_exports_the_first_users_in_id_order() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 100, false);
    run(
        "ferry-export",
        &[
            "--source",
            &db.display().to_string(),
            "--out",
            &w.arg("bundle"),
            "--limit",
            "10",
        ],
    )
    .expect_code(0);
    let (manifest, users) = read_bundle(&w.path("bundle"));
    assert_eq!(manifest.limit, Some(10));
    assert_eq!(users.len(), 10);
    let conn = Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare(r#"SELECT "Id" FROM "AspNetUsers" ORDER BY "Id" LIMIT 10"#)
        .unwrap();
    let first: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let got: Vec<String> = users.iter().map(|u| u.id.0.clone()).collect();
    assert_eq!(got, first);
}

#[test]
fn parts_split_at_part_size_and_files_are_owner_only() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV2, 25, false);
    run(
        "ferry-export",
        &[
            "--source",
            &db.display().to_string(),
            "--out",
            &w.arg("bundle"),
            "--part-size",
            "10",
        ],
    )
    .expect_code(0);
    let (manifest, users) = read_bundle(&w.path("bundle"));
    let files: Vec<(&str, u64)> = manifest
        .parts
        .iter()
        .map(|p| (p.file.as_str(), p.records))
        .collect();
    assert_eq!(
        files,
        [
            ("users-00000.ndjson", 10),
            ("users-00001.ndjson", 10),
            ("users-00002.ndjson", 5),
            ("roles.ndjson", 6)
        ]
    );
    assert_eq!(users.len(), 25);
    use std::os::unix::fs::PermissionsExt as _;
    let dir_mode = std::fs::metadata(w.path("bundle"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700, "bundle folder is owner-only");
    for entry in std::fs::read_dir(w.path("bundle")).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?} must be owner-only", entry.file_name());
    }
}

#[test]
fn the_output_folder_is_protected() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 10, false);
    let db = db.display().to_string();
    let out = w.arg("bundle");
    run("ferry-export", &["--source", &db, "--out", &out]).expect_code(0);
    let r = run("ferry-export", &["--source", &db, "--out", &out]).expect_code(2);
    assert!(
        r.stderr.contains("is not empty; pass --force"),
        "{}",
        r.stderr
    );
    run(
        "ferry-export",
        &["--source", &db, "--out", &out, "--force", "--limit", "3"],
    )
    .expect_code(0);
    assert_eq!(
        read_bundle(&w.path("bundle")).1.len(),
        3,
        "--force replaced the bundle"
    );
    std::fs::write(w.path("bundle/notes.txt"), "mine").unwrap();
    let r = run("ferry-export", &["--source", &db, "--out", &out, "--force"]).expect_code(2);
    assert!(
        r.stderr
            .contains("it holds `notes.txt`, which is not part of a bundle"),
        "{}",
        r.stderr
    );
    assert!(w.path("bundle/notes.txt").exists());
}

#[test]
fn json_summary_on_stdout() {
    let w = Workdir::new();
    let db = w.fixture("app.db", Generation::CoreV3, 40, false);
    let r = run(
        "ferry-export",
        &[
            "--source",
            &db.display().to_string(),
            "--out",
            &w.arg("bundle"),
            "--json",
        ],
    )
    .expect_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("one JSON object");
    assert_eq!(v["counts"]["users"], 40);
    assert_eq!(v["source"]["generation"], "core-v3");
    let census = &v["password_hashes"];
    assert_eq!(census["users"], 40);
    assert!(
        census["malformed"].as_array().unwrap().len() >= 3,
        "{census}"
    );
}

#[test]
fn every_record_and_manifest_validates_against_the_json_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    let load = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(root.join(name)).unwrap()).unwrap()
    };
    let user_schema = jsonschema::validator_for(&load("user-record.schema.json")).unwrap();
    let role_schema = jsonschema::validator_for(&load("role-record.schema.json")).unwrap();
    let manifest_schema = jsonschema::validator_for(&load("manifest.schema.json")).unwrap();
    for (generation, snake) in [
        (Generation::Classic2, false),
        (Generation::CoreV1, false),
        (Generation::CoreV3, false),
        (Generation::CoreV3Preview, false),
        (Generation::CoreV3, true),
    ] {
        let w = Workdir::new();
        let db = w.fixture("app.db", generation, 120, snake);
        w.export(&db, "bundle");
        let dir = w.path("bundle");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let errors: Vec<String> = manifest_schema
            .iter_errors(&manifest)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "manifest: {errors:?}");
        for part in manifest["parts"].as_array().unwrap() {
            let file = part["file"].as_str().unwrap();
            let schema = if file == "roles.ndjson" {
                &role_schema
            } else {
                &user_schema
            };
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            for (i, line) in text.lines().enumerate() {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                let errors: Vec<String> = schema
                    .iter_errors(&record)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(errors.is_empty(), "{file}:{}: {errors:?}", i + 1);
            }
        }
    }
}

/// The golden bundle pins the exact bytes of a fixed fixture's export. After an
/// intended change of the format, regenerate it with `FERRY_UPDATE_GOLDEN=1`.
#[test]
fn golden_bundle_for_a_fixed_fixture() {
    let w = Workdir::new();
    let db = w.path("golden.db");
    fixture_seeded(&db, Generation::CoreV3, 16, 2026);
    w.export(&db, "bundle");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/core-v3-16");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("bundle/manifest.json")).unwrap())
            .unwrap();
    manifest["created_at"] = "<redacted>".into();
    manifest["source"]["location"] = "<redacted>".into();
    manifest["tool"] = "<redacted>".into();
    let manifest = serde_json::to_string_pretty(&manifest).unwrap() + "\n";
    let files = [
        ("manifest.json", manifest),
        (
            "users-00000.ndjson",
            std::fs::read_to_string(w.path("bundle/users-00000.ndjson")).unwrap(),
        ),
        (
            "roles.ndjson",
            std::fs::read_to_string(w.path("bundle/roles.ndjson")).unwrap(),
        ),
    ];
    if std::env::var_os("FERRY_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(&golden).unwrap();
        for (name, text) in &files {
            std::fs::write(golden.join(name), text).unwrap();
        }
    }
    for (name, text) in &files {
        let want = std::fs::read_to_string(golden.join(name)).unwrap_or_else(|_| {
            panic!("missing golden file {name}; run with FERRY_UPDATE_GOLDEN=1")
        });
        assert!(
            want == *text,
            "{name} differs from tests/golden/core-v3-16/{name}"
        );
    }
}
