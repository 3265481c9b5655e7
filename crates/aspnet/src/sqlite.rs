//! Reading an Identity database from a SQLite file, read-only, in one snapshot.

use std::path::Path;
use std::sync::mpsc::sync_channel;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ferry_bundle::manifest::Counts;
use ferry_bundle::record::{Claim, CredentialId, Login, Passkey, Token};
use ferry_bundle::{RoleRecord, UserId, UserRecord};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};
use serde_json::{Map, Value};

use crate::key::Key;
use crate::layout::{
    self, Catalog, Column, Layout, PasskeyLayout, Table, LOCKOUT_END, PASSKEY_DATA_FIELDS,
};
use crate::merge::Cursor;
use crate::snapshot::{self, JournalMode, Snapshot, SnapshotError};
use crate::values::{parse_bool_text, parse_datetime_offset, parse_utc_naive};
use crate::{Description, Error, IdentitySource, Visit};

/// An Identity database in a SQLite file.
///
/// The file is opened read-only (`SQLITE_OPEN_READ_ONLY`, `PRAGMA query_only`), and
/// everything is read inside one transaction, so the export sees one consistent
/// snapshot even if the application keeps writing. Nothing is ever written beside the
/// file: a database in WAL mode is read from a private copy of it and its `-wal` (see
/// the `snapshot` module), since SQLite writes a `-shm` beside any WAL database it opens.
pub struct SqliteSource {
    conn: Connection,
    /// A second connection in the same snapshot, for the child tables: users and their
    /// children are read on two threads.
    children: Option<Connection>,
    layout: Layout,
    description: Description,
    /// The private copy read instead of a WAL-mode file; dropped after the connections.
    _copy: Option<Snapshot>,
}

fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

/// Begins a read transaction and reads, so that the connection's snapshot is fixed now.
fn begin_snapshot(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA query_only = 1; BEGIN")?;
    conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(())
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn col_or_null(c: Option<&str>) -> String {
    c.map(quote).unwrap_or_else(|| "NULL".to_string())
}

impl SqliteSource {
    /// Opens `path` and resolves its Identity layout; a WAL-mode database is copied into
    /// the system's temporary folder to be read (see [`SqliteSource::open_in`]).
    pub fn open(path: &Path) -> Result<SqliteSource, Error> {
        SqliteSource::open_in(path, &std::env::temp_dir())
    }

    /// Opens `path` and resolves its Identity layout. A database in WAL mode is first
    /// copied with its `-wal` into a private folder inside `scratch` (it needs as much
    /// free space there as the two files take), and the copy is read.
    pub fn open_in(path: &Path, scratch: &Path) -> Result<SqliteSource, Error> {
        if !path.exists() {
            return Err(Error::NotFound { path: path.into() });
        }
        if path.is_dir() {
            return Err(Error::Open {
                path: path.into(),
                message: "is a folder, not a SQLite database file".into(),
            });
        }
        let mode = snapshot::journal_mode(path).map_err(|e| Error::Open {
            path: path.into(),
            message: e.to_string(),
        })?;
        let mut notes = Vec::new();
        let copy = match mode {
            JournalMode::Wal => {
                let copy = Snapshot::take(path, scratch).map_err(|e| match e {
                    SnapshotError::Io(file, e) => Error::Open {
                        path: path.into(),
                        message: format!(
                            "cannot copy `{}` to read it without writing beside it: {e}",
                            file.display()
                        ),
                    },
                    SnapshotError::Unsteady => Error::Open {
                        path: path.into(),
                        message: "the application reset the -wal file during every attempt to copy it; try again when it is quieter".into(),
                    },
                })?;
                notes.push(format!(
                    "`{}` is in WAL mode: it was read from a private copy of it and its -wal, so nothing was written beside it",
                    path.display()
                ));
                Some(copy)
            }
            JournalMode::Rollback | JournalMode::Unknown => None,
        };
        let read_from = copy.as_ref().map_or(path, |c| c.path());
        let mut source = SqliteSource::open_file(path, read_from)?;
        source.description.notes = notes;
        source._copy = copy;
        Ok(source)
    }

    /// Opens `read_from` (the file itself, or its private copy); errors name `path`.
    fn open_file(path: &Path, read_from: &Path) -> Result<SqliteSource, Error> {
        let open_err = |e: rusqlite::Error| Error::Open {
            path: path.into(),
            message: e.to_string(),
        };
        let not_a_database = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                Error::Open {
                    path: path.into(),
                    message: "not a SQLite database".into(),
                }
            }
            e => open_err(e),
        };
        // Two connections must see one snapshot. A third connection, outside any
        // transaction, watches `data_version` across the moment both snapshots are
        // taken: if no other connection committed meanwhile, the snapshots are the same.
        let probe = open_read_only(read_from).map_err(open_err)?;
        let (conn, children) = {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let before = data_version(&probe).map_err(not_a_database)?;
                let conn = open_read_only(read_from).map_err(open_err)?;
                begin_snapshot(&conn).map_err(not_a_database)?;
                let children = open_read_only(read_from).map_err(open_err)?;
                begin_snapshot(&children).map_err(not_a_database)?;
                if data_version(&probe).map_err(not_a_database)? == before {
                    break (conn, Some(children));
                }
                if attempt == 5 {
                    // The database is busy with writes: read everything on one
                    // connection, which is one snapshot by itself.
                    break (conn, None);
                }
            }
        };
        drop(probe);
        let catalog = read_catalog(&conn).map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                Error::Open {
                    path: path.into(),
                    message: "not a SQLite database".into(),
                }
            }
            e => open_err(e),
        })?;
        let layout = layout::resolve_layout(&catalog).map_err(|m| Error::NotIdentity {
            path: path.into(),
            missing: m.0,
        })?;
        let description = Description {
            engine: "sqlite",
            location: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            generation: layout.generation,
            evidence: layout.evidence.clone(),
            naming: layout.naming,
            tables: layout.table_names(),
            extra_user_columns: layout.extra.iter().map(|c| c.name.clone()).collect(),
            key_type: layout.key_type,
            migrations: catalog.migrations.clone(),
            notes: Vec::new(),
        };
        Ok(SqliteSource {
            conn,
            children,
            layout,
            description,
            _copy: None,
        })
    }

    /// The resolved layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

