//! MySQL and MariaDB: the Pomelo provider's layout (`varchar(255)` keys, `tinyint(1)`
//! booleans, `datetime(6)` times, `longtext`, `char(36)` GUIDs), and the lower-case table
//! names MySQL may show on Linux.
//!
//! Everything is read inside one `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`
//! transaction on one connection: one snapshot. A MySQL connection streams one result
//! at a time and MySQL cannot share a snapshot between connections, so of the tables the
//! assembler reads side by side, all but the first are first read whole, in the server's
//! storage order (a plain scan, as a dump reads them), and put into key order by an
//! external sort in the unfinished bundle's private folder; then the first (the users) is
//! streamed live beside them, ordered on the server. Text keys are ordered by their UTF-8
//! bytes, as the merge compares them, whatever the columns' collation: by the sort, and
//! on the server by `CONVERT(… USING utf8mb4) COLLATE utf8mb4_bin`, except where every
//! key is an integer or made only of digits, hyphens and letters of one case (GUIDs):
//! those sort the same in every collation, so the index's order serves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ferry_connect::ServerAddress;
use mysql::consts::ColumnType;
use mysql::prelude::Queryable as _;
use mysql::{Conn, Value};

use crate::layout::{self, Catalog, Column, Layout};
use crate::rows::{
    select_unordered, Assembled, Cell, Dialect, Parts, Query, RowStream, Tables, WithStreams,
};
use crate::spool::{side_by_side, sort_each, Budget, Cut};
use crate::values::parse_utc_naive;
use crate::{Description, Error};

const DIALECT: Dialect = Dialect {
    quote: '`',
    binary: "",
};

/// The character set number MySQL gives binary strings.
const BINARY_CHARSET: u16 = 63;

/// An Identity database on a MySQL or MariaDB server.
pub struct MysqlSource {
    conn: MyTables,
    layout: Layout,
    description: Description,
}

struct MyTables {
    conn: Conn,
    /// Tables read live whose key the server's own order already sorts byte by byte
    /// (see [`keys_sort_as_bytes`]), read in index order instead of sorted.
    in_index_order: std::collections::HashSet<String>,
    /// Per table, per column, the column type (`varchar(255)`, `tinyint(1)`, …).
    types: HashMap<String, HashMap<String, String>>,
    location: String,
    scratch: PathBuf,
}

impl MysqlSource {
    /// Connects to `address`, begins the snapshot and resolves the Identity layout;
    /// `scratch` is a private folder for the spooled tables.
    pub fn open(address: &ServerAddress, scratch: &Path) -> Result<MysqlSource, Error> {
        let location = format!(
            "mysql://{}:{}/{}",
            address.host, address.port, address.database
        );
        let open_err = |message: String| Error::Open {
            location: location.clone(),
            message,
        };
        let mut conn = ferry_connect::mysql::connect(address).map_err(|e| match e {
            ferry_connect::Error::Connect { message, .. } => open_err(message),
            other => open_err(other.to_string()),
        })?;
        let my = |e: mysql::Error| open_err(ferry_connect::mysql::explain(&e));
        conn.query_drop("SET NAMES utf8mb4").map_err(my)?;
        conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .map_err(my)?;
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .map_err(my)?;
        let version: String = conn
            .query_first("SELECT VERSION()")
            .map_err(my)?
            .unwrap_or_default();
        let server_version = if version.to_ascii_lowercase().contains("mariadb") {
            format!(
                "MariaDB {}",
                version.split("-MariaDB").next().unwrap_or(&version)
            )
        } else {
            format!("MySQL {version}")
        };
        let (catalog, types) = read_catalog(&mut conn).map_err(my)?;
        let layout = layout::resolve_layout(&catalog).map_err(|m| Error::NotIdentity {
            location: location.clone(),
            missing: m.0,
        })?;
        // Only the tables read live (the first of each stream: users, roles) are ordered
        // on the server; the tables beside them are sorted here.
        let mut in_index_order = std::collections::HashSet::new();
        for t in std::iter::once(&layout.users).chain(layout.roles.as_ref()) {
            if keys_sort_as_bytes(&mut conn, &t.name, t.column(0).unwrap_or("Id")).map_err(my)? {
                in_index_order.insert(t.name.clone());
            }
        }
        let mut notes = Vec::new();
        // MySQL lists only the tables the user may read: a child table the user may not
        // read looks absent.
        let absent: Vec<&str> = [
            ("AspNetUserClaims", layout.claims.is_none()),
            ("AspNetUserLogins", layout.logins.is_none()),
            ("AspNetUserRoles", layout.user_roles.is_none()),
            ("AspNetRoles", layout.roles.is_none()),
        ]
        .into_iter()
        .filter(|(_, absent)| *absent)
        .map(|(t, _)| t)
        .collect();
        if !absent.is_empty() {
            notes.push(format!(
                "warning: {} not found: the database has no such table, or the user may not read it (MySQL lists only the tables a user has privileges on); nothing of it is exported",
                absent.join(", ")
            ));
        }
        let mut description = Description::of(
            "mysql",
            location.clone(),
            &layout,
            catalog.migrations.clone(),
            Some(server_version),
        );
        description.notes = notes;
        Ok(MysqlSource {
            conn: MyTables {
                conn,
                in_index_order,
                types,
                location,
                scratch: scratch.to_path_buf(),
            },
            layout,
            description,
        })
    }

