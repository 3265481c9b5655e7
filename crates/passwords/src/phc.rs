//! PHC strings (`$id$params$salt$hash`): Argon2 (`$argon2id$v=19$m=…,t=…,p=…$…$…`,
//! checked with the `argon2` crate) and PBKDF2 (`$pbkdf2-sha256$i=…,l=…$…$…` as the
//! RustCrypto crates write it, and passlib's `$pbkdf2-sha256$29000$…$…` with its
//! `.`-for-`+` base64).

use std::fmt;

use base64::alphabet::Alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use crate::limits::{MAX_ARGON2_LANES, MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_PASSES};
use crate::preferred::MAX_ITERATIONS;
use crate::{pbkdf2, Malformed, Prf};

/// The Argon2 variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Argon2Variant {
    /// Argon2d.
    D,
    /// Argon2i.
    I,
    /// Argon2id.
    Id,
}

impl Argon2Variant {
    /// `argon2d`, `argon2i`, `argon2id`.
    pub fn name(self) -> &'static str {
        match self {
            Argon2Variant::D => "argon2d",
            Argon2Variant::I => "argon2i",
            Argon2Variant::Id => "argon2id",
        }
    }
}

/// The parameters of an Argon2 hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Argon2Params {
    /// The variant.
    pub variant: Argon2Variant,
    /// The version: 16 (0x10) or 19 (0x13).
    pub version: u32,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
}

/// A parsed Argon2 PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct Argon2Hash {
    /// Its parameters.
    pub params: Argon2Params,
    text: String,
}

impl fmt::Debug for Argon2Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Argon2Hash({:?})", self.params)
    }
}

impl Argon2Hash {
    /// Parses an Argon2 PHC string. A string without `v=` is version 16, as the reference
    /// implementation reads it. Parameters above the ceilings of [`crate::limits`] are
    /// refused with [`Malformed::Argon2Cost`].
    pub fn parse(text: &str) -> Result<Argon2Hash, Malformed> {
        let t = text.trim();
        let mut fields: Vec<&str> = t.split('$').collect();
        // "", id, [v=…], params, salt, hash
        if fields.len() == 5 {
            fields.insert(2, "v=16");
        }
        if fields.len() != 6 || !fields[0].is_empty() {
            return Err(Malformed::Argon2Syntax);
        }
        let variant = match fields[1] {
            "argon2d" => Argon2Variant::D,
            "argon2i" => Argon2Variant::I,
            "argon2id" => Argon2Variant::Id,
            _ => return Err(Malformed::Argon2Syntax),
        };
        let version: u32 = match fields[2] {
            "v=16" => 16,
            "v=19" => 19,
            _ => return Err(Malformed::Argon2Syntax),
        };
        let mut m = None;
        let mut tt = None;
        let mut p = None;
        for kv in fields[3].split(',') {
            let (k, v) = kv.split_once('=').ok_or(Malformed::Argon2Syntax)?;
            let v: u32 = v.parse().map_err(|_| Malformed::Argon2Syntax)?;
            let slot = match k {
                "m" => &mut m,
                "t" => &mut tt,
                "p" => &mut p,
                _ => return Err(Malformed::Argon2Syntax),
            };
            if slot.replace(v).is_some() {
                return Err(Malformed::Argon2Syntax);
            }
        }
        let (Some(memory_kib), Some(passes), Some(lanes)) = (m, tt, p) else {
            return Err(Malformed::Argon2Syntax);
        };
        if memory_kib > MAX_ARGON2_MEMORY_KIB
            || passes > MAX_ARGON2_PASSES
            || lanes > MAX_ARGON2_LANES
        {
            return Err(Malformed::Argon2Cost);
        }
        let params = Argon2Params {
            variant,
            version,
            memory_kib,
            passes,
            lanes,
        };
        let normalized = fields.join("$");
        // The argon2 crate's own parse checks the rest (salt and hash lengths, minimum
        // memory per lane).
        argon2_params(&normalized).ok_or(Malformed::Argon2Syntax)?;
        Ok(Argon2Hash {
            params,
            text: normalized,
        })
    }

    /// The PHC string (with its `v=`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Checks `password` (the `argon2` crate compares in constant time).
    pub fn verify(&self, password: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
        let Ok(hash) = PasswordHash::new(&self.text) else {
            return false;
        };
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    }

