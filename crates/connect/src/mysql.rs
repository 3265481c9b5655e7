//! Connections to MySQL and MariaDB, with the `mysql` crate and rustls.

use std::time::Duration;

use mysql::{Conn, OptsBuilder, SslOpts};

use crate::{Error, ServerAddress, SslMode};

/// Connects to `address`. `SslMode::Prefer` tries TLS and falls back to a plain
/// connection when the server has none.
pub fn connect(address: &ServerAddress) -> Result<Conn, Error> {
    let fail = |e: mysql::Error| Error::Connect {
        location: address.location(),
        message: explain(&e),
    };
    let base = OptsBuilder::new()
        .ip_or_hostname(Some(address.host.clone()))
        .tcp_port(address.port)
        .db_name(Some(address.database.clone()))
        .user(Some(address.user.clone()))
        .pass(address.password.as_ref().map(|p| p.expose().to_string()))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(Duration::from_secs(15)));
    let tls = |opts: OptsBuilder| {
        let mut ssl = SslOpts::default();
        if let Some(root) = &address.root_cert {
            ssl = ssl.with_root_cert_path(Some(root.clone()));
        }
        let (accept_any, any_name) = match address.ssl {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => {
                (address.root_cert.is_none(), true)
            }
            SslMode::VerifyCa => (false, true),
            SslMode::VerifyFull => (false, false),
        };
        opts.ssl_opts(
            ssl.with_danger_accept_invalid_certs(accept_any)
                .with_danger_skip_domain_validation(any_name),
        )
    };
    match address.ssl {
        SslMode::Disable => Conn::new(base).map_err(fail),
        SslMode::Prefer => match Conn::new(tls(base.clone())) {
            Ok(conn) => Ok(conn),
            Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported)) => {
                Conn::new(base).map_err(fail)
            }
            Err(e) => Err(fail(e)),
        },
        _ => Conn::new(tls(base)).map_err(fail),
    }
}

/// One line for a MySQL error, with what it means for the user.
pub fn explain(e: &mysql::Error) -> String {
    match e {
        mysql::Error::MySqlError(m) => {
            let hint = match m.code {
                1045 => " (check the user and password)",
                1049 => " (check the database name)",
                1142 | 1143 | 1044 => " (the user needs SELECT on the Identity tables)",
                1146 => " (is this the application's database?)",
                _ => "",
            };
            format!("{}{hint}", m.message)
        }
        mysql::Error::DriverError(mysql::DriverError::TlsNotSupported) => {
            "the server does not offer TLS, and the SSL mode requires it".into()
        }
        mysql::Error::IoError(io) => io.to_string(),
        other => other.to_string(),
    }
}
