//! ASP.NET Identity `PasswordHash` blobs: format V2 and V3, parsed with the bounds
//! ASP.NET's own `PasswordHasher` checks.
//!
//! ```text
//! V2: 0x00 | salt (16) | subkey (32)                       PBKDF2-HMAC-SHA1, 1000 iterations
//! V3: 0x01 | prf u32be | iterations u32be | salt length u32be | salt | subkey (the rest)
//! ```

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use crate::HashKind;

use crate::pbkdf2;

/// The pseudo-random function of a PBKDF2 derivation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prf {
    /// HMAC-SHA1 (ASP.NET V3 code 0, and the only one V2 uses).
    Sha1,
    /// HMAC-SHA256 (ASP.NET V3 code 1; the default of ASP.NET Core 1 to 6).
    Sha256,
    /// HMAC-SHA384 (not an ASP.NET code; accepted by User Management's `pbkdf2`).
    Sha384,
    /// HMAC-SHA512 (ASP.NET V3 code 2; the default of ASP.NET Core 7 and later).
    Sha512,
}

impl Prf {
    /// The PRF for an ASP.NET V3 header code, if the code is defined.
    pub fn from_aspnet_code(code: u32) -> Option<Prf> {
        match code {
            0 => Some(Prf::Sha1),
            1 => Some(Prf::Sha256),
            2 => Some(Prf::Sha512),
            _ => None,
        }
    }