    /// The resolved layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

type Types = HashMap<String, HashMap<String, String>>;

/// Whether the server's own order of `table`'s key `column` (its collation's, as its
/// index keeps it) is their byte order: integer keys, and text keys of only digits,
/// hyphens and letters of one case (GUIDs), sort the same under every MySQL collation.
/// Other keys are sorted by their bytes on the server (slower: no index serves it).
fn keys_sort_as_bytes(conn: &mut Conn, table: &str, column: &str) -> Result<bool, mysql::Error> {
    let (t, c) = (DIALECT.quote(table), DIALECT.quote(column));
    let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = conn.query_first(format!(
        "SELECT SUM({c} REGEXP '[^-0-9a-zA-Z]'), SUM(BINARY {c} <> BINARY LOWER({c})), SUM(BINARY {c} <> BINARY UPPER({c})) FROM {t}"
    ))?;
    let Some((odd, not_lower, not_upper)) = row else {
        return Ok(true);
    };
    Ok(odd.unwrap_or(0) == 0 && (not_lower.unwrap_or(0) == 0 || not_upper.unwrap_or(0) == 0))
}

fn read_catalog(conn: &mut Conn) -> Result<(Catalog, Types), mysql::Error> {
    let rows: Vec<(String, String, String)> = conn.query(
        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS
         WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )?;
    let mut catalog = Catalog::default();
    let mut types: Types = HashMap::new();
    for (table, column, decl) in rows {
        types
            .entry(table.clone())
            .or_default()
            .insert(column.clone(), decl.to_ascii_lowercase());
        let column = Column {
            name: column,
            decl_type: decl,
        };
        match catalog.tables.last_mut() {
            Some((t, cols)) if *t == table => cols.push(column),
            _ => catalog.tables.push((table, vec![column])),
        }
    }
    if let Some((table, id, version)) = layout::migration_history(&catalog) {
        let sql = format!(
            "SELECT {id}, {version} FROM {} ORDER BY CONVERT({id} USING utf8mb4) COLLATE utf8mb4_bin",
            DIALECT.quote(&table),
            id = DIALECT.quote(&id),
            version = DIALECT.quote(&version),
        );
        catalog.migrations = conn
            .query::<(String, String), _>(sql)?
            .into_iter()
            .map(|(id, product_version)| layout::Migration {
                table: table.clone(),
                id,
                product_version,
            })
            .collect();
    }
    Ok((catalog, types))
}

fn is_text(column_type: &str) -> bool {
    ["char", "text", "enum", "set"]
        .iter()
        .any(|t| column_type.contains(t))
        && !column_type.contains("binary")
}

impl MyTables {
    fn select(&self, q: &Query) -> String {
        let columns: Vec<String> = q
            .columns
            .iter()
            .map(|c| {
                c.as_deref()
                    .map_or("NULL".to_string(), |c| DIALECT.quote(c))
            })
            .collect();
        let types = self.types.get(&q.table);
        // The key of a table whose keys sort the same in every collation is left to the
        // server's order, which its index already keeps; other text columns are sorted
        // by their bytes.
        let key_in_index_order = self.in_index_order.contains(&q.table);
        let order: Vec<String> = q
            .order
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 && key_in_index_order {
                    return DIALECT.quote(c);
                }
                let t = types
                    .and_then(|t| t.get(c))
                    .map(String::as_str)
                    .unwrap_or("");
                if is_text(t) {
                    format!(
                        "CONVERT({} USING utf8mb4) COLLATE utf8mb4_bin",
                        DIALECT.quote(c)
                    )
                } else {
                    DIALECT.quote(c)
                }
            })
            .collect();
        let mut sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            columns.join(", "),
            DIALECT.quote(&q.table),
            order.join(", ")
        );
        if let Some(n) = q.limit {
            // SQL engines take a signed 64-bit limit.
            sql.push_str(&format!(" LIMIT {}", n.min(i64::MAX as u64)));
        }
        sql
    }

    /// The rows of `q`, read in storage order and sorted here.
    fn sorted(&mut self, q: &Query, budget: &Budget) -> Result<Cut, Error> {
        let (sql, order) = select_unordered(&DIALECT, q);
        let mut sorter = budget.sorter(&self.scratch, order);
        let location = self.location.clone();
        let mut result = self
            .conn
            .query_iter(sql)
            .map_err(|e| query_error(&location, &q.table, e))?;
        let (decoders, names) = decoders(&result);
        let mut row = Vec::with_capacity(decoders.len());
        for r in result.by_ref() {
            let r = r.map_err(|e| query_error(&location, &q.table, e))?;
            decode_row(r, &decoders, &names, &mut row).map_err(|cause| Error::Query {
                location: location.clone(),
                table: q.table.clone(),
                cause: cause.into(),
            })?;
            sorter.push(&row)?;
        }
        Ok(Cut::new(sorter.finish()?, q))
    }

    fn error(&self, table: &str, e: mysql::Error) -> Error {
        Error::Query {
            location: self.location.clone(),
            table: table.to_string(),
            cause: ferry_connect::mysql::explain(&e).into(),
        }
    }
}

