//! The generations of the ASP.NET Identity schema, told from a database's own tables.
//!
//! | generation        | how it is told                                                   |
//! |-------------------|------------------------------------------------------------------|
//! | `classic-1`       | `LockoutEndDateUtc`, no `NormalizedUserName`, a `Discriminator`   |
//! | `classic-2`       | `LockoutEndDateUtc`, no `NormalizedUserName`                      |
//! | `core-v3`         | `AspNetUserPasskeys` with a `Data` JSON column (.NET 10)          |
//! | `core-v3-preview` | `AspNetUserPasskeys` with flat columns (.NET 10 previews)         |
//! | `core-v2`         | sized column types with `PhoneNumber` limited to 256 (.NET 8)     |
//! | `core-v1`         | sized column types with `PhoneNumber` unbounded (Core 1 to 7)     |
//! | `core-v1-or-v2`   | no sized column types (SQLite): v1 and v2 differ only in lengths  |

use std::fmt;

use crate::layout::{Column, PasskeyLayout};

/// A schema generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// ASP.NET Identity 1.0 (EF6, with a `Discriminator` column).
    Classic1,
    /// ASP.NET Identity 2.x (EF6).
    Classic2,
    /// ASP.NET Core Identity schema version 1 (Core 1 to 7).
    CoreV1,
    /// ASP.NET Core Identity schema version 2 (.NET 8: keys 128, PhoneNumber 256).
    CoreV2,
    /// Version 1 or 2; the database cannot tell them apart (SQLite stores no lengths).
    CoreV1OrV2,
    /// ASP.NET Core Identity schema version 3 (.NET 10: passkeys with `Data` JSON).
    CoreV3,
    /// The .NET 10 preview layout: passkeys with flat columns.
    CoreV3Preview,
}

impl Generation {
    /// The manifest name.
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::Classic1 => "classic-1",
            Generation::Classic2 => "classic-2",
            Generation::CoreV1 => "core-v1",
            Generation::CoreV2 => "core-v2",
            Generation::CoreV1OrV2 => "core-v1-or-v2",
            Generation::CoreV3 => "core-v3",
            Generation::CoreV3Preview => "core-v3-preview",
        }
    }

    /// Whether this is a classic (EF6) generation.
    pub fn is_classic(self) -> bool {
        matches!(self, Generation::Classic1 | Generation::Classic2)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What detection looks at.
pub(crate) struct Clues<'a> {
    pub user_columns: &'a [Column],
    pub has_normalized_user_name: bool,
    pub lockout_is_utc: bool,
    pub passkeys: Option<&'a PasskeyLayout>,
}

fn declared_length(decl_type: &str) -> Option<u32> {
    let open = decl_type.find('(')?;
    let close = decl_type[open..].find(')')? + open;
    decl_type[open + 1..close].trim().parse().ok()
}

pub(crate) fn detect(clues: &Clues<'_>) -> (Generation, Vec<String>) {
    let col = |name: &str| {
        clues.user_columns.iter().find(|c| {
            c.name.eq_ignore_ascii_case(name)
                || c.name
                    .eq_ignore_ascii_case(&crate::values::snake_case(name))
        })
    };
    if clues.lockout_is_utc && !clues.has_normalized_user_name {
        let mut evidence =
            vec!["users table has LockoutEndDateUtc and no NormalizedUserName".to_string()];
        if col("Discriminator").is_some() {
            evidence.push("users table has a Discriminator column (Identity 1.0)".into());
            return (Generation::Classic1, evidence);
        }
        return (Generation::Classic2, evidence);
    }
    match clues.passkeys {
        Some(PasskeyLayout::Json(t)) => {
            return (
                Generation::CoreV3,
                vec![format!("{} has a Data JSON column", t.name)],
            );
        }
        Some(PasskeyLayout::Flat(t)) => {
            return (
                Generation::CoreV3Preview,
                vec![format!(
                    "{} has flat passkey columns and no Data column",
                    t.name
                )],
            );
        }
        None => {}
    }
    let user_name_len = col("UserName").and_then(|c| declared_length(&c.decl_type));
    let phone_len = col("PhoneNumber").and_then(|c| declared_length(&c.decl_type));
    match (user_name_len, phone_len) {
        (Some(_), Some(256)) => (Generation::CoreV2, vec!["PhoneNumber is limited to 256 characters".into()]),
        (Some(_), _) => (
            Generation::CoreV1,
            vec!["column types carry lengths and PhoneNumber has none".into()],
        ),
        (None, _) => (
            Generation::CoreV1OrV2,
            vec!["no AspNetUserPasskeys table; column types carry no lengths, so schema v1 and v2 look the same".into()],
        ),
    }
}
