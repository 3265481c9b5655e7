/// What can go wrong reading an Identity database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source file does not exist.
    #[error("`{location}`: no such file")]
    NotFound {
        /// The source as given (a path), without credentials.
        location: String,
    },
    /// The source could not be opened or read as a database.
    #[error("`{location}`: {message}")]
    Open {
        /// The source: a path, or a server and database, without credentials.
        location: String,
        /// What the engine said.
        message: String,
    },
    /// The database is readable but not an ASP.NET Identity database.
    #[error("`{location}` is not an ASP.NET Identity database: {missing}")]
    NotIdentity {
        /// The source: a path, or a server and database, without credentials.
        location: String,
        /// What is missing, e.g. `no AspNetUsers (or asp_net_users) table`.
        missing: String,
    },
    /// A row holds a value that cannot be what its column says.
    #[error("table {table}, column {column}, row {row}: {message}")]
    Corrupt {
        /// The table, as named in the source.
        table: String,
        /// The column, as named in the source.
        column: String,
        /// The row, by its key.
        row: String,
        /// What is wrong (never the value of a secret column).
        message: String,
    },
    /// The engine failed during the read.
    #[error("`{location}`: reading {table}: {cause}")]
    Query {
        /// The source: a file name, or a server and database, without credentials.
        location: String,
        /// The table being read.
        table: String,
        /// The engine's error (in the message, not a `source`, so it is said once).
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Rows came back out of key order, so they cannot be merged safely.
    #[error("table {table}: rows are not in {column} order ({message}); is the column declared with a collation other than BINARY?")]
    Order {
        /// The table.
        table: String,
        /// The key column.
        column: String,
        /// The two keys that came in the wrong order (ids, never secrets).
        message: String,
    },
    /// The visitor stopped the read with its own error.
    #[error(transparent)]
    Visitor(Box<dyn std::error::Error + Send + Sync>),
}
