//! The User Management store on PostgreSQL: one schema (`ferry` by default) that the
//! identity host and several loaders share.
//!
//! It implements `ferry_store_core::Store` with the same model and semantics as the
//! SQLite store (the conformance suite of `ferry-store-core` runs against the machine's
//! PostgreSQL in this crate's tests), and with what a shared server needs:
//!
//! - versioned migrations under an advisory lock; a store written by a newer ferry is
//!   refused (`schema`);
//! - every unique value in one table of SHA-256 digests (`claim`), so a racing loader
//!   meets a unique violation, never a duplicate;
//! - records written a chunk at a time: their keys looked up in two queries, decided in
//!   order, and written with binary `COPY`, the whole chunk retried when another loader
//!   wins a race, then record by record up to 3 attempts (`import`);
//! - runs that hold an advisory lock while they write, so a run left `running` by a
//!   process that died, on any machine, is told from one still loading.
//!
//! ```no_run
//! use ferry_store_core::{Mode, Store};
//! use ferry_store_postgres::PgStore;
//!
//! let store = PgStore::open("postgres://ferry@db.example.com/users?schema=ferry", Mode::ReadWrite)?;
//! println!("{}", store.describe());
//! # Ok::<(), ferry_store_core::Error>(())
//! ```
#![deny(missing_docs)]

mod claim;
mod import;
mod json;
mod schema;
mod store;

#[doc(hidden)]
pub use import::force_races;
pub use store::{PgStore, DEFAULT_SCHEMA};
