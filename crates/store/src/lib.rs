//! The User Management store.
//!
//! It keeps User Management's model and import semantics: users with a subject id,
//! profile attributes with unique keys, authenticators (password as hashed password
//! data, OTP addresses, external logins, passkeys, TOTP devices, recovery codes), roles
//! and memberships, and the record of every import run and every record's result. It
//! knows nothing of ASP.NET tables: it takes [`ImportRecord`]s.
//!
//! - [`model`]: the records the store takes.
//! - [`SqliteStore`]: the embedded store (created if missing, its schema versioned).
//! - [`login`]: password checks by algorithm id, and the re-hash to the preferred one.
//!
//! ```no_run
//! use ferry_store::{Policy, RunCounts, SqliteStore};
//!
//! let mut store = SqliteStore::open("users.db".as_ref())?;
//! let run = store.begin_run("bundle/", Policy::Skip)?;
//! {
//!     let mut importer = store.importer(run, Policy::Skip)?;
//!     // importer.write(&items)? for each chunk of `Item::new(…)`s, then now and then:
//!     importer.commit()?;
//! }
//! // The counts of the records written, from each `Outcome::status`:
//! store.finish_run(run, "completed", RunCounts::default())?;
//! # Ok::<(), ferry_store::Error>(())
//! ```
#![deny(missing_docs)]

mod import;
mod key;
pub mod login;
pub mod model;
mod schema;
mod sqlite;

pub use import::{Item, Outcome, Policy, Reason, RunCounts, Status};
pub use model::*;
pub use sqlite::{Error, Importer, RunId, Snapshot, SqliteStore, StoredUser};

/// Upper-cases a login name as ASP.NET's `UpperInvariantLookupNormalizer` does: simple
/// case mapping, a character whose upper case is several characters is kept.
pub fn normalize(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// Hashes the record's plain recovery codes (PBKDF2-HMAC-SHA512, a random salt each)
/// and forgets the plain text. Pure CPU: run it in parallel across records.
pub fn hash_recovery_codes(record: &mut ImportRecord, iterations: u32) {
    use rand::RngCore as _;
    let mut rng = rand::rngs::OsRng;
    for code in record.recovery_codes.drain(..) {
        let mut salt = [0u8; ferry_passwords::recovery::SALT_LEN];
        rng.fill_bytes(&mut salt);
        let hash = ferry_passwords::recovery::hash(&code, &salt, iterations);
        record.hashed_recovery_codes.push(HashedRecoveryCode {
            salt: salt.to_vec(),
            hash: hash.to_vec(),
            iterations,
        });
    }
}
