//! A bundle [`UserRecord`] becomes an [`ImportRecord`], or problems naming their field.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use ferry_bundle::record::Token;
use ferry_bundle::{Location, UserRecord};
use ferry_passwords::PasswordHash;
use ferry_store_core::{
    AccountState, ExternalLogin, HashedPassword, ImportRecord, OtpAddress, OtpChannel, SubjectId,
    TotpDevice,
};
use serde_json::{Map, Value};

use crate::attributes::{check_value, AttributeSchema, AttributeType, ScalarType};
use crate::mapping::{Mapping, Rule, Source, Target};
use crate::roles::RoleIndex;
use crate::{passkey, rules};

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The record is loaded; the operator should know (e.g. a malformed hash).
    Warning,
    /// The record cannot be loaded as it is.
    Error,
}

/// A problem with one field of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The bundle field, e.g. `Email`, `Claims[3].Value`, `Passkeys[0].Data.PublicKey`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
    /// Another record the problem concerns (the one that holds a value first), if any.
    pub related: Option<Location>,
    /// The 1-based byte column of the record's line where the field is, once the
    /// reader has found it (see `ferry_bundle::RawRecord::column_of`).
    pub column: Option<usize>,
}

impl Problem {
    /// An error on `field`.
    pub fn error(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
            severity: Severity::Error,
            related: None,
            column: None,
        }
    }

    /// A warning on `field`.
    pub fn warning(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
            severity: Severity::Warning,
            related: None,
            column: None,
        }
    }
}

/// Source data of a record that no mapping rule imports: reported, never dropped silently.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotImported {
    /// Claims of this type.
    Claim(String),
    /// A custom column under `Extra`, with a value.
    Extra(String),
}

impl fmt::Display for NotImported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotImported::Claim(t) => write!(f, "claim {t}"),
            NotImported::Extra(c) => write!(f, "Extra.{c}"),
        }
    }
}

/// What mapping one record gave.
#[derive(Clone, Debug)]
pub struct MapResult {
    /// The import record, when no problem is an error.
    pub record: Option<ImportRecord>,
    /// Every problem found (all of them, not just the first).
    pub problems: Vec<Problem>,
    /// Claim types and `Extra` columns of the record that no rule imports, each once.
    pub not_imported: Vec<NotImported>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{}: {}", self.field, self.message)?;
        if let Some(at) = &self.related {
            write!(f, " ({at})")?;
        }
        Ok(())
    }
}

struct Resolved {
    rule: Rule,
    /// The schema's spelling of the attribute code.
    code: String,
    /// The type source values are converted to.
    scalar: ScalarType,
}

/// Maps records with one schema and one mapping.
pub struct Mapper {
    schema: AttributeSchema,
    rules: Vec<Resolved>,
    missing: Vec<(String, String)>,
    email_otp: Option<String>,
    sms_otp: Option<String>,
    role_ids: BTreeMap<String, String>,
    /// Claim types and `Extra` columns some resolved rule reads.
    claims_read: HashSet<String>,
    extra_read: HashSet<String>,
}

