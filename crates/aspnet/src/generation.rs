//! The generations of the ASP.NET Identity schema, told from a database's own tables.
//!
//! | generation        | how it is told                                                   |
//! |-------------------|------------------------------------------------------------------|
//! | `classic-1`       | `LockoutEndDateUtc`, no `NormalizedUserName`, a `Discriminator`   |
//! | `classic-2`       | `LockoutEndDateUtc`, no `NormalizedUserName`                      |
//! | `core-v3`         | `AspNetUserPasskeys` with a `Data` JSON column (.NET 10)          |
//! | `core-v3-preview` | `AspNetUserPasskeys` with flat columns (.NET 10 previews)         |
//! | `core-v2`         | sized column types with `PhoneNumber` limited to 256 (.NET 8)     |
//! | `core-v1`         | sized column types with `PhoneNumber` unbounded (Core 1 to 7), or |
//! |                   | no sizes but every EF migration made by EF Core 7 or earlier      |
//! | `core-v1-or-v2`   | no sized column types (SQLite) and no history that rules v2 out:  |
//! |                   | v1 and v2 differ only in column lengths                           |
//!
//! EF's migration history (`__EFMigrationsHistory`, or EF6's `__MigrationHistory`) is
//! read where it exists and recorded as evidence. Schema version 2 arrived with .NET 8
//! and has to be opted into (`IdentityOptions.Stores.SchemaVersion`), so a database whose
//! every migration was made by EF Core 7 or earlier is version 1. One with migrations of
//! EF Core 8 or later may be either, and SQLite keeps no column lengths to tell them by.

use std::fmt;

use crate::layout::{Column, Migration, PasskeyLayout};

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
    pub migrations: &'a [Migration],
}

/// What the migration history says, as evidence.
fn history_evidence(migrations: &[Migration]) -> Option<String> {
    let (first, last) = (migrations.first()?, migrations.last()?);
    let count = migrations.len();
    let made = |m: &Migration| format!("`{}` (EF {})", m.id, m.product_version);
    Some(if count == 1 {
        format!("{} has 1 migration: {}", first.table, made(first))
    } else {
        format!(
            "{} has {count} migrations, from {} to {}",
            first.table,
            made(first),
            made(last)
        )
    })
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
    let history = history_evidence(clues.migrations);
    if clues.lockout_is_utc && !clues.has_normalized_user_name {
        let mut evidence =
            vec!["users table has LockoutEndDateUtc and no NormalizedUserName".to_string()];
        evidence.extend(history);
        if col("Discriminator").is_some() {
            evidence.push("users table has a Discriminator column (Identity 1.0)".into());
            return (Generation::Classic1, evidence);
        }
        return (Generation::Classic2, evidence);
    }
    let with_history = |generation, first: String| {
        let mut evidence = vec![first];
        evidence.extend(history.clone());
        (generation, evidence)
    };
    match clues.passkeys {
        Some(PasskeyLayout::Json(t)) => {
            return with_history(
                Generation::CoreV3,
                format!("{} has a Data JSON column", t.name),
            );
        }
        Some(PasskeyLayout::Flat(t)) => {
            return with_history(
                Generation::CoreV3Preview,
                format!("{} has flat passkey columns and no Data column", t.name),
            );
        }
        None => {}
    }
    let user_name_len = col("UserName").and_then(|c| declared_length(&c.decl_type));
    let phone_len = col("PhoneNumber").and_then(|c| declared_length(&c.decl_type));
    match (user_name_len, phone_len) {
        (Some(_), Some(256)) => with_history(
            Generation::CoreV2,
            "PhoneNumber is limited to 256 characters".into(),
        ),
        (Some(_), _) => with_history(
            Generation::CoreV1,
            "column types carry lengths and PhoneNumber has none".into(),
        ),
        (None, _) => {
            let core: Vec<&Migration> = clues
                .migrations
                .iter()
                .filter(|m| m.table.eq_ignore_ascii_case("__EFMigrationsHistory"))
                .collect();
            let majors: Vec<Option<u32>> = core.iter().map(|m| m.major()).collect();
            let newest = majors.iter().copied().max().flatten();
            if !core.is_empty() && majors.iter().all(Option::is_some) && newest < Some(8) {
                return with_history(
                    Generation::CoreV1,
                    format!(
                        "every migration was made by EF Core {} or earlier, and schema version 2 arrived with .NET 8",
                        newest.unwrap_or_default()
                    ),
                );
            }
            let why = if core.is_empty() {
                "no AspNetUserPasskeys table and no EF migration history; column types carry no lengths, so schema v1 and v2 look the same".to_string()
            } else {
                "no AspNetUserPasskeys table; migrations of EF Core 8 or later may have opted into schema version 2, and column types carry no lengths to tell v1 from v2".to_string()
            };
            with_history(Generation::CoreV1OrV2, why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(id: &str, version: &str) -> Migration {
        Migration {
            table: "__EFMigrationsHistory".into(),
            id: id.into(),
            product_version: version.into(),
        }
    }

    fn detect_with(migrations: &[Migration]) -> (Generation, Vec<String>) {
        let columns = [Column {
            name: "UserName".into(),
            decl_type: "TEXT".into(),
        }];
        detect(&Clues {
            user_columns: &columns,
            has_normalized_user_name: true,
            lockout_is_utc: false,
            passkeys: None,
            migrations,
        })
    }

    #[test]
    fn migration_history_tells_v1_from_v2_where_it_can() {
        let (g, evidence) = detect_with(&[
            migration("00000000000000_CreateIdentitySchema", "2.1.14"),
            migration("20230301120000_AddProfile", "7.0.20"),
        ]);
        assert_eq!(g, Generation::CoreV1);
        assert!(evidence[0].contains("EF Core 7 or earlier"), "{evidence:?}");
        assert_eq!(
            evidence[1],
            "__EFMigrationsHistory has 2 migrations, from `00000000000000_CreateIdentitySchema` (EF 2.1.14) to `20230301120000_AddProfile` (EF 7.0.20)"
        );
        let (g, evidence) =
            detect_with(&[migration("00000000000000_CreateIdentitySchema", "8.0.11")]);
        assert_eq!(g, Generation::CoreV1OrV2);
        assert!(evidence[0].contains("EF Core 8 or later"), "{evidence:?}");
        let (g, _) = detect_with(&[]);
        assert_eq!(g, Generation::CoreV1OrV2);
    }
}
