//! Opens the User Management store a target names, behind the backend-free core.
//!
//! A target is a path to a SQLite store file (created if missing) or a PostgreSQL
//! address (a `postgres://` URL or an Npgsql connection string; the store's schema,
//! `ferry` by default, is created if missing). Everything else, the model, the import semantics and the [`Store`] trait, is
//! `ferry-store-core`'s, re-exported here.
//!
//! ```no_run
//! use ferry_store::{open, Mode};
//!
//! let store = open("users.db", Mode::ReadOnly)?;
//! println!("{}", store.describe());
//! # Ok::<(), ferry_store::Error>(())
//! ```
#![deny(missing_docs)]

use std::path::PathBuf;

pub use ferry_store_core::*;

/// What a `--target` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A SQLite store file.
    Sqlite(PathBuf),
    /// A PostgreSQL server: a `postgres://` URL or an Npgsql connection string.
    Postgres(String),
}

impl Target {
    /// Tells a target's kind from its form.
    pub fn parse(text: &str) -> Target {
        let lower = text.trim().to_ascii_lowercase();
        let npgsql = lower.contains(';')
            && ["host=", "server=", "database="]
                .iter()
                .any(|k| lower.starts_with(k) || lower.contains(&format!(";{k}")));
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") || npgsql {
            Target::Postgres(text.trim().to_string())
        } else {
            Target::Sqlite(PathBuf::from(text))
        }
    }
}

/// Opens the store `target` names, in `mode`.
pub fn open(target: &str, mode: Mode) -> Result<Box<dyn Store>, Error> {
    match Target::parse(target) {
        Target::Sqlite(path) => Ok(Box::new(ferry_store_sqlite::SqliteStore::open(
            &path, mode,
        )?)),
        Target::Postgres(address) => Ok(Box::new(ferry_store_postgres::PgStore::open(
            &address, mode,
        )?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_told_by_their_form() {
        assert_eq!(Target::parse("users.db"), Target::Sqlite("users.db".into()));
        assert!(matches!(
            Target::parse("postgres://h/db"),
            Target::Postgres(_)
        ));
        assert!(matches!(
            Target::parse("Host=localhost;Database=users;Username=ferry"),
            Target::Postgres(_)
        ));
        assert_eq!(
            Target::parse("dir;with=odd.db"),
            Target::Sqlite("dir;with=odd.db".into())
        );
    }
}