fn read_catalog(conn: &Connection) -> rusqlite::Result<Catalog> {
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")?;
    let names: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut catalog = Catalog::default();
    for history in layout::MIGRATION_TABLES {
        let Some(name) = names.iter().find(|n| n.eq_ignore_ascii_case(history)) else {
            continue;
        };
        let sql = format!(
            r#"SELECT "MigrationId", "ProductVersion" FROM {} ORDER BY "MigrationId""#,
            quote(name)
        );
        // A history table of another shape is not evidence; skip it.
        if let Ok(mut stmt) = conn.prepare(&sql) {
            catalog.migrations = stmt
                .query_map([], |r| {
                    Ok(layout::Migration {
                        table: name.clone(),
                        id: r.get(0)?,
                        product_version: r.get(1)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        if !catalog.migrations.is_empty() {
            break;
        }
    }
    for name in names {
        let mut info = conn.prepare(&format!("PRAGMA table_info({})", quote(&name)))?;
        let columns = info
            .query_map([], |r| {
                Ok(Column {
                    name: r.get(1)?,
                    decl_type: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        catalog.tables.push((name, columns));
    }
    Ok(catalog)
}

/// The context of one value, for error messages.
struct At<'a> {
    table: &'a str,
    column: &'a str,
    row: &'a str,
}

impl At<'_> {
    fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::Corrupt {
            table: self.table.to_string(),
            column: self.column.to_string(),
            row: self.row.to_string(),
            message: message.into(),
        }
    }
}

fn kind(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

fn text(v: ValueRef<'_>, at: &At<'_>) -> Result<Option<String>, Error> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) => String::from_utf8(t.to_vec())
            .map(Some)
            .map_err(|_| at.corrupt("text is not valid UTF-8")),
        // SQLite is dynamically typed: a number in a text column is kept as its text.
        ValueRef::Integer(i) => Ok(Some(i.to_string())),
        ValueRef::Real(f) => Ok(Some(f.to_string())),
        ValueRef::Blob(_) => Err(at.corrupt("expected text, found a blob")),
    }
}

/// A key column's value, typed as the engine returned it.
fn key(v: ValueRef<'_>, at: &At<'_>) -> Result<Key, Error> {
    match v {
        ValueRef::Integer(i) => Ok(Key::Integer(i)),
        ValueRef::Text(t) => String::from_utf8(t.to_vec())
            .map(Key::Text)
            .map_err(|_| at.corrupt("text is not valid UTF-8")),
        ValueRef::Blob(b) => Ok(Key::Bytes(b.to_vec())),
        ValueRef::Null => Err(at.corrupt("is NULL in a key column")),
        ValueRef::Real(_) => Err(at.corrupt("a key cannot be a real number")),
    }
}

fn required_text(v: ValueRef<'_>, at: &At<'_>) -> Result<String, Error> {
    text(v, at)?.ok_or_else(|| at.corrupt("is NULL in a NOT NULL column"))
}

fn boolean(v: ValueRef<'_>, at: &At<'_>) -> Result<bool, Error> {
    match v {
        ValueRef::Integer(0) => Ok(false),
        ValueRef::Integer(1) => Ok(true),
        ValueRef::Integer(i) => Err(at.corrupt(format!("expected a boolean (0 or 1), found {i}"))),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(parse_bool_text)
            .ok_or_else(|| {
                at.corrupt(format!(
                    "expected a boolean (0 or 1), found text `{}`",
                    String::from_utf8_lossy(t)
                ))
            }),
        // An absent column (selected as NULL) reads as false; a NULL in a real column
        // of this NOT NULL type is corrupt.
        other => Err(at.corrupt(format!(
            "expected a boolean (0 or 1), found {}",
            kind(other)
        ))),
    }
}

fn integer(v: ValueRef<'_>, at: &At<'_>) -> Result<i64, Error> {
    match v {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                at.corrupt(format!(
                    "expected an integer, found text `{}`",
                    String::from_utf8_lossy(t)
                ))
            }),
        other => Err(at.corrupt(format!("expected an integer, found {}", kind(other)))),
    }
}

fn bytes(v: ValueRef<'_>, at: &At<'_>) -> Result<Option<Vec<u8>>, Error> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(Some(b.to_vec())),
        other => Err(at.corrupt(format!("expected bytes, found {}", kind(other)))),
    }
}