    /// The name used in censuses and parameters: `SHA1`, `SHA256`, `SHA384`, `SHA512`.
    pub fn name(self) -> &'static str {
        match self {
            Prf::Sha1 => "SHA1",
            Prf::Sha256 => "SHA256",
            Prf::Sha384 => "SHA384",
            Prf::Sha512 => "SHA512",
        }
    }

    /// Parses a name as [`Prf::name`] writes it (case-insensitive, `SHA-256` accepted).
    pub fn from_name(name: &str) -> Option<Prf> {
        match name.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Some(Prf::Sha1),
            "SHA256" => Some(Prf::Sha256),
            "SHA384" => Some(Prf::Sha384),
            "SHA512" => Some(Prf::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Prf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a `PasswordHash` can never verify. The user it belongs to cannot log in with a
/// password until it is reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Malformed {
    /// The text is not standard base64.
    BadBase64,
    /// The text decodes to no bytes at all.
    Empty,
    /// The first byte is neither 0x00 (V2) nor 0x01 (V3).
    UnknownVersion(u8),
    /// A V2 hash must be exactly 49 bytes.
    V2Length(usize),
    /// A V3 hash shorter than its 13-byte header.
    TruncatedHeader(usize),
    /// The V3 PRF code is not 0, 1 or 2.
    UnknownPrf(u32),
    /// The V3 iteration count is 0.
    ZeroIterations,
    /// The iteration count is above ferry's ceiling,
    /// [`crate::preferred::MAX_ITERATIONS`] (10,000,000; .NET itself reads 2^31 or more
    /// as negative).
    IterationsTooLarge(u32),
    /// The V3 salt is shorter than 16 bytes.
    SaltTooShort(u32),
    /// The V3 salt is longer than 8192 bytes.
    SaltTooLong(u32),
    /// The V3 salt length points past the end of the data.
    SaltPastEnd {
        /// The declared salt length.
        salt_len: u32,
        /// The bytes that follow the header.
        available: usize,
    },
    /// The V3 subkey (the bytes after the salt) is shorter than 16 bytes.
    SubkeyTooShort(usize),
    /// The V3 subkey is longer than 64 bytes: ASP.NET writes 32, and each 64 bytes more
    /// (of SHA-512; 20 of SHA-1) is one more whole PBKDF2 run to check it.
    SubkeyTooLong(usize),
    /// A Membership `HASH|FORMAT|SALT` whose format is not 0, 1 or 2, or whose hash or
    /// salt is not base64.
    MembershipSyntax,
    /// A Membership hash (format 1) whose digest is not 20, 32, 48 or 64 bytes.
    MembershipDigest(usize),
    /// A Membership password encrypted with the app's machineKey (format 2): it cannot
    /// be checked without that key.
    MembershipEncrypted,
    /// A `$2…$` string that is not a BCrypt hash.
    BcryptSyntax,
    /// A BCrypt cost below 4 or above [`crate::limits::MAX_BCRYPT_COST`].
    BcryptCost(u32),
    /// A `$argon2…$` string that is not an Argon2 PHC string.
    Argon2Syntax,
    /// Argon2 parameters above the ceilings of [`crate::limits`].
    Argon2Cost,
    /// A `$pbkdf2…$` string that is not a PBKDF2 PHC (or passlib) string.
    Pbkdf2Syntax,
}

impl Malformed {
    /// A short stable identifier, used as a census key: `bad-base64`, `salt-too-short`, …
    pub fn code(&self) -> &'static str {
        match self {
            Malformed::BadBase64 => "bad-base64",
            Malformed::Empty => "empty",
            Malformed::UnknownVersion(_) => "unknown-version",
            Malformed::V2Length(_) => "v2-length",
            Malformed::TruncatedHeader(_) => "truncated-header",
            Malformed::UnknownPrf(_) => "unknown-prf",
            Malformed::ZeroIterations => "zero-iterations",
            Malformed::IterationsTooLarge(_) => "iterations-too-large",
            Malformed::SaltTooShort(_) => "salt-too-short",
            Malformed::SaltTooLong(_) => "salt-too-long",
            Malformed::SaltPastEnd { .. } => "salt-past-end",
            Malformed::SubkeyTooShort(_) => "subkey-too-short",
            Malformed::SubkeyTooLong(_) => "subkey-too-long",
            Malformed::MembershipSyntax => "membership-syntax",
            Malformed::MembershipDigest(_) => "membership-digest",
            Malformed::MembershipEncrypted => "membership-encrypted",
            Malformed::BcryptSyntax => "bcrypt-syntax",
            Malformed::BcryptCost(_) => "bcrypt-cost",
            Malformed::Argon2Syntax => "argon2-syntax",
            Malformed::Argon2Cost => "argon2-cost",
            Malformed::Pbkdf2Syntax => "pbkdf2-syntax",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::BadBase64 => write!(f, "not valid base64"),
            Malformed::Empty => write!(f, "empty"),
            Malformed::UnknownVersion(b) => {
                write!(
                    f,
                    "unknown format marker 0x{b:02x} (expected 0x00 for V2 or 0x01 for V3)"
                )
            }
            Malformed::V2Length(n) => write!(f, "V2 hash is {n} bytes (must be exactly 49)"),
            Malformed::TruncatedHeader(n) => {
                write!(f, "V3 hash is {n} bytes, shorter than its 13-byte header")
            }
            Malformed::UnknownPrf(p) => write!(f, "unknown PRF {p} (0 SHA1, 1 SHA256, 2 SHA512)"),
            Malformed::ZeroIterations => write!(f, "iteration count is 0"),
            Malformed::IterationsTooLarge(n) => {
                write!(
                    f,
                    "iteration count {n} is above ferry's ceiling of {} (flagged, not run)",
                    crate::preferred::MAX_ITERATIONS
                )
            }
            Malformed::SaltTooShort(n) => write!(f, "salt is {n} bytes (minimum 16)"),
            Malformed::SaltTooLong(n) => write!(f, "salt is {n} bytes (maximum 8192)"),
            Malformed::SaltPastEnd {
                salt_len,
                available,
            } => write!(
                f,
                "salt length {salt_len} runs past the end ({available} bytes follow the header)"
            ),
            Malformed::SubkeyTooShort(n) => write!(f, "subkey is {n} bytes (minimum 16)"),
            Malformed::SubkeyTooLong(n) => write!(
                f,
                "subkey is {n} bytes (maximum {MAX_SUBKEY}; flagged, not run)"
            ),
            Malformed::MembershipSyntax => write!(
                f,
                "a Membership HASH|FORMAT|SALT whose format is not 0, 1 or 2, or whose hash or salt is not base64"
            ),
            Malformed::MembershipDigest(n) => write!(
                f,
                "Membership hash is {n} bytes (SHA1 20, SHA256 32, SHA384 48, SHA512 64)"
            ),
            Malformed::MembershipEncrypted => write!(
                f,
                "Membership password encrypted with the app's machineKey (format 2): it cannot be checked without that key; decrypt it with the app and re-export as format 0, or the user resets it"
            ),
            Malformed::BcryptSyntax => write!(f, "not a BCrypt hash ($2a$, $2b$, $2x$ or $2y$, a two-digit cost, 53 characters)"),
            Malformed::BcryptCost(c) => write!(
                f,
                "BCrypt cost {c} is outside 4 to {} (ferry's ceiling): flagged, not run",
                crate::limits::MAX_BCRYPT_COST
            ),
            Malformed::Argon2Syntax => write!(f, "not an Argon2 PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash)"),
            Malformed::Argon2Cost => write!(
                f,
                "Argon2 parameters above ferry's ceiling (m ≤ {} KiB, t ≤ {}, p ≤ {}): flagged, not run",
                crate::limits::MAX_ARGON2_MEMORY_KIB,
                crate::limits::MAX_ARGON2_PASSES,
                crate::limits::MAX_ARGON2_LANES
            ),
            Malformed::Pbkdf2Syntax => write!(f, "not a PBKDF2 PHC string ($pbkdf2-sha256$i=…$salt$hash)"),
        }
    }
}

