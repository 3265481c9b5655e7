//! Which Identity tables and columns a database has, resolved once.
//!
//! Every logical field has a PascalCase name (the EF Core default, and classic 2.x) and
//! a snake_case name (EFCore.NamingConventions). The users table is required; every
//! other table is optional, and an absent optional column reads as NULL.

use crate::generation::{self, Generation};
use crate::key::KeyType;
use crate::values::snake_case;

/// A column as the source declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The column name.
    pub name: String,
    /// The declared type, e.g. `TEXT`, `nvarchar(256)`, `character varying(256)`.
    pub decl_type: String,
}

/// The tables of a database with their columns: what a layout is resolved from.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Tables in the order the engine lists them.
    pub tables: Vec<(String, Vec<Column>)>,
    /// The rows of EF's migration history, in `MigrationId` order (empty without one).
    pub migrations: Vec<Migration>,
}

/// One row of EF's migration history: `__EFMigrationsHistory` (EF Core) or
/// `__MigrationHistory` (EF6, classic Identity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The history table the row is in.
    pub table: String,
    /// `MigrationId`, e.g. `00000000000000_CreateIdentitySchema`.
    pub id: String,
    /// `ProductVersion`: the EF version that made it, e.g. `8.0.11`.
    pub product_version: String,
}

impl Migration {
    /// The major version of the EF that made the migration.
    pub fn major(&self) -> Option<u32> {
        self.product_version.split('.').next()?.trim().parse().ok()
    }
}

/// The names of EF's migration history tables (EF Core, then EF6).
pub const MIGRATION_TABLES: [&str; 2] = ["__EFMigrationsHistory", "__MigrationHistory"];

/// EF's migration history table of `catalog`, if it has one of the expected shape: its
/// name and its `MigrationId` and `ProductVersion` columns (snake_case under
/// EFCore.NamingConventions).
pub fn migration_history(catalog: &Catalog) -> Option<(String, String, String)> {
    MIGRATION_TABLES.iter().find_map(|history| {
        let (name, columns) = catalog
            .tables
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(history))?;
        let id = find_column(columns, &["MigrationId"])?;
        let version = find_column(columns, &["ProductVersion"])?;
        Some((name.clone(), id.name.clone(), version.name.clone()))
    })
}

/// The table naming convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `AspNetUsers`, `PasswordHash` (EF Core's default and classic Identity).
    PascalCase,
    /// `asp_net_users`, `password_hash` (EFCore.NamingConventions).
    SnakeCase,
}

impl Naming {
    /// `PascalCase` or `snake_case`.
    pub fn as_str(self) -> &'static str {
        match self {
            Naming::PascalCase => "PascalCase",
            Naming::SnakeCase => "snake_case",
        }
    }
}

/// The logical user fields, in the order readers select them.
pub const USER_FIELDS: [&str; 15] = [
    "Id",
    "UserName",
    "NormalizedUserName",
    "Email",
    "NormalizedEmail",
    "EmailConfirmed",
    "PasswordHash",
    "SecurityStamp",
    "ConcurrencyStamp",
    "PhoneNumber",
    "PhoneNumberConfirmed",
    "TwoFactorEnabled",
    "LockoutEnd",
    "LockoutEnabled",
    "AccessFailedCount",
];

/// Index of `LockoutEnd` in [`USER_FIELDS`].
pub const LOCKOUT_END: usize = 12;

/// The fields of a passkey beyond its credential id and user, as the .NET 10 `Data`
/// JSON names them. Preview-era databases hold them as flat columns.
pub const PASSKEY_DATA_FIELDS: [&str; 10] = [
    "PublicKey",
    "Name",
    "CreatedAt",
    "SignCount",
    "Transports",
    "IsUserVerified",
    "IsBackupEligible",
    "IsBackedUp",
    "AttestationObject",
    "ClientDataJson",
];

/// A resolved table: its source name and, per logical field, the source column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The table name in the source.
    pub name: String,
    /// Per logical field (in the order of the table's field list), the source column.
    pub columns: Vec<Option<String>>,
}

impl Table {
    /// The source column of logical field `i`.
    pub fn column(&self, i: usize) -> Option<&str> {
        self.columns[i].as_deref()
    }
}

/// How passkeys are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasskeyLayout {
    /// .NET 10: `CredentialId`, `UserId`, `Data` (JSON).
    Json(Table),
    /// Preview: `CredentialId`, `UserId` and one column per data field
    /// (see [`PASSKEY_DATA_FIELDS`]).
    Flat(Table),
}