/// How a column's values (text protocol: every value is its text) become cells.
#[derive(Clone, Copy)]
enum Decode {
    Integer,
    Real,
    Text,
    Bytes,
    Naive,
    Bit,
}

fn decoder(c: &mysql::Column) -> Decode {
    use ColumnType::*;
    match c.column_type() {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_LONGLONG
        | MYSQL_TYPE_INT24 | MYSQL_TYPE_YEAR => Decode::Integer,
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => Decode::Real,
        MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP2 => Decode::Naive,
        MYSQL_TYPE_BIT => Decode::Bit,
        MYSQL_TYPE_JSON => Decode::Text,
        MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_VARCHAR
            if c.character_set() == BINARY_CHARSET =>
        {
            Decode::Bytes
        }
        _ => Decode::Text,
    }
}

fn cell(v: Value, d: Decode, column: &str) -> Result<Cell, String> {
    let bytes = match v {
        Value::NULL => return Ok(Cell::Null),
        Value::Bytes(b) => b,
        Value::Int(i) => return Ok(Cell::Integer(i)),
        Value::UInt(u) => return Ok(Cell::Integer(u as i64)),
        Value::Float(f) => return Ok(Cell::Real(f.into())),
        Value::Double(f) => return Ok(Cell::Real(f)),
        other => other.as_sql(true).into_bytes(),
    };
    let text =
        |b: Vec<u8>| String::from_utf8(b).map_err(|_| format!("{column}: text is not valid UTF-8"));
    Ok(match d {
        Decode::Bytes => Cell::Bytes(bytes),
        Decode::Bit => Cell::Integer(bytes.iter().fold(0i64, |n, b| (n << 8) | i64::from(*b))),
        Decode::Integer => {
            let t = text(bytes)?;
            Cell::Integer(
                t.parse()
                    .map_err(|_| format!("{column}: `{t}` is not an integer"))?,
            )
        }
        Decode::Real => {
            let t = text(bytes)?;
            Cell::Real(
                t.parse()
                    .map_err(|_| format!("{column}: `{t}` is not a number"))?,
            )
        }
        Decode::Naive => {
            let t = text(bytes)?;
            match parse_utc_naive(&t) {
                Some(dt) => Cell::Naive(dt.naive_utc()),
                // MySQL's zero date, and anything else, as its text.
                None => Cell::Text(t),
            }
        }
        Decode::Text => Cell::Text(text(bytes)?),
    })
}

