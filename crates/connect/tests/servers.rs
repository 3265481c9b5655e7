//! Connections to the machine's PostgreSQL (127.0.0.1:5432, trust) and MariaDB
//! (127.0.0.1:3306, root without a password): what works, and each failure's one line.
//! A server that cannot be reached fails these tests; they are never skipped.

use ferry_connect::{mysql, postgres, Error, ServerAddress, Spec};

fn server(text: &str) -> ServerAddress {
    match Spec::parse(text).unwrap() {
        Spec::Server(s) => s,
        other => panic!("{other:?}"),
    }
}

fn failure<T>(r: Result<T, Error>) -> String {
    let Err(e) = r else {
        panic!("expected a failure")
    };
    match e {
        Error::Connect { .. } => e.to_string(),
        other => panic!("not a connection failure: {other}"),
    }
}

#[test]
fn postgres_connects_with_and_without_tls() {
    for mode in ["disable", "prefer", "require"] {
        let mut c = postgres::connect(&server(&format!(
            "postgres://postgres@127.0.0.1:5432/test?sslmode={mode}"
        )))
        .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        let ssl: bool = c
            .query_one("SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)", &[])
            .unwrap()
            .get(0);
        assert_eq!(ssl, mode != "disable", "sslmode={mode}");
    }
    // The connection-string form of the same server.
    postgres::connect(&server(
        "Host=127.0.0.1;Port=5432;Database=test;Username=postgres",
    ))
    .unwrap();
}

#[test]
fn postgres_failures_are_one_line_naming_the_server() {
    let refused = failure(postgres::connect(&server(
        "postgres://postgres:hunter2@127.0.0.1:1/test",
    )));
    assert!(
        refused.starts_with("cannot connect to postgres://postgres@127.0.0.1:1/test: ")
            && refused.contains("refused"),
        "{refused}"
    );
    assert!(!refused.contains("hunter2"));
    let no_db = failure(postgres::connect(&server(
        "postgres://postgres@127.0.0.1/no_such_db_ferry",
    )));
    assert!(
        no_db.contains("database \"no_such_db_ferry\" does not exist (check the database name)"),
        "{no_db}"
    );
    let no_user = failure(postgres::connect(&server(
        "postgres://nobody_ferry@127.0.0.1/test",
    )));
    assert!(
        no_user.contains("nobody_ferry") && no_user.contains("(check the user and password)"),
        "{no_user}"
    );
    // The server's certificate is self-signed: verify-full refuses it.
    let unverified = failure(postgres::connect(&server(
        "postgres://postgres@127.0.0.1/test?sslmode=verify-full",
    )));
    assert!(
        unverified.to_lowercase().contains("certificate"),
        "{unverified}"
    );
    assert_eq!(unverified.lines().count(), 1, "{unverified}");
}

#[test]
fn mariadb_connects_and_its_failures_are_one_line() {
    let mut admin =
        mysql::connect(&server("mysql://root@127.0.0.1:3306/test?sslmode=disable")).unwrap();
    // The server has no TLS: prefer falls back, require says why it cannot.
    mysql::connect(&server("Server=127.0.0.1;Database=test;User=root")).unwrap();
    let no_tls = failure(mysql::connect(&server(
        "mysql://root@127.0.0.1/test?sslmode=required",
    )));
    assert!(no_tls.contains("does not offer TLS"), "{no_tls}");
    use ::mysql::prelude::Queryable as _;
    admin
        .query_drop("CREATE USER IF NOT EXISTS 'ferry_pw_test'@'%' IDENTIFIED BY 'right-one'")
        .unwrap();
    let wrong = failure(mysql::connect(&server(
        "Server=127.0.0.1;Database=test;Uid=ferry_pw_test;Pwd=wrong-one",
    )));
    assert!(
        wrong.starts_with("cannot connect to mysql://ferry_pw_test@127.0.0.1:3306/test: ")
            && wrong.contains("Access denied")
            && wrong.contains("(check the user and password)")
            && !wrong.contains("wrong-one"),
        "{wrong}"
    );
    admin.query_drop("DROP USER 'ferry_pw_test'@'%'").unwrap();
    let no_db = failure(mysql::connect(&server(
        "mysql://root@127.0.0.1/no_such_db_ferry?sslmode=disable",
    )));
    assert!(
        no_db.contains("Unknown database") && no_db.contains("(check the database name)"),
        "{no_db}"
    );
    let refused = failure(mysql::connect(&server(
        "mysql://root@127.0.0.1:1/test?sslmode=disable",
    )));
    assert!(refused.contains("refused"), "{refused}");
}