/// Everything a reader needs to know about a database's Identity tables.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The naming convention.
    pub naming: Naming,
    /// The generation.
    pub generation: Generation,
    /// How the generation was told.
    pub evidence: Vec<String>,
    /// `AspNetUsers`: columns in [`USER_FIELDS`] order.
    pub users: Table,
    /// The type of the users' `Id` (and so of every `UserId`).
    pub key_type: KeyType,
    /// Whether `LockoutEnd` is classic `LockoutEndDateUtc` (UTC, no offset).
    pub lockout_is_utc: bool,
    /// Users columns beyond the template's, exported under `Extra`.
    pub extra: Vec<Column>,
    /// `AspNetUserClaims`: `UserId`, `ClaimType`, `ClaimValue`, `Id`.
    pub claims: Option<Table>,
    /// `AspNetUserLogins`: `UserId`, `LoginProvider`, `ProviderKey`, `ProviderDisplayName`.
    pub logins: Option<Table>,
    /// `AspNetUserTokens`: `UserId`, `LoginProvider`, `Name`, `Value`.
    pub tokens: Option<Table>,
    /// `AspNetUserRoles`: `UserId`, `RoleId`.
    pub user_roles: Option<Table>,
    /// `AspNetRoles`: `Id`, `Name`, `NormalizedName`, `ConcurrencyStamp`.
    pub roles: Option<Table>,
    /// `AspNetRoleClaims`: `RoleId`, `ClaimType`, `ClaimValue`, `Id`.
    pub role_claims: Option<Table>,
    /// `AspNetUserPasskeys`.
    pub passkeys: Option<PasskeyLayout>,
}

impl Layout {
    /// The Identity tables found, by their source names.
    pub fn table_names(&self) -> Vec<String> {
        let mut names = vec![self.users.name.clone()];
        for t in [
            &self.claims,
            &self.logins,
            &self.tokens,
            &self.roles,
            &self.user_roles,
            &self.role_claims,
        ]
        .into_iter()
        .flatten()
        {
            names.push(t.name.clone());
        }
        match &self.passkeys {
            Some(PasskeyLayout::Json(t)) | Some(PasskeyLayout::Flat(t)) => {
                names.push(t.name.clone())
            }
            None => {}
        }
        names
    }
}

/// A layout could not be resolved: the message names what is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing(pub String);

fn find_table<'c>(catalog: &'c Catalog, pascal: &str) -> Option<(&'c str, &'c [Column])> {
    let snake = snake_case(pascal);
    catalog
        .tables
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(pascal) || name.eq_ignore_ascii_case(&snake))
        .map(|(name, cols)| (name.as_str(), cols.as_slice()))
}

fn find_column<'c>(columns: &'c [Column], candidates: &[&str]) -> Option<&'c Column> {
    candidates.iter().find_map(|cand| {
        let snake = snake_case(cand);
        columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(cand) || c.name.eq_ignore_ascii_case(&snake))
    })
}

/// Resolves a child table whose fields are given as candidate lists; the first
/// `required` fields must exist or the table is reported as unusable.
fn resolve(
    catalog: &Catalog,
    pascal: &str,
    fields: &[&[&str]],
    required: usize,
) -> Result<Option<Table>, Missing> {
    let Some((name, columns)) = find_table(catalog, pascal) else {
        return Ok(None);
    };
    let mut resolved = Vec::with_capacity(fields.len());
    for (i, candidates) in fields.iter().enumerate() {
        let col = find_column(columns, candidates).map(|c| c.name.clone());
        if col.is_none() && i < required {
            return Err(Missing(format!(
                "table {name} has no {} column",
                candidates[0]
            )));
        }
        resolved.push(col);
    }
    Ok(Some(Table {
        name: name.to_string(),
        columns: resolved,
    }))
}

