//! Every password format ferry knows, parsed once: what a `PasswordHash` column holds.
//!
//! | stored text | format |
//! |-------------|--------|
//! | base64 of `0x00…` / `0x01…` | ASP.NET Identity V2 / V3 ([`AspNetHash`]) |
//! | `HASH\|FORMAT\|SALT` | ASP.NET Membership, carried by Microsoft's recipe ([`MembershipHash`]) |
//! | `$2a$`, `$2b$`, `$2x$`, `$2y$` | BCrypt, as BCrypt.Net writes it ([`BcryptHash`]) |
//! | `$argon2i$`, `$argon2d$`, `$argon2id$` | Argon2 PHC strings ([`Argon2Hash`]) |
//! | `$pbkdf2-sha256$`, `$pbkdf2-sha512$`, `$pbkdf2$` | PBKDF2 PHC and passlib strings ([`Pbkdf2Phc`]) |
//!
//! Anything else is [`Malformed`] with the reason the ASP.NET parser gives it.

use std::fmt;

use crate::bcrypt_hash::{BcryptHash, BcryptVersion};
use crate::membership::{MembershipAlgorithm, MembershipHash};
use crate::phc::{Argon2Hash, Argon2Params, Pbkdf2Phc};
use crate::{AspNetHash, Malformed, Prf};

/// A parsed `PasswordHash`, of any format ferry knows.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum PasswordHash {
    /// ASP.NET Identity V2 or V3.
    AspNet(AspNetHash),
    /// ASP.NET Membership (`HASH|FORMAT|SALT`).
    Membership(MembershipHash),
    /// BCrypt.
    Bcrypt(BcryptHash),
    /// Argon2.
    Argon2(Argon2Hash),
    /// PBKDF2 as a PHC or passlib string.
    Pbkdf2(Pbkdf2Phc),
}

/// The kind of a well-formed hash, as the census counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashKind {
    /// Format V2: PBKDF2-HMAC-SHA1, 1000 iterations.
    V2,
    /// Format V3 with its PRF and iteration count.
    V3 {
        /// The PRF.
        prf: Prf,
        /// The iteration count.
        iterations: u32,
    },
    /// A Membership password in clear text (format 0).
    MembershipClear,
    /// A Membership digest (format 1) of this hash function.
    MembershipHashed(MembershipAlgorithm),
    /// BCrypt with its version and cost.
    Bcrypt {
        /// The version.
        version: BcryptVersion,
        /// The cost.
        cost: u32,
    },
    /// Argon2 with its parameters.
    Argon2(Argon2Params),
    /// PBKDF2 in a PHC or passlib string.
    Pbkdf2Phc {
        /// The PRF.
        prf: Prf,
        /// The iteration count.
        iterations: u32,
    },
}

impl HashKind {
    /// The format's family, as the census groups it: `V2`, `V3`, `Membership`, `BCrypt`,
    /// `Argon2`, `PBKDF2 (PHC)`.
    pub fn family(&self) -> &'static str {
        match self {
            HashKind::V2 => "V2",
            HashKind::V3 { .. } => "V3",
            HashKind::MembershipClear | HashKind::MembershipHashed(_) => "Membership",
            HashKind::Bcrypt { .. } => "BCrypt",
            HashKind::Argon2(_) => "Argon2",
            HashKind::Pbkdf2Phc { .. } => "PBKDF2 (PHC)",
        }
    }
}

impl fmt::Display for HashKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKind::V2 => f.write_str("V2"),
            HashKind::V3 { prf, iterations } => write!(f, "V3 {prf} {iterations}"),
            HashKind::MembershipClear => f.write_str("Membership clear text"),
            HashKind::MembershipHashed(a) => write!(f, "Membership {a}"),
            HashKind::Bcrypt { version, cost } => {
                write!(f, "BCrypt {} cost {cost}", version.name())
            }
            HashKind::Argon2(p) => write!(
                f,
                "Argon2 {} v={} m={} t={} p={}",
                p.variant.name().trim_start_matches("argon2"),
                p.version,
                p.memory_kib,
                p.passes,
                p.lanes
            ),
            HashKind::Pbkdf2Phc { prf, iterations } => write!(f, "PBKDF2 (PHC) {prf} {iterations}"),
        }
    }
}

impl PasswordHash {
    /// Parses the text of a `PasswordHash` column, telling the format from its shape.
    pub fn parse(text: &str) -> Result<PasswordHash, Malformed> {
        let t = text.trim();
        if t.starts_with("$2") {
            BcryptHash::parse(t).map(PasswordHash::Bcrypt)
        } else if t.starts_with("$argon2") {
            Argon2Hash::parse(t).map(PasswordHash::Argon2)
        } else if t.starts_with("$pbkdf2") {
            Pbkdf2Phc::parse(t).map(PasswordHash::Pbkdf2)
        } else if crate::membership::looks_like(text) {
            // Not trimmed: a clear-text password keeps its spaces.
            MembershipHash::parse(text).map(PasswordHash::Membership)
        } else {
            AspNetHash::parse(t).map(PasswordHash::AspNet)
        }
    }

