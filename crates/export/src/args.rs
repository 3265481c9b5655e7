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
/// SOURCE is one of:
///
///   app.db                                 a SQLite file
///   postgres://user:pass@host:5432/db      PostgreSQL (?schema=NAME, ?sslmode=require|verify-full…)
///   mysql://user:pass@host:3306/db         MySQL or MariaDB (mariadb:// too)
///   csv:DIR                                one CSV file per table, e.g. dumped from SQL Server
///   "Host=…;Database=…;Username=…;Password=…"   the connection string of appsettings.json
///                                          (Npgsql, MySqlConnector/Pomelo, Microsoft.Data.Sqlite)
///
/// or, with --appsettings, the application's own appsettings.json. A server is read
/// inside one read-only snapshot transaction, with TLS as the sslmode asks; passwords
/// never appear in any output or in the manifest.
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
///   From the application's own configuration:
///   $ ferry-export --appsettings /srv/app/appsettings.json --environment Production --out bundle/
///
///   A summary for scripts:
///   $ ferry-export --source app.db --out bundle/ --json | jq .counts
///
/// Exit status: 0 when the bundle was written, 2 when it was not (no such file, a server
/// that cannot be reached or refuses the login, not an Identity database, a table the
/// user may not read, a corrupt row, an output folder in the way).
#[derive(Parser, Debug)]
#[command(
    name = "ferry-export",
    version,
    verbatim_doc_comment,
    max_term_width = 100
)]
pub struct Args {
    /// The Identity database: a SQLite file, a server URL, csv:DIR or a connection string.
    #[arg(
        long,
        value_name = "SOURCE",
        required_unless_present = "appsettings",
        conflicts_with = "appsettings"
    )]
    pub source: Option<String>,

    /// Read the connection string from this appsettings.json (its ConnectionStrings section).
    #[arg(long, value_name = "FILE")]
    pub appsettings: Option<PathBuf>,

    /// The connection string to use from --appsettings.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "DefaultConnection",
        requires = "appsettings"
    )]
    pub connection_name: String,

    /// Also read appsettings.ENV.json beside --appsettings, which wins (as ASPNETCORE_ENVIRONMENT=ENV does).
    #[arg(long, value_name = "ENV", requires = "appsettings")]
    pub environment: Option<String>,

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
