//! The mapping file: where each source field goes.
//!
//! ```json
//! {
//!   "rules": [
//!     { "from": "UserName", "to": "userName" },
//!     { "from": "Email", "to": "emails[].value", "set": { "type": "work", "primary": true } },
//!     { "from": "claim:given_name", "to": "name.givenName" },
//!     { "from": "claim:street_address", "to": "addresses[0].streetAddress", "set": { "primary": false } },
//!     { "from": "extra:FirstName", "to": "name.givenName" },
//!     { "value": true, "to": "active" }
//!   ],
//!   "emailOtp": "Email",
//!   "smsOtp": "PhoneNumber"
//! }
//! ```
//!
//! `from` is an `AspNetUsers` column of the record (`UserName`, `Email`, `PhoneNumber`,
//! `EmailConfirmed`, …), `claim:TYPE` (every claim of that type), or `extra:COLUMN` (a
//! custom column); `value` is a constant instead. `to` is an attribute code, `code.prop`
//! (a property of a complex attribute), `code[]` (append to a list of scalars),
//! `code[].prop` (append a new element to a list of complex values, with the `set`
//! properties) or `code[0].prop` (the one shared element, created with the `set`
//! properties). A scalar target set twice keeps the last value, as the migration guide's
//! code does; list targets append, skipping a value already there.
//!
//! A claim whose value is a JSON object (the OIDC `address` claim) is mapped field by
//! field with `json`: `{"from": "claim:address", "to": "addresses[0]", "json":
//! {"street_address": "streetAddress", "locality": "locality"}}` sends each JSON field to
//! the property it names, of the shared element (`code[0]`) or of a complex attribute
//! (`code`). A value that is not a JSON object is taken as the `formatted` field.
//!
//! `emailOtp` names the column that becomes an e-mail OTP address; `smsOtp` the column
//! that becomes an SMS OTP address when `PhoneNumberConfirmed` is true. Either may be
//! left out.
//!
//! `roles` chooses the role id of a role by its name (`{"Help Desk": "helpdesk"}`), where
//! the id derived from the name (see [`crate::roles`]) will not do.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The most rules a mapping file may hold (a real one has tens).
pub const MAX_RULES: usize = 10_000;

/// Where a rule reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A column of the record (`UserName`, `Email`, …).
    Column(String),
    /// Every claim of this type.
    Claim(String),
    /// A field of every claim of this type whose value is a JSON object; with `text`, a
    /// value that is not a JSON object counts as this field (the `formatted` field).
    ClaimField {
        /// The claim type.
        claim: String,
        /// The JSON field.
        field: String,
        /// Whether a plain-text value is this field.
        text: bool,
    },
    /// A custom column under `Extra`.
    Extra(String),
    /// A constant.
    Value(Value),
}

impl Source {
    /// How problems name the source.
    pub fn describe(&self) -> String {
        match self {
            Source::Column(c) => c.clone(),
            Source::Claim(t) => format!("claim {t}"),
            Source::ClaimField { claim, field, .. } => format!("claim {claim} field {field}"),
            Source::Extra(c) => format!("Extra.{c}"),
            Source::Value(v) => format!("constant {v}"),
        }
    }
}

/// Where a rule writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `code`
    Attribute(String),
    /// `code.prop`
    Property(String, String),
    /// `code[]`
    Append(String),
    /// `code[].prop`
    AppendElement(String, String),
    /// `code[0].prop`
    SharedElement(String, String),
}

impl Target {
    fn parse(text: &str) -> Option<Target> {
        let (head, prop) = match text.split_once('.') {
            Some((h, p)) => (h, Some(p.to_string())),
            None => (text, None),
        };
        let valid =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if let Some(p) = &prop {
            if !valid(p) {
                return None;
            }
        }
        let t = if let Some(code) = head.strip_suffix("[]") {
            match prop {
                None => Target::Append(code.to_string()),
                Some(p) => Target::AppendElement(code.to_string(), p),
            }
        } else if let Some(code) = head.strip_suffix("[0]") {
            Target::SharedElement(code.to_string(), prop?)
        } else {
            match prop {
                None => Target::Attribute(head.to_string()),
                Some(p) => Target::Property(head.to_string(), p),
            }
        };
        valid(t.code()).then_some(t)
    }

