//! What the store imports: User Management's `UserImportRecord`, in ferry's types.

use std::fmt;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

/// A subject id: the stable, case-sensitive id of a user (at most 200 characters).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectId(String);

impl SubjectId {
    /// The longest subject id User Management accepts.
    pub const MAX_LEN: usize = 200;

    /// Checks and wraps a subject id.
    pub fn new(id: &str) -> Result<SubjectId, String> {
        if id.is_empty() {
            return Err("subject id is empty".into());
        }
        if id.chars().count() > Self::MAX_LEN {
            return Err(format!(
                "subject id is longer than {} characters",
                Self::MAX_LEN
            ));
        }
        Ok(SubjectId(id.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role id: `[A-Za-z0-9-_/\]`, 1 to 200 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleId(String);

impl RoleId {
    /// Checks and wraps a role id.
    pub fn new(id: &str) -> Result<RoleId, String> {
        if id.is_empty() || id.chars().count() > 200 {
            return Err(format!("role id `{id}` must be 1 to 200 characters"));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '\\')))
        {
            return Err(format!(
                "`{id}` cannot be a role id: `{bad}` is not allowed (letters, digits, '-', '_', '/' and '\\' are)"
            ));
        }
        Ok(RoleId(id.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role to create before users.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleImport {
    /// The role id.
    pub id: RoleId,
    /// The display name.
    pub name: String,
    /// The role claims, as `[{"Type":…,"Value":…}]`.
    pub claims: Value,
}

/// A stored password: User Management's `HashedPasswordData`.
#[derive(Clone, PartialEq, Eq)]
pub struct HashedPassword {
    /// `aspnet-identity`, `aspnet-membership`, `bcrypt`, `argon2` (verify only) or
    /// `pbkdf2`.
    pub algorithm: String,
    /// The digest (empty for `aspnet-identity`).
    pub hash: Vec<u8>,
    /// The salt (empty for `aspnet-identity`).
    pub salt: Vec<u8>,
    /// Parameters: `blob` for `aspnet-identity`; `prf`, `iterations`, `digestSize` for `pbkdf2`.
    pub parameters: Map<String, Value>,
}

impl fmt::Debug for HashedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashedPassword({})", self.algorithm)
    }
}

/// The algorithm id of imported ASP.NET hashes.
pub const ASPNET_ALGORITHM: &str = "aspnet-identity";

/// The algorithm id of imported ASP.NET Membership digests (format 1).
pub const MEMBERSHIP_ALGORITHM: &str = "aspnet-membership";
/// The algorithm id of imported BCrypt hashes.
pub const BCRYPT_ALGORITHM: &str = "bcrypt";
/// The algorithm id of imported Argon2 hashes.
pub const ARGON2_ALGORITHM: &str = "argon2";
/// A clear-text Membership password on its way to being hashed
/// ([`crate::hash_clear_password`]); never stored, never planned.
pub const CLEAR_TEXT_ALGORITHM: &str = "clear-text";

impl HashedPassword {
    /// The stored form of a parsed `PasswordHash` (`text` as the bundle has it): ASP.NET
    /// blobs verbatim (`aspnet-identity`), PBKDF2 PHC strings as User Management's own
    /// `pbkdf2`, Membership digests as `aspnet-membership` (digest, salt and the .NET
    /// algorithms it may be), BCrypt and Argon2 with their encoded string and parameters.
    /// A clear-text Membership password becomes [`CLEAR_TEXT_ALGORITHM`], to be hashed
    /// before anything is written.
    pub fn from_hash(text: &str, hash: &ferry_passwords::PasswordHash) -> HashedPassword {
        use ferry_passwords::membership::MembershipHash;
        use ferry_passwords::PasswordHash as H;
        let mut parameters = Map::new();
        let mut p = |k: &str, v: Value| {
            parameters.insert(k.to_string(), v);
        };
        let (algorithm, hash, salt) = match hash {
            H::AspNet(_) => return HashedPassword::aspnet(text),
            H::Pbkdf2(h) => {
                p("prf", Value::String(h.prf.name().into()));
                p("iterations", Value::from(h.iterations));
                p("digestSize", Value::from(h.hash.len()));
                (
                    ferry_passwords::preferred::ALGORITHM_ID,
                    h.hash.clone(),
                    h.salt.clone(),
                )
            }
            H::Membership(MembershipHash::Hashed {
                algorithm,
                salt,
                digest,
            }) => {
                p("passwordFormat", Value::from(1));
                p(
                    "hashAlgorithms",
                    Value::from(algorithm.dotnet_names().map(String::from).to_vec()),
                );
                p("encoding", Value::String("UTF-16LE".into()));
                (MEMBERSHIP_ALGORITHM, digest.clone(), salt.clone())
            }
            H::Membership(MembershipHash::Clear(password)) => {
                p("password", Value::String(password.clone()));
                (CLEAR_TEXT_ALGORITHM, Vec::new(), Vec::new())
            }
            H::Bcrypt(h) => {
                p("encoded", Value::String(h.as_str().into()));
                p("version", Value::String(h.version.name().into()));
                p("cost", Value::from(h.cost));
                (BCRYPT_ALGORITHM, Vec::new(), Vec::new())
            }
            H::Argon2(h) => {
                p("encoded", Value::String(h.as_str().into()));
                p("type", Value::String(h.params.variant.name().into()));
                p("version", Value::from(h.params.version));
                p("memory", Value::from(h.params.memory_kib));
                p("iterations", Value::from(h.params.passes));
                p("parallelism", Value::from(h.params.lanes));
                (ARGON2_ALGORITHM, Vec::new(), Vec::new())
            }
        };
        HashedPassword {
            algorithm: algorithm.into(),
            hash,
            salt,
            parameters,
        }
    }

    /// Wraps an ASP.NET `PasswordHash` verbatim, as the migration guide does.
    pub fn aspnet(blob: &str) -> HashedPassword {
        let mut parameters = Map::new();
        parameters.insert("blob".into(), Value::String(blob.to_string()));
        HashedPassword {
            algorithm: ASPNET_ALGORITHM.into(),
            hash: Vec::new(),
            salt: Vec::new(),
            parameters,
        }
    }
}

/// An OTP channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OtpChannel {
    /// E-mail one-time passwords.
    Email,
    /// SMS one-time passwords.
    Sms,
}

impl OtpChannel {
    /// `Email` or `SMS`.
    pub fn as_str(self) -> &'static str {
        match self {
            OtpChannel::Email => "Email",
            OtpChannel::Sms => "SMS",
        }
    }
}

/// An OTP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtpAddress {
    /// The channel.
    pub channel: OtpChannel,
    /// The address (trimmed e-mail, or phone digits).
    pub address: String,
    /// Whether the source had confirmed it (`EmailConfirmed`, `PhoneNumberConfirmed`).
    pub verified: bool,
}

/// An external login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalLogin {
    /// The provider name (at most 255 characters).
    pub provider: String,
    /// The user's id at the provider (at most 255 characters).
    pub key: String,
    /// The provider's display name.
    pub display_name: Option<String>,
}

