//! The values a record claims for itself alone, and what is said when another subject has
//! one: one set of rules for load, the overwrite merge, `validate` (inside the bundle and
//! against a store) and `plan`, so that they can never disagree.
//!
//! A record claims, in this order (the order a load checks them in, stopping at the
//! first that another subject holds):
//!
//! 1. its user name, ignoring case (as ASP.NET's lookup normaliser did);
//! 2. the value of each unique attribute, exactly (User Management compares them
//!    case-sensitively);
//! 3. each OTP address: e-mail ignoring case, SMS by its digits;
//! 4. each external login, by provider and key;
//! 5. each passkey, by credential id.
//!
//! A backend implements only "claim key K for subject S: ok, or held by T".

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::import::Reason;
use crate::model::{ImportRecord, OtpChannel};
use crate::normalize;

/// What kind of value a claim is on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClaimKind {
    /// The user name.
    UserName,
    /// A unique attribute, by its code.
    Attribute(String),
    /// An OTP address on a channel.
    OtpAddress(OtpChannel),
    /// An external login.
    ExternalLogin,
    /// A passkey credential.
    Passkey,
}

/// One value a record claims for itself alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UniqueClaim {
    /// What kind of value.
    pub kind: ClaimKind,
    /// The text the value is unique by: the user name and e-mail addresses normalized,
    /// SMS digits and attribute values as they are, `provider` U+001F `key` for a login,
    /// the credential id in base64url for a passkey.
    pub key: String,
    /// The value as the record has it, for messages (empty when it is the key).
    written: String,
}

impl UniqueClaim {
    /// The conflict reason when another subject holds it, as User Management names it.
    pub fn reason(&self) -> Reason {
        match self.kind {
            ClaimKind::UserName | ClaimKind::Attribute(_) => Reason::ProfileUniqueKeyConflict,
            ClaimKind::OtpAddress(_) | ClaimKind::ExternalLogin | ClaimKind::Passkey => {
                Reason::AuthenticatorKeyConflict
            }
        }
    }

    /// The bundle field the value comes from, e.g. `UserName`, `Email`, `Logins`.
    pub fn field(&self) -> &str {
        match &self.kind {
            ClaimKind::UserName => "UserName",
            ClaimKind::Attribute(code) => code,
            ClaimKind::OtpAddress(OtpChannel::Email) => "Email",
            ClaimKind::OtpAddress(OtpChannel::Sms) => "PhoneNumber",
            ClaimKind::ExternalLogin => "Logins",
            ClaimKind::Passkey => "Passkeys",
        }
    }

    /// The value as messages name it, e.g. `user name 'Alice'`. Made only when a message
    /// needs it: a load derives claims for every record and meets few conflicts.
    pub fn shown(&self) -> String {
        match &self.kind {
            ClaimKind::UserName => format!("user name '{}'", self.written),
            ClaimKind::Attribute(code) => format!("attribute '{code}' value '{}'", self.key),
            ClaimKind::OtpAddress(channel) => {
                format!("{} OTP address '{}'", channel.as_str(), self.written)
            }
            ClaimKind::ExternalLogin => {
                let (provider, key) = self.key.split_once('\u{1f}').unwrap_or((&self.key, ""));
                format!("external login {provider} '{key}'")
            }
            ClaimKind::Passkey => format!("passkey credential {}", self.key),
        }
    }

    /// What is said when subject `holder` has it.
    pub fn held_by(&self, holder: &str) -> String {
        format!("{} is already used by subject {holder}", self.shown())
    }

    /// The kind and key as one string, unique across kinds (for an index of claims).
    pub fn index_key(&self) -> String {
        self.kind.index_key(&self.key)
    }
}

impl ClaimKind {
    /// The kind's name in an index of claims: `user`, `attribute` U+001F code, `otp`
    /// U+001F channel, `login` or `passkey`.
    pub fn index_name(&self) -> String {
        match self {
            ClaimKind::UserName => "user".to_string(),
            ClaimKind::Attribute(code) => format!("attribute\u{1f}{code}"),
            ClaimKind::OtpAddress(channel) => format!("otp\u{1f}{}", channel.as_str()),
            ClaimKind::ExternalLogin => "login".to_string(),
            ClaimKind::Passkey => "passkey".to_string(),
        }
    }

    /// A key of this kind as [`UniqueClaim::index_key`] writes it, for a lookup by a key
    /// that is no record's claim (a login name).
    pub fn index_key(&self, key: &str) -> String {
        format!("{}\u{1e}{key}", self.index_name())
    }
}