    /// The attribute code.
    pub fn code(&self) -> &str {
        match self {
            Target::Attribute(c)
            | Target::Property(c, _)
            | Target::Append(c)
            | Target::AppendElement(c, _)
            | Target::SharedElement(c, _) => c,
        }
    }
}

/// One rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Where it reads.
    pub from: Source,
    /// Where it writes.
    pub to: Target,
    /// The text of `to`, for messages.
    pub to_text: String,
    /// Properties set on a new list element.
    pub set: Map<String, Value>,
}

/// A parsed mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    /// The rules, applied in order.
    pub rules: Vec<Rule>,
    /// The column that becomes an e-mail OTP address.
    pub email_otp: Option<String>,
    /// The column that becomes an SMS OTP address (when the phone is confirmed).
    pub sms_otp: Option<String>,
    /// Role ids chosen by role name, over the derived ones.
    pub roles: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMapping {
    #[serde(default)]
    description: Option<String>,
    rules: Vec<RawRule>,
    #[serde(default)]
    email_otp: Option<String>,
    #[serde(default)]
    sms_otp: Option<String>,
    #[serde(default)]
    roles: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    from: Option<String>,
    value: Option<Value>,
    to: String,
    #[serde(default)]
    set: Map<String, Value>,
    #[serde(default)]
    json: Option<BTreeMap<String, String>>,
}

/// The columns of a user record a rule may read.
pub const COLUMNS: [&str; 12] = [
    "Id",
    "UserName",
    "NormalizedUserName",
    "Email",
    "NormalizedEmail",
    "EmailConfirmed",
    "PhoneNumber",
    "PhoneNumberConfirmed",
    "TwoFactorEnabled",
    "LockoutEnd",
    "LockoutEnabled",
    "AccessFailedCount",
];

/// The mapping that ships with ferry (`schemas/mapping.default.json`).
pub const DEFAULT: &str = include_str!("../../../schemas/mapping.default.json");

impl Mapping {
    /// The default mapping.
    pub fn default_mapping() -> Mapping {
        Mapping::parse(DEFAULT, "mapping.default.json").expect("the shipped mapping is valid")
    }

