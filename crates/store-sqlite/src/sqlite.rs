//! The store and its importer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ferry_store_core::{
    normalize, ClaimAt, ClaimKind, Encoded, Error, HashedPassword, ImportRecord, Item,
    ItemPreparer, Mode, OtpAddress, OtpChannel, Outcome, Policy, Reason, RoleImport, RunCounts,
    RunEnd, RunId, RunRecord, Snapshot, Store, StoredUser, TotpDevice, UniqueClaim, UserRef,
};
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension as _, TransactionBehavior,
};
use serde_json::{Map, Value};

use crate::key::{self, Key, KeyRef};
use crate::schema;

/// The store's own errors as the core's: the engine's message, said once.
fn backend(e: rusqlite::Error) -> Error {
    Error::Backend(e.to_string())
}

/// The embedded store.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
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

/// How long a command waits for a store that another process is writing, before it
/// gives up with an error: 120 seconds, or `FERRY_BUSY_TIMEOUT` seconds. A load holds
/// the store for one batch at a time, so two loads of the same store take turns.
pub const BUSY_TIMEOUT_SECS: u64 = 120;

fn busy_timeout_ms() -> u64 {
    static MS: OnceLock<u64> = OnceLock::new();
    *MS.get_or_init(|| {
        std::env::var("FERRY_BUSY_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map_or(BUSY_TIMEOUT_SECS * 1000, |s| (s * 1000.0) as u64)
    })
}

/// Whether this process has waited for another one's transaction: from then on it
/// pauses after each commit, so that the other one gets its turn (SQLite's lock is not
/// fair: a writer that begins its next batch at once would otherwise keep it).
static CONTENDED: AtomicBool = AtomicBool::new(false);

/// SQLite's busy handler: poll every millisecond (SQLite's own backs off to 100 ms
/// sleeps, and rarely sees the moment another writer is between two batches) until the
/// timeout.
fn wait_while_busy(attempt: i32) -> bool {
    CONTENDED.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1));
    (attempt as u64) < busy_timeout_ms()
}

/// The error of a store that stayed busy past the timeout.
fn busy_error(e: rusqlite::Error) -> Error {
    if is_busy(&e) {
        Error::Backend(format!(
            "the store stayed busy for {} s: another process is writing it ({e}); set FERRY_BUSY_TIMEOUT (seconds) to wait longer",
            busy_timeout_ms() / 1000
        ))
    } else {
        backend(e)
    }
}

/// This machine's name, as runs record it.
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Whether process `pid` of this machine is alive.
fn process_alive(pid: i64) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
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

/// What the SQLite store computes for an item on the mapping threads: the hashes of the
/// keys of its user name and OTP addresses (whose texts are the item's claims' keys), and
/// which unique values the user row carries.
struct Prepared {
    user_name: Option<i64>,
    otp: Vec<i64>,
    carried: Vec<bool>,
}

fn prepare_item(item: &mut Item) {
    if let Ok(r) = &item.record {
        item.prepared = Some(Box::new(prepared(r, &item.claims)));
    }
}

fn prepared(r: &ImportRecord, claims: &[UniqueClaim]) -> Prepared {
    let mut user_name = None;
    let mut otp = Vec::with_capacity(r.otp_addresses.len());
    for claim in claims {
        match &claim.kind {
            ClaimKind::UserName => user_name = Some(key::key_hash(&[&claim.key])),
            ClaimKind::OtpAddress(channel) => {
                otp.push(key::key_hash(&[channel.as_str(), &claim.key]))
            }
            _ => {}
        }
    }
    Prepared {
        user_name,
        otp,
        carried: r
            .unique_keys
            .iter()
            .map(|(code, value)| carried_by_user_name(r, code, value))
            .collect(),
    }
}

/// Whether a unique attribute value is carried by the user row instead of a row of
/// `unique_keys`: a string attribute whose value is the user's own user name (as
/// `userName` is under the default mapping). The user-name index already keeps that value
/// unique, ignoring case, which is stricter; writing it twice would double the work of
/// every insert.
fn carried_by_user_name(r: &ImportRecord, code: &str, value: &str) -> bool {
    r.account.user_name.as_deref() == Some(value)
        && matches!(r.profile.get(code), Some(Value::String(s)) if s == value)
}

/// The hashed key of an OTP address (see [`ferry_store_core::unique::otp_key`]).
fn otp_key(otp: &OtpAddress) -> Key {
    Key::otp(
        otp.channel.as_str(),
        ferry_store_core::unique::otp_key(otp.channel, &otp.address),
    )
}

