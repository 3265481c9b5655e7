//! The password-hash census: how many users have which hash format, and which hashes
//! can never verify (and why).

use std::collections::BTreeMap;

use ferry_passwords::{AspNetHash, HashKind, Malformed};
use serde::{Deserialize, Serialize};

/// Counts of password hashes by format, as written to the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Census {
    /// Users counted.
    pub users: u64,
    /// Users without a password (`PasswordHash` null or empty): external logins or
    /// passkeys only.
    pub none: u64,
    /// V2 hashes (PBKDF2-HMAC-SHA1, 1000 iterations).
    pub v2: u64,
    /// V3 hashes by PRF and iteration count.
    pub v3: Vec<V3Count>,
    /// Hashes that can never verify, by reason code.
    pub malformed: Vec<MalformedCount>,
}

/// How many V3 hashes use one PRF and iteration count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct V3Count {
    /// `SHA1`, `SHA256` or `SHA512`.
    pub prf: String,
    /// The iteration count.
    pub iterations: u32,
    /// Users with such a hash.
    pub count: u64,
}

/// How many hashes are malformed for one reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedCount {
    /// The reason code (`bad-base64`, `unknown-version`, `salt-too-short`, …).
    pub reason: String,
    /// Users with such a hash.
    pub count: u64,
}

/// What one user's `PasswordHash` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashStatus {
    /// No password.
    None,
    /// A well-formed hash of this kind.
    Ok(HashKind),
    /// A hash that can never verify.
    Malformed(Malformed),
}

impl HashStatus {
    /// Classifies a `PasswordHash` column value.
    pub fn of(password_hash: Option<&str>) -> HashStatus {
        match password_hash {
            None => HashStatus::None,
            Some("") => HashStatus::None,
            Some(text) => match AspNetHash::parse(text) {
                Ok(hash) => HashStatus::Ok(hash.kind()),
                Err(reason) => HashStatus::Malformed(reason),
            },
        }
    }
}

/// Accumulates a [`Census`] one user at a time.
#[derive(Debug, Default, Clone)]
pub struct CensusBuilder {
    users: u64,
    none: u64,
    v2: u64,
    v3: BTreeMap<(ferry_passwords::Prf, u32), u64>,
    malformed: BTreeMap<&'static str, u64>,
}

impl CensusBuilder {
    /// Counts one user's hash.
    pub fn add(&mut self, status: &HashStatus) {
        self.users += 1;
        match status {
            HashStatus::None => self.none += 1,
            HashStatus::Ok(HashKind::V2) => self.v2 += 1,
            HashStatus::Ok(HashKind::V3 { prf, iterations }) => {
                *self.v3.entry((*prf, *iterations)).or_default() += 1
            }
            HashStatus::Malformed(reason) => *self.malformed.entry(reason.code()).or_default() += 1,
        }
    }

    /// Adds the counts of another builder (for parallel counting).
    pub fn merge(&mut self, other: CensusBuilder) {
        self.users += other.users;
        self.none += other.none;
        self.v2 += other.v2;
        for (k, n) in other.v3 {
            *self.v3.entry(k).or_default() += n;
        }
        for (k, n) in other.malformed {
            *self.malformed.entry(k).or_default() += n;
        }
    }

    /// The census, sorted by PRF, iterations and reason.
    pub fn finish(self) -> Census {
        Census {
            users: self.users,
            none: self.none,
            v2: self.v2,
            v3: self
                .v3
                .into_iter()
                .map(|((prf, iterations), count)| V3Count {
                    prf: prf.name().to_string(),
                    iterations,
                    count,
                })
                .collect(),
            malformed: self
                .malformed
                .into_iter()
                .map(|(reason, count)| MalformedCount {
                    reason: reason.to_string(),
                    count,
                })
                .collect(),
        }
    }
}

impl Census {
    /// Users whose hash can never verify.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().map(|m| m.count).sum()
    }
}
