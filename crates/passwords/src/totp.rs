//! Time-based one-time passwords (RFC 6238) as ASP.NET Identity's authenticator uses
//! them: HMAC-SHA1, 30-second steps, 6 digits, and codes from two steps either side of
//! now accepted.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

/// Seconds per time step.
pub const PERIOD: u64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps either side of the current one that still verify.
pub const WINDOW: u64 = 2;

/// A TOTP key that is not valid base32 (`A`–`Z`, `2`–`7`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("authenticator key is not base32 (A-Z, 2-7)")]
pub struct BadKey;

/// Decodes an authenticator key as ASP.NET stores it: base32, case-insensitive,
/// spaces and `=` padding ignored.
pub fn decode_key(text: &str) -> Result<Vec<u8>, BadKey> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if clean.is_empty() {
        return Err(BadKey);
    }
    data_encoding::BASE32_NOPAD
        .decode(clean.as_bytes())
        .or_else(|_| {
            // Keys whose bit count is not a multiple of 8 carry trailing bits; decode
            // leniently the way ASP.NET's Base32 does, dropping the remainder.
            let usable = clean.len() * 5 / 8 * 8 / 5;
            data_encoding::BASE32_NOPAD.decode(&clean.as_bytes()[..usable])
        })
        .map_err(|_| BadKey)
}

/// The code for `key` at Unix time `unix_seconds`.
pub fn code_at(key: &[u8], unix_seconds: u64) -> u32 {
    code_for_step(key, unix_seconds / PERIOD)
}

fn code_for_step(key: &[u8], step: u64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    binary % 10u32.pow(DIGITS)
}

/// Checks `code` (six digits; surrounding spaces ignored) against `key` at
/// `unix_seconds`, accepting two steps either side.
pub fn verify(key: &[u8], code: &str, unix_seconds: u64) -> bool {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let step = unix_seconds / PERIOD;
    let mut ok = subtle::Choice::from(0);
    for s in step.saturating_sub(WINDOW)..=step + WINDOW {
        let expected = format!("{:06}", code_for_step(key, s));
        ok |= expected.as_bytes().ct_eq(code.as_bytes());
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vectors() {
        let text = include_str!("../testdata/aspnet-hash-vectors.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let t = &v["totp_rfc6238_sha1"];
        let key = decode_key(t["key_base32"].as_str().unwrap()).unwrap();
        assert_eq!(key, b"12345678901234567890");
        for (time, code) in t["codes"].as_object().unwrap() {
            let time: u64 = time.parse().unwrap();
            assert_eq!(
                format!("{:06}", code_at(&key, time)),
                code.as_str().unwrap()
            );
            assert!(verify(&key, code.as_str().unwrap(), time));
            // Two steps away still passes, three do not.
            assert!(verify(&key, code.as_str().unwrap(), time + 2 * PERIOD));
            assert!(!verify(
                &key,
                code.as_str().unwrap(),
                time + 3 * PERIOD + PERIOD
            ));
        }
        assert!(!verify(&key, "28708", 59));
        assert!(!verify(&key, "abcdef", 59));
    }

    #[test]
    fn lowercase_and_spaced_keys_decode() {
        assert_eq!(
            decode_key("gezd gnbv").unwrap(),
            decode_key("GEZDGNBV").unwrap()
        );
        assert_eq!(decode_key("not base32!"), Err(BadKey));
    }
}
