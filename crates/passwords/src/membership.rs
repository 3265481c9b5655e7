//! ASP.NET Membership passwords carried into Identity 2.x by Microsoft's migration
//! recipe ("Migrating an existing website from SQL Membership to ASP.NET Identity"):
//! `PasswordHash` holds `Password|PasswordFormat|PasswordSalt` from `aspnet_Membership`.
//!
//! - Format 0, clear: the first field is the password itself. It verifies by comparison;
//!   ferry hashes it at load and never stores it as it is.
//! - Format 1, hashed: base64 of the digest, and base64 of the salt. `SqlMembershipProvider`
//!   hashes the salt followed by the password in UTF-16LE with an unkeyed algorithm
//!   (`SHA1`, the recipe's and .NET 2.0's default, or `SHA256`…), or, when the algorithm is
//!   keyed (`HMACSHA256`, the default of .NET 4's `<machineKey validation>`), computes the
//!   HMAC of the password alone with the salt as key (repeated to fill the algorithm's
//!   default key of 64 bytes, 128 for SHA-384 and SHA-512). The digest's length names the
//!   hash function; which of the two constructions the app used is not written anywhere,
//!   so both are checked (a false match of either is as unlikely as of one).
//! - Format 2, encrypted with the machineKey: cannot be checked offline.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq as _;

use crate::Malformed;

/// The hash function of a Membership digest, told by its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MembershipAlgorithm {
    /// 20 bytes: SHA1 or HMACSHA1.
    Sha1,
    /// 32 bytes: SHA256 or HMACSHA256.
    Sha256,
    /// 48 bytes: SHA384 or HMACSHA384.
    Sha384,
    /// 64 bytes: SHA512 or HMACSHA512.
    Sha512,
}

impl MembershipAlgorithm {
    fn of_len(len: usize) -> Option<MembershipAlgorithm> {
        Some(match len {
            20 => MembershipAlgorithm::Sha1,
            32 => MembershipAlgorithm::Sha256,
            48 => MembershipAlgorithm::Sha384,
            64 => MembershipAlgorithm::Sha512,
            _ => return None,
        })
    }

    /// `SHA1`, `SHA256`, `SHA384`, `SHA512`.
    pub fn name(self) -> &'static str {
        match self {
            MembershipAlgorithm::Sha1 => "SHA1",
            MembershipAlgorithm::Sha256 => "SHA256",
            MembershipAlgorithm::Sha384 => "SHA384",
            MembershipAlgorithm::Sha512 => "SHA512",
        }
    }

    /// The .NET names of the two constructions checked: `["SHA1", "HMACSHA1"]`, …
    pub fn dotnet_names(self) -> [&'static str; 2] {
        match self {
            MembershipAlgorithm::Sha1 => ["SHA1", "HMACSHA1"],
            MembershipAlgorithm::Sha256 => ["SHA256", "HMACSHA256"],
            MembershipAlgorithm::Sha384 => ["SHA384", "HMACSHA384"],
            MembershipAlgorithm::Sha512 => ["SHA512", "HMACSHA512"],
        }
    }

    /// The default key length of .NET's `HMAC…` class, which the salt is stretched to.
    fn hmac_key_len(self) -> usize {
        match self {
            MembershipAlgorithm::Sha1 | MembershipAlgorithm::Sha256 => 64,
            MembershipAlgorithm::Sha384 | MembershipAlgorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for MembershipAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Membership password that can be checked.
#[derive(Clone, PartialEq, Eq)]
pub enum MembershipHash {
    /// Format 0: the password in clear text.
    Clear(String),
    /// Format 1: a salted digest.
    Hashed {
        /// The hash function, from the digest's length.
        algorithm: MembershipAlgorithm,
        /// The salt (`PasswordSalt`, base64-decoded).
        salt: Vec<u8>,
        /// The digest (`Password`, base64-decoded).
        digest: Vec<u8>,
    },
}

impl fmt::Debug for MembershipHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipHash::Clear(_) => f.write_str("MembershipHash(clear)"),
            MembershipHash::Hashed { algorithm, .. } => write!(f, "MembershipHash({algorithm})"),
        }
    }
}

/// Whether `text` has the shape of a Membership value (`…|0|…`, `…|1|…`, `…|2|…`).
pub(crate) fn looks_like(text: &str) -> bool {
    let mut fields = text.rsplitn(3, '|');
    let (_salt, format) = (fields.next(), fields.next());
    fields.next().is_some() && format.is_some()
}

