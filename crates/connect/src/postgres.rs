//! Connections to PostgreSQL, with the `postgres` crate and rustls.

use std::time::Duration;

use postgres::config::SslMode as PgSslMode;
use postgres::{Client, NoTls};

use crate::{tls, Error, ServerAddress, SslMode};

/// Connects to `address`.
pub fn connect(address: &ServerAddress) -> Result<Client, Error> {
    let mut config = postgres::Config::new();
    config
        .host(&address.host)
        .port(address.port)
        .dbname(&address.database)
        .user(&address.user)
        .application_name("ferry")
        .connect_timeout(Duration::from_secs(15));
    if let Some(p) = &address.password {
        config.password(p.expose());
    }
    let fail = |message: String| Error::Connect {
        location: address.location(),
        message,
    };
    let result = match tls::client_config(address.ssl, address.root_cert.as_deref())? {
        None => config.ssl_mode(PgSslMode::Disable).connect(NoTls),
        Some(tls) => {
            config.ssl_mode(if address.ssl == SslMode::Prefer {
                PgSslMode::Prefer
            } else {
                PgSslMode::Require
            });
            config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        }
    };
    result.map_err(|e| fail(explain(&e)))
}

/// One line for a PostgreSQL error: the server's message with what it means for the
/// user, or the cause of a failed connection.
pub fn explain(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let hint = match code {
            "28P01" | "28000" => " (check the user and password)",
            "3D000" => " (check the database name)",
            "42501" => " (the user needs SELECT on the Identity tables)",
            "42P01" => " (is this the application's database and schema?)",
            _ => "",
        };
        return format!("{}{hint}", db.message());
    }
    // Connection errors carry their cause (refused, timed out, TLS) as the source.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}
