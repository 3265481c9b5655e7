//! Two-factor recovery codes.
//!
//! ASP.NET Identity keeps them in plain text (`XXXXX-XXXXX`, joined by `;`). The store
//! keeps only a salted PBKDF2-HMAC-SHA512 of each. A code has about 47 bits of entropy,
//! under the 112 bits below which NIST SP 800-63B (5.1.1.2) asks look-up secrets to be
//! hashed with a salt and at least 10,000 iterations: that is the default.

use subtle::ConstantTimeEq as _;

use crate::lanes::{self, Derivation};
use crate::{pbkdf2, Prf};

/// The default iteration count (NIST SP 800-63B's floor for low-entropy look-up secrets).
pub const DEFAULT_ITERATIONS: u32 = 10_000;
/// Salt length per code, in bytes.
pub const SALT_LEN: usize = 16;
/// Digest length per code, in bytes.
pub const DIGEST_LEN: usize = 32;

/// Splits ASP.NET's `RecoveryCodes` token value into its codes.
pub fn split(token_value: &str) -> impl Iterator<Item = &str> {
    token_value
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// Hashes one code with its own salt.
pub fn hash(code: &str, salt: &[u8; SALT_LEN], iterations: u32) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    pbkdf2::derive(Prf::Sha512, code.as_bytes(), salt, iterations, &mut out);
    out
}

/// Hashes many codes, each with its own salt, all with `iterations`: in SIMD lanes
/// ([`crate::lanes`]), several times faster per code than [`hash`] one at a time.
pub fn hash_batch(codes: &[(&str, [u8; SALT_LEN])], iterations: u32) -> Vec<[u8; DIGEST_LEN]> {
    let mut out = vec![[0u8; DIGEST_LEN]; codes.len()];
    let mut batch: Vec<Derivation> = codes
        .iter()
        .zip(out.iter_mut())
        .map(|((code, salt), out)| Derivation {
            password: code.as_bytes(),
            salt,
            out,
        })
        .collect();
    lanes::derive_batch(Prf::Sha512, iterations, &mut batch);
    out
}

/// Checks a code against a stored hash (exact, case-sensitive, as ASP.NET compares).
pub fn verify(code: &str, salt: &[u8], iterations: u32, digest: &[u8]) -> bool {
    if iterations == 0 || digest.len() != DIGEST_LEN {
        return false;
    }
    let mut out = [0u8; DIGEST_LEN];
    pbkdf2::derive(Prf::Sha512, code.as_bytes(), salt, iterations, &mut out);
    out.ct_eq(digest).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_check() {
        let codes: Vec<_> = split("BCDFG-HJKMN;23456-789BC;").collect();
        assert_eq!(codes, ["BCDFG-HJKMN", "23456-789BC"]);
        let salt = [1u8; SALT_LEN];
        let d = hash(codes[0], &salt, 10);
        assert!(verify("BCDFG-HJKMN", &salt, 10, &d));
        assert!(!verify("bcdfg-hjkmn", &salt, 10, &d));
    }

    #[test]
    fn a_batch_hashes_as_one_at_a_time() {
        let codes: Vec<(&str, [u8; SALT_LEN])> = ["BCDFG-HJKMN", "23456-789BC", "QRSTV-WXYZ2"]
            .iter()
            .cycle()
            .take(11)
            .enumerate()
            .map(|(i, c)| (*c, [i as u8; SALT_LEN]))
            .collect();
        let batch = hash_batch(&codes, 100);
        for ((code, salt), digest) in codes.iter().zip(&batch) {
            assert_eq!(*digest, hash(code, salt, 100));
            assert!(verify(code, salt, 100, digest));
        }
    }
}
