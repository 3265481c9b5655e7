//! The User Management store, free of any backend: its model and import semantics.
//!
//! It keeps User Management's model: users with a subject id, profile attributes with
//! unique keys, authenticators (password as hashed password data, OTP addresses, external
//! logins, passkeys, TOTP devices, recovery codes), roles and memberships, and the record
//! of every import run and every record's result. It knows nothing of ASP.NET tables: it
//! takes [`ImportRecord`]s. Backends (`ferry-store-sqlite`, `ferry-store-postgres`)
//! implement [`Store`]; `ferry-store` opens the one a target names.
//!
//! - [`model`]: the records a store takes.
//! - [`import`]: statuses, conflict reasons, policies, and the [`Item`]s a load writes.
//! - [`unique`]: the values a record claims for itself alone, and the messages of a
//!   conflict: one set of rules for load, merge, validate and plan.
//! - [`Store`] and [`Importer`]: the seam a backend implements.
//! - [`login`]: password checks by algorithm id, and the re-hash to the preferred one.
//! - `conformance` (feature `conformance`): the semantics every backend must show, as
//!   tests written once against `dyn Store`.
//!
//! ```no_run
//! use ferry_store_core::{Item, Policy, RunCounts, RunEnd, Store};
//!
//! fn load(store: &mut dyn Store, items: &[Item]) -> Result<(), ferry_store_core::Error> {
//!     let run = store.begin_run("bundle/", Policy::Skip)?;
//!     let mut counts = RunCounts::default();
//!     {
//!         let mut importer = store.importer(run, Policy::Skip)?;
//!         for outcome in importer.write(items)? {
//!             counts.add(outcome.status);
//!         }
//!         importer.commit()?;
//!     }
//!     store.finish_run(run, &RunEnd::Completed, counts)
//! }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod import;
pub mod login;
pub mod model;
mod store;
pub mod unique;

pub use import::{Encoded, Item, Outcome, Policy, Reason, RunCounts, RunEnd, RunId, Status};
pub use model::*;
pub use store::{
    Error, Importer, ItemPreparer, Mode, RunRecord, Snapshot, Store, StoredUser, UserRef,
};
pub use unique::{unique_claims, ClaimAt, ClaimKind, UniqueClaim};

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

/// Replaces a clear-text Membership password (format 0) by its hash with the preferred
/// algorithm (a random salt), so that it is never stored or planned as it is. Pure CPU:
/// run it in parallel across records, beside [`hash_recovery_codes`].
pub fn hash_clear_password(record: &mut ImportRecord) {
    let Some(p) = record.password.as_ref() else {
        return;
    };
    if p.algorithm != model::CLEAR_TEXT_ALGORITHM {
        return;
    }
    let clear = p
        .parameters
        .get("password")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    record.password = Some(login::preferred_hash(&clear));
}

/// Hashes the record's plain recovery codes (PBKDF2-HMAC-SHA512, a random salt each)
/// and forgets the plain text. Pure CPU: run it in parallel across records, or hash the
/// codes of many records together with [`hash_recovery_codes_of`].
pub fn hash_recovery_codes(record: &mut ImportRecord, iterations: u32) {
    hash_recovery_codes_of(&mut [record], iterations);
}

/// [`hash_recovery_codes`] for several records at once: their codes are hashed as one
/// batch in SIMD lanes ([`ferry_passwords::recovery::hash_batch`]), so give it the
/// records of a group of 2FA users rather than one at a time.
pub fn hash_recovery_codes_of(records: &mut [&mut ImportRecord], iterations: u32) {
    use rand::RngCore as _;
    let mut rng = rand::rngs::OsRng;
    let mut owners = Vec::new();
    let mut plain = Vec::new();
    for (i, record) in records.iter_mut().enumerate() {
        for code in record.recovery_codes.drain(..) {
            let mut salt = [0u8; ferry_passwords::recovery::SALT_LEN];
            rng.fill_bytes(&mut salt);
            owners.push(i);
            plain.push((code, salt));
        }
    }
    if plain.is_empty() {
        return;
    }
    let codes: Vec<(&str, [u8; ferry_passwords::recovery::SALT_LEN])> =
        plain.iter().map(|(c, s)| (c.as_str(), *s)).collect();
    let digests = ferry_passwords::recovery::hash_batch(&codes, iterations);
    for ((owner, (_, salt)), digest) in owners.into_iter().zip(&plain).zip(digests) {
        records[owner]
            .hashed_recovery_codes
            .push(HashedRecoveryCode {
                salt: salt.to_vec(),
                hash: digest.to_vec(),
                iterations,
            });
    }
}
