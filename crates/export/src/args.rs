use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Export the users of an ASP.NET Identity database into a ferry bundle.
///
/// The source is opened read-only and read inside one transaction: the export is a
/// consistent snapshot and the database is never modified. The bundle is a folder of
/// NDJSON files, one user per line, with every claim, login, token, role and passkey of
/// that user, plus `manifest.json` with checksums, counts and a census of password
/// hash formats. With --format parquet the users parts are Parquet files instead (one
/// row per user, the same fields, zstd-compressed), for large sources and for querying
/// the bundle with DuckDB, Polars or pandas; `ferry-import convert` turns either into
/// the other. Its files are readable by their owner only: they hold password hashes
/// and 2FA secrets.
///
/// The bundle appears in `--out` only once it is complete; a failed export leaves
/// nothing behind.
///
/// SOURCE is the path of a SQLite file. (PostgreSQL `postgres://…`, MySQL/MariaDB
/// `mysql://…` and CSV dumps `csv:DIR` are part of the design but not built yet.)
///
/// Examples:
///
///   Test with a small batch first:
///   $ ferry-export --source app.db --out bundle/ --limit 20
///
///   The whole database, replacing that first bundle:
///   $ ferry-export --source app.db --out bundle/ --force
///
///   A Parquet bundle, to query before importing:
///   $ ferry-export --source app.db --out bundle/ --format parquet
///
///   A summary for scripts:
///   $ ferry-export --source app.db --out bundle/ --json | jq .counts
///
/// Exit status: 0 when the bundle was written, 2 when it was not (no such file, not an
/// Identity database, a corrupt row, an output folder in the way).
#[derive(Parser, Debug)]
#[command(
    name = "ferry-export",
    version,
    verbatim_doc_comment,
    max_term_width = 100
)]
pub struct Args {
    /// The Identity database: a SQLite file.
    #[arg(long, value_name = "SOURCE")]
    pub source: String,

    /// The bundle folder to write. It must not exist or be empty, unless --force.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The encoding of the users parts: NDJSON to read and edit by hand, Parquet for large
    /// bundles and analysis. Roles are always NDJSON.
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    pub format: Format,

    /// Users per part file.
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub part_size: u64,

    /// Export only the first N users (in Id order): test with a small batch first.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Replace an existing bundle in --out. Refused if the folder holds anything that is
    /// not part of a bundle.
    #[arg(long)]
    pub force: bool,

    /// Print one JSON summary object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How user parts are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// Apache Parquet: one row per user, columnar and zstd-compressed (docs/parquet.md).
    Parquet,
}