/// Resolves the layout of a database from its catalog.
pub fn resolve_layout(catalog: &Catalog) -> Result<Layout, Missing> {
    let Some((users_name, user_columns)) = find_table(catalog, "AspNetUsers") else {
        let mut found: Vec<&str> = catalog.tables.iter().map(|(n, _)| n.as_str()).collect();
        found.truncate(12);
        let found = if found.is_empty() {
            "the database has no tables".to_string()
        } else {
            format!("tables found: {}", found.join(", "))
        };
        return Err(Missing(format!(
            "no AspNetUsers (or asp_net_users) table; {found}"
        )));
    };
    let naming = if users_name.eq_ignore_ascii_case("asp_net_users") {
        Naming::SnakeCase
    } else {
        Naming::PascalCase
    };

    let mut users = Vec::with_capacity(USER_FIELDS.len());
    let mut lockout_is_utc = false;
    for (i, field) in USER_FIELDS.iter().enumerate() {
        let mut col = find_column(user_columns, &[field]).map(|c| c.name.clone());
        if i == LOCKOUT_END && col.is_none() {
            col = find_column(user_columns, &["LockoutEndDateUtc"]).map(|c| c.name.clone());
            lockout_is_utc = col.is_some();
        }
        users.push(col);
    }
    for required in [0usize, 1] {
        if users[required].is_none() {
            return Err(Missing(format!(
                "table {users_name} has no {} column",
                USER_FIELDS[required]
            )));
        }
    }
    let key_type = find_column(user_columns, &["Id"])
        .map(|c| KeyType::from_declared(&c.decl_type))
        .unwrap_or(KeyType::String);
    let known: Vec<&str> = users.iter().flatten().map(String::as_str).collect();
    let extra: Vec<Column> = user_columns
        .iter()
        .filter(|c| !known.iter().any(|k| k.eq_ignore_ascii_case(&c.name)))
        .cloned()
        .collect();

    let claims = resolve(
        catalog,
        "AspNetUserClaims",
        &[
            &["UserId", "User_Id"],
            &["ClaimType"],
            &["ClaimValue"],
            &["Id"],
        ],
        1,
    )?;
    let logins = resolve(
        catalog,
        "AspNetUserLogins",
        &[
            &["UserId", "User_Id"],
            &["LoginProvider"],
            &["ProviderKey"],
            &["ProviderDisplayName"],
        ],
        3,
    )?;
    let tokens = resolve(
        catalog,
        "AspNetUserTokens",
        &[&["UserId"], &["LoginProvider"], &["Name"], &["Value"]],
        3,
    )?;
    let user_roles = resolve(
        catalog,
        "AspNetUserRoles",
        &[&["UserId", "User_Id"], &["RoleId", "Role_Id"]],
        2,
    )?;
    let roles = resolve(
        catalog,
        "AspNetRoles",
        &[
            &["Id"],
            &["Name"],
            &["NormalizedName"],
            &["ConcurrencyStamp"],
        ],
        1,
    )?;
    let role_claims = resolve(
        catalog,
        "AspNetRoleClaims",
        &[&["RoleId"], &["ClaimType"], &["ClaimValue"], &["Id"]],
        1,
    )?;

    let passkeys = match find_table(catalog, "AspNetUserPasskeys") {
        None => None,
        Some((name, columns)) => {
            let credential = find_column(columns, &["CredentialId"]);
            let user = find_column(columns, &["UserId"]);
            let (Some(credential), Some(user)) = (credential, user) else {
                return Err(Missing(format!(
                    "table {name} has no CredentialId or UserId column"
                )));
            };
            let mut cols = vec![Some(credential.name.clone()), Some(user.name.clone())];
            if let Some(data) = find_column(columns, &["Data"]) {
                cols.push(Some(data.name.clone()));
                Some(PasskeyLayout::Json(Table {
                    name: name.to_string(),
                    columns: cols,
                }))
            } else {
                for field in PASSKEY_DATA_FIELDS {
                    let owned = format!("Data_{field}");
                    let col = find_column(columns, &[field, &owned]).map(|c| c.name.clone());
                    cols.push(col);
                }
                if cols[2].is_none() {
                    return Err(Missing(format!(
                        "table {name} has neither a Data column nor a PublicKey column"
                    )));
                }
                Some(PasskeyLayout::Flat(Table {
                    name: name.to_string(),
                    columns: cols,
                }))
            }
        }
    };

    let (generation, evidence) = generation::detect(&generation::Clues {
        user_columns,
        has_normalized_user_name: users[2].is_some(),
        lockout_is_utc,
        passkeys: passkeys.as_ref(),
        migrations: &catalog.migrations,
    });

    Ok(Layout {
        naming,
        generation,
        evidence,
        users: Table {
            name: users_name.to_string(),
            columns: users,
        },
        key_type,
        lockout_is_utc,
        extra,
        claims,
        logins,
        tokens,
        user_roles,
        roles,
        role_claims,
        passkeys,
    })
}
