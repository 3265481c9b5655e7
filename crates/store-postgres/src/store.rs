//! [`PgStore`]: opening, migrating, and everything but the import itself (login, runs,
//! lookups for `validate --target` and `verify --target`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, FixedOffset, Utc};
use ferry_connect::{Engine, Spec};
use ferry_store_core::{
    normalize, ClaimKind, Error, HashedPassword, Importer, ItemPreparer, Mode, OtpChannel, Policy,
    RoleImport, RunCounts, RunEnd, RunId, RunRecord, Snapshot, Store, StoredUser, TotpDevice,
    UniqueClaim, UserRef,
};
use postgres::Client;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::claim::{self, Digest};
use crate::import::{PgImporter, UPSERT_PASSWORD};
use crate::json::JsonText;
use crate::schema::MIGRATIONS;

/// The schema a store lives in when the target names none.
pub const DEFAULT_SCHEMA: &str = "ferry";

/// The advisory lock (second key) taken while migrating; runs lock their own id.
const MIGRATION_LOCK: i32 = 0;

/// A User Management store in a PostgreSQL schema.
pub struct PgStore {
    client: RefCell<Client>,
    location: String,
    schema: String,
    /// The first key of every advisory lock of this store (from its schema's name), so
    /// that stores in other schemas of the same database never wait for each other.
    lock_space: i32,
    recovery_iterations: u32,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.location)
    }
}