    /// The census kind.
    pub fn kind(&self) -> HashKind {
        match self {
            PasswordHash::AspNet(h) => h.kind(),
            PasswordHash::Membership(MembershipHash::Clear(_)) => HashKind::MembershipClear,
            PasswordHash::Membership(MembershipHash::Hashed { algorithm, .. }) => {
                HashKind::MembershipHashed(*algorithm)
            }
            PasswordHash::Bcrypt(h) => HashKind::Bcrypt {
                version: h.version,
                cost: h.cost,
            },
            PasswordHash::Argon2(h) => HashKind::Argon2(h.params),
            PasswordHash::Pbkdf2(h) => HashKind::Pbkdf2Phc {
                prf: h.prf,
                iterations: h.iterations,
            },
        }
    }

    /// The PBKDF2 derivation that checks a password against this hash, when the format
    /// is PBKDF2 (ASP.NET V2 and V3, PBKDF2 PHC strings): its PRF, iteration count, salt
    /// and stored key. [`verify_batch`] groups hashes by the first two.
    pub fn pbkdf2(&self) -> Option<Pbkdf2Check<'_>> {
        match self {
            PasswordHash::AspNet(AspNetHash::V2 { salt, subkey }) => Some(Pbkdf2Check {
                prf: Prf::Sha1,
                iterations: crate::aspnet::V2_ITERATIONS,
                salt,
                key: subkey,
            }),
            PasswordHash::AspNet(AspNetHash::V3 {
                prf,
                iterations,
                salt,
                subkey,
            }) => Some(Pbkdf2Check {
                prf: *prf,
                iterations: *iterations,
                salt,
                key: subkey,
            }),
            PasswordHash::Pbkdf2(h) => Some(Pbkdf2Check {
                prf: h.prf,
                iterations: h.iterations,
                salt: &h.salt,
                key: &h.hash,
            }),
            _ => None,
        }
    }

    /// Checks `password` against the hash, with the format's own algorithm, in constant
    /// time with respect to the stored secret.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            PasswordHash::AspNet(h) => h.verify(password),
            PasswordHash::Membership(h) => h.verify(password),
            PasswordHash::Bcrypt(h) => h.verify(password),
            PasswordHash::Argon2(h) => h.verify(password),
            PasswordHash::Pbkdf2(h) => h.verify(password),
        }
    }
}

/// The PBKDF2 parameters and stored key of a hash ([`PasswordHash::pbkdf2`]).
#[derive(Clone, Copy)]
pub struct Pbkdf2Check<'a> {
    /// The PRF.
    pub prf: Prf,
    /// The iteration count.
    pub iterations: u32,
    /// The salt.
    pub salt: &'a [u8],
    /// The stored derived key.
    pub key: &'a [u8],
}

