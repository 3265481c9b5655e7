//! The password-hash census: how many users have which hash format, and which hashes
//! can never verify (and why).

use std::collections::BTreeMap;

use ferry_passwords::{HashKind, Malformed, PasswordHash};
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
    /// Hashes in formats other than ASP.NET Identity's own (Membership, BCrypt, Argon2,
    /// PBKDF2 PHC strings), by format and parameters. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<OtherCount>,
}

/// How many hashes have one format and set of parameters beyond ASP.NET's own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherCount {
    /// `Membership`, `BCrypt`, `Argon2` or `PBKDF2 (PHC)`.
    pub family: String,
    /// The format with its parameters: `BCrypt 2b cost 10`, `Membership SHA1`,
    /// `Membership clear text`, `Argon2 id v=19 m=65536 t=2 p=1`, `PBKDF2 (PHC) SHA256 29000`.
    pub format: String,
    /// Users with such a hash.
    pub count: u64,
}

/// The format of clear-text Membership passwords in [`OtherCount::format`].
pub const CLEAR_TEXT: &str = "Membership clear text";

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
            Some(text) => match PasswordHash::parse(text) {
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
    other: BTreeMap<HashKind, u64>,
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
            HashStatus::Ok(other) => *self.other.entry(*other).or_default() += 1,
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
        for (k, n) in other.other {
            *self.other.entry(k).or_default() += n;
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
            other: self
                .other
                .into_iter()
                .map(|(kind, count)| OtherCount {
                    family: kind.family().to_string(),
                    format: kind.to_string(),
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

    /// The hash formats in one line, one entry per V3 PRF (the manifest has the whole
    /// breakdown by iteration count): `2 V2, 7 V3 SHA256 (6 iteration counts, 2 to
    /// 10000), 1 V3 SHA1 10000 iterations, 2 without a password, 3 malformed`.
    pub fn summary(&self) -> String {
        let mut kinds = Vec::new();
        if self.v2 > 0 {
            kinds.push(format!("{} V2", self.v2));
        }
        let mut prfs: Vec<(&str, u64, u32, u32, usize)> = Vec::new();
        for v in &self.v3 {
            match prfs.iter_mut().find(|p| p.0 == v.prf) {
                Some(p) => {
                    p.1 += v.count;
                    p.2 = p.2.min(v.iterations);
                    p.3 = p.3.max(v.iterations);
                    p.4 += 1;
                }
                None => prfs.push((&v.prf, v.count, v.iterations, v.iterations, 1)),
            }
        }
        for (prf, count, min, max, n) in prfs {
            if n == 1 {
                kinds.push(format!("{count} V3 {prf} {min} iterations"));
            } else {
                kinds.push(format!(
                    "{count} V3 {prf} ({n} iteration counts, {min} to {max})"
                ));
            }
        }
        let mut families: Vec<(&str, u64, usize)> = Vec::new();
        for o in &self.other {
            match families.iter_mut().find(|f| f.0 == o.family) {
                Some(f) => {
                    f.1 += o.count;
                    f.2 += 1;
                }
                None => families.push((&o.family, o.count, 1)),
            }
        }
        for (family, count, n) in families {
            if n == 1 {
                let format = &self
                    .other
                    .iter()
                    .find(|o| o.family == family)
                    .expect("counted")
                    .format;
                kinds.push(format!("{count} {format}"));
            } else {
                kinds.push(format!("{count} {family} ({n} kinds)"));
            }
        }
        if self.none > 0 {
            kinds.push(format!("{} without a password", self.none));
        }
        let malformed = self.malformed_total();
        if malformed > 0 {
            kinds.push(format!("{malformed} malformed"));
        }
        if kinds.is_empty() {
            kinds.push("no users".into());
        }
        kinds.join(", ")
    }

    /// Users whose password is a clear-text Membership password (format 0).
    pub fn clear_text(&self) -> u64 {
        self.other
            .iter()
            .filter(|o| o.format == CLEAR_TEXT)
            .map(|o| o.count)
            .sum()
    }

    /// The loud warning about clear-text Membership passwords, when there are any.
    pub fn clear_text_warning(&self) -> Option<String> {
        let n = self.clear_text();
        (n > 0).then(|| {
            format!(
                "warning: {n} {} a clear-text Membership password (format 0) in this bundle: anyone who reads the bundle reads {}. ferry-import hashes {} at load and never stores or plans {} as {}; keep the bundle safe and delete it once loaded",
                if n == 1 { "user has" } else { "users have" },
                if n == 1 { "it" } else { "them" },
                if n == 1 { "it" } else { "them" },
                if n == 1 { "it" } else { "them" },
                if n == 1 { "it is" } else { "they are" },
            )
        })
    }

    /// The malformed hashes by reason, `1 bad-base64, 1 salt-too-short`, if any.
    pub fn malformed_summary(&self) -> Option<String> {
        (!self.malformed.is_empty()).then(|| {
            self.malformed
                .iter()
                .map(|m| format!("{} {}", m.count, m.reason))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wording_of_the_census() {
        let mut b = CensusBuilder::default();
        b.add(&HashStatus::of(Some(
            "AAABAgMEBQYHCAkKCwwNDg+ukCEMDf0yyQ29NYubggHIVY0sdEUfdyeM+E1LtH1uJg==",
        )));
        b.add(&HashStatus::of(Some(
            "AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHw",
        )));
        b.add(&HashStatus::of(Some(
            "AQAAAAIAACcQAAAAEAABAgMEBQYHCAkKCwwNDg9B0Oxwty+PGIDSp95gcCfzeDvA4sGapUIUov8usXfD6A==",
        )));
        b.add(&HashStatus::of(None));
        b.add(&HashStatus::of(Some("not-base64!!")));
        let c = b.finish();
        assert_eq!(
            c.summary(),
            "1 V2, 2 V3 SHA512 (2 iteration counts, 50 to 10000), 1 without a password, 1 malformed"
        );
        assert_eq!(c.malformed_summary().as_deref(), Some("1 bad-base64"));
    }
}
