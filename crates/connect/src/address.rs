//! What `--source` and `--target` name: a SQLite file, a folder of CSV dumps, or a server,
//! written as a URL or as the ADO.NET connection string of the application's
//! appsettings.json.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;

use crate::Error;

/// A server engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL (Npgsql).
    Postgres,
    /// MySQL or MariaDB (Pomelo / MySqlConnector).
    Mysql,
}

impl Engine {
    /// `postgres` or `mysql`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mysql => 3306,
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password: never shown, in any output, error or manifest.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The password, to hand to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

/// How a connection is encrypted, as libpq's `sslmode`, Npgsql's `SSL Mode` and
/// MySqlConnector's `SslMode` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, without checking its certificate (the default of
    /// libpq, Npgsql and MySqlConnector).
    Prefer,
    /// TLS or no connection; the certificate is checked only when a root certificate is
    /// given (as libpq does).
    Require,
    /// TLS with a certificate chain to a trusted root; any host name.
    VerifyCa,
    /// TLS with a trusted certificate for the host name.
    VerifyFull,
}

impl SslMode {
    /// Parses any of the spellings of libpq, Npgsql and MySQL (`disable`, `None`,
    /// `Preferred`, `REQUIRED`, `verify-ca`, `VerifyCA`, `VERIFY_IDENTITY`, …).
    pub fn parse(text: &str) -> Option<SslMode> {
        let t: String = text
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match t.as_str() {
            "disable" | "disabled" | "none" | "false" => SslMode::Disable,
            "allow" | "prefer" | "preferred" => SslMode::Prefer,
            "require" | "required" | "true" => SslMode::Require,
            "verifyca" => SslMode::VerifyCa,
            "verifyfull" | "verifyidentity" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A server database: where it is, who connects, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddress {
    /// The engine.
    pub engine: Engine,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The database.
    pub database: String,
    /// The user name.
    pub user: String,
    /// The password, if one is given.
    pub password: Option<Secret>,
    /// How the connection is encrypted.
    pub ssl: SslMode,
    /// A PEM file of root certificates to trust besides the usual ones.
    pub root_cert: Option<PathBuf>,
    /// The schema the tables are in (PostgreSQL; `public` when not given).
    pub schema: Option<String>,
}

impl ServerAddress {
    /// The address without the password: `postgres://alice@db.example.com:5432/app`.
    pub fn location(&self) -> String {
        format!(
            "{}://{}@{}:{}/{}",
            self.engine, self.user, self.host, self.port, self.database
        )
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location())
    }
}

/// What a `--source` or `--target` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A folder of CSV table dumps (`csv:DIR`).
    Csv(PathBuf),
    /// A server database.
    Server(ServerAddress),
}

impl Spec {
    /// Parses a URL (`postgres://…`, `mysql://…`, `mariadb://…`), `csv:DIR`, an ADO.NET
    /// connection string (Npgsql, MySqlConnector/Pomelo, Microsoft.Data.Sqlite) or a
    /// file path.
    pub fn parse(text: &str) -> Result<Spec, Error> {
        let trimmed = text.trim();
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return parse_url(trimmed, Engine::Postgres).map(Spec::Server);
        }
        if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            return parse_url(trimmed, Engine::Mysql).map(Spec::Server);
        }
        if let Some(dir) = trimmed.strip_prefix("csv:") {
            return Ok(Spec::Csv(PathBuf::from(dir)));
        }
        if let Some(path) = trimmed.strip_prefix("sqlite:") {
            return Ok(Spec::Sqlite(PathBuf::from(path)));
        }
        if looks_like_connection_string(trimmed) {
            return parse_connection_string(trimmed);
        }
        Ok(Spec::Sqlite(PathBuf::from(text)))
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::Address(message.into())
}

fn default_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "postgres".into())
}

