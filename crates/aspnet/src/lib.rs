//! ASP.NET Identity knowledge, and readers that stream users out of an Identity database.
//!
//! - [`layout`]: which tables and columns a database has, resolved once into a
//!   [`Layout`] (PascalCase or snake_case names; classic 2.x or Core columns).
//! - [`generation`]: the schema [`Generation`], told from the database itself.
//! - [`rows`]: the seam between an engine and the engine-neutral assembler: rows of a
//!   table, the columns asked for, ordered by a key ([`rows::Tables`]), and the SQL
//!   dialect a SQL engine builds its queries with.
//! - [`sqlite`]: [`SqliteSource`], a read-only reader inside one read transaction.
//! - [`postgres`]: [`PostgresSource`], cursors side by side in one `REPEATABLE READ`
//!   snapshot (and a second connection in the same snapshot for the child tables).
//! - [`mysql`]: [`MysqlSource`], MySQL and MariaDB in one consistent-snapshot
//!   transaction, the tables read beside the users spooled to private files first.
//! - [`csv`]: [`CsvSource`], one CSV dump per table (SQL Server's way in), sorted
//!   externally within bounded memory.
//!
//! A reader yields users in `Id` order, each with its claims, logins, tokens, roles and
//! passkeys joined by ordered merge: no table is ever loaded into memory.
//!
//! ```no_run
//! use ferry_aspnet::{IdentitySource, SqliteSource};
//!
//! let mut source = SqliteSource::open("app.db".as_ref())?;
//! println!("{}", source.description().generation);
//! source.users(None, &mut |user| {
//!     println!("{}", user.id);
//!     Ok(())
//! })?;
//! # Ok::<(), ferry_aspnet::Error>(())
//! ```
#![deny(missing_docs)]

mod assemble;
pub mod csv;
mod error;
pub mod generation;
pub mod key;
pub mod layout;
mod merge;
pub mod mysql;
pub mod postgres;
pub mod rows;
mod snapshot;
mod spool;
pub mod sqlite;
mod values;

pub use csv::CsvSource;
pub use error::Error;
pub use generation::Generation;
pub use key::{Key, KeyType};
pub use layout::{Layout, Naming};
pub use mysql::MysqlSource;
pub use postgres::PostgresSource;
pub use sqlite::SqliteSource;

use ferry_bundle::manifest::Counts;
use ferry_bundle::{RoleRecord, UserRecord};

/// What a source is, for the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    /// `sqlite`, `postgres`, `mysql` or `csv`.
    pub engine: &'static str,
    /// The file name or address, without credentials.
    pub location: String,
    /// The detected schema generation.
    pub generation: Generation,
    /// How the generation was told.
    pub evidence: Vec<String>,
    /// The naming convention of the tables.
    pub naming: Naming,
    /// The Identity tables found, as named in the source.
    pub tables: Vec<String>,
    /// Columns of the users table beyond the template's.
    pub extra_user_columns: Vec<String>,
    /// The type of the users' key.
    pub key_type: KeyType,
    /// EF's migration history, in `MigrationId` order (empty without one).
    pub migrations: Vec<layout::Migration>,
    /// The server's version, for server sources.
    pub server_version: Option<String>,
    /// What the user should know about how the source was read (not for the manifest).
    pub notes: Vec<String>,
}

impl Description {
    /// The description of a source whose layout is resolved: what the layout says, with
    /// the engine, where the source is (without credentials), EF's history and the
    /// server's version.
    pub fn of(
        engine: &'static str,
        location: String,
        layout: &Layout,
        migrations: Vec<layout::Migration>,
        server_version: Option<String>,
    ) -> Description {
        Description {
            engine,
            location,
            generation: layout.generation,
            evidence: layout.evidence.clone(),
            naming: layout.naming,
            tables: layout.table_names(),
            extra_user_columns: layout.extra.iter().map(|c| c.name.clone()).collect(),
            key_type: layout.key_type,
            migrations,
            server_version,
            notes: Vec::new(),
        }
    }
}

/// A visitor that receives records and may stop the read by returning an error.
pub type Visit<'a, T> = dyn FnMut(T) -> Result<(), Error> + 'a;

/// An ASP.NET Identity database opened for export.
///
/// Implementations read inside one consistent snapshot and never write.
pub trait IdentitySource {
    /// What the source is.
    fn description(&self) -> &Description;

    /// The number of users, for progress reporting.
    fn user_count(&mut self) -> Result<u64, Error>;

    /// Visits every role with its claims, in `Id` order.
    fn roles(&mut self, visit: &mut Visit<'_, RoleRecord>) -> Result<Counts, Error>;

    /// Visits the users in `Id` order (the first `limit` when given), each with its
    /// claims, logins, tokens, role ids and passkeys. Returns the rows read per entity.
    fn users(
        &mut self,
        limit: Option<u64>,
        visit: &mut Visit<'_, UserRecord>,
    ) -> Result<Counts, Error>;
}

impl<S: rows::Assembled> IdentitySource for S {
    fn description(&self) -> &Description {
        self.described()
    }

    fn user_count(&mut self) -> Result<u64, Error> {
        let parts = self.parts();
        let users = parts.layout.users.name.clone();
        parts.main.count(&users)
    }

    fn roles(&mut self, visit: &mut Visit<'_, RoleRecord>) -> Result<Counts, Error> {
        let parts = self.parts();
        assemble::read_roles(parts.main, parts.layout, visit)
    }

    fn users(
        &mut self,
        limit: Option<u64>,
        visit: &mut Visit<'_, UserRecord>,
    ) -> Result<Counts, Error> {
        let parts = self.parts();
        assemble::read_users(parts.main, parts.children, parts.layout, limit, visit)
    }
}