impl MembershipHash {
    /// Parses `Password|PasswordFormat|PasswordSalt`. The clear-text password may itself
    /// contain `|`: the format and salt are the last two fields.
    pub fn parse(text: &str) -> Result<MembershipHash, Malformed> {
        let mut fields = text.rsplitn(3, '|');
        let salt = fields.next().ok_or(Malformed::MembershipSyntax)?;
        let format = fields.next().ok_or(Malformed::MembershipSyntax)?;
        let password = fields.next().ok_or(Malformed::MembershipSyntax)?;
        match format.trim() {
            "0" => Ok(MembershipHash::Clear(password.to_string())),
            "1" => {
                let digest = STANDARD
                    .decode(password.trim())
                    .map_err(|_| Malformed::MembershipSyntax)?;
                let salt = STANDARD
                    .decode(salt.trim())
                    .map_err(|_| Malformed::MembershipSyntax)?;
                let algorithm = MembershipAlgorithm::of_len(digest.len())
                    .ok_or(Malformed::MembershipDigest(digest.len()))?;
                Ok(MembershipHash::Hashed {
                    algorithm,
                    salt,
                    digest,
                })
            }
            "2" => Err(Malformed::MembershipEncrypted),
            _ => Err(Malformed::MembershipSyntax),
        }
    }

    /// Checks `password` in constant time with respect to the stored digest (or clear
    /// password).
    pub fn verify(&self, password: &str) -> bool {
        match self {
            // Slices of different lengths compare unequal.
            MembershipHash::Clear(clear) => clear.as_bytes().ct_eq(password.as_bytes()).into(),
            MembershipHash::Hashed {
                algorithm,
                salt,
                digest,
            } => {
                let unkeyed = unkeyed(*algorithm, salt, password);
                let keyed = keyed(*algorithm, salt, password);
                // Both are computed and compared, whichever matches.
                let a = unkeyed.ct_eq(digest);
                let b = keyed.ct_eq(digest);
                bool::from(a | b)
            }
        }
    }

    /// Builds the format-1 value `SqlMembershipProvider` stores with an unkeyed
    /// algorithm (`hashAlgorithmType="SHA1"`, …), for fixtures.
    pub fn create_hashed(password: &str, algorithm: MembershipAlgorithm, salt: &[u8]) -> String {
        let digest = unkeyed(algorithm, salt, password);
        format!("{}|1|{}", STANDARD.encode(digest), STANDARD.encode(salt))
    }

    /// Builds the format-1 value with the keyed algorithm (`HMACSHA256`, …), for fixtures.
    pub fn create_keyed(password: &str, algorithm: MembershipAlgorithm, salt: &[u8]) -> String {
        let digest = keyed(algorithm, salt, password);
        format!("{}|1|{}", STANDARD.encode(digest), STANDARD.encode(salt))
    }
}

fn utf16le(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// `HashAlgorithm.ComputeHash(salt ‖ UTF-16LE(password))`.
fn unkeyed(algorithm: MembershipAlgorithm, salt: &[u8], password: &str) -> Vec<u8> {
    let pw = utf16le(password);
    fn run<D: Digest>(salt: &[u8], pw: &[u8]) -> Vec<u8> {
        let mut d = D::new();
        d.update(salt);
        d.update(pw);
        d.finalize().to_vec()
    }
    match algorithm {
        MembershipAlgorithm::Sha1 => run::<Sha1>(salt, &pw),
        MembershipAlgorithm::Sha256 => run::<Sha256>(salt, &pw),
        MembershipAlgorithm::Sha384 => run::<Sha384>(salt, &pw),
        MembershipAlgorithm::Sha512 => run::<Sha512>(salt, &pw),
    }
}

/// `KeyedHashAlgorithm.ComputeHash(UTF-16LE(password))`, the key being the salt cut or
/// repeated to the algorithm's default key length, as `SqlMembershipProvider` does.
fn keyed(algorithm: MembershipAlgorithm, salt: &[u8], password: &str) -> Vec<u8> {
    let pw = utf16le(password);
    let n = algorithm.hmac_key_len();
    let key: Vec<u8> = if salt.is_empty() {
        vec![0; n]
    } else {
        salt.iter().copied().cycle().take(n).collect()
    };
    macro_rules! mac {
        ($d:ty) => {{
            let mut m = Hmac::<$d>::new_from_slice(&key).expect("HMAC takes any key");
            m.update(&pw);
            m.finalize().into_bytes().to_vec()
        }};
    }
    match algorithm {
        MembershipAlgorithm::Sha1 => mac!(Sha1),
        MembershipAlgorithm::Sha256 => mac!(Sha256),
        MembershipAlgorithm::Sha384 => mac!(Sha384),
        MembershipAlgorithm::Sha512 => mac!(Sha512),
    }
}