impl Mapper {
    /// Resolves `mapping` against `schema`. Rules whose attribute the schema lacks are
    /// set aside (see [`Mapper::missing_targets`]); a rule whose target does not fit the
    /// attribute's type is an error.
    pub fn new(schema: AttributeSchema, mapping: &Mapping) -> Result<Mapper, String> {
        let mut rules = Vec::new();
        let mut missing = Vec::new();
        for (i, rule) in mapping.rules.iter().enumerate() {
            let Some(def) = schema.get(rule.to.code()) else {
                missing.push((rule.to_text.clone(), rule.from.describe()));
                continue;
            };
            let bad = |what: &str| {
                format!(
                    "mapping rules[{i}]: `{}` {what} (attribute `{}` is {})",
                    rule.to_text, def.code, def.attribute_type
                )
            };
            let prop_type = |props: &std::collections::BTreeMap<String, AttributeType>,
                             p: &str|
             -> Result<ScalarType, String> {
                match props
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(p))
                    .map(|(_, t)| t)
                {
                    Some(AttributeType::Scalar(s)) => Ok(*s),
                    Some(_) => Err(bad("names a property that is not a scalar")),
                    None => Err(bad(&format!(
                        "names property `{p}`, which the attribute does not have"
                    ))),
                }
            };
            let scalar = match (&rule.to, &def.attribute_type) {
                (Target::Attribute(_), AttributeType::Scalar(s)) => *s,
                (Target::Property(_, p), AttributeType::Complex(props)) => prop_type(props, p)?,
                (Target::Append(_), AttributeType::List(e)) => match e.as_ref() {
                    AttributeType::Scalar(s) => *s,
                    _ => {
                        return Err(bad(
                            "appends a scalar to a list of complex values; use code[].prop",
                        ))
                    }
                },
                (
                    Target::AppendElement(_, p) | Target::SharedElement(_, p),
                    AttributeType::List(e),
                ) => match e.as_ref() {
                    AttributeType::Complex(props) => {
                        let s = prop_type(props, p)?;
                        check_value(&Value::Object(rule.set.clone()), e, "set")
                            .map_err(|m| format!("mapping rules[{i}]: {m}"))?;
                        s
                    }
                    _ => return Err(bad("names a property of a list of scalars")),
                },
                _ => return Err(bad("does not fit")),
            };
            rules.push(Resolved {
                rule: rule.clone(),
                code: def.code.clone(),
                scalar,
            });
        }
        let mut claims_read = HashSet::new();
        let mut extra_read = HashSet::new();
        for r in &rules {
            match &r.rule.from {
                Source::Claim(t) | Source::ClaimField { claim: t, .. } => {
                    claims_read.insert(t.clone());
                }
                Source::Extra(c) => {
                    extra_read.insert(c.clone());
                }
                Source::Column(_) | Source::Value(_) => {}
            }
        }
        Ok(Mapper {
            schema,
            rules,
            missing,
            email_otp: mapping.email_otp.clone(),
            sms_otp: mapping.sms_otp.clone(),
            role_ids: mapping.roles.clone(),
            claims_read,
            extra_read,
        })
    }

    /// The role ids the mapping chooses by role name (see [`RoleIndex::build`]).
    pub fn role_ids(&self) -> &BTreeMap<String, String> {
        &self.role_ids
    }

    /// Mapping targets the schema lacks, with the source each one reads: reported once,
    /// at start.
    pub fn missing_targets(&self) -> &[(String, String)] {
        &self.missing
    }

    /// The schema.
    pub fn schema(&self) -> &AttributeSchema {
        &self.schema
    }

    /// Maps one record, resolving its role memberships with `roles`.
    pub fn map(&self, r: &UserRecord, roles: &RoleIndex) -> MapResult {
        let mut problems = Vec::new();
        crate::limits::check(r, &mut problems);
        let subject_id = match SubjectId::new(r.id.as_str()) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(Problem::error("Id", e));
                None
            }
        };

        let mut profile = Map::new();
        for resolved in &self.rules {
            for (field, value) in source_values(r, &resolved.rule.from) {
                match convert(value, resolved.scalar) {
                    Ok(v) => apply(&mut profile, resolved, v),
                    Err(m) => problems.push(Problem::error(
                        field.to_string(),
                        format!("{m} (for `{}`)", resolved.rule.to_text),
                    )),
                }
            }
        }
        let mut unique_keys = Vec::new();
        for def in self.schema.attributes() {
            match profile.get(&def.code) {
                None if def.required => problems.push(Problem::error(
                    &def.code,
                    format!("Required attribute '{}' is missing.", def.code),
                )),
                None => {}
                Some(v) => {
                    if let Err(m) = check_value(v, &def.attribute_type, &def.code) {
                        problems.push(Problem::error(&def.code, m));
                    }
                    if def.unique {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        unique_keys.push((def.code.clone(), text));
                    }
                }
            }
        }

        let password = match r.password_hash.as_deref() {
            None | Some("") => None,
            Some(blob) => match PasswordHash::parse(blob) {
                Ok(hash) => {
                    if hash.kind() == ferry_passwords::HashKind::MembershipClear {
                        problems.push(Problem::warning(
                            "PasswordHash",
                            "a clear-text Membership password (format 0): it is hashed at load and never stored as it is, but the bundle holds it in the clear; keep the bundle safe and delete it after the load".to_string(),
                        ));
                    }
                    Some(HashedPassword::from_hash(blob, &hash))
                }
                Err(reason) => {
                    problems.push(Problem::warning(
                        "PasswordHash",
                        format!(
                            "malformed hash ({reason}); it is imported as it is, but this user cannot log in with a password until it is reset"
                        ),
                    ));
                    Some(HashedPassword::aspnet(blob))
                }
            },
        };

        let mut otp_addresses = Vec::new();
        if let Some(col) = &self.email_otp {
            if let Some(Value::String(e)) = column_value(r, col) {
                // As the migration guide's `EmailAddress.TryCreate`: a value that is not an
                // address gives no OTP address, and the user is imported without one.
                match rules::email(&e) {
                    Ok(address) => otp_addresses.push(OtpAddress {
                        channel: OtpChannel::Email,
                        address,
                        verified: r.email_confirmed,
                    }),
                    Err(m) => problems.push(Problem::warning(
                        col.as_str(),
                        format!("{m}; the user is imported without an e-mail OTP address"),
                    )),
                }
            }
        }
        if let Some(col) = &self.sms_otp {
            if r.phone_number_confirmed {
                if let Some(Value::String(p)) = column_value(r, col) {
                    match rules::phone(&p) {
                        Ok(address) => otp_addresses.push(OtpAddress {
                            channel: OtpChannel::Sms,
                            address,
                            verified: true,
                        }),
                        Err(m) => problems.push(Problem::warning(
                            col.as_str(),
                            format!("{m}; the user is imported without an SMS OTP address"),
                        )),
                    }
                }
            }
        }

        let mut external_logins = Vec::new();
        for (i, l) in r.logins.iter().enumerate() {
            let checks = [
                rules::external(&l.login_provider, "LoginProvider")
                    .map_err(|m| (format!("Logins[{i}].LoginProvider"), m)),
                rules::external(&l.provider_key, "ProviderKey")
                    .map_err(|m| (format!("Logins[{i}].ProviderKey"), m)),
            ];
            let mut ok = true;
            for c in checks {
                if let Err((f, m)) = c {
                    problems.push(Problem::error(f, m));
                    ok = false;
                }
            }
            if ok {
                external_logins.push(ExternalLogin {
                    provider: l.login_provider.clone(),
                    key: l.provider_key.clone(),
                    display_name: l.provider_display_name.clone(),
                });
            }
        }

        let mut passkeys = Vec::new();
        for (i, p) in r.passkeys.iter().enumerate() {
            match passkey::convert(p) {
                Ok(pk) => passkeys.push(pk),
                Err((f, m)) => problems.push(Problem::error(format!("Passkeys[{i}].{f}"), m)),
            }
        }

        let mut totp_devices = Vec::new();
        let mut recovery_codes = Vec::new();
        for (i, t) in r.tokens.iter().enumerate() {
            if t.login_provider != Token::STORE_PROVIDER {
                continue;
            }
            let value = t.value.as_deref().unwrap_or("");
            if t.name == Token::AUTHENTICATOR_KEY && !value.is_empty() {
                match ferry_passwords::totp::decode_key(value) {
                    Ok(key) => totp_devices.push(TotpDevice {
                        name: "Default".into(),
                        key,
                    }),
                    Err(e) => {
                        problems.push(Problem::error(format!("Tokens[{i}].Value"), e.to_string()))
                    }
                }
            } else if t.name == Token::RECOVERY_CODES {
                for (k, code) in ferry_passwords::recovery::split(value).enumerate() {
                    match rules::recovery_code(code) {
                        Ok(()) => recovery_codes.push(code.to_string()),
                        Err(m) => problems.push(Problem::error(
                            format!("Tokens[{i}].Value"),
                            format!("code {}: {m}", k + 1),
                        )),
                    }
                }
            }
        }

        let mut memberships = Vec::new();
        for (i, role) in r.roles.iter().enumerate() {
            match roles.resolve(role) {
                Ok(id) => {
                    if !memberships.contains(&id) {
                        memberships.push(id)
                    }
                }
                Err(m) => problems.push(Problem::error(format!("Roles[{i}]"), m)),
            }
        }
        let mut not_imported = BTreeSet::new();
        for c in &r.claims {
            if let Some(t) = &c.claim_type {
                let has_value = c.value.as_deref().is_some_and(|v| !v.is_empty());
                if has_value && !self.claims_read.contains(t) {
                    not_imported.insert(NotImported::Claim(t.clone()));
                }
            }
        }
        for (column, value) in &r.extra {
            let has_value = !value.is_null() && value.as_str() != Some("");
            if has_value && !self.extra_read.contains(column) {
                not_imported.insert(NotImported::Extra(column.clone()));
            }
        }

        let failed = problems.iter().any(|p| p.severity == Severity::Error);
        let record = match (subject_id, failed) {
            (Some(subject_id), false) => Some(ImportRecord {
                subject_id,
                profile,
                unique_keys,
                account: AccountState {
                    user_name: r.user_name.clone(),
                    email_confirmed: r.email_confirmed,
                    phone_number_confirmed: r.phone_number_confirmed,
                    two_factor_enabled: r.two_factor_enabled,
                    lockout_end: r.lockout_end,
                    lockout_enabled: r.lockout_enabled,
                    access_failed_count: r.access_failed_count,
                },
                password,
                otp_addresses,
                external_logins,
                passkeys,
                totp_devices,
                recovery_codes,
                hashed_recovery_codes: Vec::new(),
                roles: memberships,
            }),
            _ => None,
        };
        MapResult {
            record,
            problems,
            not_imported: not_imported.into_iter().collect(),
        }
    }
}

