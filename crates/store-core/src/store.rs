//! The seam between the import semantics and a backend: the [`Store`] trait.
//!
//! A backend keeps the model (users, profiles, unique keys, authenticators, roles, runs)
//! in its own tables. Everything a command needs goes through this trait: no command
//! touches a backend's connection or tables.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::import::{Item, Outcome, Policy, RunCounts, RunEnd, RunId};
use crate::model::{HashedPassword, RoleImport, TotpDevice};
use crate::unique::UniqueClaim;

/// How a store is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// For loading and logging in: created if missing, migrated to the current schema.
    ReadWrite,
    /// For `validate --target` and `verify --target`: nothing is created, migrated or
    /// changed, not even the journal mode.
    ReadOnly,
}

/// What can go wrong with the store itself (a record's problems are [`Outcome`]s).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store could not be opened, created or migrated.
    #[error("`{target}`: {message}")]
    Open {
        /// The store, as given (without credentials).
        target: String,
        /// What went wrong.
        message: String,
    },
    /// The store was written by a newer ferry.
    #[error("`{target}`: store schema version {found} is newer than this ferry knows ({known}); use a newer ferry")]
    Newer {
        /// The store.
        target: String,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The backend failed (its message; not a `source`, so that it is said once).
    #[error("store: {0}")]
    Backend(String),
}

/// A user as login sees it.
#[derive(Debug, Clone)]
pub struct StoredUser {
    /// The backend's reference to the user, for [`Store::set_password`].
    pub id: UserRef,
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

/// A backend's reference to one user (its row id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRef(pub i64);

/// What the store holds for one subject, for `verify --target`.
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

/// What the mapping threads run on each item before it reaches [`Importer::write`]: the
/// work a backend can do off its single writer (see [`Item::prepared`]).
pub type ItemPreparer = fn(&mut Item);

/// Writes the records of an import run as they come. The first write after a commit
/// begins a transaction; everything written until the next commit lands together or (after
/// a crash) not at all, and each record is atomic on its own: one that fails leaves
/// nothing behind. Dropping an importer uncommitted rolls its transaction back.
pub trait Importer {
    /// Writes `items` in order and returns their outcomes. A record fails on its own (with
    /// a reason naming the conflict); an `Err` is the store itself failing.
    fn write(&mut self, items: &[Item]) -> Result<Vec<Outcome>, Error>;

    /// Commits what was written since the last commit.
    fn commit(&mut self) -> Result<(), Error>;
}

/// A User Management store.
pub trait Store {
    /// The store as messages name it: a path, or a server and database (never credentials).
    fn describe(&self) -> String;

    /// The iteration count for hashing recovery codes.
    fn recovery_code_iterations(&self) -> u32;

    /// Records per transaction when the load is not told (`--batch-size`).
    fn batch_size(&self) -> u64 {
        100_000
    }

    /// Creates the roles that do not exist yet; returns how many were new.
    fn create_roles(&mut self, roles: &[RoleImport]) -> Result<u64, Error>;

    /// Starts an import run of `bundle`. Runs left running by a crash are marked
    /// `interrupted` first.
    fn begin_run(&mut self, bundle: &str, policy: Policy) -> Result<RunId, Error>;

    /// Ends a run, with the counts of the records it committed.
    fn finish_run(&mut self, run: RunId, end: &RunEnd, counts: RunCounts) -> Result<(), Error>;

    /// Starts writing the records of `run`.
    fn importer(&mut self, run: RunId, policy: Policy) -> Result<Box<dyn Importer + '_>, Error>;

    /// The preparer to run on each item on the mapping threads.
    fn item_preparer(&self) -> ItemPreparer;

    /// Finds users by login name: the user name (ignoring case, as ASP.NET's lookup
    /// normaliser did), or else the e-mail OTP address.
    fn find_for_login(&self, name: &str) -> Result<Vec<StoredUser>, Error>;

    /// Replaces a user's password (the re-hash after a successful login).
    fn set_password(&mut self, user: UserRef, password: &HashedPassword) -> Result<(), Error>;

    /// The subject that holds `claim`, if any.
    fn holder(&self, claim: &UniqueClaim) -> Result<Option<String>, Error>;

    /// Whether the store has `subject`.
    fn has_subject(&self, subject: &str) -> Result<bool, Error>;

    /// Which of `subjects` the store has: [`Store::has_subject`] for a chunk of records at
    /// once, which a backend on a server answers in one round trip.
    fn existing_subjects(&self, subjects: &[&str]) -> Result<HashSet<String>, Error> {
        let mut found = HashSet::new();
        for &s in subjects {
            if self.has_subject(s)? {
                found.insert(s.to_string());
            }
        }
        Ok(found)
    }

    /// The subject that holds each of `claims`, in order: [`Store::holder`] for a chunk of
    /// records at once.
    fn holders(&self, claims: &[&UniqueClaim]) -> Result<Vec<Option<String>>, Error> {
        claims.iter().map(|c| self.holder(c)).collect()
    }

    /// What the store holds for `subject`, if it has it.
    fn snapshot(&self, subject: &str) -> Result<Option<Snapshot>, Error>;

    /// [`Store::snapshot`] of each of `subjects`, in order, for a chunk of records at once.
    fn snapshots(&self, subjects: &[&str]) -> Result<Vec<Option<Snapshot>>, Error> {
        subjects.iter().map(|s| self.snapshot(s)).collect()
    }

    /// Visits every subject id of the store, in no particular order.
    fn subjects(&self, visit: &mut dyn FnMut(&str) -> Result<(), Error>) -> Result<(), Error>;

    /// Every import run, oldest first.
    fn runs(&self) -> Result<Vec<RunRecord>, Error>;
}

/// One import run as the store recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// The run.
    pub id: RunId,
    /// The bundle it loaded.
    pub bundle: String,
    /// `running`, `completed`, `failed` or `interrupted`.
    pub status: String,
    /// Why it failed, if it did.
    pub reason: Option<String>,
    /// The counts of the records it committed.
    pub counts: RunCounts,
}

impl fmt::Debug for dyn Store + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.describe())
    }
}
