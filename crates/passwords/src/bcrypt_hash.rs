//! BCrypt hashes as BCrypt.Net and every other implementation write them:
//! `$2b$10$` + 22 characters of salt + 31 of hash, in BCrypt's own base64. Checked with
//! the `bcrypt` crate; passwords longer than 72 bytes are cut to 72, as BCrypt does.

use std::fmt;

use crate::limits::{MAX_BCRYPT_COST, MIN_BCRYPT_COST};
use crate::Malformed;

/// The version letter of a BCrypt hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BcryptVersion {
    /// `$2a$`.
    A,
    /// `$2b$`.
    B,
    /// `$2x$` (crypt_blowfish's marker for hashes made by its sign-extension bug).
    X,
    /// `$2y$`.
    Y,
}

impl BcryptVersion {
    /// `2a`, `2b`, `2x`, `2y`.
    pub fn name(self) -> &'static str {
        match self {
            BcryptVersion::A => "2a",
            BcryptVersion::B => "2b",
            BcryptVersion::X => "2x",
            BcryptVersion::Y => "2y",
        }
    }
}

/// A parsed BCrypt hash.
#[derive(Clone, PartialEq, Eq)]
pub struct BcryptHash {
    /// The version.
    pub version: BcryptVersion,
    /// The cost (log2 of the rounds).
    pub cost: u32,
    text: String,
}

impl fmt::Debug for BcryptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BcryptHash({} cost {})", self.version.name(), self.cost)
    }
}

const ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl BcryptHash {
    /// Parses `$2?$NN$` followed by 53 characters of BCrypt base64. A cost outside 4 to
    /// [`MAX_BCRYPT_COST`] is refused with [`Malformed::BcryptCost`].
    pub fn parse(text: &str) -> Result<BcryptHash, Malformed> {
        let t = text.trim();
        let b = t.as_bytes();
        if b.len() != 60 || &b[..2] != b"$2" || b[3] != b'$' || b[6] != b'$' {
            return Err(Malformed::BcryptSyntax);
        }
        let version = match b[2] {
            b'a' => BcryptVersion::A,
            b'b' => BcryptVersion::B,
            b'x' => BcryptVersion::X,
            b'y' => BcryptVersion::Y,
            _ => return Err(Malformed::BcryptSyntax),
        };
        if !b[4].is_ascii_digit() || !b[5].is_ascii_digit() {
            return Err(Malformed::BcryptSyntax);
        }
        if !b[7..].iter().all(|c| ALPHABET.contains(c)) {
            return Err(Malformed::BcryptSyntax);
        }
        let cost = u32::from(b[4] - b'0') * 10 + u32::from(b[5] - b'0');
        if !(MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
            return Err(Malformed::BcryptCost(cost));
        }
        Ok(BcryptHash {
            version,
            cost,
            text: t.to_string(),
        })
    }

    /// The hash as stored.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Checks `password` (the `bcrypt` crate compares in constant time).
    pub fn verify(&self, password: &str) -> bool {
        ::bcrypt::verify(password, &self.text).unwrap_or(false)
    }

    /// Hashes `password` with this cost and salt as `$2b$`, for fixtures.
    pub fn create(password: &str, cost: u32, salt: [u8; 16]) -> String {
        ::bcrypt::hash_with_salt(password, cost, salt)
            .expect("a valid cost")
            .format_for_version(::bcrypt::Version::TwoB)
    }
}