/// The hashed key of a user name: ignoring case, as ASP.NET's lookup normaliser did.
fn user_name_key(r: &ImportRecord) -> Option<Key> {
    r.account
        .user_name
        .as_deref()
        .map(|n| Key::user_name(normalize(n)))
}

impl SqliteStore {
    /// Opens the store at `path`. `ReadWrite` creates it (owner-only) if missing and
    /// migrates its schema to the current version; `ReadOnly` opens an existing store of
    /// the current version without changing anything, not even its journal mode.
    pub fn open(path: &Path, mode: Mode) -> Result<SqliteStore, Error> {
        let target = path.display().to_string();
        let open_err = |e: rusqlite::Error| Error::Open {
            target: target.clone(),
            message: match e {
                rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::NotADatabase => {
                    "not a SQLite database (is this the store file?)".into()
                }
                e => e.to_string(),
            },
        };
        let existed = path.exists();
        if mode == Mode::ReadOnly && !existed {
            return Err(Error::Open {
                target,
                message: "no such store".into(),
            });
        }
        let conn = match mode {
            Mode::ReadWrite => Connection::open(path),
            Mode::ReadOnly => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
        }
        .map_err(open_err)?;
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            recovery_iterations: ferry_passwords::recovery::DEFAULT_ITERATIONS,
        };
        match mode {
            Mode::ReadWrite => {
                // Some steps of opening a new store (its journal mode) fail at once, not
                // through the busy handler, while another process creates it: they are
                // all safe to repeat, so repeat them until the busy timeout.
                let started = std::time::Instant::now();
                loop {
                    match store.prepare_for_writing(existed) {
                        Ok(()) => break,
                        Err(Prep::Sqlite(e))
                            if is_busy(&e)
                                && started.elapsed().as_millis()
                                    < u128::from(busy_timeout_ms()) =>
                        {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(Prep::Sqlite(e)) => return Err(open_err(e)),
                        Err(Prep::Store(e)) => return Err(e),
                    }
                }
            }
            Mode::ReadOnly => store.check_readable().map_err(|e| match e {
                Prep::Sqlite(e) => open_err(e),
                Prep::Store(e) => e,
            })?,
        }
        store.recovery_iterations = store
            .conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'recovery_code_iterations'",
                [],
                |r| r.get::<_, String>(0),
            )
            .map_err(open_err)?
            .parse()
            .unwrap_or(ferry_passwords::recovery::DEFAULT_ITERATIONS);
        Ok(store)
    }

    /// The schema version of the store `conn` has open at `path` (inside a transaction,
    /// when it must not change before the caller acts on it); a newer one is refused.
    fn version(conn: &Connection, path: &Path) -> Result<i64, Prep> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = schema::MIGRATIONS.len() as i64;
        if version > known {
            return Err(Prep::Store(Error::Newer {
                target: path.display().to_string(),
                found: version,
                known,
            }));
        }
        Ok(version)
    }

    fn not_ours(&self) -> Prep {
        Prep::Store(Error::Open {
            target: self.path.display().to_string(),
            message: "this SQLite file has tables but is not a ferry store".into(),
        })
    }

    /// Read-only: the store must be one of this version (a load migrates an older one).
    fn check_readable(&mut self) -> Result<(), Prep> {
        self.conn.busy_handler(Some(wait_while_busy))?;
        self.conn.execute_batch("PRAGMA query_only = 1;")?;
        let version = SqliteStore::version(&self.conn, &self.path)?;
        if version == 0 {
            return Err(self.not_ours());
        }
        if version < schema::MIGRATIONS.len() as i64 {
            return Err(Prep::Store(Error::Open {
                target: self.path.display().to_string(),
                message: format!(
                    "store schema version {version} is older than this ferry's ({}); a `ferry-import load` into it migrates it",
                    schema::MIGRATIONS.len()
                ),
            }));
        }
        Ok(())
    }

    fn prepare_for_writing(&mut self, existed: bool) -> Result<(), Prep> {
        // The store holds password hashes and TOTP keys: owner-only, whether ferry just
        // created it or it was there with wider permissions (its side files too).
        #[cfg(unix)]
        for suffix in ["", "-wal", "-shm"] {
            use std::os::unix::fs::PermissionsExt as _;
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            if let Ok(meta) = std::fs::metadata(&file) {
                if meta.permissions().mode() & 0o077 != 0 {
                    let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
                }
            }
        }
        let conn = &mut self.conn;
        // Another process may be creating, migrating or loading the same store: wait
        // for it (up to the busy timeout) rather than fail.
        conn.busy_handler(Some(wait_while_busy))?;
        if !existed {
            // Set before the first table: a store's page size is fixed once it has pages.
            conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        }
        conn.execute_batch(
            // A fixed page cache (128 MiB) holds the dirty index pages of a large batch, so
            // each is written once per commit rather than spilled and rewritten.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA cache_size = -131072; PRAGMA temp_store = MEMORY;",
        )?;
        conn.set_prepared_statement_cache_capacity(64);
        // Foreign keys are off while migrations rebuild tables that rows refer to (dropping
        // the old table would otherwise cascade to them), and checked before each commits.
        conn.pragma_update(None, "foreign_keys", false)?;
        key::register_sql_function(conn)?;
        let known = schema::MIGRATIONS.len() as i64;
        // Each migration runs under the store's write lock, and the version is read under
        // it: of two loads creating the same store, the second finds it created.
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version = SqliteStore::version(&tx, &self.path)?;
            if version == known {
                break;
            }
            if version == 0 {
                let has_tables: i64 =
                    tx.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
                if has_tables > 0 {
                    drop(tx);
                    return Err(self.not_ours());
                }
            }
            tx.execute_batch(schema::MIGRATIONS[version as usize])?;
            let dangling: i64 =
                tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })?;
            if dangling > 0 {
                return Err(Prep::Store(Error::Open {
                    target: self.path.display().to_string(),
                    message: format!(
                        "migrating the store to version {} left {dangling} rows without their user",
                        version + 1
                    ),
                }));
            }
            tx.pragma_update(None, "user_version", version + 1)?;
            tx.commit()?;
        }
        let conn = &mut self.conn;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Test only: a store that can grow by this many pages, as a nearly full disk
        // would let it, so that tests of a load that runs out of room are exact.
        if let Some(room) = std::env::var("FERRY_TEST_STORE_ROOM_PAGES")
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
        {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            conn.pragma_update(None, "max_page_count", pages + room)?;
        }
        Ok(())
    }

    /// Imports `items` in one transaction and commits it; `seq` numbers the first
    /// record's result. The same as one [`Importer`] write and commit.
    #[cfg(test)]
    fn import_batch(
        &mut self,
        run: RunId,
        policy: Policy,
        items: &[Item],
        seq: u64,
    ) -> Result<Vec<Outcome>, Error> {
        use ferry_store_core::Importer as _;
        let mut importer = SqliteImporter::new(&self.conn, run, policy).map_err(backend)?;
        importer.seq = seq;
        let outcomes = importer.write(items)?;
        importer.commit()?;
        Ok(outcomes)
    }

    fn stored_user(&self, id: i64) -> rusqlite::Result<StoredUser> {
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
            id: UserRef(id),
            subject_id,
            password,
            lockout_end,
            lockout_enabled,
            two_factor_enabled,
            totp_devices,
        })
    }

    /// The user row that holds `claim`, if any.
    fn holder_id(&self, claim: &UniqueClaim) -> rusqlite::Result<Option<i64>> {
        let one = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> rusqlite::Result<Option<i64>> {
            self.conn
                .prepare_cached(sql)?
                .query_row(p, |r| r.get(0))
                .optional()
        };
        match &claim.kind {
            ClaimKind::UserName => {
                let key = Key::user_name(claim.key.clone());
                one(NAME_HOLDERS, &[&key.hash, &key.text])
            }
            ClaimKind::Attribute(code) => {
                if let Some(id) = one(UNIQUE_HOLDER, &[code, &claim.key])? {
                    return Ok(Some(id));
                }
                let key = Key::user_name(normalize(&claim.key));
                one(
                    IMPLICIT_HOLDER,
                    &[&key.hash, &key.text, &claim.key, &json_path(code)],
                )
            }
            ClaimKind::OtpAddress(channel) => {
                let key = Key::otp(channel.as_str(), claim.key.clone());
                one(OTP_HOLDERS, &[&key.hash, &channel.as_str(), &key.text])
            }
            ClaimKind::ExternalLogin => {
                let (provider, key) = claim.key.split_once('\u{1f}').unwrap_or((&claim.key, ""));
                one(
                    "SELECT user_id FROM external_logins WHERE provider = ?1 AND provider_key = ?2",
                    &[&provider, &key],
                )
            }
            ClaimKind::Passkey => {
                let Ok(id) = URL_SAFE_NO_PAD.decode(&claim.key) else {
                    return Ok(None);
                };
                one(
                    "SELECT user_id FROM passkeys WHERE credential_id = ?1",
                    &[&id],
                )
            }
        }
    }

    /// The underlying connection, for this crate's tests.
    #[cfg(test)]
    fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// An open or migration failure: the engine's, or already the store's.
