//! The Parquet encoding of users parts: the same logical record as NDJSON, one row per
//! user, columnar and zstd-compressed, for large bundles and for analysis in DuckDB,
//! Polars, Spark or pandas.
//!
//! - [`schema`]: the Arrow schema and its version.
//! - `write`: records gathered into batches and row groups, memory bounded by a row group.
//! - `read`: rows of a part decoded back into records, the file's schema checked first.
//!
//! `Extra` is a JSON-text column (Arrow's `arrow.json` extension type, Parquet's `JSON`
//! logical type), not a map: the extra columns of an `ApplicationUser` have a type each
//! (text, numbers, booleans), which a Parquet map, whose values share one type, would
//! lose; DuckDB and Polars query JSON text directly (`Extra->>'$.FirstName'`).

pub(crate) mod read;
pub mod schema;
pub(crate) mod write;

pub use schema::{describe, user_schema, SCHEMA_VERSION};