fn parse_url(text: &str, engine: Engine) -> Result<ServerAddress, Error> {
    // Redact before any error can quote the text.
    let url = url::Url::parse(text).map_err(|e| bad(format!("not a valid {engine} URL: {e}")))?;
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let host = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let database = decode(url.path().trim_start_matches('/'));
    if database.is_empty() {
        return Err(bad(format!(
            "the {engine} URL names no database (e.g. {engine}://user@{host}/app)"
        )));
    }
    let mut address = ServerAddress {
        engine,
        host,
        port: url.port().unwrap_or(engine.default_port()),
        database,
        user: Some(decode(url.username()))
            .filter(|u| !u.is_empty())
            .unwrap_or_else(default_user),
        password: url.password().map(|p| Secret::new(decode(p))),
        ssl: SslMode::Prefer,
        root_cert: None,
        schema: None,
    };
    for (key, value) in url.query_pairs() {
        match normalise_key(&key).as_str() {
            "sslmode" => {
                address.ssl = SslMode::parse(&value)
                    .ok_or_else(|| bad(format!("unknown sslmode `{value}`")))?
            }
            "sslrootcert" | "sslca" => address.root_cert = Some(PathBuf::from(value.as_ref())),
            "schema" | "searchpath" | "currentschema" => address.schema = Some(value.into_owned()),
            "password" => address.password = Some(Secret::new(value.into_owned())),
            "user" => address.user = value.into_owned(),
            "host" => address.host = value.into_owned(),
            _ => {}
        }
    }
    Ok(address)
}

