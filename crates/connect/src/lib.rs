//! Where a database is and how to reach it.
//!
//! - [`address`]: [`Spec`], what `--source` and `--target` name: a SQLite file, `csv:DIR`,
//!   or a [`ServerAddress`] written as a URL or as the ADO.NET connection string of the
//!   application (Npgsql, MySqlConnector/Pomelo, Microsoft.Data.Sqlite). Passwords are
//!   [`Secret`]s, never shown.
//! - [`appsettings`]: the connection string as the application keeps it, in
//!   `appsettings.json` and its environment overlay.
//! - [`tls`]: rustls configurations for each `sslmode`.
//! - [`postgres`] and [`mysql`]: connections, with failures told in one line that names
//!   host and database (refused, wrong password, no such database).
#![deny(missing_docs)]

pub mod address;
pub mod appsettings;
mod error;
pub mod mysql;
pub mod postgres;
pub mod tls;

pub use address::{Engine, Secret, ServerAddress, Spec, SslMode};
pub use error::Error;