/// An extra (custom) column: the value as its declared type suggests.
fn extra_value(v: ValueRef<'_>, decl_type: &str) -> Value {
    let t = decl_type.to_ascii_uppercase();
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) if (t.contains("BOOL") || t == "BIT") && (i == 0 || i == 1) => {
            Value::Bool(i == 1)
        }
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        ValueRef::Text(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Blob(b) => Value::String(STANDARD.encode(b)),
    }
}

fn query_err(table: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Query {
        table: table.to_string(),
        cause: Box::new(e),
    }
}

/// Runs `stmt` and maps each row to `(parent key, item)`.
fn rows_of<'s, T>(
    rows: rusqlite::Rows<'s>,
    table: &'s Table,
    key_index: usize,
    map: impl Fn(&Row<'_>, &At<'_>) -> Result<T, Error> + 's,
) -> impl Iterator<Item = Result<(Key, T), Error>> + 's {
    let mut rows = rows;
    std::iter::from_fn(move || match rows.next() {
        Ok(None) => None,
        Err(e) => Some(Err(query_err(&table.name)(e))),
        Ok(Some(row)) => Some((|| {
            let key_col = table.column(key_index).unwrap_or("?");
            let at = At {
                table: &table.name,
                column: key_col,
                row: "?",
            };
            let key = key(row.get_ref(0).map_err(query_err(&table.name))?, &at)?;
            let row_name = key.to_id_string();
            let at = At {
                table: &table.name,
                column: "",
                row: &row_name,
            };
            let item = map(row, &at)?;
            Ok((key, item))
        })()),
    })
}

fn child_sql(t: &Table, key: usize, select: &[usize], order: &[usize]) -> String {
    let mut cols = vec![col_or_null(t.column(key))];
    cols.extend(select.iter().map(|&i| col_or_null(t.column(i))));
    let mut order_by = vec![format!("{} COLLATE BINARY", col_or_null(t.column(key)))];
    order_by.extend(order.iter().filter_map(|&i| t.column(i)).map(quote));
    format!(
        "SELECT {} FROM {} ORDER BY {}",
        cols.join(", "),
        quote(&t.name),
        order_by.join(", ")
    )
}

fn get<'r>(row: &'r Row<'_>, i: usize, table: &str) -> Result<ValueRef<'r>, Error> {
    row.get_ref(i).map_err(query_err(table))
}

impl IdentitySource for SqliteSource {
    fn description(&self) -> &Description {
        &self.description
    }