enum Prep {
    Sqlite(rusqlite::Error),
    Store(Error),
}

impl From<rusqlite::Error> for Prep {
    fn from(e: rusqlite::Error) -> Prep {
        Prep::Sqlite(e)
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn recovery_code_iterations(&self) -> u32 {
        self.recovery_iterations
    }

    fn create_roles(&mut self, roles: &[RoleImport]) -> Result<u64, Error> {
        (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut created = 0;
            {
                let mut stmt = tx.prepare(
                    "INSERT OR IGNORE INTO roles (id, name, claims) VALUES (?1, ?2, ?3)",
                )?;
                for r in roles {
                    created +=
                        stmt.execute(params![r.id.as_str(), r.name, r.claims.to_string()])? as u64;
                }
            }
            tx.commit()?;
            Ok(created)
        })()
        .map_err(busy_error)
    }

    fn begin_run(&mut self, bundle: &str, policy: Policy) -> Result<RunId, Error> {
        (|| {
            let host = host_name();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A run left `running` is interrupted if its process is gone; one of another
            // load still writing (this machine's process alive, or another machine's,
            // which cannot be asked) is left running.
            let running: Vec<(i64, Option<String>, Option<i64>)> = tx
                .prepare("SELECT id, host, pid FROM import_runs WHERE status = 'running'")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (id, run_host, pid) in running {
                let alive = match (run_host, pid) {
                    (Some(h), Some(pid)) if h == host => process_alive(pid),
                    (Some(_), Some(_)) => true,
                    _ => false,
                };
                if !alive {
                    tx.execute(
                        "UPDATE import_runs SET status = 'interrupted' WHERE id = ?1",
                        [id],
                    )?;
                }
            }
            tx.execute(
                "INSERT INTO import_runs (bundle, policy, started_at, status, host, pid)
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
                params![bundle, policy.as_str(), now(), host, std::process::id()],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(RunId(id))
        })()
        .map_err(busy_error)
    }

    fn finish_run(&mut self, run: RunId, end: &RunEnd, counts: RunCounts) -> Result<(), Error> {
        let reason = match end {
            RunEnd::Completed => None,
            RunEnd::Failed(reason) => Some(reason.as_str()),
        };
        self.conn
            .execute(
                "UPDATE import_runs SET finished_at = ?2, status = ?3, reason = ?4,
                   created = ?5, updated = ?6, skipped = ?7, failed = ?8
                 WHERE id = ?1",
                params![
                    run.0,
                    now(),
                    end.status(),
                    reason,
                    counts.created,
                    counts.updated,
                    counts.skipped,
                    counts.failed
                ],
            )
            .map_err(busy_error)?;
        Ok(())
    }

    fn importer(
        &mut self,
        run: RunId,
        policy: Policy,
    ) -> Result<Box<dyn ferry_store_core::Importer + '_>, Error> {
        Ok(Box::new(
            SqliteImporter::new(&self.conn, run, policy).map_err(backend)?,
        ))
    }