/// A column of the record as a JSON value.
pub fn column_value(r: &UserRecord, column: &str) -> Option<Value> {
    let s = |v: &Option<String>| v.clone().map(Value::String);
    match column {
        "Id" => Some(Value::String(r.id.0.clone())),
        "UserName" => s(&r.user_name),
        "NormalizedUserName" => s(&r.normalized_user_name),
        "Email" => s(&r.email),
        "NormalizedEmail" => s(&r.normalized_email),
        "EmailConfirmed" => Some(Value::Bool(r.email_confirmed)),
        "PhoneNumber" => s(&r.phone_number),
        "PhoneNumberConfirmed" => Some(Value::Bool(r.phone_number_confirmed)),
        "TwoFactorEnabled" => Some(Value::Bool(r.two_factor_enabled)),
        "LockoutEnd" => r.lockout_end.map(|t| Value::String(t.to_rfc3339())),
        "LockoutEnabled" => Some(Value::Bool(r.lockout_enabled)),
        "AccessFailedCount" => Some(Value::from(r.access_failed_count)),
        _ => None,
    }
}

/// The bundle field a source value came from, formatted only when a problem names it.
enum Field<'a> {
    Column(&'a str),
    Claim(usize),
    ClaimJson(usize, &'a str),
    Extra(&'a str),
    Constant,
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Column(c) => f.write_str(c),
            Field::Claim(i) => write!(f, "Claims[{i}].Value"),
            Field::ClaimJson(i, field) => write!(f, "Claims[{i}].Value.{field}"),
            Field::Extra(c) => write!(f, "Extra.{c}"),
            Field::Constant => Ok(()),
        }
    }
}

