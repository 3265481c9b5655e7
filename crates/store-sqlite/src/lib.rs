//! The embedded User Management store: one SQLite file.
//!
//! It implements `ferry_store_core::Store` with the SQL, the versioned migrations
//! (`PRAGMA user_version`) and the optimisations a single writer on a small machine wants:
//! user names and OTP addresses indexed by a 64-bit hash of their key (`key`), unique
//! values carried by the user row when they are the user's own user name, many rows per
//! statement, and batch transactions. The conformance suite of `ferry-store-core` runs
//! against it in this crate's tests.
//!
//! ```no_run
//! use ferry_store_core::{Mode, Store};
//! use ferry_store_sqlite::SqliteStore;
//!
//! let store = SqliteStore::open("users.db".as_ref(), Mode::ReadWrite)?;
//! println!("{} hashes recovery codes with {} iterations", store.describe(), store.recovery_code_iterations());
//! # Ok::<(), ferry_store_core::Error>(())
//! ```
#![deny(missing_docs)]

mod key;
mod schema;
mod sqlite;

pub use sqlite::SqliteStore;