impl std::error::Error for Malformed {}

/// A parsed ASP.NET Identity password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum AspNetHash {
    /// Format V2 (ASP.NET Identity 2.x and `System.Web.Helpers.Crypto`).
    V2 {
        /// The 16-byte salt.
        salt: [u8; 16],
        /// The 32-byte PBKDF2-HMAC-SHA1 output.
        subkey: [u8; 32],
    },
    /// Format V3 (ASP.NET Core Identity).
    V3 {
        /// The PRF.
        prf: Prf,
        /// The iteration count, 1 to 2^31 - 1.
        iterations: u32,
        /// The salt, 16 to 8192 bytes.
        salt: Vec<u8>,
        /// The PBKDF2 output, 16 bytes or more.
        subkey: Vec<u8>,
    },
}

// Never print salts or subkeys, not even in debug output.
impl fmt::Debug for AspNetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AspNetHash({})", self.kind())
    }
}

/// The iteration count of every V2 hash.
pub const V2_ITERATIONS: u32 = 1000;
const V3_HEADER: usize = 13;
const MIN_SALT: u32 = 16;
const MAX_SALT: u32 = 8192;
const MIN_SUBKEY: usize = 16;
/// The longest V3 subkey ferry checks: one SHA-512 output.
const MAX_SUBKEY: usize = 64;

