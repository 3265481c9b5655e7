//! The bundle: the only thing `ferry-export` and `ferry-import` share.
//!
//! A bundle is a folder holding `manifest.json`, user parts (`users-00000.ndjson`, one
//! user per line, or `users-00000.parquet`, one user per row) and `roles.ndjson`. A user record keeps the source's own column names
//! so that anyone who knows the ASP.NET Identity tables can fix it in a text editor.
//!
//! - [`record`]: [`UserRecord`] and [`RoleRecord`], faithful to the source values.
//! - [`manifest`]: [`Manifest`] with parts, checksums, counts and the password census.
//! - [`census`]: counting password hash formats.
//! - [`tally`]: [`Tally`], the counts and census of the manifest, one record at a time.
//! - [`parquet`]: the Parquet encoding and its Arrow schema.
//! - [`write`]: [`BundleWriter`], streaming records into owner-only, checksummed parts of
//!   an [`Encoding`], and the manifest assembled from what it wrote.
//! - [`staging`]: a new bundle's private staging folder, renamed into place when whole.
//! - [`read`]: [`BundleReader`], streaming records back with their file and line.
//!
//! ```no_run
//! use ferry_bundle::{BundleReader};
//!
//! let bundle = BundleReader::open("bundle/".as_ref())?;
//! for item in bundle.users() {
//!     let (location, record) = item?;
//!     match record {
//!         Ok(user) => println!("{location}: {}", user.id),
//!         Err(problem) => eprintln!("{location}: {problem}"),
//!     }
//! }
//! # Ok::<(), ferry_bundle::Error>(())
//! ```
#![deny(missing_docs)]

pub mod census;
mod encoding;
mod error;
mod fsutil;
pub mod jsonpos;
pub mod manifest;
pub mod parquet;
pub mod read;
pub mod record;
mod share;
pub mod staging;
pub mod tally;
pub mod write;

pub use census::Census;
pub use encoding::Encoding;
pub use error::Error;
pub use fsutil::create_private;
pub use manifest::{Manifest, Part};
pub use read::{BundleReader, Location, RawRecord};
pub use record::{RoleRecord, UserId, UserRecord};
pub use share::Share;
pub use tally::Tally;
pub use write::{BundleWriter, ManifestInfo};

/// The file name of the manifest inside a bundle.
pub const MANIFEST: &str = "manifest.json";
/// The file name of the roles part.
pub const ROLES_FILE: &str = "roles.ndjson";
/// The `format` field of every manifest.
pub const FORMAT: &str = "ferry-bundle";
/// The bundle format version this crate reads and writes.
pub const VERSION: u32 = 1;
