//! The preferred algorithm, `pbkdf2`, as User Management defines it: PBKDF2-HMAC-SHA512,
//! 210,000 iterations, a 16-byte salt and a 64-byte digest. Every successful login with
//! any other algorithm re-hashes the password to this one.

use subtle::ConstantTimeEq as _;

use crate::{pbkdf2, Prf};

/// The algorithm id stored beside the hash.
pub const ALGORITHM_ID: &str = "pbkdf2";
/// The PRF of new hashes.
pub const PRF: Prf = Prf::Sha512;
/// The iteration count of new hashes.
pub const ITERATIONS: u32 = 210_000;
/// The salt length of new hashes, in bytes.
pub const SALT_LEN: usize = 16;
/// The digest length of new hashes, in bytes.
pub const DIGEST_LEN: usize = 64;
/// The largest iteration count `verify` accepts (User Management's bound).
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// The largest digest `verify` accepts, in bytes (User Management's bound).
pub const MAX_DIGEST: usize = 512;

/// The parameters of a `pbkdf2` hash, as stored beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// The PRF.
    pub prf: Prf,
    /// The iteration count.
    pub iterations: u32,
}

impl Params {
    /// The parameters of new hashes.
    pub const PREFERRED: Params = Params {
        prf: PRF,
        iterations: ITERATIONS,
    };

    /// Whether a hash with these parameters and digest should be re-hashed on login.
    pub fn needs_rehash(&self, digest_len: usize) -> bool {
        *self != Params::PREFERRED || digest_len != DIGEST_LEN
    }
}

/// Hashes `password` with the preferred parameters and the caller's random `salt`.
pub fn hash(password: &str, salt: &[u8; SALT_LEN]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    pbkdf2::derive(PRF, password.as_bytes(), salt, ITERATIONS, &mut out);
    out
}

/// Checks `password` against a stored `pbkdf2` hash in constant time. Parameters out of
/// User Management's bounds (iterations 1 to 10,000,000, digest 1 to 512 bytes) never verify.
pub fn verify(password: &str, params: Params, salt: &[u8], digest: &[u8]) -> bool {
    if params.iterations == 0 || params.iterations > MAX_ITERATIONS {
        return false;
    }
    if digest.is_empty() || digest.len() > MAX_DIGEST {
        return false;
    }
    let mut derived = vec![0u8; digest.len()];
    pbkdf2::derive(
        params.prf,
        password.as_bytes(),
        salt,
        params.iterations,
        &mut derived,
    );
    derived.ct_eq(digest).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let salt = [3u8; SALT_LEN];
        let digest = hash("correct horse", &salt);
        assert!(verify("correct horse", Params::PREFERRED, &salt, &digest));
        assert!(!verify("correct horsf", Params::PREFERRED, &salt, &digest));
        assert!(!Params::PREFERRED.needs_rehash(DIGEST_LEN));
        assert!(Params {
            prf: Prf::Sha256,
            iterations: ITERATIONS
        }
        .needs_rehash(DIGEST_LEN));
    }

    #[test]
    fn out_of_bounds_parameters_never_verify() {
        let p = Params {
            prf: Prf::Sha1,
            iterations: 0,
        };
        assert!(!verify("x", p, b"salt", &[0u8; 20]));
        let p = Params {
            prf: Prf::Sha1,
            iterations: 1,
        };
        assert!(!verify("x", p, b"salt", &[]));
    }
}
