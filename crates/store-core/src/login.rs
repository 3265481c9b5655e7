//! Password checks by algorithm id, through `ferry-passwords`.

use ferry_passwords::preferred::{self, Params};
use ferry_passwords::{AspNetHash, PasswordHash, Prf};
use serde_json::{Map, Value};

use crate::model::{
    HashedPassword, ARGON2_ALGORITHM, ASPNET_ALGORITHM, BCRYPT_ALGORITHM, MEMBERSHIP_ALGORITHM,
};

/// The result of a password check, as ASP.NET names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Wrong password, or a hash that can never verify.
    Failed,
    /// Right password, stored with the preferred algorithm.
    Success,
    /// Right password, stored with another algorithm or parameters: re-hash it.
    SuccessRehashNeeded,
}

/// Checks `password` against stored password data.
pub fn verify(password: &str, stored: &HashedPassword) -> Verdict {
    match stored.algorithm.as_str() {
        ASPNET_ALGORITHM => {
            let Some(Value::String(blob)) = stored.parameters.get("blob") else {
                return Verdict::Failed;
            };
            match AspNetHash::parse(blob) {
                Ok(hash) if hash.verify(password) => Verdict::SuccessRehashNeeded,
                _ => Verdict::Failed,
            }
        }
        MEMBERSHIP_ALGORITHM => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let text = format!(
                "{}|1|{}",
                b64.encode(&stored.hash),
                b64.encode(&stored.salt)
            );
            verify_other(password, &text)
        }
        BCRYPT_ALGORITHM | ARGON2_ALGORITHM => match stored.parameters.get("encoded") {
            Some(Value::String(encoded)) => verify_other(password, encoded),
            _ => Verdict::Failed,
        },
        preferred::ALGORITHM_ID => {
            let prf = stored
                .parameters
                .get("prf")
                .and_then(Value::as_str)
                .and_then(Prf::from_name);
            let iterations = stored
                .parameters
                .get("iterations")
                .and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                })
                .and_then(|n| u32::try_from(n).ok());
            let (Some(prf), Some(iterations)) = (prf, iterations) else {
                return Verdict::Failed;
            };
            let params = Params { prf, iterations };
            if !preferred::verify(password, params, &stored.salt, &stored.hash) {
                Verdict::Failed
            } else if params.needs_rehash(stored.hash.len()) {
                Verdict::SuccessRehashNeeded
            } else {
                Verdict::Success
            }
        }
        _ => {
            // Unknown algorithm: do the work a real check would, then fail, so that timing
            // does not tell which users carry which algorithm.
            let _ = preferred::hash(password, &[0u8; preferred::SALT_LEN]);
            Verdict::Failed
        }
    }
}

/// Why stored password data can never verify, when it is an ASP.NET hash that does not
/// parse (or is above ferry's cost ceilings, which are never run): the reason, to say.
pub fn malformed(stored: &HashedPassword) -> Option<String> {
    if stored.algorithm != ASPNET_ALGORITHM {
        return None;
    }
    let Some(Value::String(blob)) = stored.parameters.get("blob") else {
        return Some("no hash".into());
    };
    PasswordHash::parse(blob)
        .err()
        .map(|reason| reason.to_string())
}

/// Checks a hash of another format, kept in its own text: any success asks for a re-hash.
fn verify_other(password: &str, text: &str) -> Verdict {
    match PasswordHash::parse(text) {
        Ok(hash) if hash.verify(password) => Verdict::SuccessRehashNeeded,
        _ => Verdict::Failed,
    }
}

/// Hashes `password` with the preferred algorithm and a fresh random salt.
pub fn preferred_hash(password: &str) -> HashedPassword {
    use rand::RngCore as _;
    let mut salt = [0u8; preferred::SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let digest = preferred::hash(password, &salt);
    preferred_of(&salt, &digest)
}

/// A hash in the preferred format that costs nothing to make and that no password
/// matches but by a 2^-512 chance: what `login` checks a password against when there is
/// no user (or no password) to check it against, so that the refusal takes as long as a
/// wrong password does.
pub fn placeholder_hash() -> HashedPassword {
    preferred_of(&[0; preferred::SALT_LEN], &[0x5a; preferred::DIGEST_LEN])
}

fn preferred_of(salt: &[u8], digest: &[u8]) -> HashedPassword {
    let mut parameters = Map::new();
    parameters.insert("prf".into(), Value::String(preferred::PRF.name().into()));
    parameters.insert("iterations".into(), Value::from(preferred::ITERATIONS));
    parameters.insert("digestSize".into(), Value::from(preferred::DIGEST_LEN));
    HashedPassword {
        algorithm: preferred::ALGORITHM_ID.into(),
        hash: digest.to_vec(),
        salt: salt.to_vec(),
        parameters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aspnet_then_preferred() {
        let blob = "AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHw";
        let stored = HashedPassword::aspnet(blob);
        assert_eq!(verify("my password", &stored), Verdict::SuccessRehashNeeded);
        assert_eq!(verify("my passwore", &stored), Verdict::Failed);
        let new = preferred_hash("my password");
        assert_eq!(verify("my password", &new), Verdict::Success);
        assert_eq!(verify("wrong", &new), Verdict::Failed);
        let mut unknown = new.clone();
        unknown.algorithm = "md5".into();
        assert_eq!(verify("my password", &unknown), Verdict::Failed);
    }
}