    fn user_count(&mut self) -> Result<u64, Error> {
        let table = &self.layout.users.name;
        self.conn
            .query_row(&format!("SELECT COUNT(*) FROM {}", quote(table)), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(query_err(table))
    }

    fn roles(&mut self, visit: &mut Visit<'_, RoleRecord>) -> Result<Counts, Error> {
        let mut counts = Counts::default();
        let Some(roles) = self.layout.roles.clone() else {
            return Ok(counts);
        };
        let role_claims = self.layout.role_claims.clone();
        let sql = child_sql(&roles, 0, &[1, 2, 3], &[]);
        let mut stmt = self.conn.prepare(&sql).map_err(query_err(&roles.name))?;
        let mut claim_stmt = match &role_claims {
            Some(t) => Some(
                self.conn
                    .prepare(&child_sql(t, 0, &[1, 2], &[3]))
                    .map_err(query_err(&t.name))?,
            ),
            None => None,
        };
        let claim_rows = match (&mut claim_stmt, &role_claims) {
            (Some(s), Some(t)) => Some(rows_of(
                s.query([]).map_err(query_err(&t.name))?,
                t,
                0,
                |row, at| {
                    Ok(Claim {
                        claim_type: text(get(row, 1, at.table)?, at)?,
                        value: text(get(row, 2, at.table)?, at)?,
                    })
                },
            )),
            _ => None,
        };
        let claims_table = role_claims
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let mut claims = Cursor::new(claim_rows, &claims_table, "RoleId");
        let mut role_rows = rows_of(
            stmt.query([]).map_err(query_err(&roles.name))?,
            &roles,
            0,
            |row, at| {
                Ok((
                    text(
                        get(row, 1, at.table)?,
                        &At {
                            column: roles.column(1).unwrap_or(""),
                            ..*at
                        },
                    )?,
                    text(get(row, 2, at.table)?, at)?,
                    text(get(row, 3, at.table)?, at)?,
                ))
            },
        );
        let mut last: Option<Key> = None;
        for item in role_rows.by_ref() {
            let (id, (name, normalized_name, concurrency_stamp)) = item?;
            check_increasing(&mut last, &id, &roles)?;
            let mut record = RoleRecord {
                id: id.to_id_string(),
                name,
                normalized_name,
                concurrency_stamp,
                claims: Vec::new(),
            };
            claims.take_for(&id, &mut record.claims)?;
            counts.roles += 1;
            visit(record)?;
        }
        claims.drain()?;
        counts.role_claims = claims.taken;
        if claims.orphans > 0 {
            counts.orphans.insert(claims_table, claims.orphans);
        }
        Ok(counts)
    }

    fn users(
        &mut self,
        limit: Option<u64>,
        visit: &mut Visit<'_, UserRecord>,
    ) -> Result<Counts, Error> {
        let layout = self.layout.clone();
        let conn = &self.conn;
        let Some(children) = self.children.take() else {
            // One connection: users and children interleave on this thread.
            return with_child_groups(conn, &layout, &mut |groups| {
                read_users(conn, &layout, limit, groups, visit)
            });
        };
        let (tx, rx) = sync_channel::<Vec<Group>>(GROUP_CHUNKS_IN_FLIGHT);
        let layout_ref = &layout;
        let (children, result) = std::thread::scope(|scope| {
            // The connection moves to the reader thread and comes back when it ends.
            let reader = scope.spawn(move || {
                let read = with_child_groups(&children, layout_ref, &mut |groups| {
                    let mut chunk = Vec::with_capacity(GROUP_CHUNK);
                    for group in groups {
                        chunk.push(group?);
                        if chunk.len() == GROUP_CHUNK
                            && tx.send(std::mem::take(&mut chunk)).is_err()
                        {
                            // The users side stopped (--limit, or an error it reports).
                            return Ok(());
                        }
                    }
                    let _ = tx.send(chunk);
                    Ok(())
                });
                (children, read)
            });
            // The receiver moves into the iterator: when the users side stops early (--limit,
            // a corrupt row, a writer that failed), dropping it closes the channel, so the
            // child thread's next send fails and it ends instead of blocking on a full
            // channel while it is joined.
            let mut groups = rx.into_iter().flatten().map(Ok);
            let users = read_users(conn, &layout, limit, &mut groups, visit);
            drop(groups);
            // A failed child read also ends the channel early: its error wins, or users
            // read after it would silently lose their children.
            let (children, children_result) = reader.join().expect("child reader thread panicked");
            let result = match (users, children_result) {
                (_, Err(e)) => Err(e),
                (users, Ok(())) => users,
            };
            (children, result)
        });
        self.children = Some(children);
        result
    }
}

/// Child-group chunks in flight between the two reader threads.
const GROUP_CHUNKS_IN_FLIGHT: usize = 8;
/// Groups per chunk.
const GROUP_CHUNK: usize = 256;

/// Everything that hangs off one user id, from the child tables.
struct Group {
    user_id: Key,
    claims: Vec<Claim>,
    logins: Vec<Login>,
    tokens: Vec<Token>,
    roles: Vec<String>,
    passkeys: Vec<Passkey>,
}

type Groups<'a> = dyn Iterator<Item = Result<Group, Error>> + 'a;

/// Opens the child tables on `conn`, each ordered by user id, and hands `f` an iterator
/// of their rows grouped by user id in ascending order (a k-way ordered merge).
fn with_child_groups<R>(
    conn: &Connection,
    l: &Layout,
    f: &mut dyn FnMut(&mut Groups<'_>) -> Result<R, Error>,
) -> Result<R, Error> {
    macro_rules! prepare {
        ($table:expr, $sql:expr) => {
            match $table {
                Some(t) => Some((conn.prepare(&$sql(t)).map_err(query_err(&t.name))?, t)),
                None => None,
            }
        };
    }
    let mut claim_stmt = prepare!(&l.claims, |t| child_sql(t, 0, &[1, 2], &[3]));
    let mut login_stmt = prepare!(&l.logins, |t| child_sql(t, 0, &[1, 2, 3], &[1, 2]));
    let mut token_stmt = prepare!(&l.tokens, |t| child_sql(t, 0, &[1, 2, 3], &[1, 2]));
    let mut role_stmt = prepare!(&l.user_roles, |t| child_sql(t, 0, &[1], &[1]));
    let passkey_table = match &l.passkeys {
        Some(PasskeyLayout::Json(t)) | Some(PasskeyLayout::Flat(t)) => Some(t.clone()),
        None => None,
    };
    let flat = matches!(l.passkeys, Some(PasskeyLayout::Flat(_)));
    let mut passkey_stmt = prepare!(&passkey_table, |t: &Table| {
        let n = t.columns.len();
        let select: Vec<usize> = std::iter::once(0).chain(2..n).collect();
        child_sql(t, 1, &select, &[0])
    });
    let name = |t: &Option<(rusqlite::Statement<'_>, &Table)>| {
        t.as_ref().map(|(_, t)| t.name.clone()).unwrap_or_default()
    };
    let (claims_name, logins_name, tokens_name, roles_name, passkeys_name) = (
        name(&claim_stmt),
        name(&login_stmt),
        name(&token_stmt),
        name(&role_stmt),
        name(&passkey_stmt),
    );

    let mut claims = Cursor::new(
        match &mut claim_stmt {
            Some((s, t)) => Some(rows_of(
                s.query([]).map_err(query_err(&t.name))?,
                t,
                0,
                |row, at| {
                    Ok(Claim {
                        claim_type: text(get(row, 1, at.table)?, at)?,
                        value: text(get(row, 2, at.table)?, at)?,
                    })
                },
            )),
            None => None,
        },
        &claims_name,
        "UserId",
    );
    let mut logins = Cursor::new(
        match &mut login_stmt {
            Some((s, t)) => Some(rows_of(
                s.query([]).map_err(query_err(&t.name))?,
                t,
                0,
                |row, at| {
                    Ok(Login {
                        login_provider: required_text(get(row, 1, at.table)?, at)?,
                        provider_key: required_text(get(row, 2, at.table)?, at)?,
                        provider_display_name: text(get(row, 3, at.table)?, at)?,
                    })
                },
            )),
            None => None,
        },
        &logins_name,
        "UserId",
    );
    let mut tokens = Cursor::new(
        match &mut token_stmt {
            Some((s, t)) => Some(rows_of(
                s.query([]).map_err(query_err(&t.name))?,
                t,
                0,
                |row, at| {
                    Ok(Token {
                        login_provider: required_text(get(row, 1, at.table)?, at)?,
                        name: required_text(get(row, 2, at.table)?, at)?,
                        value: text(get(row, 3, at.table)?, at)?,
                    })
                },
            )),
            None => None,
        },
        &tokens_name,
        "UserId",
    );
    let mut roles = Cursor::new(
        match &mut role_stmt {
            Some((s, t)) => Some(rows_of(
                s.query([]).map_err(query_err(&t.name))?,
                t,
                0,
                |row, at| Ok(key(get(row, 1, at.table)?, at)?.to_id_string()),
            )),
            None => None,
        },
        &roles_name,
        "UserId",
    );
    let mut passkeys = Cursor::new(
        match &mut passkey_stmt {
            Some((s, t)) => {
                let table: &Table = t;
                Some(rows_of(
                    s.query([]).map_err(query_err(&table.name))?,
                    table,
                    1,
                    move |row, at| passkey(row, at, table, flat),
                ))
            }
            None => None,
        },
        &passkeys_name,
        "UserId",
    );

    let mut next_group = || -> Result<Option<Group>, Error> {
        let mut key: Option<Key> = None;
        macro_rules! lowest {
            ($($cursor:ident),*) => {$(
                if let Some(k) = $cursor.peek()? {
                    if key.as_ref().is_none_or(|m| k < m) {
                        key = Some(k.clone());
                    }
                }
            )*};
        }
        lowest!(claims, logins, tokens, roles, passkeys);
        let Some(user_id) = key else {
            return Ok(None);
        };
        let mut group = Group {
            user_id,
            claims: Vec::new(),
            logins: Vec::new(),
            tokens: Vec::new(),
            roles: Vec::new(),
            passkeys: Vec::new(),
        };
        claims.take_for(&group.user_id, &mut group.claims)?;
        logins.take_for(&group.user_id, &mut group.logins)?;
        tokens.take_for(&group.user_id, &mut group.tokens)?;
        roles.take_for(&group.user_id, &mut group.roles)?;
        passkeys.take_for(&group.user_id, &mut group.passkeys)?;
        Ok(Some(group))
    };
    let mut groups = std::iter::from_fn(move || next_group().transpose());
    f(&mut groups)
}

/// Table names of the child tables, for orphan counts.
struct ChildNames {
    claims: String,
    logins: String,
    tokens: String,
    roles: String,
    passkeys: String,
}

impl ChildNames {
    fn of(l: &Layout) -> ChildNames {
        let n = |t: &Option<Table>| t.as_ref().map(|t| t.name.clone()).unwrap_or_default();
        ChildNames {
            claims: n(&l.claims),
            logins: n(&l.logins),
            tokens: n(&l.tokens),
            roles: n(&l.user_roles),
            passkeys: match &l.passkeys {
                Some(PasskeyLayout::Json(t)) | Some(PasskeyLayout::Flat(t)) => t.name.clone(),
                None => String::new(),
            },
        }
    }
}

/// Reads users in `Id` order and attaches the child group of each.
fn read_users(
    conn: &Connection,
    l: &Layout,
    limit: Option<u64>,
    groups: &mut Groups<'_>,
    visit: &mut Visit<'_, UserRecord>,
) -> Result<Counts, Error> {
    let users = &l.users;
    // Template columns first in USER_FIELDS order, then the extra ones.
    let mut cols: Vec<String> = users
        .columns
        .iter()
        .map(|c| col_or_null(c.as_deref()))
        .collect();
    cols.extend(l.extra.iter().map(|c| quote(&c.name)));
    let mut sql = format!(
        "SELECT {} FROM {} ORDER BY {} COLLATE BINARY",
        cols.join(", "),
        quote(&users.name),
        quote(users.column(0).expect("Id is required"))
    );
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    let mut user_stmt = conn.prepare(&sql).map_err(query_err(&users.name))?;
    let names = ChildNames::of(l);
    let mut counts = Counts::default();
    let mut orphans = Counts::default();
    let mut pending: Option<Group> = None;
    let mut next = |pending: &mut Option<Group>| -> Result<(), Error> {
        *pending = groups.next().transpose()?;
        Ok(())
    };
    next(&mut pending)?;

    let mut rows = user_stmt.query([]).map_err(query_err(&users.name))?;
    let mut last: Option<Key> = None;
    let extra_base = users.columns.len();
    while let Some(row) = rows.next().map_err(query_err(&users.name))? {
        let (id, mut record) = user_record(row, l, extra_base)?;
        check_increasing(&mut last, &id, users)?;
        // Groups of ids below this user have no user: orphans.
        while let Some(group) = pending.as_ref() {
            match group.user_id.cmp(&id) {
                std::cmp::Ordering::Less => {
                    add_group(&mut orphans, group);
                    next(&mut pending)?;
                }
                std::cmp::Ordering::Equal => {
                    let group = pending.take().expect("peeked");
                    add_group(&mut counts, &group);
                    record.claims = group.claims;
                    record.logins = group.logins;
                    record.tokens = group.tokens;
                    record.roles = group.roles;
                    record.passkeys = group.passkeys;
                    next(&mut pending)?;
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        counts.users += 1;
        visit(record)?;
    }
    if limit.is_none() {
        while let Some(group) = pending.as_ref() {
            add_group(&mut orphans, group);
            next(&mut pending)?;
        }
    }
    for (name, n) in [
        (names.claims, orphans.claims),
        (names.logins, orphans.logins),
        (names.tokens, orphans.tokens),
        (names.roles, orphans.user_roles),
        (names.passkeys, orphans.passkeys),
    ] {
        if n > 0 {
            counts.orphans.insert(name, n);
        }
    }
    Ok(counts)
}

fn add_group(counts: &mut Counts, g: &Group) {
    counts.claims += g.claims.len() as u64;
    counts.logins += g.logins.len() as u64;
    counts.tokens += g.tokens.len() as u64;
    counts.user_roles += g.roles.len() as u64;
    counts.passkeys += g.passkeys.len() as u64;
}

/// One `AspNetUsers` row as a record without children, with its typed key.
fn user_record(row: &Row<'_>, l: &Layout, extra_base: usize) -> Result<(Key, UserRecord), Error> {
    let users = &l.users;
    let g = |i: usize| get(row, i, &users.name);
    let id_at = At {
        table: &users.name,
        column: users.column(0).unwrap_or("Id"),
        row: "?",
    };
    let key = key(g(0)?, &id_at)?;
    let id = key.to_id_string();
    let at = |i: usize| At {
        table: &users.name,
        column: users.column(i).unwrap_or(layout::USER_FIELDS[i]),
        row: &id,
    };
    // An absent column (classic sources) reads as NULL; booleans default to false.
    let flag = |i: usize| -> Result<bool, Error> {
        if users.column(i).is_none() {
            return Ok(false);
        }
        boolean(g(i)?, &at(i))
    };
    let lockout_end =
        match text(g(LOCKOUT_END)?, &at(LOCKOUT_END))? {
            None => None,
            Some(t) => {
                let parsed = if l.lockout_is_utc {
                    parse_utc_naive(&t).or_else(|| parse_datetime_offset(&t))
                } else {
                    parse_datetime_offset(&t)
                };
                Some(parsed.ok_or_else(|| {
                    at(LOCKOUT_END).corrupt(format!("not a date and time: `{t}`"))
                })?)
            }
        };
    let access_failed_count = if users.column(14).is_some() {
        let n = integer(g(14)?, &at(14))?;
        i32::try_from(n)
            .map_err(|_| at(14).corrupt(format!("{n} does not fit a 32-bit integer")))?
    } else {
        0
    };
    let mut extra = Map::new();
    for (k, c) in l.extra.iter().enumerate() {
        extra.insert(
            c.name.clone(),
            extra_value(g(extra_base + k)?, &c.decl_type),
        );
    }
    let password_hash = match g(6)? {
        ValueRef::Blob(_) => return Err(at(6).corrupt("expected base64 text, found a blob")),
        v => text(v, &at(6))?,
    };
    let record = UserRecord {
        user_name: text(g(1)?, &at(1))?,
        normalized_user_name: text(g(2)?, &at(2))?,
        email: text(g(3)?, &at(3))?,
        normalized_email: text(g(4)?, &at(4))?,
        email_confirmed: flag(5)?,
        password_hash,
        security_stamp: text(g(7)?, &at(7))?,
        concurrency_stamp: text(g(8)?, &at(8))?,
        phone_number: text(g(9)?, &at(9))?,
        phone_number_confirmed: flag(10)?,
        two_factor_enabled: flag(11)?,
        lockout_end,
        lockout_enabled: flag(13)?,
        access_failed_count,
        extra,
        claims: Vec::new(),
        logins: Vec::new(),
        tokens: Vec::new(),
        roles: Vec::new(),
        passkeys: Vec::new(),
        id: UserId(id),
    };
    Ok((key, record))
}

fn check_increasing(last: &mut Option<Key>, id: &Key, table: &Table) -> Result<(), Error> {
    if let Some(prev) = last {
        if id <= prev {
            return Err(Error::Order {
                table: table.name.clone(),
                column: table.column(0).unwrap_or("Id").to_string(),
                message: format!("`{id}` came after `{prev}`"),
            });
        }
    }
    *last = Some(id.clone());
    Ok(())
}

/// One passkey row: `UserId`, `CredentialId`, then `Data` or the flat data columns.
fn passkey(row: &Row<'_>, at: &At<'_>, table: &Table, flat: bool) -> Result<Passkey, Error> {
    let col_at = |i: usize| At {
        table: at.table,
        column: table.column(i).unwrap_or(""),
        row: at.row,
    };
    let credential =
        bytes(get(row, 1, at.table)?, &col_at(0))?.ok_or_else(|| col_at(0).corrupt("is NULL"))?;
    let data = if !flat {
        let json = required_text(get(row, 2, at.table)?, &col_at(2))?;
        match serde_json::from_str::<Value>(&json) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(col_at(2).corrupt("Data is JSON but not an object")),
            Err(e) => return Err(col_at(2).corrupt(format!("Data is not JSON: {e}"))),
        }
    } else {
        let mut map = Map::new();
        for (k, field) in PASSKEY_DATA_FIELDS.iter().enumerate() {
            let table_index = 2 + k;
            if table.column(table_index).is_none() {
                continue;
            }
            let v = get(row, 2 + k, at.table)?;
            let a = col_at(table_index);
            let value = match *field {
                "PublicKey" | "AttestationObject" | "ClientDataJson" => match bytes(v, &a)? {
                    Some(b) => Value::String(STANDARD.encode(b)),
                    None => Value::Null,
                },
                "SignCount" => match v {
                    ValueRef::Null => Value::Null,
                    v => Value::from(integer(v, &a)?),
                },
                "IsUserVerified" | "IsBackupEligible" | "IsBackedUp" => match v {
                    ValueRef::Null => Value::Null,
                    v => Value::Bool(boolean(v, &a)?),
                },
                "CreatedAt" => match text(v, &a)? {
                    None => Value::Null,
                    Some(t) => match parse_datetime_offset(&t) {
                        Some(d) => Value::String(d.to_rfc3339()),
                        None => return Err(a.corrupt(format!("not a date and time: `{t}`"))),
                    },
                },
                "Transports" => match text(v, &a)? {
                    None => Value::Null,
                    Some(t) => match serde_json::from_str::<Value>(&t) {
                        Ok(arr @ Value::Array(_)) => arr,
                        _ => Value::Array(
                            t.split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(|s| Value::String(s.to_string()))
                                .collect(),
                        ),
                    },
                },
                _ => text(v, &a)?.map(Value::String).unwrap_or(Value::Null),
            };
            map.insert(field.to_string(), value);
        }
        map
    };
    Ok(Passkey {
        credential_id: CredentialId(credential),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_fixtures::{generate, Generation, Options};

    fn fixture(dir: &Path, users: u64) -> std::path::PathBuf {
        let path = dir.join("app.db");
        let opts = Options {
            users,
            generation: Generation::CoreV3,
            ..Options::default()
        };
        generate(&path, &opts, None).unwrap();
        path
    }

    fn read_all(source: &mut SqliteSource, limit: Option<u64>) -> (Vec<UserRecord>, Counts) {
        let mut users = Vec::new();
        let counts = source
            .users(limit, &mut |u| {
                users.push(u);
                Ok(())
            })
            .unwrap();
        (users, counts)
    }

    #[test]
    fn one_connection_and_two_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture(dir.path(), 300);
        let mut two = SqliteSource::open(&db).unwrap();
        assert!(
            two.children.is_some(),
            "a quiet database gets the two-connection reader"
        );
        let mut one = SqliteSource::open(&db).unwrap();
        one.children = None;
        let (a, ca) = read_all(&mut two, None);
        let (b, cb) = read_all(&mut one, None);
        assert_eq!(a, b);
        assert_eq!(ca, cb);
        assert_eq!(ca.users, 300);
        // The source can be read again (the connection came back from its thread).
        let (again, _) = read_all(&mut two, Some(5));
        assert_eq!(again[..], a[..5]);
    }

    #[test]
    fn orphan_rows_are_counted_not_exported() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture(dir.path(), 50);
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        // Below every id, between ids, and above every id (foreign keys are off by default).
        for id in ["", "5", "zzzz"] {
            conn.execute(
                r#"INSERT INTO "AspNetUserClaims" ("UserId", "ClaimType", "ClaimValue") VALUES (?1, 'x', 'y')"#,
                [id],
            )
            .unwrap();
        }
        conn.execute(r#"INSERT INTO "AspNetUserRoles" VALUES ('zzzz', 'r')"#, [])
            .unwrap();
        drop(conn);
        for one_connection in [false, true] {
            let mut source = SqliteSource::open(&db).unwrap();
            if one_connection {
                source.children = None;
            }
            let (users, counts) = read_all(&mut source, None);
            assert_eq!(users.len(), 50);
            assert_eq!(counts.orphans.get("AspNetUserClaims"), Some(&3));
            assert_eq!(counts.orphans.get("AspNetUserRoles"), Some(&1));
            let attached: usize = users.iter().map(|u| u.claims.len()).sum();
            assert_eq!(attached as u64, counts.claims);
        }
    }

    #[test]
    fn the_export_reads_one_snapshot_while_the_application_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture(dir.path(), 100);
        let writer = Connection::open(&db).unwrap();
        writer
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        let mut source = SqliteSource::open(&db).unwrap();
        assert!(source.children.is_some());
        // The application deletes every claim and adds a user after the export began.
        writer
            .execute(r#"DELETE FROM "AspNetUserClaims""#, [])
            .unwrap();
        writer
            .execute(
                r#"INSERT INTO "AspNetUsers" ("Id", "UserName", "EmailConfirmed", "PhoneNumberConfirmed",
                   "TwoFactorEnabled", "LockoutEnabled", "AccessFailedCount", "IsActive")
                   VALUES ('00000000-late', 'late', 0, 0, 0, 0, 0, 1)"#,
                [],
            )
            .unwrap();
        let (users, counts) = read_all(&mut source, None);
        assert_eq!(users.len(), 100, "the late user is not in the snapshot");
        assert!(
            counts.claims > 300,
            "the deleted claims are still in the snapshot"
        );
    }
}
