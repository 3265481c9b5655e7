//! PBKDF2-HMAC (RFC 8018) with the PRFs ASP.NET Identity and User Management use.

use hmac::Hmac;
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};

use crate::Prf;

/// Fills `out` with PBKDF2-HMAC-`prf` of `password` and `salt` at `iterations`.
///
/// `iterations` must be at least 1.
pub fn derive(prf: Prf, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    assert!(iterations > 0, "PBKDF2 needs at least one iteration");
    match prf {
        Prf::Sha1 => ::pbkdf2::pbkdf2::<Hmac<Sha1>>(password, salt, iterations, out),
        Prf::Sha256 => ::pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, iterations, out),
        Prf::Sha384 => ::pbkdf2::pbkdf2::<Hmac<Sha384>>(password, salt, iterations, out),
        Prf::Sha512 => ::pbkdf2::pbkdf2::<Hmac<Sha512>>(password, salt, iterations, out),
    }
    .expect("HMAC accepts keys of any length");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6070_sha1() {
        let mut out = [0u8; 20];
        derive(Prf::Sha1, b"password", b"salt", 4096, &mut out);
        assert_eq!(
            out,
            [
                0x4b, 0x00, 0x79, 0x01, 0xb7, 0x65, 0x48, 0x9a, 0xbe, 0xad, 0x49, 0xd9, 0x26, 0xf7,
                0x21, 0xd0, 0x65, 0xa4, 0x29, 0xc1
            ]
        );
    }
}