/// The values a rule reads, each with the bundle field it came from. Nulls and empty
/// strings are not values.
fn source_values<'a>(r: &'a UserRecord, from: &'a Source) -> Vec<(Field<'a>, Value)> {
    let present = |v: &Value| !matches!(v, Value::Null) && v.as_str() != Some("");
    match from {
        Source::Column(c) => column_value(r, c)
            .filter(present)
            .map(|v| (Field::Column(c), v))
            .into_iter()
            .collect(),
        Source::Claim(t) => r
            .claims
            .iter()
            .enumerate()
            .filter(|(_, c)| c.claim_type.as_deref() == Some(t.as_str()))
            .filter_map(|(i, c)| match c.value.as_deref() {
                None | Some("") => None,
                Some(v) => Some((Field::Claim(i), Value::String(v.to_string()))),
            })
            .collect(),
        Source::ClaimField { claim, field, text } => r
            .claims
            .iter()
            .enumerate()
            .filter(|(_, c)| c.claim_type.as_deref() == Some(claim.as_str()))
            .filter_map(|(i, c)| {
                let v = c.value.as_deref().filter(|v| !v.is_empty())?;
                match serde_json::from_str::<Value>(v) {
                    Ok(Value::Object(fields)) => match fields.get(field.as_str()) {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) if s.is_empty() => None,
                        Some(value) => Some((Field::ClaimJson(i, field), value.clone())),
                    },
                    // A plain-text address is its formatted form.
                    _ if *text => Some((Field::Claim(i), Value::String(v.to_string()))),
                    _ => None,
                }
            })
            .collect(),
        Source::Extra(c) => r
            .extra
            .get(c)
            .filter(|v| present(v))
            .map(|v| (Field::Extra(c), v.clone()))
            .into_iter()
            .collect(),
        Source::Value(v) => vec![(Field::Constant, v.clone())],
    }
}