impl AspNetHash {
    /// Parses the base64 text of a `PasswordHash` column.
    pub fn parse(text: &str) -> Result<AspNetHash, Malformed> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| Malformed::BadBase64)?;
        AspNetHash::from_bytes(&bytes)
    }

    /// Parses the decoded bytes of a hash.
    pub fn from_bytes(bytes: &[u8]) -> Result<AspNetHash, Malformed> {
        match bytes.first() {
            None => Err(Malformed::Empty),
            Some(0x00) => {
                if bytes.len() != 49 {
                    return Err(Malformed::V2Length(bytes.len()));
                }
                let mut salt = [0u8; 16];
                let mut subkey = [0u8; 32];
                salt.copy_from_slice(&bytes[1..17]);
                subkey.copy_from_slice(&bytes[17..49]);
                Ok(AspNetHash::V2 { salt, subkey })
            }
            Some(0x01) => {
                if bytes.len() < V3_HEADER {
                    return Err(Malformed::TruncatedHeader(bytes.len()));
                }
                let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
                let prf_code = word(1);
                let iterations = word(5);
                let salt_len = word(9);
                let prf = Prf::from_aspnet_code(prf_code).ok_or(Malformed::UnknownPrf(prf_code))?;
                if iterations == 0 {
                    return Err(Malformed::ZeroIterations);
                }
                if iterations > crate::preferred::MAX_ITERATIONS {
                    return Err(Malformed::IterationsTooLarge(iterations));
                }
                if salt_len < MIN_SALT {
                    return Err(Malformed::SaltTooShort(salt_len));
                }
                if salt_len > MAX_SALT {
                    return Err(Malformed::SaltTooLong(salt_len));
                }
                let available = bytes.len() - V3_HEADER;
                let salt_end = V3_HEADER + salt_len as usize;
                if salt_end > bytes.len() {
                    return Err(Malformed::SaltPastEnd {
                        salt_len,
                        available,
                    });
                }
                let subkey = &bytes[salt_end..];
                if subkey.len() < MIN_SUBKEY {
                    return Err(Malformed::SubkeyTooShort(subkey.len()));
                }
                if subkey.len() > MAX_SUBKEY {
                    return Err(Malformed::SubkeyTooLong(subkey.len()));
                }
                Ok(AspNetHash::V3 {
                    prf,
                    iterations,
                    salt: bytes[V3_HEADER..salt_end].to_vec(),
                    subkey: subkey.to_vec(),
                })
            }
            Some(&other) => Err(Malformed::UnknownVersion(other)),
        }
    }

    /// The census kind of this hash.
    pub fn kind(&self) -> HashKind {
        match self {
            AspNetHash::V2 { .. } => HashKind::V2,
            AspNetHash::V3 {
                prf, iterations, ..
            } => HashKind::V3 {
                prf: *prf,
                iterations: *iterations,
            },
        }
    }

    /// The encoded bytes, exactly as ASP.NET lays them out.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            AspNetHash::V2 { salt, subkey } => {
                let mut out = Vec::with_capacity(49);
                out.push(0x00);
                out.extend_from_slice(salt);
                out.extend_from_slice(subkey);
                out
            }
            AspNetHash::V3 {
                prf,
                iterations,
                salt,
                subkey,
            } => {
                let code: u32 = match prf {
                    Prf::Sha1 => 0,
                    Prf::Sha256 => 1,
                    Prf::Sha512 => 2,
                    Prf::Sha384 => unreachable!("ASP.NET has no code for SHA384"),
                };
                let mut out = Vec::with_capacity(V3_HEADER + salt.len() + subkey.len());
                out.push(0x01);
                out.extend_from_slice(&code.to_be_bytes());
                out.extend_from_slice(&iterations.to_be_bytes());
                out.extend_from_slice(&(salt.len() as u32).to_be_bytes());
                out.extend_from_slice(salt);
                out.extend_from_slice(subkey);
                out
            }
        }
    }

    /// The base64 text ASP.NET stores in `PasswordHash`.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.to_bytes())
    }

    /// Builds the hash ASP.NET would store for `password`, with the given parameters.
    /// Used to make fixtures and test data; ferry never writes new hashes in this format.
    pub fn create(
        password: &str,
        prf: Prf,
        iterations: u32,
        salt: &[u8],
        subkey_len: usize,
    ) -> AspNetHash {
        let mut subkey = vec![0u8; subkey_len];
        pbkdf2::derive(prf, password.as_bytes(), salt, iterations, &mut subkey);
        AspNetHash::V3 {
            prf,
            iterations,
            salt: salt.to_vec(),
            subkey,
        }
    }

    /// Builds a V2 hash of `password` with the given salt.
    pub fn create_v2(password: &str, salt: [u8; 16]) -> AspNetHash {
        let mut subkey = [0u8; 32];
        pbkdf2::derive(
            Prf::Sha1,
            password.as_bytes(),
            &salt,
            V2_ITERATIONS,
            &mut subkey,
        );
        AspNetHash::V2 { salt, subkey }
    }

    /// Checks `password` against this hash in constant time (with respect to the
    /// stored subkey), running PBKDF2 with the hash's own parameters.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            AspNetHash::V2 { salt, subkey } => {
                let mut derived = [0u8; 32];
                pbkdf2::derive(
                    Prf::Sha1,
                    password.as_bytes(),
                    salt,
                    V2_ITERATIONS,
                    &mut derived,
                );
                derived.ct_eq(subkey).into()
            }
            AspNetHash::V3 {
                prf,
                iterations,
                salt,
                subkey,
            } => {
                let mut derived = vec![0u8; subkey.len()];
                pbkdf2::derive(*prf, password.as_bytes(), salt, *iterations, &mut derived);
                derived.ct_eq(subkey).into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        let text = include_str!("../testdata/aspnet-hash-vectors.json");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn public_vectors_verify_as_listed() {
        let v = vectors();
        let password = v["password"].as_str().unwrap();
        for case in v["verifies"].as_array().unwrap() {
            let what = case["what"].as_str().unwrap();
            let hash = AspNetHash::parse(case["hash"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(hash.verify(password), "{what} should verify");
            assert!(
                !hash.verify("my passwore"),
                "{what} must reject a wrong password"
            );
            assert_eq!(
                hash.to_base64(),
                case["hash"].as_str().unwrap(),
                "{what} round trip"
            );
        }
        for case in v["never_verifies"].as_array().unwrap() {
            let what = case["what"].as_str().unwrap();
            if let Ok(hash) = AspNetHash::parse(case["hash"].as_str().unwrap()) {
                assert!(!hash.verify(password), "{what} must never verify");
            }
        }
        for case in v["more"].as_array().unwrap() {
            let hash = AspNetHash::parse(case["hash"].as_str().unwrap()).unwrap();
            let expected = case["verifies"].as_bool().unwrap();
            assert_eq!(
                hash.verify(case["password"].as_str().unwrap()),
                expected,
                "{}",
                case["what"]
            );
        }
    }

    #[test]
    fn malformed_vectors_name_their_reason() {
        let v = vectors();
        let reasons: Vec<(String, Result<HashKind, Malformed>)> = v["never_verifies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["what"].as_str().unwrap().to_string(),
                    AspNetHash::parse(c["hash"].as_str().unwrap()).map(|h| h.kind()),
                )
            })
            .collect();
        // Every verdict of the vector file, which states ASP.NET's own rules.
        for (case, (what, parsed)) in v["never_verifies"].as_array().unwrap().iter().zip(&reasons) {
            let expected = case["malformed"].as_str();
            assert_eq!(parsed.err().map(|m| m.code()), expected, "{what}");
        }
        let by = |what: &str| reasons.iter().find(|(w, _)| w == what).unwrap().1;
        assert_eq!(by("V2, too short"), Err(Malformed::V2Length(32)));
        assert_eq!(by("V2, extra data at end"), Err(Malformed::V2Length(59)));
        assert_eq!(by("V3, too short"), Err(Malformed::SubkeyTooShort(3)));
        assert_eq!(
            by("unknown format marker 0x05"),
            Err(Malformed::UnknownVersion(5))
        );
        assert_eq!(
            by("15-byte salt (minimum is 16)"),
            Err(Malformed::SaltTooShort(15))
        );
        assert_eq!(by("PRF 3 is not defined"), Err(Malformed::UnknownPrf(3)));
        assert_eq!(by("4 bytes: not a hash"), Err(Malformed::V2Length(4)));
        // Well-formed but wrong: parse, then fail to verify.
        assert_eq!(
            by("V3, subkey does not match"),
            Ok(HashKind::V3 {
                prf: Prf::Sha1,
                iterations: 250
            })
        );
    }

    #[test]
    fn every_bound_is_checked() {
        let header = |prf: u32, iter: u32, salt: u32| {
            let mut b = vec![1u8];
            b.extend_from_slice(&prf.to_be_bytes());
            b.extend_from_slice(&iter.to_be_bytes());
            b.extend_from_slice(&salt.to_be_bytes());
            b
        };
        let with = |mut b: Vec<u8>, n: usize| {
            b.extend(std::iter::repeat_n(7u8, n));
            b
        };
        assert_eq!(AspNetHash::parse("@@@"), Err(Malformed::BadBase64));
        assert_eq!(AspNetHash::from_bytes(&[]), Err(Malformed::Empty));
        assert_eq!(
            AspNetHash::from_bytes(&[1, 0, 0]),
            Err(Malformed::TruncatedHeader(3))
        );
        assert_eq!(
            AspNetHash::from_bytes(&with(header(1, 0, 16), 32)),
            Err(Malformed::ZeroIterations)
        );
        assert_eq!(
            AspNetHash::from_bytes(&with(header(1, 1 << 31, 16), 32)),
            Err(Malformed::IterationsTooLarge(1 << 31))
        );
        assert_eq!(
            AspNetHash::from_bytes(&with(header(1, 10_000_001, 16), 32)),
            Err(Malformed::IterationsTooLarge(10_000_001))
        );
        assert!(AspNetHash::from_bytes(&with(header(1, 10_000_000, 16), 32)).is_ok());
        assert_eq!(
            AspNetHash::from_bytes(&with(header(1, 10, 16), 16 + 65)),
            Err(Malformed::SubkeyTooLong(65))
        );
        assert!(AspNetHash::from_bytes(&with(header(1, 10, 16), 16 + 64)).is_ok());
        assert_eq!(
            AspNetHash::from_bytes(&with(header(1, 10, 8193), 9000)),
            Err(Malformed::SaltTooLong(8193))
        );
        assert_eq!(
            AspNetHash::from_bytes(&with(header(1, 10, 64), 32)),
            Err(Malformed::SaltPastEnd {
                salt_len: 64,
                available: 32
            })
        );
        assert_eq!(
            AspNetHash::from_bytes(&with(header(1, 10, 16), 31)),
            Err(Malformed::SubkeyTooShort(15))
        );
        assert!(AspNetHash::from_bytes(&with(header(1, 10_000_000, 8192), 8192 + 16)).is_ok());
    }

    #[test]
    fn debug_output_hides_the_hash() {
        let h = AspNetHash::create_v2("x", [9; 16]);
        assert_eq!(format!("{h:?}"), "AspNetHash(V2)");
    }
}
