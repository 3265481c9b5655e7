//! The embedded store: one SQLite file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension as _};
use serde_json::{Map, Value};

use crate::import::{
    carried_by_user_name, otp_key, user_name_key, Encoded, Item, Outcome, Policy, Reason,
    RunCounts, Status,
};
use crate::key::{self, Key};
use crate::model::{HashedPassword, ImportRecord, OtpAddress, OtpChannel, RoleImport, TotpDevice};
use crate::{normalize, schema};

/// What can go wrong with the store itself (record problems are [`Outcome`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store file could not be opened or created.
    #[error("`{}`: {message}", path.display())]
    Open {
        /// The store file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The store was written by a newer ferry.
    #[error("`{}`: store schema version {found} is newer than this ferry knows ({known}); use a newer ferry", path.display())]
    Newer {
        /// The store file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// SQLite failed (the cause is in the message, not a `source`, so it is said once).
    #[error("store: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Sqlite(e)
    }
}

/// An import run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunId(pub i64);

/// A user as login sees it.
#[derive(Debug, Clone)]
pub struct StoredUser {
    /// Row id.
    pub id: i64,
    /// Subject id.
    pub subject_id: String,
    /// The stored password.
    pub password: Option<HashedPassword>,
    /// Lockout end (RFC 3339).
    pub lockout_end: Option<String>,
    /// Lockout enabled.
    pub lockout_enabled: bool,
    /// Two-factor enabled.
    pub two_factor_enabled: bool,
    /// TOTP devices.
    pub totp_devices: Vec<TotpDevice>,
}

/// What the store holds for one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The profile attributes.
    pub profile: Map<String, Value>,
    /// The password.
    pub password: Option<HashedPassword>,
    /// OTP addresses.
    pub otp_addresses: u64,
    /// External logins.
    pub external_logins: u64,
    /// Passkeys.
    pub passkeys: u64,
    /// TOTP devices.
    pub totp_devices: u64,
    /// Recovery codes.
    pub recovery_codes: u64,
    /// Role ids, sorted.
    pub roles: Vec<String>,
}

/// The embedded store.
pub struct SqliteStore {
    conn: Connection,
    recovery_iterations: u32,
}

/// The page size of a new store. Against SQLite's default of 4 KiB, 32 KiB pages load a
/// million users 10-20% faster (fewer, shallower B-tree pages to search, write and
/// checkpoint); a store keeps the page size it was created with.
const PAGE_SIZE: u32 = 32 * 1024;

