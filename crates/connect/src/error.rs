/// What can go wrong naming or reaching a database. No message ever holds a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL or connection string that cannot be read.
    #[error("{0}")]
    Address(String),
    /// An appsettings.json that cannot be read, or lacks the connection string.
    #[error("{0}")]
    Settings(String),
    /// A TLS setting that cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server could not be reached or refused the login.
    #[error("cannot connect to {location}: {message}")]
    Connect {
        /// The address, without the password.
        location: String,
        /// What happened, in one line.
        message: String,
    },
}