/// A passkey: User Management's `PasskeyImport`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyImport {
    /// 1 to 1023 bytes.
    pub credential_id: Vec<u8>,
    /// The COSE public key.
    pub public_key_cose: Vec<u8>,
    /// The COSE algorithm (label 3 of the key): -7 ES256, -257 RS256, -8 EdDSA, …
    pub algorithm: i64,
    /// The signature counter.
    pub sign_count: u32,
    /// Backup eligible.
    pub backup_eligible: bool,
    /// Backed up.
    pub backed_up: bool,
    /// The authenticator's AAGUID (all zero when unknown).
    pub aaguid: [u8; 16],
    /// A name for people.
    pub name: String,
}

/// A TOTP authenticator.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpDevice {
    /// The device name (`Default` for ASP.NET's authenticator key).
    pub name: String,
    /// The raw key bytes.
    pub key: Vec<u8>,
}

impl fmt::Debug for TotpDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TotpDevice({})", self.name)
    }
}

/// A recovery code, hashed before it reaches the store.
#[derive(Clone, PartialEq, Eq)]
pub struct HashedRecoveryCode {
    /// The salt.
    pub salt: Vec<u8>,
    /// PBKDF2-HMAC-SHA512 of the code.
    pub hash: Vec<u8>,
    /// The iteration count used.
    pub iterations: u32,
}

impl fmt::Debug for HashedRecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashedRecoveryCode")
    }
}

/// Account state carried from the source, beyond the profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountState {
    /// The name to log in with (`UserName`).
    pub user_name: Option<String>,
    /// `EmailConfirmed`.
    pub email_confirmed: bool,
    /// `PhoneNumberConfirmed`.
    pub phone_number_confirmed: bool,
    /// `TwoFactorEnabled`.
    pub two_factor_enabled: bool,
    /// `LockoutEnd`.
    pub lockout_end: Option<DateTime<FixedOffset>>,
    /// `LockoutEnabled`.
    pub lockout_enabled: bool,
    /// `AccessFailedCount`.
    pub access_failed_count: i32,
}

/// One user to import.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportRecord {
    /// The subject id.
    pub subject_id: SubjectId,
    /// Profile attributes by code, already checked against the schema.
    pub profile: Map<String, Value>,
    /// Values of unique attributes, as `(code, value)`.
    pub unique_keys: Vec<(String, String)>,
    /// Account state.
    pub account: AccountState,
    /// The password, if the user has one.
    pub password: Option<HashedPassword>,
    /// OTP addresses.
    pub otp_addresses: Vec<OtpAddress>,
    /// External logins.
    pub external_logins: Vec<ExternalLogin>,
    /// Passkeys.
    pub passkeys: Vec<PasskeyImport>,
    /// TOTP devices.
    pub totp_devices: Vec<TotpDevice>,
    /// Recovery codes in plain text (hashed by [`crate::hash_recovery_codes`]).
    pub recovery_codes: Vec<String>,
    /// Hashed recovery codes.
    pub hashed_recovery_codes: Vec<HashedRecoveryCode>,
    /// Direct role memberships.
    pub roles: Vec<RoleId>,
}