impl fmt::Display for UniqueClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

/// The key an OTP address is unique by: e-mail ignoring case, phone digits as they are.
pub fn otp_key(channel: OtpChannel, address: &str) -> String {
    match channel {
        OtpChannel::Email => normalize(address),
        OtpChannel::Sms => address.to_string(),
    }
}

/// The key an external login is unique by.
pub fn login_key(provider: &str, key: &str) -> String {
    format!("{provider}\u{1f}{key}")
}

/// Where each kind of claim starts in a record's [`unique_claims`] (which come in the order
/// the module documentation gives): a backend that writes the record's authenticators
/// finds each one's claim by its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimAt {
    /// The first unique attribute value's claim.
    pub attribute: usize,
    /// The first OTP address's claim.
    pub otp: usize,
    /// The first external login's claim.
    pub login: usize,
    /// The first passkey's claim.
    pub passkey: usize,
}

impl ClaimAt {
    /// Where the claims of `r` start, kind by kind.
    pub fn of(r: &ImportRecord) -> ClaimAt {
        let attribute = usize::from(r.account.user_name.is_some());
        let otp = attribute + r.unique_keys.len();
        let login = otp + r.otp_addresses.len();
        ClaimAt {
            attribute,
            otp,
            login,
            passkey: login + r.external_logins.len(),
        }
    }
}

/// Every value `r` claims for itself alone, in the order a load checks them.
pub fn unique_claims(r: &ImportRecord) -> Vec<UniqueClaim> {
    let mut claims = Vec::with_capacity(
        1 + r.unique_keys.len()
            + r.otp_addresses.len()
            + r.external_logins.len()
            + r.passkeys.len(),
    );
    if let Some(name) = &r.account.user_name {
        claims.push(UniqueClaim {
            kind: ClaimKind::UserName,
            key: normalize(name),
            written: name.clone(),
        });
    }
    for (code, value) in &r.unique_keys {
        claims.push(UniqueClaim {
            kind: ClaimKind::Attribute(code.clone()),
            key: value.clone(),
            written: String::new(),
        });
    }
    for otp in &r.otp_addresses {
        claims.push(UniqueClaim {
            kind: ClaimKind::OtpAddress(otp.channel),
            key: otp_key(otp.channel, &otp.address),
            written: otp.address.clone(),
        });
    }
    for l in &r.external_logins {
        claims.push(UniqueClaim {
            kind: ClaimKind::ExternalLogin,
            key: login_key(&l.provider, &l.key),
            written: String::new(),
        });
    }
    for p in &r.passkeys {
        claims.push(UniqueClaim {
            kind: ClaimKind::Passkey,
            key: URL_SAFE_NO_PAD.encode(&p.credential_id),
            written: String::new(),
        });
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    #[test]
    fn a_record_claims_its_values_in_load_order() {
        let record = ImportRecord {
            subject_id: SubjectId::new("s1").unwrap(),
            profile: Default::default(),
            unique_keys: vec![("userName".into(), "Alice".into())],
            account: AccountState {
                user_name: Some("Alice".into()),
                ..AccountState::default()
            },
            password: None,
            otp_addresses: vec![
                OtpAddress {
                    channel: OtpChannel::Email,
                    address: "Alice@X.org".into(),
                    verified: true,
                },
                OtpAddress {
                    channel: OtpChannel::Sms,
                    address: "15550100".into(),
                    verified: true,
                },
            ],
            external_logins: vec![ExternalLogin {
                provider: "Google".into(),
                key: "g1".into(),
                display_name: None,
            }],
            passkeys: Vec::new(),
            totp_devices: Vec::new(),
            recovery_codes: Vec::new(),
            hashed_recovery_codes: Vec::new(),
            roles: Vec::new(),
        };
        let claims = unique_claims(&record);
        let keys: Vec<(&str, &str)> = claims.iter().map(|c| (c.field(), c.key.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("UserName", "ALICE"),
                ("userName", "Alice"),
                ("Email", "ALICE@X.ORG"),
                ("PhoneNumber", "15550100"),
                ("Logins", "Google\u{1f}g1"),
            ]
        );
        assert_eq!(
            claims[2].held_by("s9"),
            "Email OTP address 'Alice@X.org' is already used by subject s9"
        );
        assert_eq!(claims[0].reason(), Reason::ProfileUniqueKeyConflict);
        assert_eq!(claims[4].reason(), Reason::AuthenticatorKeyConflict);
        assert_ne!(claims[0].index_key(), claims[1].index_key());
    }
}