/// How each column of a result decodes, and its name.
fn decoders(result: &mysql::QueryResult<'_, '_, '_, mysql::Text>) -> (Vec<Decode>, Vec<String>) {
    let columns = result.columns();
    let columns = columns.as_ref();
    (
        columns.iter().map(decoder).collect(),
        columns.iter().map(|c| c.name_str().into_owned()).collect(),
    )
}

/// A row's values as cells, into `row`.
fn decode_row(
    r: mysql::Row,
    decoders: &[Decode],
    names: &[String],
    row: &mut Vec<Cell>,
) -> Result<(), String> {
    row.clear();
    for (i, v) in r.unwrap().into_iter().enumerate() {
        row.push(cell(v, decoders[i], &names[i])?);
    }
    Ok(())
}

/// The live result of one query.
struct Live<'c> {
    result: mysql::QueryResult<'c, 'c, 'c, mysql::Text>,
    decoders: Vec<Decode>,
    names: Vec<String>,
    table: &'c str,
    location: &'c str,
}

impl RowStream for Live<'_> {
    fn next_row(&mut self, row: &mut Vec<Cell>) -> Result<bool, Error> {
        let err = |cause: String| Error::Query {
            location: self.location.to_string(),
            table: self.table.to_string(),
            cause: cause.into(),
        };
        let Some(r) = self.result.next() else {
            return Ok(false);
        };
        let r = r.map_err(|e| err(ferry_connect::mysql::explain(&e)))?;
        decode_row(r, &self.decoders, &self.names, row).map_err(err)?;
        Ok(true)
    }
}

impl Tables for MyTables {
    fn stream(&mut self, queries: &[Query], f: &mut WithStreams<'_>) -> Result<(), Error> {
        let Some(first) = queries.first() else {
            return f(&mut []);
        };
        // All but the first, read in the server's storage order (a full scan, as a dump
        // reads it: sorting rows with long text columns costs MySQL a random lookup per
        // row) and put into key order here by an external sort, one after another in
        // the snapshot.
        let mut sorted = sort_each(queries, |i, q, budget| {
            Ok(if i == 0 {
                None
            } else {
                Some(self.sorted(q, budget)?)
            })
        })?;
        let sql = self.select(first);
        let location = self.location.clone();
        let result = self
            .conn
            .query_iter(sql)
            .map_err(|e| query_error(&location, &first.table, e))?;
        let (decoders, names) = decoders(&result);
        let mut live = Live {
            result,
            decoders,
            names,
            table: &first.table,
            location: &location,
        };
        let outcome = f(&mut side_by_side(
            &mut sorted,
            std::iter::once(&mut live as &mut dyn RowStream),
        ));
        // Read what is left of the live result, so that the connection can be used again.
        for _ in live.result.by_ref() {}
        outcome
    }

    fn count(&mut self, table: &str) -> Result<u64, Error> {
        let n: Option<u64> = self
            .conn
            .query_first(format!("SELECT COUNT(*) FROM {}", DIALECT.quote(table)))
            .map_err(|e| self.error(table, e))?;
        Ok(n.unwrap_or(0))
    }
}

fn query_error(location: &str, table: &str, e: mysql::Error) -> Error {
    Error::Query {
        location: location.to_string(),
        table: table.to_string(),
        cause: ferry_connect::mysql::explain(&e).into(),
    }
}

impl Assembled for MysqlSource {
    fn described(&self) -> &Description {
        &self.description
    }

    fn parts(&mut self) -> Parts<'_> {
        Parts {
            main: &mut self.conn,
            children: None,
            layout: &self.layout,
        }
    }
}