    /// Hashes `password` as Argon2id v19 with these costs and salt, for fixtures.
    pub fn create(password: &str, memory_kib: u32, passes: u32, lanes: u32, salt: &[u8]) -> String {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        let params =
            argon2::Params::new(memory_kib, passes, lanes, Some(32)).expect("valid parameters");
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(salt).expect("a salt of 4 to 48 bytes");
        a.hash_password(password.as_bytes(), &salt)
            .expect("hashing works")
            .to_string()
    }
}

fn argon2_params(text: &str) -> Option<()> {
    let hash = argon2::password_hash::PasswordHash::new(text).ok()?;
    argon2::Params::try_from(&hash).ok()?;
    hash.hash?;
    Some(())
}

/// A parsed PBKDF2 PHC (or passlib) string.
#[derive(Clone, PartialEq, Eq)]
pub struct Pbkdf2Phc {
    /// The PRF.
    pub prf: Prf,
    /// The iteration count.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// The derived key.
    pub hash: Vec<u8>,
}

impl fmt::Debug for Pbkdf2Phc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pbkdf2Phc({} {})", self.prf, self.iterations)
    }
}

/// passlib's "adapted base64": `.` for `+`, no padding.
const AB64: GeneralPurpose = GeneralPurpose::new(
    &match Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./") {
        Ok(a) => a,
        Err(_) => panic!("a valid alphabet"),
    },
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl Pbkdf2Phc {
    /// Parses `$pbkdf2-sha256$i=N[,l=L]$salt$hash` (standard base64 without padding) or
    /// passlib's `$pbkdf2-sha256$N$salt$hash` (and `$pbkdf2$` for SHA-1).
    pub fn parse(text: &str) -> Result<Pbkdf2Phc, Malformed> {
        let fields: Vec<&str> = text.trim().split('$').collect();
        if fields.len() != 5 || !fields[0].is_empty() {
            return Err(Malformed::Pbkdf2Syntax);
        }
        let prf = match fields[1] {
            "pbkdf2" | "pbkdf2-sha1" => Prf::Sha1,
            "pbkdf2-sha256" => Prf::Sha256,
            "pbkdf2-sha512" => Prf::Sha512,
            _ => return Err(Malformed::Pbkdf2Syntax),
        };
        let (iterations, length, passlib) = if let Ok(n) = fields[2].parse::<u64>() {
            (n, None, true)
        } else {
            let mut i = None;
            let mut l = None;
            for kv in fields[2].split(',') {
                let (k, v) = kv.split_once('=').ok_or(Malformed::Pbkdf2Syntax)?;
                let v: u64 = v.parse().map_err(|_| Malformed::Pbkdf2Syntax)?;
                match k {
                    "i" => i = Some(v),
                    "l" => l = Some(v),
                    _ => return Err(Malformed::Pbkdf2Syntax),
                }
            }
            (i.ok_or(Malformed::Pbkdf2Syntax)?, l, false)
        };
        if iterations == 0 {
            return Err(Malformed::ZeroIterations);
        }
        let iterations = u32::try_from(iterations)
            .ok()
            .filter(|&n| n <= MAX_ITERATIONS)
            .ok_or(Malformed::IterationsTooLarge(
                iterations.min(u64::from(u32::MAX)) as u32,
            ))?;
        let decode = |s: &str| {
            if passlib {
                AB64.decode(s)
            } else {
                STANDARD_NO_PAD.decode(s.trim_end_matches('='))
            }
        };
        let salt = decode(fields[3]).map_err(|_| Malformed::Pbkdf2Syntax)?;
        let hash = decode(fields[4]).map_err(|_| Malformed::Pbkdf2Syntax)?;
        if hash.is_empty() || hash.len() > crate::preferred::MAX_DIGEST {
            return Err(Malformed::Pbkdf2Syntax);
        }
        if length.is_some_and(|l| l != hash.len() as u64) {
            return Err(Malformed::Pbkdf2Syntax);
        }
        Ok(Pbkdf2Phc {
            prf,
            iterations,
            salt,
            hash,
        })
    }

    /// Checks `password` in constant time.
    pub fn verify(&self, password: &str) -> bool {
        let mut out = vec![0u8; self.hash.len()];
        pbkdf2::derive(
            self.prf,
            password.as_bytes(),
            &self.salt,
            self.iterations,
            &mut out,
        );
        out.ct_eq(&self.hash).into()
    }
}