/// Checks many passwords against their hashes: the answers of [`PasswordHash::verify`] for
/// each pair, in order. PBKDF2 hashes are grouped by PRF and iteration count and derived
/// together in SIMD lanes ([`crate::lanes`]); the others are checked one by one. Every
/// comparison is constant-time.
pub fn verify_batch(pairs: &[(&PasswordHash, &str)]) -> Vec<bool> {
    use std::collections::BTreeMap;
    use subtle::ConstantTimeEq as _;

    let mut answers = vec![false; pairs.len()];
    let mut groups: BTreeMap<(Prf, u32), Vec<usize>> = BTreeMap::new();
    for (i, (hash, password)) in pairs.iter().enumerate() {
        match hash.pbkdf2() {
            Some(check) => groups
                .entry((check.prf, check.iterations))
                .or_default()
                .push(i),
            None => answers[i] = hash.verify(password),
        }
    }
    for ((prf, iterations), members) in groups {
        let checks: Vec<Pbkdf2Check> = members
            .iter()
            .map(|&i| pairs[i].0.pbkdf2().expect("grouped as PBKDF2"))
            .collect();
        let mut derived: Vec<Vec<u8>> = checks.iter().map(|c| vec![0u8; c.key.len()]).collect();
        let mut batch: Vec<crate::lanes::Derivation> = members
            .iter()
            .zip(&checks)
            .zip(derived.iter_mut())
            .map(|((&i, check), out)| crate::lanes::Derivation {
                password: pairs[i].1.as_bytes(),
                salt: check.salt,
                out,
            })
            .collect();
        crate::lanes::derive_batch(prf, iterations, &mut batch);
        for ((&i, check), out) in members.iter().zip(&checks).zip(&derived) {
            answers[i] = out.ct_eq(check.key).into();
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../testdata/other-hash-vectors.json")).unwrap()
    }

    fn cases<'a>(v: &'a serde_json::Value, format: &str) -> Vec<(&'a str, &'a str)> {
        v[format]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["hash"].as_str().unwrap(), c["password"].as_str().unwrap()))
            .collect()
    }

    #[test]
    fn every_public_vector_verifies_and_rejects_a_wrong_password() {
        let v = vectors();
        for (format, family) in [
            ("bcrypt", "BCrypt"),
            ("argon2", "Argon2"),
            ("pbkdf2", "PBKDF2 (PHC)"),
            ("membership", "Membership"),
        ] {
            let all = cases(&v, format);
            assert!(all.len() >= 2, "{format}");
            for (text, password) in all {
                let hash = PasswordHash::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(hash.kind().family(), family, "{text}");
                assert!(hash.verify(password), "{text} should verify");
                // Changed at the front: BCrypt ignores what follows 72 bytes.
                assert!(
                    !hash.verify(&format!("x{password}")),
                    "{text}: wrong password"
                );
            }
        }
    }

    /// Every public vector of every format, with its right password and a wrong one, in
    /// one batch: PBKDF2 hashes of several parameter sets mixed with BCrypt, Argon2 and
    /// Membership, each answered as the vector says.
    #[test]
    fn a_batch_answers_every_public_vector() {
        let other = vectors();
        let aspnet: serde_json::Value =
            serde_json::from_str(include_str!("../testdata/aspnet-hash-vectors.json")).unwrap();
        let mut cases: Vec<(PasswordHash, String, bool)> = Vec::new();
        for format in ["bcrypt", "argon2", "pbkdf2", "membership"] {
            for (text, password) in self::cases(&other, format) {
                let hash = PasswordHash::parse(text).unwrap();
                cases.push((hash.clone(), password.to_string(), true));
                cases.push((hash, format!("x{password}"), false));
            }
        }
        let password = aspnet["password"].as_str().unwrap();
        for case in aspnet["verifies"].as_array().unwrap() {
            let hash = PasswordHash::parse(case["hash"].as_str().unwrap()).unwrap();
            cases.push((hash.clone(), password.to_string(), true));
            cases.push((hash, format!("{password}!"), false));
        }
        for case in aspnet["more"].as_array().unwrap() {
            let hash = PasswordHash::parse(case["hash"].as_str().unwrap()).unwrap();
            let expected = case["verifies"].as_bool().unwrap();
            cases.push((
                hash,
                case["password"].as_str().unwrap().to_string(),
                expected,
            ));
        }
        let pbkdf2 = cases.iter().filter(|c| c.0.pbkdf2().is_some()).count();
        assert!(
            pbkdf2 >= 10 && pbkdf2 < cases.len(),
            "{pbkdf2} of {}",
            cases.len()
        );
        let pairs: Vec<(&PasswordHash, &str)> =
            cases.iter().map(|(h, p, _)| (h, p.as_str())).collect();
        let answers = verify_batch(&pairs);
        for ((hash, password, expected), answer) in cases.iter().zip(answers) {
            assert_eq!(answer, *expected, "{hash:?} with {password:?}");
        }
    }

    #[test]
    fn malformed_vectors_name_their_reason() {
        for case in vectors()["malformed"].as_array().unwrap() {
            let text = case["hash"].as_str().unwrap();
            let got = PasswordHash::parse(text).err().map(|m| m.code());
            assert_eq!(got, case["malformed"].as_str(), "{text}");
        }
    }

    #[test]
    fn kinds_carry_the_parameters_the_census_counts() {
        let kind = |t: &str| PasswordHash::parse(t).unwrap().kind().to_string();
        assert_eq!(
            kind("$2y$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK"),
            "BCrypt 2y cost 5"
        );
        assert_eq!(
            kind("$argon2i$m=256,t=2,p=1$c29tZXNhbHQ$/U3YPXYsSb3q9XxHvc0MLxur+GP960kN9j7emXX8zwY"),
            "Argon2 i v=16 m=256 t=2 p=1"
        );
        assert_eq!(
            kind("$pbkdf2-sha256$29000$ay0l5FxLCWGslRICYOw9Zw$6.2rvfsMII8pxzBc7YobXKcpcdn/7r42ql10Txyj/zo"),
            "PBKDF2 (PHC) SHA256 29000"
        );
        assert_eq!(kind("abc|0|"), "Membership clear text");
        // An ASP.NET blob is still an ASP.NET blob.
        assert_eq!(
            kind("AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHw"),
            "V3 SHA512 50"
        );
    }

    #[test]
    fn fixtures_makers_agree_with_the_parsers() {
        let b = crate::bcrypt_hash::BcryptHash::create("pw", 4, [7; 16]);
        assert!(PasswordHash::parse(&b).unwrap().verify("pw"));
        let a = crate::phc::Argon2Hash::create("pw", 64, 1, 1, &[7; 16]);
        assert!(PasswordHash::parse(&a).unwrap().verify("pw"));
        let salt = [3u8; 16];
        for alg in [MembershipAlgorithm::Sha1, MembershipAlgorithm::Sha256] {
            let m = MembershipHash::create_hashed("pw", alg, &salt);
            assert!(PasswordHash::parse(&m).unwrap().verify("pw"));
            let k = MembershipHash::create_keyed("pw", alg, &salt);
            assert!(PasswordHash::parse(&k).unwrap().verify("pw"));
            assert!(!PasswordHash::parse(&k).unwrap().verify("pW"));
        }
    }
}