/// Converts a source value to the target scalar type.
fn convert(v: Value, t: ScalarType) -> Result<Value, String> {
    match (t, v) {
        (ScalarType::String, Value::String(s)) => Ok(Value::String(s)),
        (ScalarType::String, other) => Ok(Value::String(other.to_string())),
        (t, v) => convert_typed(&v, t),
    }
}

/// Converts a source value to a target type other than string.
fn convert_typed(v: &Value, t: ScalarType) -> Result<Value, String> {
    let text = match v {
        Value::String(s) => Some(s.trim()),
        _ => None,
    };
    let fail = || {
        let shown = match v {
            Value::String(s) => format!("`{s}`"),
            other => other.to_string(),
        };
        Err(format!("{shown} is not a {}", t.name()))
    };
    match t {
        ScalarType::String => Ok(Value::String(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
        ScalarType::Boolean => match (v, text) {
            (Value::Bool(b), _) => Ok(Value::Bool(*b)),
            (Value::Number(n), _) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            (_, Some(s)) if s.eq_ignore_ascii_case("true") || s == "1" => Ok(Value::Bool(true)),
            (_, Some(s)) if s.eq_ignore_ascii_case("false") || s == "0" => Ok(Value::Bool(false)),
            _ => fail(),
        },
        ScalarType::Integer => match (v, text) {
            (Value::Number(n), _) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => {
                Ok(v.clone())
            }
            (_, Some(s)) => s.parse::<i32>().map(Value::from).or_else(|_| fail()),
            _ => fail(),
        },
        ScalarType::Decimal => match (v, text) {
            (Value::Number(_), _) => Ok(v.clone()),
            (_, Some(s)) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .map_or_else(fail, Ok),
            _ => fail(),
        },
        ScalarType::Date => match text {
            // A date, or the date part of a date and time (EF6 `datetime` columns).
            Some(s)
                if s.len() >= 10
                    && chrono::NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").is_ok() =>
            {
                Ok(Value::String(s[..10].to_string()))
            }
            _ => fail(),
        },
        ScalarType::DateTime => match text {
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
                .map(|d| Value::String(d.to_rfc3339()))
                .or_else(|_| fail()),
            None => fail(),
        },
    }
}

fn apply(profile: &mut Map<String, Value>, r: &Resolved, value: Value) {
    let code = r.code.clone();
    match &r.rule.to {
        Target::Attribute(_) => {
            profile.insert(code, value);
        }
        Target::Property(_, p) => {
            let entry = profile
                .entry(code)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert(p.clone(), value);
            }
        }
        Target::Append(_) => {
            let entry = profile
                .entry(code)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entry {
                if !items.contains(&value) {
                    items.push(value);
                }
            }
        }
        Target::AppendElement(_, p) => {
            let entry = profile
                .entry(code)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entry {
                if !items.iter().any(|e| e.get(p) == Some(&value)) {
                    let mut element = r.rule.set.clone();
                    element.insert(p.clone(), value);
                    items.push(Value::Object(element));
                }
            }
        }
        Target::SharedElement(_, p) => {
            let entry = profile
                .entry(code)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entry {
                if items.is_empty() {
                    items.push(Value::Object(r.rule.set.clone()));
                }
                if let Some(Value::Object(first)) = items.first_mut() {
                    first.insert(p.clone(), value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn mapper() -> Mapper {
        let schema = AttributeSchema::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/scim-user.json"),
        )
        .unwrap();
        Mapper::new(schema, &Mapping::default_mapping()).unwrap()
    }

    fn record(json: &str) -> UserRecord {
        let mut base: Value = serde_json::from_str(
            r#"{"Id":"u1","UserName":"alice","NormalizedUserName":"ALICE","Email":"alice@example.com","NormalizedEmail":"ALICE@EXAMPLE.COM","EmailConfirmed":true,"PasswordHash":null,"SecurityStamp":null,"ConcurrencyStamp":null,"PhoneNumber":"+1 555 0100","PhoneNumberConfirmed":false,"TwoFactorEnabled":false,"LockoutEnd":null,"LockoutEnabled":true,"AccessFailedCount":0}"#,
        )
        .unwrap();
        let patch: Value = serde_json::from_str(json).unwrap();
        for (k, v) in patch.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn the_migration_guide_table() {
        let m = mapper();
        let r = record(
            r#"{"Claims":[{"Type":"given_name","Value":"Alice"},{"Type":"family_name","Value":"Smith"},
                {"Type":"display_name","Value":"Alice S"},{"Type":"street_address","Value":"1 Main St"},
                {"Type":"country","Value":"US"},{"Type":"phone_number","Value":"+1 555 0199"},
                {"Type":"locale","Value":"en-US"},{"Type":"department","Value":"Sales"}]}"#,
        );
        let MapResult {
            record: rec,
            problems,
            not_imported,
        } = m.map(&r, &RoleIndex::default());
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            not_imported,
            [NotImported::Claim("department".into())],
            "a claim no rule reads is reported, not dropped silently"
        );
        let rec = rec.unwrap();
        assert_eq!(
            Value::Object(rec.profile.clone()),
            serde_json::json!({
                "userName": "alice",
                "emails": [{"type": "work", "primary": true, "value": "alice@example.com"}],
                "phoneNumbers": [{"type": "work", "primary": true, "value": "+1 555 0100"},
                                 {"type": "work", "primary": false, "value": "+1 555 0199"}],
                "name": {"givenName": "Alice", "familyName": "Smith"},
                "displayName": "Alice S",
                "locale": "en-US",
                "addresses": [{"primary": false, "streetAddress": "1 Main St", "country": "US"}],
                "active": true
            })
        );
        assert_eq!(
            rec.unique_keys,
            [("userName".to_string(), "alice".to_string())]
        );
        assert_eq!(
            rec.otp_addresses.len(),
            1,
            "e-mail OTP; no SMS for an unconfirmed phone"
        );
        assert!(rec.otp_addresses[0].verified);
    }

    #[test]
    fn the_identityserver_template_claims_find_their_homes() {
        // Regression: the Duende and IdentityServer templates' seed claims vanished.
        let m = mapper();
        let r = record(
            r#"{"Claims":[{"Type":"name","Value":"Bob Smith"},{"Type":"given_name","Value":"Bob"},
                {"Type":"email","Value":"BobSmith@email.com"},{"Type":"email_verified","Value":"true"},
                {"Type":"website","Value":"http://bob.com"},{"Type":"location","Value":"somewhere"},
                {"Type":"address","Value":"{\"street_address\":\"One Hacker Way\",\"locality\":\"Heidelberg\",\"postal_code\":\"69118\",\"country\":\"Germany\"}"}],
                "Extra":{"FirstName":"Bob","Nickname":null}}"#,
        );
        let out = m.map(&r, &RoleIndex::default());
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let profile = Value::Object(out.record.unwrap().profile);
        assert_eq!(
            profile["addresses"],
            serde_json::json!([{"primary": false, "streetAddress": "One Hacker Way",
                "locality": "Heidelberg", "postalCode": "69118", "country": "Germany"}])
        );
        assert_eq!(profile["name"]["formatted"], "Bob Smith");
        assert_eq!(profile["emails"][1]["value"], "BobSmith@email.com");
        let not: Vec<String> = out.not_imported.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            not,
            [
                "claim email_verified",
                "claim location",
                "claim website",
                "Extra.FirstName"
            ]
        );
        // A plain-text address is its formatted form.
        let r = record(r#"{"Claims":[{"Type":"address","Value":"1 Main St, Springfield"}]}"#);
        let profile = Value::Object(m.map(&r, &RoleIndex::default()).record.unwrap().profile);
        assert_eq!(
            profile["addresses"][0]["formatted"],
            "1 Main St, Springfield"
        );
    }

    #[test]
    fn an_email_that_is_not_an_address_leaves_out_only_the_otp_address() {
        // Regression: `notanemail` failed the whole user.
        let m = mapper();
        let out = m.map(
            &record(
                r#"{"Email":"notanemail","PhoneNumber":"call me","PhoneNumberConfirmed":true}"#,
            ),
            &RoleIndex::default(),
        );
        let record = out.record.expect("the user is imported");
        assert!(record.otp_addresses.is_empty());
        assert_eq!(record.profile["emails"][0]["value"], "notanemail");
        let text: Vec<String> = out.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "warning: Email: `notanemail` is not an e-mail address: it needs an @ with text on both sides; the user is imported without an e-mail OTP address",
                "warning: PhoneNumber: `call me` is not a phone number User Management accepts: digits only after an optional +; the user is imported without an SMS OTP address",
            ]
        );
    }

    #[test]
    fn problems_name_their_field() {
        let m = mapper();
        let MapResult {
            record: rec,
            problems,
            ..
        } = m.map(
            &record(
                r#"{"Email":"not-an-email","UserName":null,"Roles":["nope"],
                "Tokens":[{"LoginProvider":"[AspNetUserStore]","Name":"AuthenticatorKey","Value":"!!!"}]}"#,
            ),
            &RoleIndex::default(),
        );
        assert!(rec.is_none());
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("userName: Required attribute 'userName' is missing.")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("warning: Email: `not-an-email` is not an e-mail address")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t == "Roles[0]: role id `nope` is not in roles.ndjson"),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("Tokens[0].Value: authenticator key is not base32")),
            "{text:?}"
        );
    }

    #[test]
    fn a_malformed_hash_is_a_warning_and_the_blob_is_kept() {
        let m = mapper();
        let MapResult {
            record: rec,
            problems,
            ..
        } = m.map(
            &record(r#"{"PasswordHash":"not-base64!!"}"#),
            &RoleIndex::default(),
        );
        let rec = rec.expect("still imported");
        assert_eq!(rec.password.unwrap().parameters["blob"], "not-base64!!");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].severity, Severity::Warning);
    }

    #[test]
    fn targets_the_schema_lacks_are_listed_once() {
        let schema = AttributeSchema::parse(
            r#"{"attributes":[{"code":"userName","type":"string","unique":true}]}"#,
            "s",
        )
        .unwrap();
        let m = Mapper::new(schema, &Mapping::default_mapping()).unwrap();
        let missing: Vec<&str> = m
            .missing_targets()
            .iter()
            .map(|(t, _)| t.as_str())
            .collect();
        assert!(missing.contains(&"addresses[0].streetAddress"));
        assert!(missing.contains(&"active"));
    }
}