pub(crate) fn backend(e: postgres::Error) -> Error {
    Error::Backend(ferry_connect::postgres::explain(&e))
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// `"name"`, quoted as an identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn lock_space(schema: &str) -> i32 {
    let d = Sha256::digest(format!("ferry store {schema}").as_bytes());
    i32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A run's advisory lock key (runs are numbered from 1; 0 is the migration lock).
pub(crate) fn run_lock(run: RunId) -> i32 {
    (run.0 % i64::from(i32::MAX)) as i32
}

impl PgStore {
    /// Opens the store `target` names (a `postgres://` URL or an Npgsql connection
    /// string; `schema=` or `Search Path=` chooses the schema, `ferry` by default). In
    /// [`Mode::ReadWrite`] the schema and its tables are created or migrated, under an
    /// advisory lock so that loaders starting together migrate once; in
    /// [`Mode::ReadOnly`] nothing is created and every transaction is read-only.
    pub fn open(target: &str, mode: Mode) -> Result<PgStore, Error> {
        let address = match Spec::parse(target) {
            Ok(Spec::Server(a)) if a.engine == Engine::Postgres => a,
            Ok(_) => {
                return Err(Error::Open {
                    target: "(the target)".into(),
                    message: "is not a PostgreSQL address".into(),
                })
            }
            Err(e) => {
                return Err(Error::Open {
                    target: "(the target)".into(),
                    message: e.to_string(),
                })
            }
        };
        let schema = address
            .schema
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_string());
        let location = format!("{} (schema {schema})", address.location());
        let open_error = |message: String| Error::Open {
            target: location.clone(),
            message,
        };
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(open_error(format!(
                "`{schema}` cannot be the store's schema: use letters, digits and '_'"
            )));
        }
        let mut client =
            ferry_connect::postgres::connect(&address).map_err(|e| open_error(e.to_string()))?;
        let pg = |e: postgres::Error| open_error(ferry_connect::postgres::explain(&e));
        // The store's tables first on the path; and no JIT: every statement of ferry's is
        // short, but the planner's estimates for tables a load is filling (not analysed
        // yet) exceed `jit_above_cost`, and compiling a plan took 68 ms, ten times the
        // query it was for.
        client
            .execute(
                "SELECT set_config('search_path', $1, false), set_config('jit', 'off', false)",
                &[&quoted(&schema)],
            )
            .map_err(pg)?;
        let mut store = PgStore {
            client: RefCell::new(client),
            location: location.clone(),
            lock_space: lock_space(&schema),
            schema,
            recovery_iterations: 10_000,
        };
        match mode {
            Mode::ReadWrite => store.migrate()?,
            Mode::ReadOnly => {
                store
                    .client
                    .get_mut()
                    .batch_execute("SET default_transaction_read_only = on")
                    .map_err(pg)?;
                store.check_readable()?;
            }
        }
        let iterations = store
            .client
            .get_mut()
            .query_opt(
                "SELECT value FROM settings WHERE key = 'recovery_code_iterations'",
                &[],
            )
            .map_err(pg)?
            .and_then(|r| r.get::<_, String>(0).parse().ok());
        if let Some(n) = iterations {
            store.recovery_iterations = n;
        }
        Ok(store)
    }

    fn open_error(&self, message: impl Into<String>) -> Error {
        Error::Open {
            target: self.location.clone(),
            message: message.into(),
        }
    }

    /// The store's schema version, or `None` when the schema holds no store.
    fn version(client: &mut Client, schema: &str) -> Result<Option<i64>, postgres::Error> {
        let table = format!("{}.schema_version", quoted(schema));
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?
            .get(0);
        if !exists {
            return Ok(None);
        }
        Ok(client
            .query_opt("SELECT version FROM schema_version", &[])?
            .map(|r| i64::from(r.get::<_, i32>(0))))
    }

    fn refuse_newer(&self, found: i64) -> Result<(), Error> {
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(Error::Newer {
                target: self.location.clone(),
                found,
                known,
            });
        }
        Ok(())
    }

    fn check_readable(&mut self) -> Result<(), Error> {
        let found = Self::version(self.client.get_mut(), &self.schema).map_err(backend)?;
        match found {
            None => Err(self.open_error(format!(
                "no ferry store in schema `{}` (a load creates it)",
                self.schema
            ))),
            Some(v) => self.refuse_newer(v),
        }
    }

    /// Creates the schema or migrates it to the current version, holding the migration
    /// lock: loaders that start together wait for the first, then find nothing to do.
    fn migrate(&mut self) -> Result<(), Error> {
        let (space, schema) = (self.lock_space, self.schema.clone());
        let client = self.client.get_mut();
        let mut tx = client.transaction().map_err(backend)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&space, &MIGRATION_LOCK],
        )
        .map_err(backend)?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {0}; CREATE TABLE IF NOT EXISTS {0}.schema_version (version integer NOT NULL)",
            quoted(&schema)
        ))
        .map_err(backend)?;
        let found = tx
            .query_opt("SELECT version FROM schema_version", &[])
            .map_err(backend)?
            .map(|r| i64::from(r.get::<_, i32>(0)));
        let found = match found {
            Some(v) => v,
            None => {
                tx.execute("INSERT INTO schema_version VALUES (0)", &[])
                    .map_err(backend)?;
                0
            }
        };
        let known = MIGRATIONS.len() as i64;
        if found > known {
            drop(tx);
            return self.refuse_newer(found);
        }
        for migration in &MIGRATIONS[found as usize..] {
            tx.batch_execute(migration).map_err(backend)?;
        }
        tx.execute("UPDATE schema_version SET version = $1", &[&(known as i32)])
            .map_err(backend)?;
        tx.commit().map_err(backend)
    }

    fn stored_user(client: &mut Client, id: i64) -> Result<StoredUser, postgres::Error> {
        let row = client.query_one(
            "SELECT subject_id, lockout_end, lockout_enabled, two_factor_enabled FROM users WHERE id = $1",
            &[&id],
        )?;
        let lockout_end: Option<DateTime<FixedOffset>> = row.get(1);
        let totp_devices = client
            .query(
                "SELECT name, key FROM totp_devices WHERE user_id = $1 ORDER BY name",
                &[&id],
            )?
            .into_iter()
            .map(|r| TotpDevice {
                name: r.get(0),
                key: r.get(1),
            })
            .collect();
        Ok(StoredUser {
            id: UserRef(id),
            subject_id: row.get(0),
            password: password_of(client, id)?,
            lockout_end: lockout_end.map(|t| t.to_rfc3339()),
            lockout_enabled: row.get(2),
            two_factor_enabled: row.get(3),
            totp_devices,
        })
    }

    fn holder_of(&self, digest: &Digest) -> Result<Option<i64>, postgres::Error> {
        Ok(self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT user_id FROM claims WHERE digest = $1",
                &[&digest.as_slice()],
            )?
            .map(|r| r.get(0)))
    }
}

