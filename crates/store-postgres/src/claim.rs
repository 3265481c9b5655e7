//! The `claims` table's key: the SHA-256 of a claim's kind and key.
//!
//! One digest per value a record claims for itself alone ([`UniqueClaim::index_key`]):
//! 32 bytes whatever the value's length, so a unique attribute value of any size fits the
//! index, and one unique index covers every kind. Two different claims never share a
//! digest in practice (a collision of SHA-256), so the digest stands for the claim.

use ferry_store_core::{ClaimKind, Item, UniqueClaim};
use sha2::{Digest as _, Sha256};

/// A claim's digest.
pub(crate) type Digest = [u8; 32];

/// The digest of `kind` and `key`.
pub(crate) fn digest(kind: &ClaimKind, key: &str) -> Digest {
    Sha256::digest(kind.index_key(key).as_bytes()).into()
}

/// The `claims.kind` column: the kind as people read it (`user`, `attribute:email`,
/// `otp:Email`, `login`, `passkey`).
pub(crate) fn kind_name(kind: &ClaimKind) -> String {
    kind.index_name().replace('\u{1f}', ":")
}

/// What the mapping threads compute for an item: its claims' digests and kinds.
pub(crate) struct Prepared {
    pub(crate) digests: Vec<Digest>,
    pub(crate) kinds: Vec<String>,
}

impl Prepared {
    pub(crate) fn of(claims: &[UniqueClaim]) -> Prepared {
        Prepared {
            digests: claims.iter().map(|c| digest(&c.kind, &c.key)).collect(),
            kinds: claims.iter().map(|c| kind_name(&c.kind)).collect(),
        }
    }
}

/// The store's item preparer.
pub(crate) fn prepare_item(item: &mut Item) {
    if item.record.is_ok() {
        item.prepared = Some(Box::new(Prepared::of(&item.claims)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_fixed_and_separate_kinds() {
        // Pinned: stores hold these values. SHA-256 of "user" U+001E "ALICE", as
        // `printf 'user\x1eALICE' | sha256sum` prints it.
        let d = digest(&ClaimKind::UserName, "ALICE");
        assert_eq!(
            d.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "cad5a681bbd0a25c1b402f0daa77202c98a7aaa4cd5e7b343c81427051306444"
        );
        assert_ne!(
            digest(&ClaimKind::UserName, "A"),
            digest(&ClaimKind::Attribute("userName".into()), "A")
        );
        assert_eq!(
            kind_name(&ClaimKind::Attribute("email".into())),
            "attribute:email"
        );
    }
}
