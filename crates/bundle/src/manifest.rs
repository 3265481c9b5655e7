//! `manifest.json`: what a bundle holds and how to check it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::encoding::Encoding;
use crate::{census::Census, fsutil, Error, FORMAT, MANIFEST, VERSION};

/// The manifest of a bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `ferry-bundle`.
    pub format: String,
    /// The bundle format version, 1.
    pub version: u32,
    /// When the export finished (RFC 3339, UTC).
    pub created_at: String,
    /// The tool and version that wrote the bundle, e.g. `ferry-export 0.1.0`.
    pub tool: String,
    /// Where the records came from.
    pub source: Source,
    /// How the user parts are encoded. An encoding this tool does not know is refused
    /// when the manifest is read.
    pub encoding: Encoding,
    /// The version of the Arrow schema of Parquet users parts (see
    /// [`crate::parquet::schema`]); absent for NDJSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet_schema: Option<u32>,
    /// The bundle this one was made from by `ferry-import convert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<ConvertedFrom>,
    /// `--limit` of the export, when only the first N users were exported.
    pub limit: Option<u64>,
    /// Every data file of the bundle, in order: users parts, then `roles.ndjson`.
    pub parts: Vec<Part>,
    /// Rows exported per entity.
    pub counts: Counts,
    /// The password hash census.
    pub password_hashes: Census,
    /// Hand edits accepted by `ferry-import seal`, oldest first.
    #[serde(default)]
    pub edits: Vec<Edit>,
}

/// The source database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `sqlite`, `postgres`, `mysql` or `csv`.
    pub engine: String,
    /// The file name or address, without credentials.
    pub location: String,
    /// The detected Identity schema generation (`classic-2`, `core-v1`, `core-v2`,
    /// `core-v1-or-v2`, `core-v3`, `core-v3-preview`).
    pub generation: String,
    /// How the generation was told (the columns or tables that decided it).
    pub evidence: Vec<String>,
    /// `PascalCase` (the EF default) or `snake_case` (EFCore.NamingConventions).
    pub naming: String,
    /// The Identity tables found, by their names in the source.
    pub tables: Vec<String>,
    /// Columns of `AspNetUsers` beyond the template's, exported under `Extra`.
    pub extra_user_columns: Vec<String>,
    /// The type of `AspNetUsers.Id`: `string`, `integer` or `guid`. Every `Id` in the
    /// bundle is the text the application uses for it (`"10"`, a GUID as stored).
    #[serde(default = "string_key")]
    pub key_type: String,
    /// EF's migration history, when the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<MigrationHistory>,
    /// The server's version, for server sources (e.g. `PostgreSQL 15.20`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
}

fn string_key() -> String {
    "string".into()
}

/// A summary of EF's migration history (`__EFMigrationsHistory` or `__MigrationHistory`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationHistory {
    /// The history table.
    pub table: String,
    /// The number of migrations.
    pub count: u64,
    /// The first migration, by `MigrationId`.
    pub first: MigrationRow,
    /// The last migration, by `MigrationId`.
    pub last: MigrationRow,
}

/// One migration of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationRow {
    /// `MigrationId`.
    pub id: String,
    /// `ProductVersion`: the EF version that made it.
    pub product_version: String,
}

/// What a converted bundle was converted from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvertedFrom {
    /// The encoding of the original bundle.
    pub encoding: Encoding,
    /// When the original bundle was written (its `created_at`).
    pub created_at: String,
    /// The tool that wrote it.
    pub tool: String,
    /// SHA-256 of the original `manifest.json`, lowercase hex.
    pub manifest_sha256: String,
    /// The tool that converted it, e.g. `ferry-import 0.1.0`.
    pub converted_by: String,
    /// When it was converted (RFC 3339, UTC).
    pub converted_at: String,
}

/// One data file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// The file name inside the bundle.
    pub file: String,
    /// `users` or `roles`.
    pub entity: String,
    /// Records (lines) in the file.
    pub records: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// Rows exported per entity, and child rows that pointed at no user or role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Users.
    pub users: u64,
    /// User claims.
    pub claims: u64,
    /// External logins.
    pub logins: u64,
    /// User tokens.
    pub tokens: u64,
    /// User-role memberships.
    pub user_roles: u64,
    /// Passkeys.
    pub passkeys: u64,
    /// Roles.
    pub roles: u64,
    /// Role claims.
    pub role_claims: u64,
    /// Child rows whose user or role does not exist, by table (not exported).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub orphans: std::collections::BTreeMap<String, u64>,
}

/// A hand edit accepted by `seal`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edit {
    /// When it was sealed.
    pub sealed_at: String,
    /// The tool that sealed it.
    pub tool: String,
    /// The files whose content changed.
    pub files: Vec<EditedFile>,
}

/// One changed file of an edit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditedFile {
    /// The file name.
    pub file: String,
    /// Records before the edit.
    pub records_before: u64,
    /// Records after the edit.
    pub records_after: u64,
    /// SHA-256 before the edit.
    pub sha256_before: String,
    /// SHA-256 after the edit.
    pub sha256_after: String,
}

impl Manifest {
    /// Reads and checks `manifest.json` in `dir`.
    pub fn read(dir: &Path) -> Result<Manifest, Error> {
        let path = dir.join(MANIFEST);
        let text = read_manifest_text(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Manifest {
                    path: path.clone(),
                    message:
                        "no manifest: this is not a ferry bundle, or its export did not finish"
                            .into(),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::Manifest {
            path: path.clone(),
            message: format!("line {}: {e}", e.line()),
        })?;
        if manifest.format != FORMAT {
            return Err(Error::Manifest {
                path,
                message: format!("format is `{}`, expected `{FORMAT}`", manifest.format),
            });
        }
        for (i, part) in manifest.parts.iter().enumerate() {
            if let Some(problem) = fsutil::part_name_problem(&part.file) {
                return Err(Error::Manifest {
                    path,
                    message: format!(
                        "parts[{i}].file {:?} {problem}; a manifest lists only files inside its bundle folder",
                        part.file
                    ),
                });
            }
        }
        if manifest.version != VERSION {
            return Err(Error::Manifest {
                path,
                message: format!(
                    "bundle version {} is not supported (this tool reads {VERSION})",
                    manifest.version
                ),
            });
        }
        Ok(manifest)
    }

    /// Writes `manifest.json` into `dir` atomically (a temporary file renamed over it),
    /// so that a bundle has a manifest only once everything it lists is in place.
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let tmp = dir.join(".manifest.json.tmp");
        let path = dir.join(MANIFEST);
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        {
            use std::io::Write as _;
            let mut file = fsutil::create_exclusive(&tmp).map_err(|e| Error::io(&tmp, e))?;
            file.write_all(text.as_bytes())
                .map_err(|e| Error::io(&tmp, e))?;
            file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// The users parts, in order.
    pub fn user_parts(&self) -> impl Iterator<Item = &Part> {
        self.parts.iter().filter(|p| p.entity == "users")
    }

    /// The roles part, if the bundle has one.
    pub fn roles_part(&self) -> Option<&Part> {
        self.parts.iter().find(|p| p.entity == "roles")
    }
}

/// The manifest's text, read without following a link.
fn read_manifest_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    fsutil::open_in_bundle(path)?.read_to_string(&mut text)?;
    Ok(text)
}
