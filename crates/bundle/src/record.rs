//! The records of a bundle, one JSON object per line.
//!
//! Field names are the source's own column names (PascalCase, as in the ASP.NET Core
//! EF templates), whatever the naming of the source database. Values are faithful:
//! booleans as JSON booleans, times as RFC 3339 with their offset, bytes as base64 and
//! NULL as `null`.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The `Id` of an ASP.NET Identity user: the subject id it keeps after the move.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub String);

impl UserId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One user with everything that hangs off it: one line of a users part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct UserRecord {
    /// `AspNetUsers.Id`.
    pub id: UserId,
    /// `UserName`.
    pub user_name: Option<String>,
    /// `NormalizedUserName` (null for classic Identity 2.x sources, which lack it).
    pub normalized_user_name: Option<String>,
    /// `Email`.
    pub email: Option<String>,
    /// `NormalizedEmail` (null for classic sources).
    pub normalized_email: Option<String>,
    /// `EmailConfirmed`.
    pub email_confirmed: bool,
    /// `PasswordHash`: the ASP.NET base64 blob, verbatim.
    pub password_hash: Option<String>,
    /// `SecurityStamp`.
    pub security_stamp: Option<String>,
    /// `ConcurrencyStamp` (null for classic sources).
    pub concurrency_stamp: Option<String>,
    /// `PhoneNumber`.
    pub phone_number: Option<String>,
    /// `PhoneNumberConfirmed`.
    pub phone_number_confirmed: bool,
    /// `TwoFactorEnabled`.
    pub two_factor_enabled: bool,
    /// `LockoutEnd`, or classic `LockoutEndDateUtc` read as UTC.
    pub lockout_end: Option<DateTime<FixedOffset>>,
    /// `LockoutEnabled`.
    pub lockout_enabled: bool,
    /// `AccessFailedCount`.
    pub access_failed_count: i32,
    /// Columns of a custom `ApplicationUser` beyond the template's, by column name.
    #[serde(default)]
    pub extra: Map<String, Value>,
    /// `AspNetUserClaims` rows of this user, in source order.
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// `AspNetUserLogins` rows.
    #[serde(default)]
    pub logins: Vec<Login>,
    /// `AspNetUserTokens` rows (authenticator key, recovery codes, provider tokens).
    #[serde(default)]
    pub tokens: Vec<Token>,
    /// Role ids from `AspNetUserRoles`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `AspNetUserPasskeys` rows.
    #[serde(default)]
    pub passkeys: Vec<Passkey>,
}

/// A user claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Claim {
    /// `ClaimType`.
    #[serde(rename = "Type")]
    pub claim_type: Option<String>,
    /// `ClaimValue`.
    #[serde(rename = "Value")]
    pub value: Option<String>,
}

/// An external login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Login {
    /// `LoginProvider`, e.g. `Google`.
    pub login_provider: String,
    /// `ProviderKey`: the user's id at the provider.
    pub provider_key: String,
    /// `ProviderDisplayName` (null for classic sources).
    pub provider_display_name: Option<String>,
}

/// A user token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Token {
    /// `LoginProvider`; `[AspNetUserStore]` for the 2FA tokens.
    pub login_provider: String,
    /// `Name`, e.g. `AuthenticatorKey` or `RecoveryCodes`.
    pub name: String,
    /// `Value`.
    pub value: Option<String>,
}

impl Token {
    /// The provider of ASP.NET's own 2FA tokens.
    pub const STORE_PROVIDER: &'static str = "[AspNetUserStore]";
    /// The token that holds the base32 TOTP key.
    pub const AUTHENTICATOR_KEY: &'static str = "AuthenticatorKey";
    /// The token that holds the recovery codes, joined by `;`.
    pub const RECOVERY_CODES: &'static str = "RecoveryCodes";
}

/// A passkey (WebAuthn credential).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Passkey {
    /// `CredentialId`, base64url without padding in the bundle.
    pub credential_id: CredentialId,
    /// `Data`: the JSON ASP.NET stores (`PublicKey`, `Name`, `CreatedAt`, `SignCount`,
    /// `Transports`, `IsUserVerified`, `IsBackupEligible`, `IsBackedUp`,
    /// `AttestationObject`, `ClientDataJson`), kept as it was.
    pub data: Map<String, Value>,
}

/// Raw credential id bytes, written as base64url.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId(pub Vec<u8>);

impl fmt::Debug for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialId({})", URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl Serialize for CredentialId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for CredentialId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // Accept padding too: a hand edit may add it.
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .map(CredentialId)
            .map_err(|_| serde::de::Error::custom("CredentialId is not base64url"))
    }
}

/// A role with its claims: one line of `roles.ndjson`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RoleRecord {
    /// `AspNetRoles.Id`.
    pub id: String,
    /// `Name`.
    pub name: Option<String>,
    /// `NormalizedName` (null for classic sources).
    pub normalized_name: Option<String>,
    /// `ConcurrencyStamp` (null for classic sources).
    pub concurrency_stamp: Option<String>,
    /// `AspNetRoleClaims` rows.
    #[serde(default)]
    pub claims: Vec<Claim>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_round_trips() {
        let line = r#"{"Id":"u1","UserName":"alice","NormalizedUserName":"ALICE","Email":"alice@example.com","NormalizedEmail":"ALICE@EXAMPLE.COM","EmailConfirmed":true,"PasswordHash":"AQAAAAIAAYag","SecurityStamp":"s","ConcurrencyStamp":"c","PhoneNumber":null,"PhoneNumberConfirmed":false,"TwoFactorEnabled":false,"LockoutEnd":"2030-01-02T03:04:05.1234567+02:00","LockoutEnabled":true,"AccessFailedCount":0,"Extra":{"FirstName":"Alice"},"Claims":[{"Type":"given_name","Value":"Alice"}],"Logins":[{"LoginProvider":"Google","ProviderKey":"1099","ProviderDisplayName":"Google"}],"Tokens":[{"LoginProvider":"[AspNetUserStore]","Name":"AuthenticatorKey","Value":"K"}],"Roles":["r1"],"Passkeys":[{"CredentialId":"AQID","Data":{"PublicKey":"pQ==","Name":"YubiKey","SignCount":7}}]}"#;
        let record: UserRecord = serde_json::from_str(line).unwrap();
        assert_eq!(record.passkeys[0].credential_id.0, vec![1, 2, 3]);
        assert_eq!(record.lockout_end.unwrap().offset().local_minus_utc(), 7200);
        let again = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<UserRecord>(&again).unwrap(), record);
        assert!(
            again.contains(r#""LockoutEnd":"2030-01-02T03:04:05.123456700+02:00""#),
            "{again}"
        );
    }

    #[test]
    fn a_misspelt_field_is_refused_by_name() {
        let err = serde_json::from_str::<Claim>(r#"{"Typ":"x","Value":"y"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `Typ`"), "{err}");
    }
}