    /// Reads a mapping file.
    pub fn load(path: &Path) -> Result<Mapping, String> {
        let text = crate::attributes::read_small_file(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Mapping::parse(&text, &path.display().to_string())
    }

    /// Parses mapping text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Mapping, String> {
        let raw: RawMapping =
            serde_json::from_str(text).map_err(|e| format!("{file}: line {}: {e}", e.line()))?;
        let _ = raw.description;
        if raw.rules.len() > MAX_RULES {
            return Err(format!(
                "{file}: rules: {} rules; ferry takes at most {MAX_RULES}",
                raw.rules.len()
            ));
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.into_iter().enumerate() {
            let at = |field: &str| format!("{file}: rules[{i}].{field}");
            let from = match (r.from, r.value) {
                (Some(_), Some(_)) => {
                    return Err(format!("{}: give `from` or `value`, not both", at("from")))
                }
                (None, None) => return Err(format!("{}: missing (or give `value`)", at("from"))),
                (None, Some(v)) => Source::Value(v),
                (Some(f), None) => {
                    if let Some(t) = f.strip_prefix("claim:") {
                        Source::Claim(t.to_string())
                    } else if let Some(c) = f.strip_prefix("extra:") {
                        Source::Extra(c.to_string())
                    } else if COLUMNS.contains(&f.as_str()) {
                        Source::Column(f)
                    } else {
                        return Err(format!(
                            "{}: `{f}` is not a column ({}), `claim:TYPE` or `extra:COLUMN`",
                            at("from"),
                            COLUMNS.join(", ")
                        ));
                    }
                }
            };
            if let Some(fields) = r.json {
                let Source::Claim(claim) = from else {
                    return Err(format!(
                        "{}: `json` reads a claim (`claim:TYPE`)",
                        at("json")
                    ));
                };
                let element = |prop: &str| -> Option<Target> {
                    match r.to.strip_suffix("[0]") {
                        Some(code) => Target::parse(&format!("{code}[0].{prop}")),
                        None => Target::parse(&format!("{}.{prop}", r.to)),
                    }
                };
                if fields.is_empty() {
                    return Err(format!("{}: name at least one JSON field", at("json")));
                }
                for (field, prop) in fields {
                    let to = element(&prop).ok_or_else(|| {
                        format!(
                            "{}: `{}` with `json` is code[0] or code (a complex attribute), and `{prop}` a property name",
                            at("to"),
                            r.to
                        )
                    })?;
                    rules.push(Rule {
                        from: Source::ClaimField {
                            claim: claim.clone(),
                            text: field == "formatted",
                            field,
                        },
                        to_text: match &to {
                            Target::SharedElement(code, p) => format!("{code}[0].{p}"),
                            _ => format!("{}.{prop}", r.to),
                        },
                        to,
                        set: r.set.clone(),
                    });
                }
                continue;
            }
            let to = Target::parse(&r.to).ok_or_else(|| {
                format!(
                    "{}: `{}` is not code, code.prop, code[], code[].prop or code[0].prop",
                    at("to"),
                    r.to
                )
            })?;
            rules.push(Rule {
                from,
                to,
                to_text: r.to,
                set: r.set,
            });
        }
        for (name, col) in [("emailOtp", &raw.email_otp), ("smsOtp", &raw.sms_otp)] {
            if let Some(c) = col {
                if !COLUMNS.contains(&c.as_str()) {
                    return Err(format!("{file}: {name}: `{c}` is not a column"));
                }
            }
        }
        Ok(Mapping {
            rules,
            email_otp: raw.email_otp,
            sms_otp: raw.sms_otp,
            roles: raw.roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mapping_parses() {
        let m = Mapping::default_mapping();
        assert!(m
            .rules
            .iter()
            .any(|r| r.to == Target::SharedElement("addresses".into(), "streetAddress".into())));
        assert_eq!(m.email_otp.as_deref(), Some("Email"));
    }

    #[test]
    fn a_json_claim_maps_field_by_field() {
        let m = Mapping::parse(
            r#"{"rules":[{"from":"claim:address","to":"addresses[0]","json":{"street_address":"streetAddress","formatted":"formatted"},"set":{"primary":false}}]}"#,
            "m.json",
        )
        .unwrap();
        let targets: Vec<&Target> = m.rules.iter().map(|r| &r.to).collect();
        assert_eq!(
            targets,
            [
                &Target::SharedElement("addresses".into(), "formatted".into()),
                &Target::SharedElement("addresses".into(), "streetAddress".into()),
            ]
        );
        assert!(matches!(
            &m.rules[0].from,
            Source::ClaimField { text: true, .. }
        ));
        let e = Mapping::parse(
            r#"{"rules":[{"from":"Email","to":"addresses[0]","json":{"a":"b"}}]}"#,
            "m.json",
        )
        .unwrap_err();
        assert!(e.contains("rules[0].json: `json` reads a claim"), "{e}");
    }

    #[test]
    fn bad_rules_are_named() {
        let e = Mapping::parse(r#"{"rules":[{"from":"Emial","to":"x"}]}"#, "m.json").unwrap_err();
        assert!(
            e.starts_with("m.json: rules[0].from: `Emial` is not a column"),
            "{e}"
        );
        let e =
            Mapping::parse(r#"{"rules":[{"from":"Email","to":"a.b.c"}]}"#, "m.json").unwrap_err();
        assert!(e.starts_with("m.json: rules[0].to: `a.b.c`"), "{e}");
    }
}