/// The stored password of a user row.
fn password_of(conn: &Connection, user_id: i64) -> rusqlite::Result<Option<HashedPassword>> {
    conn.prepare_cached(
        "SELECT algorithm, hash, salt, parameters FROM passwords WHERE user_id = ?1",
    )?
    .query_row([user_id], |r| {
        let params: String = r.get(3)?;
        Ok(HashedPassword {
            algorithm: r.get(0)?,
            hash: r.get(1)?,
            salt: r.get(2)?,
            parameters: serde_json::from_str(&params).unwrap_or_default(),
        })
    })
    .optional()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

fn subject_of(sp: &Connection, user_id: Option<i64>) -> rusqlite::Result<String> {
    let Some(id) = user_id else {
        return Ok("?".into());
    };
    sp.prepare_cached("SELECT subject_id FROM users WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
        .map(|s| s.unwrap_or_else(|| "?".into()))
}

fn owner(sp: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<Option<i64>> {
    sp.prepare_cached(sql)?
        .query_row(p, |r| r.get(0))
        .optional()
}

impl SqliteStore {
    /// Opens the store at `path`, creating it (owner-only) if missing, and migrates its
    /// schema to the current version.
    pub fn open(path: &Path) -> Result<SqliteStore, Error> {
        let open_err = |e: rusqlite::Error| Error::Open {
            path: path.into(),
            message: e.to_string(),
        };
        let existed = path.exists();
        let mut conn = Connection::open(path).map_err(open_err)?;
        if !existed {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
            }
        }
        if !existed {
            // Set before the first table: a store's page size is fixed once it has pages.
            conn.pragma_update(None, "page_size", PAGE_SIZE)
                .map_err(open_err)?;
        }
        conn.execute_batch(
            // A fixed page cache (128 MiB) holds the dirty index pages of a large batch, so
            // each is written once per commit rather than spilled and rewritten.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000; PRAGMA cache_size = -131072; PRAGMA temp_store = MEMORY;",
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::NotADatabase => {
                Error::Open {
                    path: path.into(),
                    message: "not a SQLite database (is this the store file?)".into(),
                }
            }
            e => open_err(e),
        })?;
        conn.set_prepared_statement_cache_capacity(64);
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = schema::MIGRATIONS.len() as i64;
        if version > known {
            return Err(Error::Newer {
                path: path.into(),
                found: version,
                known,
            });
        }
        if version == 0 {
            let has_tables: i64 =
                conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
            if has_tables > 0 {
                return Err(Error::Open {
                    path: path.into(),
                    message: "this SQLite file has tables but is not a ferry store".into(),
                });
            }
        }
        // Foreign keys are off while migrations rebuild tables that rows refer to (dropping
        // the old table would otherwise cascade to them), and checked before each commits.
        conn.pragma_update(None, "foreign_keys", false)?;
        key::register_sql_function(&conn)?;
        for (i, migration) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(migration)?;
            let dangling: i64 =
                tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })?;
            if dangling > 0 {
                return Err(Error::Open {
                    path: path.into(),
                    message: format!(
                        "migrating the store to version {} left {dangling} rows without their user",
                        i + 1
                    ),
                });
            }
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        let recovery_iterations = conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'recovery_code_iterations'",
                [],
                |r| r.get::<_, String>(0),
            )?
            .parse()
            .unwrap_or(ferry_passwords::recovery::DEFAULT_ITERATIONS);
        Ok(SqliteStore {
            conn,
            recovery_iterations,
        })
    }

    /// The iteration count for hashing recovery codes (setting `recovery_code_iterations`).
    pub fn recovery_code_iterations(&self) -> u32 {
        self.recovery_iterations
    }

    /// Creates roles that do not exist yet; returns how many were new.
    pub fn create_roles(&mut self, roles: &[RoleImport]) -> Result<u64, Error> {
        let tx = self.conn.transaction()?;
        let mut created = 0;
        {
            let mut stmt =
                tx.prepare("INSERT OR IGNORE INTO roles (id, name, claims) VALUES (?1, ?2, ?3)")?;
            for r in roles {
                created +=
                    stmt.execute(params![r.id.as_str(), r.name, r.claims.to_string()])? as u64;
            }
        }
        tx.commit()?;
        Ok(created)
    }

    /// Starts an import run. Runs left `running` by a crash are marked `interrupted`.
    pub fn begin_run(&mut self, bundle: &str, policy: Policy) -> Result<RunId, Error> {
        self.conn.execute(
            "UPDATE import_runs SET status = 'interrupted' WHERE status = 'running'",
            [],
        )?;
        self.conn.execute(
            "INSERT INTO import_runs (bundle, policy, started_at, status) VALUES (?1, ?2, ?3, 'running')",
            params![bundle, policy.as_str(), now()],
        )?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    /// Ends a run with `status` and the counts of its records, as the caller tallied
    /// them from the outcomes of what it committed (a pass over the run's result rows
    /// would cost a second per million records).
    pub fn finish_run(&mut self, run: RunId, status: &str, counts: RunCounts) -> Result<(), Error> {
        self.conn.execute(
            "UPDATE import_runs SET finished_at = ?2, status = ?3,
               created = ?4, updated = ?5, skipped = ?6, failed = ?7
             WHERE id = ?1",
            params![
                run.0,
                now(),
                status,
                counts.created,
                counts.updated,
                counts.skipped,
                counts.failed
            ],
        )?;
        Ok(())
    }

    /// Starts writing records of `run` into the store: see [`Importer`].
    pub fn importer(&mut self, run: RunId, policy: Policy) -> Result<Importer<'_>, Error> {
        Importer::new(&self.conn, run, policy)
    }

    /// Imports `items` in one transaction and commits it; `seq` numbers the first
    /// record's result. The same as one [`Importer::write`] and [`Importer::commit`].
    pub fn import_batch(
        &mut self,
        run: RunId,
        policy: Policy,
        items: &[Item],
        seq: u64,
    ) -> Result<Vec<Outcome>, Error> {
        let mut importer = self.importer(run, policy)?;
        importer.seq = seq;
        let outcomes = importer.write(items)?;
        importer.commit()?;
        Ok(outcomes)
    }

    /// Finds users by login name: the user name (case-insensitively, as ASP.NET's lookup
    /// normaliser did), or else the e-mail OTP address.
    pub fn find_for_login(&self, name: &str) -> Result<Vec<StoredUser>, Error> {
        let name = Key::user_name(normalize(name.trim()));
        let mut ids: Vec<i64> = self
            .conn
            .prepare_cached(NAME_HOLDERS)?
            .query_map(params![name.hash, name.text], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            let email = Key::otp(OtpChannel::Email.as_str(), name.text);
            ids = self
                .conn
                .prepare_cached(OTP_HOLDERS)?
                .query_map(params![email.hash, "Email", email.text], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
        }
        ids.into_iter().map(|id| self.stored_user(id)).collect()
    }

    fn stored_user(&self, id: i64) -> Result<StoredUser, Error> {
        let (subject_id, lockout_end, lockout_enabled, two_factor_enabled) = self.conn.query_row(
            "SELECT subject_id, lockout_end, lockout_enabled, two_factor_enabled FROM users WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        let password = password_of(&self.conn, id)?;
        let totp_devices = self
            .conn
            .prepare("SELECT name, key FROM totp_devices WHERE user_id = ?1 ORDER BY name")?
            .query_map([id], |r| {
                Ok(TotpDevice {
                    name: r.get(0)?,
                    key: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(StoredUser {
            id,
            subject_id,
            password,
            lockout_end,
            lockout_enabled,
            two_factor_enabled,
            totp_devices,
        })
    }

    /// Replaces a user's password (the re-hash after a successful login).
    pub fn set_password(&mut self, user_id: i64, password: &HashedPassword) -> Result<(), Error> {
        self.conn.execute(
            "INSERT OR REPLACE INTO passwords (user_id, algorithm, hash, salt, parameters, set_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                user_id,
                password.algorithm,
                password.hash,
                password.salt,
                serde_json::to_string(&password.parameters).expect("a JSON map serialises"),
                now()
            ],
        )?;
        Ok(())
    }

    /// The conflicts loading `r` would meet, as `(field, message, is_error)`: keys held
    /// by other subjects are errors; an existing subject is not (the load skips or merges it).
    pub fn conflicts(&self, r: &ImportRecord) -> Result<Vec<(String, String, bool)>, Error> {
        let mut out = Vec::new();
        let holder = |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<Option<String>, Error> {
            Ok(self
                .conn
                .prepare_cached(sql)?
                .query_row(args, |row| row.get::<_, String>(0))
                .optional()?)
        };
        let me = r.subject_id.as_str();
        if holder("SELECT subject_id FROM users WHERE subject_id = ?1", &[&me])?.is_some() {
            out.push((
                "Id".to_string(),
                "subject already exists in the target: the load will skip it (or merge it with --on-conflict overwrite)".to_string(),
                false,
            ));
        }
        let mut other = |field: &str, what: String, found: Option<String>| {
            if let Some(s) = found.filter(|s| s != me) {
                out.push((
                    field.to_string(),
                    format!("{what} is already used by subject {s} in the target"),
                    true,
                ));
            }
        };
        if let (Some(name), Some(key)) = (&r.account.user_name, user_name_key(r)) {
            let found = holder(
                &format!("SELECT subject_id FROM users WHERE id IN ({NAME_HOLDERS})"),
                &[&key.hash, &key.text],
            )?;
            other("UserName", format!("user name '{name}'"), found);
        }
        for (code, value) in &r.unique_keys {
            let found = match holder(
                "SELECT u.subject_id FROM unique_keys k JOIN users u ON u.id = k.user_id
                 WHERE k.attribute = ?1 AND k.value = ?2 AND u.subject_id != ?3",
                &[code, value, &me],
            )? {
                Some(s) => Some(s),
                None => {
                    let key = Key::user_name(normalize(value));
                    holder(
                        &format!(
                            "SELECT subject_id FROM users WHERE id IN ({IMPLICIT_HOLDER}) AND subject_id != ?5"
                        ),
                        &[&key.hash, &key.text, value, &json_path(code), &me],
                    )?
                }
            };
            other(code, format!("attribute '{code}' value '{value}'"), found);
        }
        for otp in &r.otp_addresses {
            let key = otp_key(otp);
            let found = holder(
                &format!("SELECT subject_id FROM users WHERE id IN ({OTP_HOLDERS})"),
                &[&key.hash, &otp.channel.as_str(), &key.text],
            )?;
            let field = if otp.channel == OtpChannel::Email {
                "Email"
            } else {
                "PhoneNumber"
            };
            other(
                field,
                format!("{} OTP address '{}'", otp.channel.as_str(), otp.address),
                found,
            );
        }
        for l in &r.external_logins {
            let found = holder(
                "SELECT u.subject_id FROM external_logins e JOIN users u ON u.id = e.user_id WHERE e.provider = ?1 AND e.provider_key = ?2",
                &[&l.provider, &l.key],
            )?;
            other(
                "Logins",
                format!("external login {} '{}'", l.provider, l.key),
                found,
            );
        }
        for p in &r.passkeys {
            let found = holder(
                "SELECT u.subject_id FROM passkeys p JOIN users u ON u.id = p.user_id WHERE p.credential_id = ?1",
                &[&p.credential_id],
            )?;
            other("Passkeys", "a passkey credential".to_string(), found);
        }
        Ok(out)
    }

    /// What the store holds for `subject`, for `verify --target`.
    pub fn snapshot(&self, subject: &str) -> Result<Option<Snapshot>, Error> {
        let row = self
            .conn
            .prepare_cached("SELECT id, profile FROM users WHERE subject_id = ?1")?
            .query_row([subject], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        let Some((id, profile)) = row else {
            return Ok(None);
        };
        let count = |table: &str| -> Result<u64, Error> {
            Ok(self
                .conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = ?1"))?
                .query_row([id], |r| r.get::<_, i64>(0))? as u64)
        };
        let password = password_of(&self.conn, id)?;
        let roles = self
            .conn
            .prepare_cached("SELECT role_id FROM memberships WHERE user_id = ?1 ORDER BY role_id")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some(Snapshot {
            profile: serde_json::from_str(&profile).unwrap_or_default(),
            password,
            otp_addresses: count("otp_addresses")?,
            external_logins: count("external_logins")?,
            passkeys: count("passkeys")?,
            totp_devices: count("totp_devices")?,
            recovery_codes: count("recovery_codes")?,
            roles,
        }))
    }

    /// The underlying connection, for read-only reports and proofs.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Writes the records of an import run as they come: the first [`write`](Importer::write)
/// after a [`commit`](Importer::commit) opens a transaction, and everything written until
/// the next commit lands together or (after a crash) not at all, which a re-run then
/// loads. Each record is atomic on its own: a record that fails leaves no row behind.
///
/// Opening the transaction is retried while another writer holds the store, up to 3
/// attempts of the store's busy timeout each; after that the records of that write
/// fail with `ConcurrencyConflict`. Foreign keys are enforced by construction while an
/// importer lives (children get the id of the user just inserted, roles are checked),
/// so SQLite's per-row checks are off until it is dropped; dropping it uncommitted
/// rolls the open transaction back.
pub struct Importer<'c> {
    conn: &'c Connection,
    st: Stmts<'c>,
    run: RunId,
    policy: Policy,
    roles: HashSet<String>,
    stamp: String,
    seq: u64,
    open: bool,
}

impl<'c> Importer<'c> {
    fn new(conn: &'c Connection, run: RunId, policy: Policy) -> Result<Importer<'c>, Error> {
        let roles = conn
            .prepare("SELECT id FROM roles")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        conn.pragma_update(None, "foreign_keys", false)?;
        let st = match Stmts::prepare(conn) {
            Ok(st) => st,
            Err(e) => {
                conn.pragma_update(None, "foreign_keys", true)?;
                return Err(e.into());
            }
        };
        Ok(Importer {
            conn,
            st,
            run,
            policy,
            roles,
            stamp: now(),
            seq: 0,
            open: false,
        })
    }

    /// Opens the transaction, retrying a busy store; `false` if it stayed busy.
    fn begin(&mut self) -> Result<bool, Error> {
        for _ in 0..3 {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => {
                    self.open = true;
                    self.stamp = now();
                    self.st.forget_learnt();
                    return Ok(true);
                }
                Err(e) if is_busy(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// Writes `items` in order and returns their outcomes. A record fails on its own
    /// (with a reason naming the conflict); an `Err` is the store itself failing.
    pub fn write(&mut self, items: &[Item]) -> Result<Vec<Outcome>, Error> {
        if !self.open && !self.begin()? {
            self.seq += items.len() as u64;
            return Ok(items
                .iter()
                .map(|_| {
                    Outcome::failed(
                        Reason::ConcurrencyConflict,
                        "Max retries exceeded for import.",
                    )
                })
                .collect());
        }
        let mut outcomes = Vec::with_capacity(items.len());
        let mut pending = Vec::with_capacity(items.len());
        for item in items {
            let (record, encoded) = match (&item.record, &item.encoded) {
                (Ok(record), Some(encoded)) => (record, encoded),
                (Err(message), _) => {
                    outcomes.push(Outcome::failed(Reason::Invalid, message.clone()));
                    continue;
                }
                (Ok(_), None) => unreachable!("Item::new encodes every record"),
            };
            let fresh = insert_fresh(&mut self.st, record, encoded, &self.stamp, &self.roles)?;
            outcomes.push(match fresh {
                Fresh::Created(user_id) => {
                    pending.push((user_id, item));
                    Outcome::created()
                }
                Fresh::Failed(outcome) => outcome,
                Fresh::Exists(_) if self.policy == Policy::Skip => Outcome {
                    status: Status::Skipped,
                    reason: Some(Reason::ProfileAlreadyExists),
                    message: Some(format!("subject {} already exists", record.subject_id)),
                },
                Fresh::Exists(user_id) => {
                    // The user may have been created earlier in this chunk.
                    self.flush_pending(&mut pending)?;
                    self.st.forget_learnt();
                    overwrite(self.conn, user_id, record, &self.stamp, &self.roles)?
                }
            });
        }
        self.flush_pending(&mut pending)?;
        self.record_results(items, &outcomes)?;
        Ok(outcomes)
    }

    /// Writes the rows of created records that no key can conflict on: the password,
    /// TOTP devices, recovery codes and memberships, many rows to a statement.
    fn flush_pending(&mut self, pending: &mut Vec<(i64, &Item)>) -> Result<(), Error> {
        let stamp = self.stamp.as_str();
        let with_password: Vec<_> = pending
            .iter()
            .filter_map(|(id, item)| {
                let (Ok(r), Some(e)) = (&item.record, &item.encoded) else {
                    return None;
                };
                Some((*id, r.password.as_ref()?, e.password_parameters.as_deref()?))
            })
            .collect();
        self.st
            .insert_passwords
            .run(with_password.len(), |stmt, at, row| {
                let (id, p, parameters) = with_password[row];
                stmt.raw_bind_parameter(at, id)?;
                stmt.raw_bind_parameter(at + 1, &p.algorithm)?;
                stmt.raw_bind_parameter(at + 2, &p.hash)?;
                stmt.raw_bind_parameter(at + 3, &p.salt)?;
                stmt.raw_bind_parameter(at + 4, parameters)?;
                stmt.raw_bind_parameter(at + 5, stamp)
            })?;
        let records = || {
            pending
                .iter()
                .filter_map(|(id, item)| Some((*id, item.record.as_ref().ok()?)))
        };
        for (user_id, r) in records() {
            for t in &r.totp_devices {
                self.st
                    .insert_totp
                    .execute(params![user_id, t.name, t.key])?;
            }
        }
        let codes: Vec<_> = records()
            .flat_map(|(id, r)| r.hashed_recovery_codes.iter().map(move |c| (id, c)))
            .collect();
        self.st.insert_recovery.run(codes.len(), |stmt, at, row| {
            let (id, c) = codes[row];
            stmt.raw_bind_parameter(at, id)?;
            stmt.raw_bind_parameter(at + 1, &c.salt)?;
            stmt.raw_bind_parameter(at + 2, &c.hash)?;
            stmt.raw_bind_parameter(at + 3, c.iterations)
        })?;
        let memberships: Vec<_> = records()
            .flat_map(|(id, r)| r.roles.iter().map(move |role| (id, role.as_str())))
            .collect();
        self.st
            .insert_memberships
            .run(memberships.len(), |stmt, at, row| {
                let (id, role) = memberships[row];
                stmt.raw_bind_parameter(at, id)?;
                stmt.raw_bind_parameter(at + 1, role)
            })?;
        pending.clear();
        Ok(())
    }

    /// Writes the result rows of `items`.
    fn record_results(&mut self, items: &[Item], outcomes: &[Outcome]) -> Result<(), Error> {
        let (run, seq) = (self.run.0, self.seq as i64);
        self.st.insert_results.run(items.len(), |stmt, at, row| {
            let (item, outcome) = (&items[row], &outcomes[row]);
            stmt.raw_bind_parameter(at, run)?;
            stmt.raw_bind_parameter(at + 1, seq + row as i64)?;
            stmt.raw_bind_parameter(at + 2, &item.subject)?;
            stmt.raw_bind_parameter(at + 3, &item.file)?;
            stmt.raw_bind_parameter(at + 4, item.line as i64)?;
            stmt.raw_bind_parameter(at + 5, outcome.status.as_str())?;
            stmt.raw_bind_parameter(at + 6, outcome.reason.map(Reason::as_str))?;
            stmt.raw_bind_parameter(at + 7, &outcome.message)
        })?;
        self.seq += items.len() as u64;
        Ok(())
    }

    /// Commits what was written since the last commit.
    pub fn commit(&mut self) -> Result<(), Error> {
        if self.open {
            self.conn.execute_batch("COMMIT")?;
            self.open = false;
        }
        Ok(())
    }
}

impl Drop for Importer<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let _ = self.conn.pragma_update(None, "foreign_keys", true);
    }
}

/// The statements of the insert path, prepared once per importer.
struct Stmts<'c> {
    insert_unique: rusqlite::Statement<'c>,
    unique_holder: rusqlite::Statement<'c>,
    implicit_holder: rusqlite::Statement<'c>,
    insert_user: rusqlite::Statement<'c>,
    user_by_subject: rusqlite::Statement<'c>,
    name_by_hash: rusqlite::Statement<'c>,
    unhashed_name: rusqlite::Statement<'c>,
    subject_by_id: rusqlite::Statement<'c>,
    delete_user: Vec<rusqlite::Statement<'c>>,
    insert_otp: rusqlite::Statement<'c>,
    otp_by_hash: rusqlite::Statement<'c>,
    unhashed_otp: rusqlite::Statement<'c>,
    insert_login: rusqlite::Statement<'c>,
    login_holder: rusqlite::Statement<'c>,
    insert_passkey: rusqlite::Statement<'c>,
    passkey_holder: rusqlite::Statement<'c>,
    insert_totp: rusqlite::Statement<'c>,
    insert_recovery: MultiInsert<'c>,
    insert_memberships: MultiInsert<'c>,
    insert_passwords: MultiInsert<'c>,
    insert_results: MultiInsert<'c>,
    key_rows: KeyRows<'c>,
    unhashed: Unhashed<'c>,
}

/// Whether any user name or OTP address is stored without its hash (because another key
/// had taken it, see key.rs). There are none in practice, so the write path need not look
/// for them.
struct Unhashed<'c> {
    names: Fact<'c>,
    otp: Fact<'c>,
}

/// Whether some row exists, learnt once per transaction (see [`Stmts::forget_learnt`]).
struct Fact<'c> {
    /// Returns a row if the fact holds.
    query: rusqlite::Statement<'c>,
    known: Option<bool>,
}

impl<'c> Fact<'c> {
    fn new(query: rusqlite::Statement<'c>) -> Fact<'c> {
        Fact { query, known: None }
    }

    fn holds(&mut self) -> rusqlite::Result<bool> {
        match self.known {
            Some(known) => Ok(known),
            None => Ok(*self.known.insert(self.query.exists([])?)),
        }
    }

    /// A row that makes the fact hold was just written.
    fn now_holds(&mut self) {
        self.known = Some(true);
    }
}

/// Which unique attributes may have rows in `unique_keys`, learnt once per transaction
/// (see [`Stmts::forget_learnt`]): a value carried by a user name need not be looked up there
/// for an attribute that has none, as under the default mapping.
struct KeyRows<'c> {
    any: rusqlite::Statement<'c>,
    known: std::collections::HashMap<String, bool>,
}

impl KeyRows<'_> {
    fn may_exist(&mut self, code: &str) -> rusqlite::Result<bool> {
        if let Some(&known) = self.known.get(code) {
            return Ok(known);
        }
        let any = self.any.exists([code])?;
        self.known.insert(code.to_string(), any);
        Ok(any)
    }

    /// A key row of `code` is about to be written.
    fn written(&mut self, code: &str) {
        self.known.insert(code.to_string(), true);
    }
}

/// An INSERT of many rows per statement, for tables written row after row: executing
/// a statement costs more than the row it writes.
struct MultiInsert<'c> {
    one: rusqlite::Statement<'c>,
    many: rusqlite::Statement<'c>,
    columns: usize,
}

impl<'c> MultiInsert<'c> {
    /// Rows per statement.
    const ROWS: usize = 50;

    /// `head` is `INSERT [OR IGNORE] INTO table (column, …)` with `columns` columns.
    fn prepare(c: &'c Connection, head: &str, columns: usize) -> rusqlite::Result<Self> {
        let sql = |rows: usize| {
            let values: Vec<String> = (0..rows)
                .map(|r| {
                    let p: Vec<String> = (1..=columns)
                        .map(|k| format!("?{}", r * columns + k))
                        .collect();
                    format!("({})", p.join(", "))
                })
                .collect();
            format!("{head} VALUES {}", values.join(", "))
        };
        Ok(MultiInsert {
            one: c.prepare(&sql(1))?,
            many: c.prepare(&sql(Self::ROWS))?,
            columns,
        })
    }

    /// Inserts `rows` rows: `bind(statement, first, row)` binds the columns of row `row`
    /// as parameters `first`, `first + 1`, ….
    fn run(
        &mut self,
        rows: usize,
        mut bind: impl FnMut(&mut rusqlite::Statement<'c>, usize, usize) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        let mut row = 0;
        while rows - row >= Self::ROWS {
            for k in 0..Self::ROWS {
                bind(&mut self.many, 1 + k * self.columns, row + k)?;
            }
            self.many.raw_execute()?;
            row += Self::ROWS;
        }
        for row in row..rows {
            bind(&mut self.one, 1, row)?;
            self.one.raw_execute()?;
        }
        Ok(())
    }
}

impl<'c> Stmts<'c> {
    fn prepare(c: &'c Connection) -> rusqlite::Result<Stmts<'c>> {
        Ok(Stmts {
            insert_unique: c.prepare(INSERT_UNIQUE)?,
            unique_holder: c.prepare(UNIQUE_HOLDER)?,
            implicit_holder: c.prepare(IMPLICIT_HOLDER)?,
            insert_user: c.prepare(
                "INSERT OR IGNORE INTO users (subject_id, profile, user_name, normalized_user_name, user_name_hash,
                    email_confirmed, phone_number_confirmed, two_factor_enabled, lockout_end, lockout_enabled,
                    access_failed_count, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            )?,
            user_by_subject: c.prepare("SELECT id FROM users WHERE subject_id = ?1")?,
            name_by_hash: c.prepare(NAME_BY_HASH)?,
            unhashed_name: c.prepare(UNHASHED_NAME)?,
            subject_by_id: c.prepare("SELECT subject_id FROM users WHERE id = ?1")?,
            delete_user: USER_TABLES
                .iter()
                .map(|(table, column)| c.prepare(&format!("DELETE FROM {table} WHERE {column} = ?1")))
                .collect::<rusqlite::Result<_>>()?,
            insert_otp: c.prepare(INSERT_OTP)?,
            otp_by_hash: c.prepare(OTP_BY_HASH)?,
            unhashed_otp: c.prepare(UNHASHED_OTP)?,
            insert_login: c.prepare(
                "INSERT OR IGNORE INTO external_logins (provider, provider_key, display_name, user_id) VALUES (?1, ?2, ?3, ?4)",
            )?,
            login_holder: c.prepare("SELECT user_id FROM external_logins WHERE provider = ?1 AND provider_key = ?2")?,
            insert_passkey: c.prepare(
                "INSERT OR IGNORE INTO passkeys (credential_id, user_id, public_key_cose, algorithm, sign_count,
                    backup_eligible, backed_up, aaguid, name) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?,
            passkey_holder: c.prepare("SELECT user_id FROM passkeys WHERE credential_id = ?1")?,
            insert_totp: c.prepare("INSERT OR IGNORE INTO totp_devices (user_id, name, key) VALUES (?1, ?2, ?3)")?,
            insert_recovery: MultiInsert::prepare(
                c,
                "INSERT INTO recovery_codes (user_id, salt, hash, iterations)",
                4,
            )?,
            // A record may name a role twice.
            insert_memberships: MultiInsert::prepare(
                c,
                "INSERT OR IGNORE INTO memberships (user_id, role_id)",
                2,
            )?,
            insert_passwords: MultiInsert::prepare(
                c,
                "INSERT INTO passwords (user_id, algorithm, hash, salt, parameters, set_at)",
                6,
            )?,
            insert_results: MultiInsert::prepare(
                c,
                "INSERT INTO import_results (run_id, seq, subject_id, file, line, status, reason, message)",
                8,
            )?,
            unhashed: Unhashed {
                names: Fact::new(c.prepare(
                    "SELECT 1 FROM users WHERE user_name_hash IS NULL AND normalized_user_name IS NOT NULL LIMIT 1",
                )?),
                otp: Fact::new(c.prepare(
                    "SELECT 1 FROM otp_addresses WHERE key_hash IS NULL LIMIT 1",
                )?),
            },
            key_rows: KeyRows {
                any: c.prepare("SELECT 1 FROM unique_keys WHERE attribute = ?1 LIMIT 1")?,
                known: Default::default(),
            },
        })
    }

    /// Forgets what was learnt about the store's rows ([`KeyRows`], [`Unhashed`]): at each
    /// transaction, as another writer may have written since, and after each merge.
    fn forget_learnt(&mut self) {
        self.key_rows.known.clear();
        self.unhashed.names.known = None;
        self.unhashed.otp.known = None;
    }

    fn subject(&mut self, user_id: Option<i64>) -> rusqlite::Result<String> {
        match user_id {
            None => Ok("?".into()),
            Some(id) => Ok(self
                .subject_by_id
                .query_row([id], |r| r.get(0))
                .optional()?
                .unwrap_or_else(|| "?".into())),
        }
    }
}

/// Every table that holds a user's rows, with its user column: what undoing a new user
/// deletes (children first, the user row last).
const USER_TABLES: [(&str, &str); 9] = [
    ("unique_keys", "user_id"),
    ("passwords", "user_id"),
    ("otp_addresses", "user_id"),
    ("external_logins", "user_id"),
    ("passkeys", "user_id"),
    ("totp_devices", "user_id"),
    ("recovery_codes", "user_id"),
    ("memberships", "user_id"),
    ("users", "id"),
];

/// The JSON path of attribute `code` in a profile.
fn json_path(code: &str) -> String {
    format!("$.\"{code}\"")
}

/// The users with user-name key `?2`, hashed `?1` ([`Key::user_name`]): under its hash,
/// or stored without it (see key.rs). There is at most one. A macro, so that
/// [`IMPLICIT_HOLDER`] can build on it at compile time.
macro_rules! name_holders {
    () => {
        "SELECT id FROM users WHERE user_name_hash = ?1 AND normalized_user_name = ?2
        UNION ALL SELECT id FROM users WHERE user_name_hash IS NULL AND normalized_user_name = ?2"
    };
}

/// See [`name_holders`].
const NAME_HOLDERS: &str = name_holders!();

/// The user that carries attribute value `?3` by its user name (see
/// [`carried_by_user_name`]): `?2` the value normalized and `?1` its hash
/// ([`Key::user_name`]), `?4` the attribute's JSON path.
const IMPLICIT_HOLDER: &str = concat!(
    "SELECT id FROM users WHERE id IN (",
    name_holders!(),
    ") AND user_name = ?3 AND json_type(profile, ?4) = 'text' AND json_extract(profile, ?4) = ?3"
);

/// The user whose name has hash `?1`, and that name (it may be another name).
const NAME_BY_HASH: &str = "SELECT id, normalized_user_name FROM users WHERE user_name_hash = ?1";

/// The user whose name `?1` is stored without its hash.
const UNHASHED_NAME: &str =
    "SELECT id FROM users WHERE user_name_hash IS NULL AND normalized_user_name = ?1";

/// The holders of OTP key `?3` on channel `?2`, hashed `?1` ([`Key::otp`]): under its
/// hash, or stored without it. There is at most one.
const OTP_HOLDERS: &str =
    "SELECT user_id FROM otp_addresses WHERE key_hash = ?1 AND channel = ?2 AND normalized = ?3
    UNION ALL SELECT user_id FROM otp_addresses WHERE key_hash IS NULL AND channel = ?2 AND normalized = ?3";

/// The OTP address whose key has hash `?1`: its holder, channel and key.
const OTP_BY_HASH: &str =
    "SELECT user_id, channel, normalized FROM otp_addresses WHERE key_hash = ?1";

/// The holder of OTP key `?2` on channel `?1` stored without its hash.
const UNHASHED_OTP: &str =
    "SELECT user_id FROM otp_addresses WHERE key_hash IS NULL AND channel = ?1 AND normalized = ?2";

/// Writes an OTP address unless its key's hash is taken.
const INSERT_OTP: &str =
    "INSERT OR IGNORE INTO otp_addresses (channel, normalized, key_hash, address, verified, user_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// The statements [`claim_unique_key`] runs.
struct KeyStmts<'s, 'c> {
    /// [`INSERT_UNIQUE`].
    insert: &'s mut rusqlite::Statement<'c>,
    /// [`UNIQUE_HOLDER`].
    explicit: &'s mut rusqlite::Statement<'c>,
    /// [`IMPLICIT_HOLDER`].
    implicit: &'s mut rusqlite::Statement<'c>,
}

const INSERT_UNIQUE: &str =
    "INSERT OR IGNORE INTO unique_keys (attribute, value, user_id) VALUES (?1, ?2, ?3)";
const UNIQUE_HOLDER: &str = "SELECT user_id FROM unique_keys WHERE attribute = ?1 AND value = ?2";

/// Writes unique value `value` of attribute `code` for user `user_id` as a key row,
/// unless the user row carries it (`carried`, see [`carried_by_user_name`]), and returns
/// another user that holds the value, if one does. A value just written as a key row may
/// still be carried by another user's user name; any other value may be held as a key row.
fn claim_unique_key(
    st: KeyStmts<'_, '_>,
    user_id: i64,
    code: &str,
    value: &str,
    carried: bool,
) -> rusqlite::Result<Option<i64>> {
    let written = !carried && st.insert.execute(params![code, value, user_id])? == 1;
    let mut rows = if written {
        let key = Key::user_name(normalize(value));
        st.implicit
            .query(params![key.hash, key.text, value, json_path(code)])?
    } else {
        st.explicit.query(params![code, value])?
    };
    while let Some(row) = rows.next()? {
        let holder: i64 = row.get(0)?;
        if holder != user_id {
            return Ok(Some(holder));
        }
    }
    Ok(None)
}

/// The statements [`claim_otp_address`] runs.
struct OtpStmts<'s, 'c> {
    /// [`INSERT_OTP`].
    insert: &'s mut rusqlite::Statement<'c>,
    /// [`OTP_BY_HASH`].
    by_hash: &'s mut rusqlite::Statement<'c>,
    /// [`UNHASHED_OTP`].
    unhashed: &'s mut rusqlite::Statement<'c>,
}

/// What [`claim_otp_address`] did.
struct OtpClaim {
    /// Another user that holds the key (then nothing was written).
    other: Option<i64>,
    /// The address was written without its hash, which another key had taken.
    unhashed: bool,
}

/// Writes OTP address `otp` (its key `key`) for user `user_id` unless the user has it
/// already or another user holds it. `unhashed_may_exist` says whether keys stored
/// without their hash may exist (`true` is always correct; `false` saves a lookup).
fn claim_otp_address(
    st: OtpStmts<'_, '_>,
    user_id: i64,
    otp: &OtpAddress,
    key: &Key,
    unhashed_may_exist: bool,
) -> rusqlite::Result<OtpClaim> {
    let channel = otp.channel.as_str();
    let held = |other: i64| OtpClaim {
        other: Some(other).filter(|&o| o != user_id),
        unhashed: false,
    };
    if unhashed_may_exist {
        if let Some(holder) = st
            .unhashed
            .query_row(params![channel, key.text], |row| row.get(0))
            .optional()?
        {
            return Ok(held(holder));
        }
    }
    let row = params![
        channel,
        key.text,
        key.hash,
        otp.address,
        otp.verified,
        user_id
    ];
    if st.insert.execute(row)? == 1 {
        return Ok(OtpClaim {
            other: None,
            unhashed: false,
        });
    }
    let (holder, its_channel, its_key): (i64, String, String) = st
        .by_hash
        .query_row([key.hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if its_channel == channel && its_key == key.text {
        return Ok(held(holder));
    }
    // Another key has this hash: this one is stored without it.
    let row = params![
        channel,
        key.text,
        None::<i64>,
        otp.address,
        otp.verified,
        user_id
    ];
    st.insert.execute(row)?;
    Ok(OtpClaim {
        other: None,
        unhashed: true,
    })
}

/// The result of inserting a record as a new user.
enum Fresh {
    /// Created with this row id: its keys are in; the rows no key can conflict on
    /// (password, TOTP devices, recovery codes, memberships) are for the caller to write.
    Created(i64),
    /// Failed, with nothing left behind.
    Failed(Outcome),
    /// The subject exists: its row id.
    Exists(i64),
}

/// Inserts a record as a new user. Every key is inserted with `OR IGNORE`; a key that
/// turns out to be held by another subject undoes the record by deleting the rows just
/// written (see [`USER_TABLES`]). No savepoint is needed: a savepoint would copy every
/// page the record touches into a sub-journal, which costs more than the writes.
fn insert_fresh(
    st: &mut Stmts<'_>,
    r: &ImportRecord,
    e: &Encoded,
    stamp: &str,
    roles: &HashSet<String>,
) -> rusqlite::Result<Fresh> {
    if let Some(role) = r.roles.iter().find(|role| !roles.contains(role.as_str())) {
        return Ok(Fresh::Failed(Outcome::failed(
            Reason::MembershipRoleMissing,
            format!("Role '{role}' does not exist."),
        )));
    }
    let a = &r.account;
    let name = e.user_name.as_ref();
    let insert_user = |st: &mut Stmts<'_>, hash: Option<i64>| {
        let inserted = st.insert_user.insert(params![
            r.subject_id.as_str(),
            e.profile,
            a.user_name,
            name.map(|k| &k.text),
            hash,
            a.email_confirmed,
            a.phone_number_confirmed,
            a.two_factor_enabled,
            e.lockout_end,
            a.lockout_enabled,
            a.access_failed_count,
            stamp
        ]);
        match inserted {
            Ok(id) => Ok(Some(id)),
            Err(rusqlite::Error::StatementChangedRows(0)) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let name_conflict = |st: &mut Stmts<'_>, holder: Option<i64>| -> rusqlite::Result<Fresh> {
        Ok(Fresh::Failed(Outcome::failed(
            Reason::ProfileUniqueKeyConflict,
            format!(
                "user name '{}' is already used by subject {}",
                a.user_name.as_deref().unwrap_or(""),
                st.subject(holder)?
            ),
        )))
    };
    let user_id = match (insert_user(st, name.map(|k| k.hash))?, name) {
        (Some(id), _) => id,
        (None, name) => {
            // Not written: the subject exists, or else the user name's hash is taken.
            if let Some(id) = st
                .user_by_subject
                .query_row([r.subject_id.as_str()], |row| row.get(0))
                .optional()?
            {
                return Ok(Fresh::Exists(id));
            }
            let Some(name) = name else {
                return Err(rusqlite::Error::StatementChangedRows(0));
            };
            let (holder, its_name): (i64, String) = st
                .name_by_hash
                .query_row([name.hash], |row| Ok((row.get(0)?, row.get(1)?)))?;
            if its_name == name.text {
                return name_conflict(st, Some(holder));
            }
            let unhashed = st
                .unhashed_name
                .query_row([&name.text], |row| row.get(0))
                .optional()?;
            if unhashed.is_some() {
                return name_conflict(st, unhashed);
            }
            // Another name has this hash: this one is stored without it.
            st.unhashed.names.now_holds();
            match insert_user(st, None)? {
                Some(id) => id,
                None => return Err(rusqlite::Error::StatementChangedRows(0)),
            }
        }
    };
    let conflict = |st: &mut Stmts<'_>,
                    reason: Reason,
                    what: String,
                    holder: Option<i64>|
     -> rusqlite::Result<Fresh> {
        let message = format!("{what} is already used by subject {}", st.subject(holder)?);
        for delete in st.delete_user.iter_mut() {
            delete.execute([user_id])?;
        }
        Ok(Fresh::Failed(Outcome::failed(reason, message)))
    };
    // A name stored without its hash (another name had taken it) is found only here.
    if let Some(name) = name {
        if st.unhashed.names.holds()? {
            let holder = st
                .unhashed_name
                .query_map([&name.text], |row| row.get::<_, i64>(0))?
                .find(|h| h.as_ref().map_or(true, |&h| h != user_id))
                .transpose()?;
            if holder.is_some() {
                let what = format!("user name '{}'", a.user_name.as_deref().unwrap_or(""));
                return conflict(st, Reason::ProfileUniqueKeyConflict, what, holder);
            }
        }
    }
    for ((code, value), carried) in r.unique_keys.iter().zip(&e.carried) {
        if *carried && !st.key_rows.may_exist(code)? {
            // Only a key row could hold a value carried by a user name, and none can.
            continue;
        }
        if !*carried {
            st.key_rows.written(code);
        }
        let keys = KeyStmts {
            insert: &mut st.insert_unique,
            explicit: &mut st.unique_holder,
            implicit: &mut st.implicit_holder,
        };
        let holder = claim_unique_key(keys, user_id, code, value, *carried)?;
        if holder.is_some() {
            return conflict(
                st,
                Reason::ProfileUniqueKeyConflict,
                format!("attribute '{code}' value '{value}'"),
                holder,
            );
        }
    }
    for (otp, key) in r.otp_addresses.iter().zip(&e.otp_keys) {
        let unhashed_may_exist = st.unhashed.otp.holds()?;
        let otp_st = OtpStmts {
            insert: &mut st.insert_otp,
            by_hash: &mut st.otp_by_hash,
            unhashed: &mut st.unhashed_otp,
        };
        let claim = claim_otp_address(otp_st, user_id, otp, key, unhashed_may_exist)?;
        if claim.unhashed {
            st.unhashed.otp.now_holds();
        }
        if claim.other.is_some() {
            let what = format!("{} OTP address '{}'", otp.channel.as_str(), otp.address);
            return conflict(st, Reason::AuthenticatorKeyConflict, what, claim.other);
        }
    }
    for l in &r.external_logins {
        if st
            .insert_login
            .execute(params![l.provider, l.key, l.display_name, user_id])?
            == 0
        {
            let holder = st
                .login_holder
                .query_row(params![l.provider, l.key], |row| row.get(0))
                .optional()?;
            if holder != Some(user_id) {
                let what = format!("external login {} '{}'", l.provider, l.key);
                return conflict(st, Reason::AuthenticatorKeyConflict, what, holder);
            }
        }
    }
    for p in &r.passkeys {
        let added = st.insert_passkey.execute(params![
            p.credential_id,
            user_id,
            p.public_key_cose,
            p.algorithm,
            p.sign_count,
            p.backup_eligible,
            p.backed_up,
            p.aaguid.to_vec(),
            p.name
        ])?;
        if added == 0 {
            let holder = st
                .passkey_holder
                .query_row([&p.credential_id], |row| row.get(0))
                .optional()?;
            if holder != Some(user_id) {
                use base64::Engine as _;
                let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&p.credential_id);
                return conflict(
                    st,
                    Reason::AuthenticatorKeyConflict,
                    format!("passkey credential {id}"),
                    holder,
                );
            }
        }
    }
    Ok(Fresh::Created(user_id))
}

/// Merges a record into an existing user inside a savepoint.
fn overwrite(
    conn: &Connection,
    user_id: i64,
    r: &ImportRecord,
    stamp: &str,
    roles: &HashSet<String>,
) -> Result<Outcome, Error> {
    if let Some(role) = r.roles.iter().find(|role| !roles.contains(role.as_str())) {
        return Ok(Outcome::failed(
            Reason::MembershipRoleMissing,
            format!("Role '{role}' does not exist."),
        ));
    }
    conn.execute_batch("SAVEPOINT record")?;
    let result = match merge(conn, user_id, r, stamp) {
        Ok(step) => step,
        Err(e) => {
            conn.execute_batch("ROLLBACK TO record; RELEASE record")?;
            return Err(e.into());
        }
    };
    match result {
        Ok(()) => {
            conn.execute_batch("RELEASE record")?;
            Ok(Outcome {
                status: Status::Updated,
                reason: Some(Reason::ProfileAlreadyExists),
                message: None,
            })
        }
        Err(failure) => {
            conn.execute_batch("ROLLBACK TO record; RELEASE record")?;
            Ok(failure)
        }
    }
}

type Step = Result<(), Outcome>;

/// Overwrites the account columns and the (already merged) profile of an existing user.
fn update_account(
    sp: &Connection,
    user_id: i64,
    profile: &Map<String, Value>,
    r: &ImportRecord,
    stamp: &str,
) -> rusqlite::Result<Step> {
    let a = &r.account;
    let name = user_name_key(r);
    if let Some(name) = &name {
        let other = sp
            .prepare_cached(NAME_HOLDERS)?
            .query_map(params![name.hash, name.text], |row| row.get::<_, i64>(0))?
            .find(|h| h.as_ref().map_or(true, |&h| h != user_id))
            .transpose()?;
        if other.is_some() {
            return Ok(Err(Outcome::failed(
                Reason::ProfileUniqueKeyConflict,
                format!(
                    "user name '{}' is already used by subject {}",
                    a.user_name.as_deref().unwrap_or(""),
                    subject_of(sp, other)?
                ),
            )));
        }
    }
    // Stored without its hash if another user's name has taken it (see key.rs).
    let hash = match &name {
        Some(name) => owner(
            sp,
            "SELECT id FROM users WHERE user_name_hash = ?1 AND id != ?2",
            params![name.hash, user_id],
        )?
        .is_none()
        .then_some(name.hash),
        None => None,
    };
    sp.prepare_cached(
        "UPDATE users SET profile = ?2, user_name = ?3, normalized_user_name = ?4, user_name_hash = ?5,
            email_confirmed = ?6, phone_number_confirmed = ?7, two_factor_enabled = ?8, lockout_end = ?9,
            lockout_enabled = ?10, access_failed_count = ?11, updated_at = ?12 WHERE id = ?1",
    )?
    .execute(params![
        user_id,
        serde_json::to_string(profile).expect("a JSON map serialises"),
        a.user_name,
        name.as_ref().map(|k| &k.text),
        hash,
        a.email_confirmed,
        a.phone_number_confirmed,
        a.two_factor_enabled,
        a.lockout_end.map(|t| t.to_rfc3339()),
        a.lockout_enabled,
        a.access_failed_count,
        stamp
    ])?;
    Ok(Ok(()))
}

/// Replaces the user's value of each unique attribute the record has.
fn replace_unique_keys(sp: &Connection, user_id: i64, r: &ImportRecord) -> rusqlite::Result<Step> {
    for (code, value) in &r.unique_keys {
        sp.prepare_cached("DELETE FROM unique_keys WHERE user_id = ?1 AND attribute = ?2")?
            .execute(params![user_id, code])?;
        let carried = carried_by_user_name(r, code, value);
        let (mut insert, mut explicit, mut implicit) = (
            sp.prepare_cached(INSERT_UNIQUE)?,
            sp.prepare_cached(UNIQUE_HOLDER)?,
            sp.prepare_cached(IMPLICIT_HOLDER)?,
        );
        let keys = KeyStmts {
            insert: &mut insert,
            explicit: &mut explicit,
            implicit: &mut implicit,
        };
        let holder = claim_unique_key(keys, user_id, code, value, carried)?;
        if holder.is_some() {
            return Ok(Err(Outcome::failed(
                Reason::ProfileUniqueKeyConflict,
                format!(
                    "attribute '{code}' value '{value}' is already used by subject {}",
                    subject_of(sp, holder)?
                ),
            )));
        }
    }
    Ok(Ok(()))
}

fn write_password(
    sp: &Connection,
    user_id: i64,
    r: &ImportRecord,
    stamp: &str,
) -> rusqlite::Result<()> {
    if let Some(p) = &r.password {
        sp.prepare_cached(
            "INSERT OR REPLACE INTO passwords (user_id, algorithm, hash, salt, parameters, set_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            user_id,
            p.algorithm,
            p.hash,
            p.salt,
            serde_json::to_string(&p.parameters).expect("a JSON map serialises"),
            stamp
        ])?;
    }
    Ok(())
}

/// Authenticators: new ones are added; one that belongs to another subject fails the
/// record. Recovery codes replace the old ones; TOTP devices keep the first of a name.
fn merge_authenticators(sp: &Connection, user_id: i64, r: &ImportRecord) -> rusqlite::Result<Step> {
    let conflict = |what: String, other: Option<i64>| -> rusqlite::Result<Step> {
        Ok(Err(Outcome::failed(
            Reason::AuthenticatorKeyConflict,
            format!(
                "{what} is already used by subject {}",
                subject_of(sp, other)?
            ),
        )))
    };
    for otp in &r.otp_addresses {
        let (mut insert, mut by_hash, mut unhashed) = (
            sp.prepare_cached(INSERT_OTP)?,
            sp.prepare_cached(OTP_BY_HASH)?,
            sp.prepare_cached(UNHASHED_OTP)?,
        );
        let otp_st = OtpStmts {
            insert: &mut insert,
            by_hash: &mut by_hash,
            unhashed: &mut unhashed,
        };
        let other = claim_otp_address(otp_st, user_id, otp, &otp_key(otp), true)?.other;
        if other.is_some() {
            return conflict(
                format!("{} OTP address '{}'", otp.channel.as_str(), otp.address),
                other,
            );
        }
    }
    for login in &r.external_logins {
        sp.prepare_cached(
            "INSERT OR IGNORE INTO external_logins (provider, provider_key, display_name, user_id) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![login.provider, login.key, login.display_name, user_id])?;
        let holder = owner(
            sp,
            "SELECT user_id FROM external_logins WHERE provider = ?1 AND provider_key = ?2",
            params![login.provider, login.key],
        )?;
        if holder != Some(user_id) {
            return conflict(
                format!("external login {} '{}'", login.provider, login.key),
                holder,
            );
        }
    }
    for pk in &r.passkeys {
        let same_name = owner(
            sp,
            "SELECT 1 FROM passkeys WHERE user_id = ?1 AND name = ?2",
            params![user_id, pk.name],
        )?;
        if same_name.is_some() {
            continue;
        }
        sp.prepare_cached(
            "INSERT OR IGNORE INTO passkeys (credential_id, user_id, public_key_cose, algorithm, sign_count, backup_eligible, backed_up, aaguid, name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            pk.credential_id,
            user_id,
            pk.public_key_cose,
            pk.algorithm,
            pk.sign_count,
            pk.backup_eligible,
            pk.backed_up,
            pk.aaguid.to_vec(),
            pk.name
        ])?;
        let holder = owner(
            sp,
            "SELECT user_id FROM passkeys WHERE credential_id = ?1",
            [&pk.credential_id],
        )?;
        if holder != Some(user_id) {
            use base64::Engine as _;
            let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&pk.credential_id);
            return conflict(format!("passkey credential {id}"), holder);
        }
    }
    for t in &r.totp_devices {
        sp.prepare_cached(
            "INSERT OR IGNORE INTO totp_devices (user_id, name, key) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![user_id, t.name, t.key])?;
    }
    if !r.hashed_recovery_codes.is_empty() {
        sp.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")?
            .execute([user_id])?;
        for c in &r.hashed_recovery_codes {
            sp.prepare_cached("INSERT INTO recovery_codes (user_id, salt, hash, iterations) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![user_id, c.salt, c.hash, c.iterations])?;
        }
    }
    Ok(Ok(()))
}

/// Adds memberships; the caller has checked that every role exists.
fn add_memberships(sp: &Connection, user_id: i64, r: &ImportRecord) -> rusqlite::Result<()> {
    for role in &r.roles {
        sp.prepare_cached("INSERT OR IGNORE INTO memberships (user_id, role_id) VALUES (?1, ?2)")?
            .execute(params![user_id, role.as_str()])?;
    }
    Ok(())
}

/// User Management's overwrite merge: profile overlaid per attribute (nothing removed),
/// OTP addresses and external logins united, password replaced, passkeys added unless the
/// same credential or name, TOTP first of a name wins, recovery codes replaced,
/// memberships idempotent (the caller has checked the roles). All of it in the record's
/// savepoint.
fn merge(sp: &Connection, user_id: i64, r: &ImportRecord, stamp: &str) -> rusqlite::Result<Step> {
    let old: String = sp.query_row(
        "SELECT profile FROM users WHERE id = ?1",
        [user_id],
        |row| row.get(0),
    )?;
    let mut profile: Map<String, Value> = serde_json::from_str(&old).unwrap_or_default();
    for (k, v) in &r.profile {
        profile.insert(k.clone(), v.clone());
    }
    if let Err(o) = update_account(sp, user_id, &profile, r, stamp)? {
        return Ok(Err(o));
    }
    if let Err(o) = replace_unique_keys(sp, user_id, r)? {
        return Ok(Err(o));
    }
    write_password(sp, user_id, r, stamp)?;
    if let Err(o) = merge_authenticators(sp, user_id, r)? {
        return Ok(Err(o));
    }
    add_memberships(sp, user_id, r)?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn record(subject: &str, user: &str, email: &str) -> ImportRecord {
        let mut profile = Map::new();
        profile.insert("userName".into(), Value::String(user.into()));
        ImportRecord {
            subject_id: SubjectId::new(subject).unwrap(),
            profile,
            unique_keys: vec![("userName".into(), user.into())],
            account: AccountState {
                user_name: Some(user.into()),
                ..AccountState::default()
            },
            password: Some(HashedPassword::aspnet("AQAAAA")),
            otp_addresses: vec![OtpAddress {
                channel: OtpChannel::Email,
                address: email.into(),
                verified: true,
            }],
            external_logins: vec![ExternalLogin {
                provider: "Google".into(),
                key: format!("g-{subject}"),
                display_name: None,
            }],
            passkeys: Vec::new(),
            totp_devices: vec![TotpDevice {
                name: "Default".into(),
                key: vec![1; 20],
            }],
            recovery_codes: Vec::new(),
            hashed_recovery_codes: vec![HashedRecoveryCode {
                salt: vec![0; 16],
                hash: vec![0; 32],
                iterations: 1,
            }],
            roles: Vec::new(),
        }
    }

    fn item(r: ImportRecord) -> Item {
        Item::new(Some(r.subject_id.to_string()), "f".into(), 1, Ok(r))
    }

    fn rows(store: &SqliteStore) -> Vec<i64> {
        USER_TABLES
            .iter()
            .map(|(t, _)| {
                store
                    .connection()
                    .query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_record_that_conflicts_half_way_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let run = store.begin_run("b", Policy::Skip).unwrap();
        let first = store
            .import_batch(
                run,
                Policy::Skip,
                &[item(record("s1", "alice", "a@x.org"))],
                0,
            )
            .unwrap();
        assert_eq!(first[0].status, Status::Created);
        let before = rows(&store);
        // A new user whose e-mail OTP address alice holds (ignoring case): its user row,
        // unique key and password are written before the conflict shows.
        let out = store
            .import_batch(
                run,
                Policy::Skip,
                &[item(record("s2", "bob", "A@X.ORG"))],
                1,
            )
            .unwrap();
        assert_eq!(out[0].status, Status::Failed);
        assert_eq!(out[0].reason, Some(Reason::AuthenticatorKeyConflict));
        assert_eq!(
            out[0].message.as_deref(),
            Some("Email OTP address 'A@X.ORG' is already used by subject s1")
        );
        assert_eq!(rows(&store), before, "no row of bob is left in any table");
        // A user name that differs only in case is taken too.
        let out = store
            .import_batch(
                run,
                Policy::Skip,
                &[item(record("s3", "ALICE", "c@x.org"))],
                2,
            )
            .unwrap();
        assert_eq!(out[0].reason, Some(Reason::ProfileUniqueKeyConflict));
        assert_eq!(rows(&store), before);
        // Foreign keys are enforced again after a batch.
        let fk: i64 = store
            .connection()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
    }

    #[test]
    fn a_unique_value_carried_by_a_user_name_still_conflicts_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let run = store.begin_run("b", Policy::Skip).unwrap();
        // `userName` set to another value than the account's user name, as a custom
        // mapping may do.
        let named = |subject: &str, user: &str, attribute: &str| {
            let mut r = record(subject, user, &format!("{subject}@x.org"));
            r.profile
                .insert("userName".into(), Value::String(attribute.into()));
            r.unique_keys = vec![("userName".into(), attribute.into())];
            item(r)
        };
        let out = store
            .import_batch(
                run,
                Policy::Skip,
                &[
                    named("s1", "alice", "alice"), // carried by the user row
                    named("s2", "bob", "alice"),   // a key row: alice carries it
                    named("s3", "carol", "dave"),  // a key row
                    named("s4", "dave", "dave"),   // carried: carol's row holds it
                    named("s5", "erin", "Alice"),  // values compare exactly
                ],
                0,
            )
            .unwrap();
        let messages: Vec<_> = out.iter().map(|o| o.message.as_deref()).collect();
        assert_eq!(
            messages,
            [
                None,
                Some("attribute 'userName' value 'alice' is already used by subject s1"),
                None,
                Some("attribute 'userName' value 'dave' is already used by subject s3"),
                None,
            ]
        );
        let keys: Vec<String> = store
            .connection()
            .prepare("SELECT value FROM unique_keys ORDER BY value")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, ["Alice", "dave"]);
        // A later transaction still finds the key row that holds a carried value.
        let out = store
            .import_batch(run, Policy::Skip, &[named("s6", "dave", "dave")], 5)
            .unwrap();
        assert_eq!(
            out[0].message.as_deref(),
            Some("attribute 'userName' value 'dave' is already used by subject s3")
        );
        // validate --target sees the same conflicts.
        let mut again = record("s9", "zed", "z@x.org");
        again
            .profile
            .insert("userName".into(), Value::String("alice".into()));
        again.unique_keys = vec![("userName".into(), "alice".into())];
        let found = store.conflicts(&again).unwrap();
        assert_eq!(
            found,
            [(
                "userName".to_string(),
                "attribute 'userName' value 'alice' is already used by subject s1 in the target"
                    .to_string(),
                true
            )]
        );
    }

    #[test]
    fn a_version_1_store_is_migrated_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO users (id, subject_id, profile, user_name, normalized_user_name,
                     email_confirmed, phone_number_confirmed, two_factor_enabled, lockout_enabled,
                     access_failed_count, created_at, updated_at)
                 VALUES (1, 's1', '{}', 'alice', 'ALICE', 1, 0, 0, 0, 0, 't', 't');
                 INSERT INTO otp_addresses VALUES ('Email', 'A@X.ORG', 'a@x.org', 1, 1);
                 INSERT INTO passwords VALUES (1, 'aspnet-identity', x'', x'', '{}', 't');",
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        let version: i64 = store
            .connection()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, schema::MIGRATIONS.len() as i64);
        // An existing store keeps its page size; a new one gets ferry's.
        let page_size = |store: &SqliteStore| -> u32 {
            store
                .connection()
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(page_size(&store), 4096);
        let new = SqliteStore::open(&dir.path().join("new.db")).unwrap();
        assert_eq!(page_size(&new), PAGE_SIZE);
        // The address and the user name are still there, still found by login (with the
        // user's password: rebuilding the users table cascaded nothing), and still keys.
        for name in ["A@x.org", "Alice"] {
            let found = store.find_for_login(name).unwrap();
            assert_eq!(found.len(), 1, "{name}");
            assert_eq!(found[0].subject_id, "s1");
            assert!(found[0].password.is_some());
        }
        let run = store.begin_run("b", Policy::Skip).unwrap();
        let out = store
            .import_batch(
                run,
                Policy::Skip,
                &[
                    item(record("s2", "bob", "a@X.org")),
                    item(record("s3", "ALICE", "c@x.org")),
                ],
                0,
            )
            .unwrap();
        assert_eq!(
            out[0].message.as_deref(),
            Some("Email OTP address 'a@X.org' is already used by subject s1")
        );
        assert_eq!(
            out[1].message.as_deref(),
            Some("user name 'ALICE' is already used by subject s1")
        );
    }

    #[test]
    fn keys_that_share_a_hash_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let run = store.begin_run("b", Policy::Skip).unwrap();
        store
            .import_batch(
                run,
                Policy::Skip,
                &[item(record("s1", "alice", "a@x.org"))],
                0,
            )
            .unwrap();
        // Make s1's keys collide with bob's: same hash, different text.
        store
            .connection()
            .execute(
                "UPDATE users SET user_name_hash = ?1 WHERE subject_id = 's1'",
                [Key::user_name("BOB".into()).hash],
            )
            .unwrap();
        store
            .connection()
            .execute(
                "UPDATE otp_addresses SET key_hash = ?1",
                [Key::otp("Email", "B@X.ORG".into()).hash],
            )
            .unwrap();
        let out = store
            .import_batch(
                run,
                Policy::Skip,
                &[item(record("s2", "bob", "b@x.org"))],
                1,
            )
            .unwrap();
        assert_eq!(out[0].status, Status::Created, "{:?}", out[0].message);
        for name in ["bob", "b@x.org"] {
            let found = store.find_for_login(name).unwrap();
            let subjects: Vec<_> = found.iter().map(|u| u.subject_id.as_str()).collect();
            assert_eq!(subjects, ["s2"], "{name}");
        }
        // The keys stored without their hash still keep their holder's claim.
        let out = store
            .import_batch(
                run,
                Policy::Skip,
                &[
                    item(record("s3", "BOB", "c@x.org")),
                    item(record("s4", "carl", "b@X.org")),
                ],
                2,
            )
            .unwrap();
        let messages: Vec<_> = out.iter().map(|o| o.message.as_deref()).collect();
        assert_eq!(
            messages,
            [
                Some("user name 'BOB' is already used by subject s2"),
                Some("Email OTP address 'b@X.org' is already used by subject s2"),
            ]
        );
        let conflicts = store.conflicts(&record("s9", "bob", "b@x.org")).unwrap();
        let holders: Vec<_> = conflicts.iter().filter(|c| c.2).map(|c| &c.1).collect();
        assert_eq!(holders.len(), 3, "{conflicts:?}");
        assert!(
            holders.iter().all(|m| m.contains("subject s2")),
            "{conflicts:?}"
        );
    }

    #[test]
    fn rows_written_many_to_a_statement_all_arrive() {
        // More records than one multi-row statement takes, so both statements run; every
        // record names a role twice.
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let roles: Vec<RoleImport> = ["r1", "r2"]
            .iter()
            .map(|id| RoleImport {
                id: RoleId::new(id).unwrap(),
                name: id.to_string(),
                claims: Value::Array(Vec::new()),
            })
            .collect();
        store.create_roles(&roles).unwrap();
        let run = store.begin_run("b", Policy::Skip).unwrap();
        let records = MultiInsert::ROWS + 7;
        let items: Vec<Item> = (0..records)
            .map(|i| {
                let mut r = record(&format!("s{i}"), &format!("u{i}"), &format!("{i}@x.org"));
                r.roles = ["r2", "r1", "r2"].map(|id| RoleId::new(id).unwrap()).into();
                let code = r.hashed_recovery_codes[0].clone();
                r.hashed_recovery_codes.push(code);
                item(r)
            })
            .collect();
        let out = store.import_batch(run, Policy::Skip, &items, 0).unwrap();
        assert!(out.iter().all(|o| o.status == Status::Created), "{out:?}");
        for i in [0, records - 1] {
            let snap = store.snapshot(&format!("s{i}")).unwrap().unwrap();
            assert_eq!(snap.roles, ["r1", "r2"]);
            assert_eq!(snap.recovery_codes, 2);
            assert!(snap.password.is_some());
        }
        let count = |table: &str| -> usize {
            store
                .connection()
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count("memberships"), 2 * records);
        assert_eq!(count("recovery_codes"), 2 * records);
        assert_eq!(count("passwords"), records);
        assert_eq!(count("import_results"), records);
    }

    #[test]
    fn a_missing_role_fails_the_record_and_a_newer_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let run = store.begin_run("b", Policy::Skip).unwrap();
        let mut r = record("s1", "alice", "a@x.org");
        r.roles.push(RoleId::new("admins").unwrap());
        let out = store
            .import_batch(run, Policy::Skip, &[item(r)], 0)
            .unwrap();
        assert_eq!(
            out[0].message.as_deref(),
            Some("Role 'admins' does not exist.")
        );
        assert_eq!(rows(&store).iter().sum::<i64>(), 0);
        store
            .connection()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        drop(store);
        let err = SqliteStore::open(&path).err().expect("refused");
        assert!(
            err.to_string().contains("store schema version 99 is newer"),
            "{err}"
        );
    }
}