/// `User ID` → `userid`: ADO.NET keys ignore case and spaces.
fn normalise_key(key: &str) -> String {
    key.chars()
        .filter(|c| !c.is_whitespace() && *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase()
}

fn looks_like_connection_string(text: &str) -> bool {
    match text.split_once('=') {
        Some((key, _)) => {
            let key = normalise_key(key);
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// The `key=value` pairs of a connection string, values unquoted (`"…"` or `'…'`, a
/// doubled quote inside standing for one).
fn pairs(text: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ';' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        match chars.peek().copied() {
            Some(q @ ('"' | '\'')) => {
                chars.next();
                loop {
                    match chars.next() {
                        Some(c) if c == q => {
                            if chars.peek() == Some(&q) {
                                chars.next();
                                value.push(q);
                            } else {
                                break;
                            }
                        }
                        Some(c) => value.push(c),
                        None => {
                            return Err(bad(format!(
                                "the value of `{}` in the connection string has no closing quote",
                                key.trim()
                            )))
                        }
                    }
                }
                while chars.peek().is_some_and(|c| *c != ';') {
                    chars.next();
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim_end().to_string();
            }
        }
        out.push((normalise_key(&key), value));
    }
}

fn parse_connection_string(text: &str) -> Result<Spec, Error> {
    let pairs = pairs(text)?;
    let get = |names: &[&str]| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.clone())
    };
    let has = |names: &[&str]| pairs.iter().any(|(k, _)| names.contains(&k.as_str()));
    if has(&[
        "initialcatalog",
        "integratedsecurity",
        "trustedconnection",
        "multipleactiveresultsets",
        "trustservercertificate",
    ]) {
        return Err(bad(
            "this is a SQL Server connection string; ferry reads SQL Server through CSV dumps of its tables (see the README, \"SQL Server\"), then --source csv:DIR",
        ));
    }
    let server = get(&["host", "server", "address", "addr", "networkaddress"]);
    let data_source = get(&["datasource", "filename"]);
    let database = get(&["database"]);
    if server.is_none() && database.is_none() {
        return match data_source {
            Some(path) => Ok(Spec::Sqlite(PathBuf::from(path))),
            None => Err(bad(
                "the connection string names no Host/Server and no Data Source",
            )),
        };
    }
    let port = match get(&["port"]) {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| bad(format!("Port `{p}` is not a port number")))?,
        ),
        None => None,
    };
    let engine = if has(&[
        "host",
        "searchpath",
        "rootcertificate",
        "trustservercertificate",
    ]) || port == Some(5432)
    {
        Engine::Postgres
    } else if has(&[
        "uid",
        "pwd",
        "sslca",
        "guidformat",
        "treattinyasboolean",
        "allowuservariables",
        "characterset",
        "charset",
        "allowpublickeyretrieval",
        "convertzerodatetime",
    ]) || port == Some(3306)
    {
        Engine::Mysql
    } else if has(&["server"]) {
        // `Server=` is how MySqlConnector's and Pomelo's documentation write it; Npgsql's
        // write `Host=`.
        Engine::Mysql
    } else {
        Engine::Postgres
    };
    let host = server
        .or(data_source)
        .ok_or_else(|| bad("the connection string names no Host or Server"))?;
    // MySqlConnector allows `host1,host2` and `host:port`; take the first host.
    let host = host
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let (host, inline_port) = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() && !h.contains(':') => {
            (h.to_string(), p.parse::<u16>().ok())
        }
        _ => (host, None),
    };
    let ssl = match get(&["sslmode", "ssl"]) {
        Some(v) => SslMode::parse(&v).ok_or_else(|| bad(format!("unknown SSL Mode `{v}`")))?,
        None => SslMode::Prefer,
    };
    Ok(Spec::Server(ServerAddress {
        engine,
        host,
        port: port.or(inline_port).unwrap_or(engine.default_port()),
        database: database.ok_or_else(|| bad("the connection string names no Database"))?,
        user: get(&["username", "userid", "user", "uid"]).unwrap_or_else(default_user),
        password: get(&["password", "pwd"]).map(Secret::new),
        ssl,
        root_cert: get(&[
            "rootcertificate",
            "sslca",
            "cacertificatefile",
            "sslrootcert",
        ])
        .map(PathBuf::from),
        schema: get(&["searchpath"])
            .map(|s| s.split(',').next().unwrap_or_default().trim().to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> ServerAddress {
        match Spec::parse(text).unwrap() {
            Spec::Server(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urls() {
        let a = server("postgres://alice:p%40ss%3Bword@db.example.com:6543/app?sslmode=verify-full&schema=identity");
        assert_eq!(a.engine, Engine::Postgres);
        assert_eq!(a.host, "db.example.com");
        assert_eq!(a.port, 6543);
        assert_eq!(a.database, "app");
        assert_eq!(a.user, "alice");
        assert_eq!(a.password.as_ref().unwrap().expose(), "p@ss;word");
        assert_eq!(a.ssl, SslMode::VerifyFull);
        assert_eq!(a.schema.as_deref(), Some("identity"));
        assert_eq!(a.location(), "postgres://alice@db.example.com:6543/app");
        let m = server("mariadb://root@127.0.0.1/test");
        assert_eq!(
            (m.engine, m.port, m.password.is_none()),
            (Engine::Mysql, 3306, true)
        );
        assert!(matches!(
            Spec::parse("postgres://alice@host").unwrap_err(),
            Error::Address(m) if m.contains("names no database")
        ));
    }

    #[test]
    fn npgsql_connection_strings() {
        let a = server("Host=db;Port=5433;Database=app;Username=alice;Password=\"se;cr\"\"et\";SSL Mode=Require;Search Path=identity,public");
        assert_eq!(a.engine, Engine::Postgres);
        assert_eq!((a.host.as_str(), a.port), ("db", 5433));
        assert_eq!(a.password.as_ref().unwrap().expose(), "se;cr\"et");
        assert_eq!(a.ssl, SslMode::Require);
        assert_eq!(a.schema.as_deref(), Some("identity"));
        let b = server("Server=db;Port=5432;Database=app;User ID=alice;Password=x");
        assert_eq!(b.engine, Engine::Postgres);
        assert_eq!(b.user, "alice");
    }

    #[test]
    fn mysql_connection_strings() {
        let a =
            server("Server=db.example.com;Database=app;User=alice;Password=x;SslMode=VerifyFull");
        assert_eq!(a.engine, Engine::Mysql);
        assert_eq!((a.port, a.user.as_str()), (3306, "alice"));
        assert_eq!(a.ssl, SslMode::VerifyFull);
        let b = server("server=db;uid=bob;pwd=y;database=app;port=3307");
        assert_eq!(
            (b.engine, b.port, b.user.as_str()),
            (Engine::Mysql, 3307, "bob")
        );
    }

    #[test]
    fn sqlite_and_sql_server_connection_strings() {
        assert_eq!(
            Spec::parse("Data Source=app.db").unwrap(),
            Spec::Sqlite("app.db".into())
        );
        assert_eq!(
            Spec::parse("DataSource=/var/lib/app/identity.db;Cache=Shared").unwrap(),
            Spec::Sqlite("/var/lib/app/identity.db".into())
        );
        let err = Spec::parse("Server=(localdb)\\mssqllocaldb;Database=aspnet-app;Trusted_Connection=True;MultipleActiveResultSets=true").unwrap_err();
        assert!(err.to_string().contains("SQL Server"), "{err}");
        assert_eq!(
            Spec::parse("app.db").unwrap(),
            Spec::Sqlite("app.db".into())
        );
        assert_eq!(
            Spec::parse("csv:dumps/").unwrap(),
            Spec::Csv("dumps/".into())
        );
    }

    #[test]
    fn a_password_is_never_shown() {
        let a = server("Host=db;Database=app;Username=u;Password=hunter2");
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!a.to_string().contains("hunter2"));
        let err = Spec::parse("Host=db;Database=app;Password=\"hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