    fn item_preparer(&self) -> ItemPreparer {
        prepare_item
    }

    fn find_for_login(&self, name: &str) -> Result<Vec<StoredUser>, Error> {
        (|| {
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
            ids.into_iter()
                .map(|id| self.stored_user(id))
                .collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(backend)
    }

    fn set_password(&mut self, user: UserRef, password: &HashedPassword) -> Result<(), Error> {
        self.conn.execute(
            "INSERT OR REPLACE INTO passwords (user_id, algorithm, hash, salt, parameters, set_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                user.0,
                password.algorithm,
                password.hash,
                password.salt,
                serde_json::to_string(&password.parameters).expect("a JSON map serialises"),
                now()
            ],
        )
        .map_err(backend)?;
        Ok(())
    }

    fn holder(&self, claim: &UniqueClaim) -> Result<Option<String>, Error> {
        (|| match self.holder_id(claim)? {
            None => Ok(None),
            Some(id) => subject_of(&self.conn, Some(id)).map(Some),
        })()
        .map_err(backend)
    }

    fn has_subject(&self, subject: &str) -> Result<bool, Error> {
        self.conn
            .prepare_cached("SELECT 1 FROM users WHERE subject_id = ?1")
            .and_then(|mut s| s.exists([subject]))
            .map_err(backend)
    }

    fn snapshot(&self, subject: &str) -> Result<Option<Snapshot>, Error> {
        (|| {
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
            let count = |table: &str| -> rusqlite::Result<u64> {
                Ok(self
                    .conn
                    .prepare_cached(&format!("SELECT COUNT(*) FROM {table} WHERE user_id = ?1"))?
                    .query_row([id], |r| r.get::<_, i64>(0))? as u64)
            };
            let password = password_of(&self.conn, id)?;
            let roles = self
                .conn
                .prepare_cached(
                    "SELECT role_id FROM memberships WHERE user_id = ?1 ORDER BY role_id",
                )?
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
        })()
        .map_err(backend)
    }

    fn subjects(&self, visit: &mut dyn FnMut(&str) -> Result<(), Error>) -> Result<(), Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT subject_id FROM users")
            .map_err(backend)?;
        let mut rows = stmt.query([]).map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            let subject: String = row.get(0).map_err(backend)?;
            visit(&subject)?;
        }
        Ok(())
    }

    fn runs(&self) -> Result<Vec<RunRecord>, Error> {
        (|| {
            self.conn
                .prepare(
                    "SELECT id, bundle, status, reason, created, updated, skipped, failed
                     FROM import_runs ORDER BY id",
                )?
                .query_map([], |r| {
                    Ok(RunRecord {
                        id: RunId(r.get(0)?),
                        bundle: r.get(1)?,
                        status: r.get(2)?,
                        reason: r.get(3)?,
                        counts: RunCounts {
                            created: r.get(4)?,
                            updated: r.get(5)?,
                            skipped: r.get(6)?,
                            failed: r.get(7)?,
                        },
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(backend)
    }
}

/// Writes the records of an import run as they come: the first write after a commit
/// opens a transaction, and everything written until the next commit lands together or
/// (after a crash) not at all, which a re-run then loads. Each record is atomic on its
/// own: a record that fails leaves no row behind.
///
/// Opening the transaction is retried while another writer holds the store, up to 3
/// attempts of the store's busy timeout each; after that the records of that write
/// fail with `ConcurrencyConflict`. Foreign keys are enforced by construction while an
/// importer lives (children get the id of the user just inserted, roles are checked),
/// so SQLite's per-row checks are off until it is dropped; dropping it uncommitted
/// rolls the open transaction back.
struct SqliteImporter<'c> {
    conn: &'c Connection,
    st: Stmts<'c>,
    run: RunId,
    policy: Policy,
    roles: HashSet<String>,
    stamp: String,
    seq: u64,
    open: bool,
    /// What became of the records written since the last commit.
    uncommitted: RunCounts,
}

impl ferry_store_core::Importer for SqliteImporter<'_> {
    fn write(&mut self, items: &[Item]) -> Result<Vec<Outcome>, Error> {
        let outcomes = self.write_items(items).map_err(busy_error)?;
        for o in &outcomes {
            self.uncommitted.add(o.status);
        }
        Ok(outcomes)
    }

    fn commit(&mut self) -> Result<(), Error> {
        if self.open {
            // The run's counts are those of what it committed, even if it is killed
            // before it ends: they land with the records.
            let c = std::mem::take(&mut self.uncommitted);
            self.conn
                .execute(
                    "UPDATE import_runs SET created = created + ?2, updated = updated + ?3,
                       skipped = skipped + ?4, failed = failed + ?5 WHERE id = ?1",
                    params![self.run.0, c.created, c.updated, c.skipped, c.failed],
                )
                .map_err(busy_error)?;
            self.conn.execute_batch("COMMIT").map_err(busy_error)?;
            self.open = false;
            if CONTENDED.load(Ordering::Relaxed) {
                // Another process waits for the store: let it have the next batch.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }
}

impl<'c> SqliteImporter<'c> {
    fn new(
        conn: &'c Connection,
        run: RunId,
        policy: Policy,
    ) -> rusqlite::Result<SqliteImporter<'c>> {
        let roles = conn
            .prepare("SELECT id FROM roles")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        conn.pragma_update(None, "foreign_keys", false)?;
        let st = match Stmts::prepare(conn) {
            Ok(st) => st,
            Err(e) => {
                conn.pragma_update(None, "foreign_keys", true)?;
                return Err(e);
            }
        };
        Ok(SqliteImporter {
            conn,
            st,
            run,
            policy,
            roles,
            stamp: now(),
            seq: 0,
            open: false,
            uncommitted: RunCounts::default(),
        })
    }

    /// Opens the transaction, waiting (up to the busy timeout) while another process
    /// writes the store.
    fn begin(&mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.open = true;
        self.stamp = now();
        self.st.forget_learnt();
        Ok(())
    }

    /// Writes `items` in order and returns their outcomes.
    fn write_items(&mut self, items: &[Item]) -> rusqlite::Result<Vec<Outcome>> {
        if !self.open {
            self.begin()?;
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
            // Prepared on the mapping threads, or here for an item that was not.
            let computed;
            let prep = match item
                .prepared
                .as_ref()
                .and_then(|p| p.downcast_ref::<Prepared>())
            {
                Some(p) => p,
                None => {
                    computed = prepared(record, &item.claims);
                    &computed
                }
            };
            let fresh = insert_fresh(
                &mut self.st,
                Fields {
                    record,
                    encoded,
                    prepared: prep,
                    claims: &item.claims,
                },
                &self.stamp,
                &self.roles,
            )?;
            outcomes.push(match fresh {
                Fresh::Created(user_id) => {
                    pending.push((user_id, item));
                    Outcome::created()
                }
                Fresh::Failed(outcome) => outcome,
                Fresh::Exists(_) if self.policy == Policy::Skip => {
                    Outcome::skipped_existing(record.subject_id.as_str())
                }
                Fresh::Exists(user_id) => {
                    // The user may have been created earlier in this chunk.
                    self.flush_pending(&mut pending)?;
                    self.st.forget_learnt();
                    overwrite(
                        self.conn,
                        user_id,
                        record,
                        &item.claims,
                        &self.stamp,
                        &self.roles,
                    )?
                }
            });
        }
        self.flush_pending(&mut pending)?;
        self.record_results(items, &outcomes)?;
        Ok(outcomes)
    }

    /// Writes the rows of created records that no key can conflict on: the password,
    /// TOTP devices, recovery codes and memberships, many rows to a statement.
    fn flush_pending(&mut self, pending: &mut Vec<(i64, &Item)>) -> rusqlite::Result<()> {
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
    fn record_results(&mut self, items: &[Item], outcomes: &[Outcome]) -> rusqlite::Result<()> {
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
}

impl Drop for SqliteImporter<'_> {
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
    key: &KeyRef<'_>,
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

/// What [`insert_fresh`] writes: a record, its columns, what the mapping threads prepared
/// for it, and its claims.
struct Fields<'a> {
    record: &'a ImportRecord,
    encoded: &'a Encoded,
    prepared: &'a Prepared,
    claims: &'a [UniqueClaim],
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
    fields: Fields<'_>,
    stamp: &str,
    roles: &HashSet<String>,
) -> rusqlite::Result<Fresh> {
    let Fields {
        record: r,
        encoded: e,
        prepared: p,
        claims,
    } = fields;
    let at = ClaimAt::of(r);
    if let Some(failed) = Outcome::missing_role(r, roles) {
        return Ok(Fresh::Failed(failed));
    }
    let a = &r.account;
    // The user name's key is the first claim's.
    let name = p.user_name.map(|hash| KeyRef {
        text: &claims[0].key,
        hash,
    });
    let name = name.as_ref();
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
        Ok(Fresh::Failed(Outcome::held(
            &claims[0],
            &st.subject(holder)?,
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
    let conflict =
        |st: &mut Stmts<'_>, claim: usize, holder: Option<i64>| -> rusqlite::Result<Fresh> {
            let outcome = Outcome::held(&claims[claim], &st.subject(holder)?);
            for delete in st.delete_user.iter_mut() {
                delete.execute([user_id])?;
            }
            Ok(Fresh::Failed(outcome))
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
                return conflict(st, 0, holder);
            }
        }
    }
    for (k, ((code, value), carried)) in r.unique_keys.iter().zip(&p.carried).enumerate() {
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
            return conflict(st, at.attribute + k, holder);
        }
    }
    for (k, (otp, &hash)) in r.otp_addresses.iter().zip(&p.otp).enumerate() {
        let key = &KeyRef {
            text: &claims[at.otp + k].key,
            hash,
        };
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
            return conflict(st, at.otp + k, claim.other);
        }
    }
    for (k, l) in r.external_logins.iter().enumerate() {
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
                return conflict(st, at.login + k, holder);
            }
        }
    }
    for (k, p) in r.passkeys.iter().enumerate() {
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
                return conflict(st, at.passkey + k, holder);
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
    claims: &[UniqueClaim],
    stamp: &str,
    roles: &HashSet<String>,
) -> rusqlite::Result<Outcome> {
    if let Some(failed) = Outcome::missing_role(r, roles) {
        return Ok(failed);
    }
    conn.execute_batch("SAVEPOINT record")?;
    let result = match merge(conn, user_id, r, claims, stamp) {
        Ok(step) => step,
        Err(e) => {
            conn.execute_batch("ROLLBACK TO record; RELEASE record")?;
            return Err(e);
        }
    };
    match result {
        Ok(()) => {
            conn.execute_batch("RELEASE record")?;
            Ok(Outcome::updated())
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
    claims: &[UniqueClaim],
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
            return Ok(Err(Outcome::held(&claims[0], &subject_of(sp, other)?)));
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
fn replace_unique_keys(
    sp: &Connection,
    user_id: i64,
    r: &ImportRecord,
    claims: &[UniqueClaim],
) -> rusqlite::Result<Step> {
    let at = ClaimAt::of(r);
    for (k, (code, value)) in r.unique_keys.iter().enumerate() {
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
            return Ok(Err(Outcome::held(
                &claims[at.attribute + k],
                &subject_of(sp, holder)?,
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
fn merge_authenticators(
    sp: &Connection,
    user_id: i64,
    r: &ImportRecord,
    claims: &[UniqueClaim],
) -> rusqlite::Result<Step> {
    let at = ClaimAt::of(r);
    let conflict = |claim: usize, other: Option<i64>| -> rusqlite::Result<Step> {
        Ok(Err(Outcome::held(&claims[claim], &subject_of(sp, other)?)))
    };
    for (k, otp) in r.otp_addresses.iter().enumerate() {
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
        let other = claim_otp_address(otp_st, user_id, otp, &otp_key(otp).as_ref(), true)?.other;
        if other.is_some() {
            return conflict(at.otp + k, other);
        }
    }
    for (k, login) in r.external_logins.iter().enumerate() {
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
            return conflict(at.login + k, holder);
        }
    }
    for (k, pk) in r.passkeys.iter().enumerate() {
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
            return conflict(at.passkey + k, holder);
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
fn merge(
    sp: &Connection,
    user_id: i64,
    r: &ImportRecord,
    claims: &[UniqueClaim],
    stamp: &str,
) -> rusqlite::Result<Step> {
    let old: String = sp.query_row(
        "SELECT profile FROM users WHERE id = ?1",
        [user_id],
        |row| row.get(0),
    )?;
    let mut profile: Map<String, Value> = serde_json::from_str(&old).unwrap_or_default();
    for (k, v) in &r.profile {
        profile.insert(k.clone(), v.clone());
    }
    if let Err(o) = update_account(sp, user_id, &profile, r, claims, stamp)? {
        return Ok(Err(o));
    }
    if let Err(o) = replace_unique_keys(sp, user_id, r, claims)? {
        return Ok(Err(o));
    }
    write_password(sp, user_id, r, stamp)?;
    if let Err(o) = merge_authenticators(sp, user_id, r, claims)? {
        return Ok(Err(o));
    }
    add_memberships(sp, user_id, r)?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store_core::conformance::{self, Fresh};
    use ferry_store_core::Status;

    fn fresh() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db"), Mode::ReadWrite).unwrap();
        Fresh {
            store: Box::new(store),
            guard: Box::new(dir),
        }
    }

    ferry_store_core::conformance_tests!(fresh);

    fn item(store: &SqliteStore, r: ImportRecord) -> Item {
        conformance::items(store, vec![r]).remove(0)
    }

    fn record(subject: &str, user: &str, email: &str) -> ImportRecord {
        conformance::record(subject, user, email)
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
    fn a_record_that_conflicts_half_way_leaves_no_row_in_any_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("s.db"), Mode::ReadWrite).unwrap();
        let run = store.begin_run("b", Policy::Skip).unwrap();
        let alice = item(&store, record("s1", "alice", "a@x.org"));
        store.import_batch(run, Policy::Skip, &[alice], 0).unwrap();
        let before = rows(&store);
        // bob's user row, unique key and password are written before the conflict on his
        // e-mail shows; undoing him deletes them.
        let bob = item(&store, record("s2", "bob", "A@X.ORG"));
        let out = store.import_batch(run, Policy::Skip, &[bob], 1).unwrap();
        assert_eq!(out[0].reason, Some(Reason::AuthenticatorKeyConflict));
        assert_eq!(rows(&store), before, "no row of bob is left in any table");
        // Foreign keys are enforced again after a batch.
        let fk: i64 = store
            .connection()
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
    }

    #[test]
    fn a_run_of_a_live_process_stays_running_and_one_of_a_dead_one_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.db");
        let mut first = SqliteStore::open(&path, Mode::ReadWrite).unwrap();
        let mut second = SqliteStore::open(&path, Mode::ReadWrite).unwrap();
        let live = first.begin_run("a/", Policy::Skip).unwrap();
        let dead = first.begin_run("b/", Policy::Skip).unwrap();
        // A process that has ended: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        first
            .conn
            .execute(
                "UPDATE import_runs SET pid = ?2 WHERE id = ?1",
                params![dead.0, gone],
            )
            .unwrap();
        second.begin_run("c/", Policy::Skip).unwrap();
        let status = |run: RunId| {
            second
                .runs()
                .unwrap()
                .into_iter()
                .find(|r| r.id == run)
                .unwrap()
                .status
        };
        assert_eq!(status(live), "running", "this process is alive");
        assert_eq!(status(dead), "interrupted");
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
        // Read-only mode does not migrate: it says what would.
        let err = SqliteStore::open(&path, Mode::ReadOnly)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("store schema version 1 is older"),
            "{err}"
        );
        let mut store = SqliteStore::open(&path, Mode::ReadWrite).unwrap();
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
        let new = SqliteStore::open(&dir.path().join("new.db"), Mode::ReadWrite).unwrap();
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
        let items = conformance::items(
            &store,
            vec![
                record("s2", "bob", "a@X.org"),
                record("s3", "ALICE", "c@x.org"),
            ],
        );
        let out = store.import_batch(run, Policy::Skip, &items, 0).unwrap();
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
        let mut store = SqliteStore::open(&dir.path().join("s.db"), Mode::ReadWrite).unwrap();
        let run = store.begin_run("b", Policy::Skip).unwrap();
        let alice = item(&store, record("s1", "alice", "a@x.org"));
        store.import_batch(run, Policy::Skip, &[alice], 0).unwrap();
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
        let bob = item(&store, record("s2", "bob", "b@x.org"));
        let out = store.import_batch(run, Policy::Skip, &[bob], 1).unwrap();
        assert_eq!(out[0].status, Status::Created, "{:?}", out[0].message);
        for name in ["bob", "b@x.org"] {
            let found = store.find_for_login(name).unwrap();
            let subjects: Vec<_> = found.iter().map(|u| u.subject_id.as_str()).collect();
            assert_eq!(subjects, ["s2"], "{name}");
        }
        // The keys stored without their hash still keep their holder's claim.
        let items = conformance::items(
            &store,
            vec![
                record("s3", "BOB", "c@x.org"),
                record("s4", "carl", "b@X.org"),
            ],
        );
        let out = store.import_batch(run, Policy::Skip, &items, 2).unwrap();
        let messages: Vec<_> = out.iter().map(|o| o.message.as_deref()).collect();
        assert_eq!(
            messages,
            [
                Some("user name 'BOB' is already used by subject s2"),
                Some("Email OTP address 'b@X.org' is already used by subject s2"),
            ]
        );
        let probe = item(&store, record("s9", "bob", "b@x.org"));
        let holders: Vec<Option<String>> = probe
            .claims
            .iter()
            .map(|c| store.holder(c).unwrap())
            .collect();
        let s2 = Some("s2".to_string());
        assert_eq!(holders, [s2.clone(), s2.clone(), s2, None]);
    }

    #[test]
    fn a_newer_store_is_refused_and_read_only_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let mut store = SqliteStore::open(&path, Mode::ReadWrite).unwrap();
            let run = store.begin_run("b", Policy::Skip).unwrap();
            let alice = item(&store, record("s1", "alice", "a@x.org"));
            store.import_batch(run, Policy::Skip, &[alice], 0).unwrap();
        }
        // The database file is byte for byte what it was, and no migration or journal
        // mode change happened. (SQLite's own -wal and -shm may appear beside a WAL store
        // a read-only connection opens; they hold nothing of the store.)
        let digest = |p: &Path| {
            use sha2::Digest as _;
            sha2::Sha256::digest(std::fs::read(p).unwrap())
        };
        let before = digest(&path);
        {
            let store = SqliteStore::open(&path, Mode::ReadOnly).unwrap();
            assert!(store.has_subject("s1").unwrap());
            assert!(store.snapshot("s1").unwrap().is_some());
            let mode: String = store
                .connection()
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
        assert!(digest(&path) == before, "the store file changed");
        let missing = SqliteStore::open(&dir.path().join("none.db"), Mode::ReadOnly);
        assert!(missing.err().unwrap().to_string().contains("no such store"));
        assert!(!dir.path().join("none.db").exists());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = SqliteStore::open(&path, Mode::ReadWrite)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("store schema version 99 is newer"),
            "{err}"
        );
    }
}
