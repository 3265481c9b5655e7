//! Limits on a record's text, each an error of that record (it is not imported), so that
//! a bundle edited by hand, or a hostile one, cannot put into the store what ASP.NET
//! Identity never held, or make one user cost the machine megabytes at every step.
//!
//! | what | limit | why |
//! |------|-------|-----|
//! | `UserName`, `NormalizedUserName`, `Email`, `NormalizedEmail` | 256 characters ([`MAX_NAME_CHARS`]) | ASP.NET Identity's columns are `nvarchar(256)` |
//! | the same four | no control characters (U+0000-U+001F, U+007F-U+009F) | a name or address never holds one; a newline or NUL in a login name is an attack or a broken edit |
//! | every other string: claim types and values, logins, token values, stamps, phone number, `Extra` strings | 1 MiB ([`MAX_VALUE_BYTES`]) | far above any real value (an `address` claim is a few hundred bytes); a record line is at most 16 MiB |

use ferry_bundle::UserRecord;

use crate::map::Problem;

/// The longest user name or e-mail address, in characters: ASP.NET Identity's
/// `nvarchar(256)`.
pub const MAX_NAME_CHARS: usize = 256;

/// The longest of any other string value of a record, in bytes (1 MiB).
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Adds to `problems` an error for each field of `r` over its limit.
pub fn check(r: &UserRecord, problems: &mut Vec<Problem>) {
    for (field, value) in [
        ("UserName", &r.user_name),
        ("NormalizedUserName", &r.normalized_user_name),
        ("Email", &r.email),
        ("NormalizedEmail", &r.normalized_email),
    ] {
        let Some(value) = value else { continue };
        let chars = value.chars().count();
        if chars > MAX_NAME_CHARS {
            problems.push(Problem::error(
                field,
                format!("is {chars} characters long; ASP.NET Identity holds at most {MAX_NAME_CHARS} (nvarchar(256))"),
            ));
        }
        if let Some((at, c)) = value.chars().enumerate().find(|(_, c)| c.is_control()) {
            problems.push(Problem::error(
                field,
                format!(
                    "holds a control character (U+{:04X}) at character {}; a user name or e-mail address never does: remove it",
                    c as u32,
                    at + 1
                ),
            ));
        }
    }
    let mut value = |field: &dyn Fn() -> String, text: Option<&str>| {
        if let Some(text) = text.filter(|t| t.len() > MAX_VALUE_BYTES) {
            problems.push(Problem::error(
                field(),
                format!(
                    "is {} bytes long; ferry takes values of at most {} MiB",
                    text.len(),
                    MAX_VALUE_BYTES >> 20
                ),
            ));
        }
    };
    value(&|| "PhoneNumber".into(), r.phone_number.as_deref());
    value(&|| "SecurityStamp".into(), r.security_stamp.as_deref());
    value(
        &|| "ConcurrencyStamp".into(),
        r.concurrency_stamp.as_deref(),
    );
    for (i, c) in r.claims.iter().enumerate() {
        value(&|| format!("Claims[{i}].Type"), c.claim_type.as_deref());
        value(&|| format!("Claims[{i}].Value"), c.value.as_deref());
    }
    for (i, l) in r.logins.iter().enumerate() {
        value(
            &|| format!("Logins[{i}].LoginProvider"),
            Some(&l.login_provider),
        );
        value(
            &|| format!("Logins[{i}].ProviderKey"),
            Some(&l.provider_key),
        );
        value(
            &|| format!("Logins[{i}].ProviderDisplayName"),
            l.provider_display_name.as_deref(),
        );
    }
    for (i, t) in r.tokens.iter().enumerate() {
        value(&|| format!("Tokens[{i}].Value"), t.value.as_deref());
    }
    for (key, v) in &r.extra {
        value(&|| format!("Extra.{key}"), v.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> UserRecord {
        serde_json::from_str(&format!(
            r#"{{"Id":"u1","UserName":"alice","NormalizedUserName":"ALICE","Email":null,"NormalizedEmail":null,"EmailConfirmed":false,"PasswordHash":null,"SecurityStamp":null,"ConcurrencyStamp":null,"PhoneNumber":null,"PhoneNumberConfirmed":false,"TwoFactorEnabled":false,"LockoutEnd":null,"LockoutEnabled":false,"AccessFailedCount":0{fields}}}"#
        ))
        .unwrap()
    }

    fn problems(r: &UserRecord) -> Vec<String> {
        let mut p = Vec::new();
        check(r, &mut p);
        p.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn names_at_256_characters_pass_and_over_fail() {
        let mut r = record("");
        r.user_name = Some("é".repeat(256));
        assert!(problems(&r).is_empty());
        r.user_name = Some("é".repeat(257));
        assert_eq!(
            problems(&r),
            ["UserName: is 257 characters long; ASP.NET Identity holds at most 256 (nvarchar(256))"]
        );
    }

    #[test]
    fn a_control_character_in_a_name_or_address_fails() {
        let mut r = record("");
        r.email = Some("bob@example.org\n".into());
        r.normalized_user_name = Some("AL\u{0}ICE".into());
        assert_eq!(
            problems(&r),
            [
                "NormalizedUserName: holds a control character (U+0000) at character 3; a user name or e-mail address never does: remove it",
                "Email: holds a control character (U+000A) at character 16; a user name or e-mail address never does: remove it",
            ]
        );
        // Not in other values: a JSON `address` claim may hold newlines.
        let r = record(r#","Claims":[{"Type":"address","Value":"1 Main St\nSpringfield"}]"#);
        assert!(problems(&r).is_empty());
    }

    #[test]
    fn a_value_over_1_mib_fails_naming_its_path() {
        let mut r = record(r#","Extra":{"Bio":"x"},"Claims":[{"Type":"a","Value":"b"}]"#);
        assert!(problems(&r).is_empty());
        let big = "y".repeat(MAX_VALUE_BYTES + 1);
        r.claims[0].value = Some(big.clone());
        r.extra.insert("Bio".into(), big.into());
        assert_eq!(
            problems(&r),
            [
                "Claims[0].Value: is 1048577 bytes long; ferry takes values of at most 1 MiB",
                "Extra.Bio: is 1048577 bytes long; ferry takes values of at most 1 MiB",
            ]
        );
    }
}