/// Which of `subjects` the store has: one query for a chunk of records.
pub(crate) fn existing_of(
    client: &mut Client,
    subjects: &[&str],
) -> Result<HashSet<String>, postgres::Error> {
    Ok(client
        .query(
            "SELECT subject_id FROM users WHERE subject_id = ANY($1)",
            &[&subjects],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The subject that holds each of the claim `digests` another subject holds: one query
/// for a chunk of records.
pub(crate) fn holders_of(
    client: &mut Client,
    digests: &[&[u8]],
) -> Result<HashMap<Vec<u8>, String>, postgres::Error> {
    if digests.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(client
        .query(
            "SELECT c.digest, u.subject_id FROM claims c JOIN users u ON u.id = c.user_id
             WHERE c.digest = ANY($1)",
            &[&digests],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// A JSON object column as a map (anything else as an empty one).
fn json_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn password_of(client: &mut Client, id: i64) -> Result<Option<HashedPassword>, postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT algorithm, hash, salt, parameters FROM passwords WHERE user_id = $1",
            &[&id],
        )?
        .map(|r| HashedPassword {
            algorithm: r.get(0),
            hash: r.get(1),
            salt: r.get(2),
            parameters: json_map(r.get(3)),
        }))
}

impl Store for PgStore {
    fn describe(&self) -> String {
        self.location.clone()
    }

    fn recovery_code_iterations(&self) -> u32 {
        self.recovery_iterations
    }

    /// One chunk: a loader that meets a value another has written but not yet committed
    /// waits for that commit, so loaders side by side keep their transactions short. A
    /// commit costs PostgreSQL one WAL flush, not the rewrite of every page it touched.
    fn batch_size(&self) -> u64 {
        1_000
    }

    fn create_roles(&mut self, roles: &[RoleImport]) -> Result<u64, Error> {
        let client = self.client.get_mut();
        let mut tx = client.transaction().map_err(backend)?;
        let stmt = tx
            .prepare(
                "INSERT INTO roles (id, name, claims) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
            )
            .map_err(backend)?;
        let mut created = 0;
        for r in roles {
            let claims = r.claims.to_string();
            created += tx
                .execute(&stmt, &[&r.id.as_str(), &r.name, &JsonText(&claims)])
                .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(created)
    }

    /// Runs left `running` whose advisory lock is free are interrupted: the lock is held by
    /// the session of the process that runs it, on whichever machine, and PostgreSQL frees
    /// it when that session ends.
    fn begin_run(&mut self, bundle: &str, policy: Policy) -> Result<RunId, Error> {
        let space = self.lock_space;
        let client = self.client.get_mut();
        let mut tx = client.transaction().map_err(backend)?;
        let running: Vec<i64> = tx
            .query(
                "SELECT id FROM import_runs WHERE status = 'running' FOR UPDATE SKIP LOCKED",
                &[],
            )
            .map_err(backend)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in running {
            let key = run_lock(RunId(id));
            let free: bool = tx
                .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&space, &key])
                .map_err(backend)?
                .get(0);
            if free {
                tx.execute(
                    "UPDATE import_runs SET status = 'interrupted' WHERE id = $1",
                    &[&id],
                )
                .map_err(backend)?;
                tx.execute("SELECT pg_advisory_unlock($1, $2)", &[&space, &key])
                    .map_err(backend)?;
            }
        }
        let id: i64 = tx
            .query_one(
                "INSERT INTO import_runs (bundle, policy, started_at, status, host, pid)
                 VALUES ($1, $2, $3, 'running', $4, $5) RETURNING id",
                &[
                    &bundle,
                    &policy.as_str(),
                    &now(),
                    &host_name(),
                    &i64::from(std::process::id()),
                ],
            )
            .map_err(backend)?
            .get(0);
        // Taken before the run is visible to anyone, held until it ends or the session
        // does.
        tx.execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&space, &run_lock(RunId(id))],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(RunId(id))
    }

    fn finish_run(&mut self, run: RunId, end: &RunEnd, counts: RunCounts) -> Result<(), Error> {
        let reason = match end {
            RunEnd::Completed => None,
            RunEnd::Failed(reason) => Some(reason.as_str()),
        };
        let client = self.client.get_mut();
        let n = |v: u64| v as i64;
        client
            .execute(
                "UPDATE import_runs SET finished_at = $2, status = $3, reason = $4,
                   created = $5, updated = $6, skipped = $7, failed = $8
                 WHERE id = $1",
                &[
                    &run.0,
                    &now(),
                    &end.status(),
                    &reason,
                    &n(counts.created),
                    &n(counts.updated),
                    &n(counts.skipped),
                    &n(counts.failed),
                ],
            )
            .map_err(backend)?;
        client
            .execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&self.lock_space, &run_lock(run)],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn importer(&mut self, run: RunId, policy: Policy) -> Result<Box<dyn Importer + '_>, Error> {
        Ok(Box::new(
            PgImporter::new(self.client.get_mut(), run, policy).map_err(backend)?,
        ))
    }

    fn item_preparer(&self) -> ItemPreparer {
        claim::prepare_item
    }

    fn find_for_login(&self, name: &str) -> Result<Vec<StoredUser>, Error> {
        let name = normalize(name.trim());
        let by_name = claim::digest(&ClaimKind::UserName, &name);
        let mut id = self.holder_of(&by_name).map_err(backend)?;
        if id.is_none() {
            let email = ferry_store_core::unique::otp_key(OtpChannel::Email, &name);
            let by_email = claim::digest(&ClaimKind::OtpAddress(OtpChannel::Email), &email);
            id = self.holder_of(&by_email).map_err(backend)?;
        }
        let client = &mut self.client.borrow_mut();
        id.map(|id| Self::stored_user(client, id))
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)
    }

    fn set_password(&mut self, user: UserRef, password: &HashedPassword) -> Result<(), Error> {
        let parameters =
            serde_json::to_string(&password.parameters).expect("a JSON map serialises");
        self.client
            .get_mut()
            .execute(
                UPSERT_PASSWORD,
                &[
                    &user.0,
                    &password.algorithm,
                    &password.hash,
                    &password.salt,
                    &JsonText(&parameters),
                    &now(),
                ],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn holder(&self, claim: &UniqueClaim) -> Result<Option<String>, Error> {
        Ok(self.holders(&[claim])?.pop().flatten())
    }

    fn has_subject(&self, subject: &str) -> Result<bool, Error> {
        Ok(self
            .client
            .borrow_mut()
            .query_opt("SELECT 1 FROM users WHERE subject_id = $1", &[&subject])
            .map_err(backend)?
            .is_some())
    }

    fn existing_subjects(&self, subjects: &[&str]) -> Result<HashSet<String>, Error> {
        existing_of(&mut self.client.borrow_mut(), subjects).map_err(backend)
    }

    fn holders(&self, claims: &[&UniqueClaim]) -> Result<Vec<Option<String>>, Error> {
        let digests: Vec<Digest> = claims
            .iter()
            .map(|c| claim::digest(&c.kind, &c.key))
            .collect();
        let keys: Vec<&[u8]> = digests.iter().map(|d| d.as_slice()).collect();
        let held = holders_of(&mut self.client.borrow_mut(), &keys).map_err(backend)?;
        Ok(digests
            .iter()
            .map(|d| held.get(d.as_slice()).cloned())
            .collect())
    }

    fn snapshot(&self, subject: &str) -> Result<Option<Snapshot>, Error> {
        Ok(self.snapshots(&[subject])?.pop().flatten())
    }

    fn snapshots(&self, subjects: &[&str]) -> Result<Vec<Option<Snapshot>>, Error> {
        let rows = self
            .client
            .borrow_mut()
            .query(
                "SELECT u.subject_id, u.profile,
                   (SELECT count(*) FROM otp_addresses WHERE user_id = u.id),
                   (SELECT count(*) FROM external_logins WHERE user_id = u.id),
                   (SELECT count(*) FROM passkeys WHERE user_id = u.id),
                   (SELECT count(*) FROM totp_devices WHERE user_id = u.id),
                   (SELECT count(*) FROM recovery_codes WHERE user_id = u.id),
                   ARRAY(SELECT role_id FROM memberships WHERE user_id = u.id ORDER BY role_id COLLATE \"C\"),
                   p.algorithm, p.hash, p.salt, p.parameters
                 FROM users u LEFT JOIN passwords p ON p.user_id = u.id
                 WHERE u.subject_id = ANY($1)",
                &[&subjects],
            )
            .map_err(backend)?;
        let mut found: HashMap<String, Snapshot> = rows
            .iter()
            .map(|row| {
                let count = |i: usize| row.get::<_, i64>(i) as u64;
                let password = row
                    .get::<_, Option<String>>(8)
                    .map(|algorithm| HashedPassword {
                        algorithm,
                        hash: row.get(9),
                        salt: row.get(10),
                        parameters: json_map(row.get(11)),
                    });
                let snapshot = Snapshot {
                    profile: json_map(row.get(1)),
                    password,
                    otp_addresses: count(2),
                    external_logins: count(3),
                    passkeys: count(4),
                    totp_devices: count(5),
                    recovery_codes: count(6),
                    roles: row.get(7),
                };
                (row.get(0), snapshot)
            })
            .collect();
        Ok(subjects.iter().map(|s| found.remove(*s)).collect())
    }

    fn subjects(&self, visit: &mut dyn FnMut(&str) -> Result<(), Error>) -> Result<(), Error> {
        use postgres::fallible_iterator::FallibleIterator as _;
        let client = &mut *self.client.borrow_mut();
        // Streamed: rows arrive as the visitor takes them, never all at once.
        let mut rows = client
            .query_raw("SELECT subject_id FROM users", std::iter::empty::<i32>())
            .map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            visit(row.get(0))?;
        }
        Ok(())
    }

    fn runs(&self) -> Result<Vec<RunRecord>, Error> {
        Ok(self
            .client
            .borrow_mut()
            .query(
                "SELECT id, bundle, status, reason, created, updated, skipped, failed
                 FROM import_runs ORDER BY id",
                &[],
            )
            .map_err(backend)?
            .iter()
            .map(|r| RunRecord {
                id: RunId(r.get(0)),
                bundle: r.get(1),
                status: r.get(2),
                reason: r.get(3),
                counts: RunCounts {
                    created: r.get::<_, i64>(4) as u64,
                    updated: r.get::<_, i64>(5) as u64,
                    skipped: r.get::<_, i64>(6) as u64,
                    failed: r.get::<_, i64>(7) as u64,
                },
            })
            .collect())
    }
}
