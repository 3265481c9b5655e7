//! Lookup keys: the exact text a user name or OTP address is unique by, and a 64-bit hash
//! of it that the store indexes.
//!
//! A B-tree of 8-byte integers is a third of the size of one of the e-mail addresses it
//! stands for, and cheaper to compare, so inserting a million keys in random order
//! touches far fewer pages. The hash only narrows the search: every lookup also compares
//! the exact text, so two keys that share a hash never conflict and never find each other.
//! The hash indexes are unique; a key whose hash another key has taken is stored with a
//! NULL hash and found through a partial index of such keys (docs/store.md, "Lookup keys").

use sha2::{Digest, Sha256};

/// A key as the store looks it up: the exact text and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    /// The text the value is unique by (already normalized).
    pub(crate) text: String,
    /// [`key_hash`] of the key's parts.
    pub(crate) hash: i64,
}

impl Key {
    /// The key of a normalized user name (`users.user_name_hash`).
    pub(crate) fn user_name(normalized: String) -> Key {
        Key {
            hash: key_hash(&[&normalized]),
            text: normalized,
        }
    }

    /// The key of an OTP address on `channel` (`otp_addresses.key_hash`).
    pub(crate) fn otp(channel: &str, normalized: String) -> Key {
        Key {
            hash: key_hash(&[channel, &normalized]),
            text: normalized,
        }
    }
}

/// A key borrowed from where it already is (a record's claims), with its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyRef<'a> {
    /// The text the value is unique by.
    pub(crate) text: &'a str,
    /// [`key_hash`] of the key's parts.
    pub(crate) hash: i64,
}

impl Key {
    /// The key, borrowed.
    pub(crate) fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            text: &self.text,
            hash: self.hash,
        }
    }
}

/// The first 8 bytes of SHA-256 over the parts, each preceded by its length, read as a
/// big-endian signed integer. Stored in the store's files: it must never change.
pub(crate) fn key_hash(parts: &[&str]) -> i64 {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    i64::from_be_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

/// Registers `ferry_key_hash(part, …)` on `conn`, for migrations that fill hash columns.
pub(crate) fn register_sql_function(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "ferry_key_hash",
        -1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let parts = (0..ctx.len())
                .map(|i| ctx.get::<String>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            Ok(key_hash(&parts))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed_and_separates_parts() {
        // Pinned: stores written by earlier builds hold these values.
        // (Checked with Python's hashlib over the same length-prefixed parts.)
        assert_eq!(
            format!("{:016x}", key_hash(&["Email", "A@X.ORG"])),
            "1673422042d1d586"
        );
        assert_eq!(format!("{:016x}", key_hash(&["ALICE"])), "3dbb109e4f5ab4c3");
        assert_ne!(key_hash(&["ab", "c"]), key_hash(&["a", "bc"]));
        assert_ne!(key_hash(&["Email", "X"]), key_hash(&["Sms", "X"]));
    }
}
