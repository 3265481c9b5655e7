//! PostgreSQL: the Npgsql layout (quoted PascalCase identifiers, `boolean`,
//! `timestamp with time zone`, `uuid` or `text` keys, `jsonb` or `text` passkey data) and
//! the snake_case layout of EFCore.NamingConventions, in any schema.
//!
//! Everything is read inside one `REPEATABLE READ, READ ONLY` transaction: one snapshot.
//! Each query is a cursor (`DECLARE … NO SCROLL CURSOR`) fetched a few thousand rows at a
//! time, so several tables stream side by side on one connection and no table is ever
//! fetched whole. Text keys are ordered `COLLATE "C"` (byte order, as the merge compares
//! them), whatever the database's collation. The child tables are read on a second
//! connection in the same snapshot (`pg_export_snapshot`), on their own thread, when the
//! server allows it.

use std::cell::RefCell;
use std::collections::HashMap;

use ferry_connect::ServerAddress;
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::Type;
use postgres::{Client, Row, Statement};

use crate::layout::{self, Catalog, Column, Layout};
use crate::rows::{
    with_order_columns, Assembled, Cell, Dialect, Parts, Query, RowStream, Tables, WithStreams,
};
use crate::spool::{side_by_side, sort_each, Budget, Cut};
use crate::{Description, Error};

/// Rows per `FETCH`.
const FETCH_ROWS: usize = 5000;

const DIALECT: Dialect = Dialect {
    quote: '"',
    binary: " COLLATE \"C\"",
};

/// The types read as they are; any other is read as its text (`::text`).
const NATIVE: [&str; 15] = [
    "bool",
    "int2",
    "int4",
    "int8",
    "float4",
    "float8",
    "text",
    "varchar",
    "bpchar",
    "name",
    "citext",
    "uuid",
    "bytea",
    "timestamptz",
    "timestamp",
];

/// Types compared byte by byte only with `COLLATE "C"`.
const TEXT: [&str; 5] = ["text", "varchar", "bpchar", "name", "citext"];

/// An Identity database on a PostgreSQL server.
pub struct PostgresSource {
    conn: PgTables,
    children: Option<PgTables>,
    layout: Layout,
    description: Description,
}

struct PgTables {
    client: Client,
    schema: String,
    /// Per table, per column, the type's name (`pg_type.typname`).
    types: HashMap<String, HashMap<String, String>>,
    location: String,
    cursors: usize,
    /// A private folder for the runs of tables sorted here.
    scratch: std::path::PathBuf,
}

fn begin(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
}

impl PostgresSource {
    /// Connects to `address`, begins the snapshot and resolves the Identity layout in its
    /// schema (`public` unless the address names one). Tables read whole are sorted here,
    /// in runs spilled into `scratch`.
    pub fn open(
        address: &ServerAddress,
        scratch: &std::path::Path,
    ) -> Result<PostgresSource, Error> {
        let location = format!(
            "postgres://{}:{}/{}",
            address.host, address.port, address.database
        );
        let open_err = |message: String| Error::Open {
            location: location.clone(),
            message,
        };
        let mut client = ferry_connect::postgres::connect(address).map_err(|e| match e {
            ferry_connect::Error::Connect { message, .. } => open_err(message),
            other => open_err(other.to_string()),
        })?;
        let pg = |e: postgres::Error| open_err(ferry_connect::postgres::explain(&e));
        begin(&mut client).map_err(pg)?;
        let version: String = client
            .query_one("SELECT current_setting('server_version')", &[])
            .map_err(pg)?
            .get(0);
        let schema = address.schema.clone().unwrap_or_else(|| "public".into());
        let (catalog, types) = read_catalog(&mut client, &schema).map_err(pg)?;
        let layout = match layout::resolve_layout(&catalog) {
            Ok(l) => l,
            Err(m) => {
                let elsewhere: Vec<String> = client
                    .query(
                        "SELECT DISTINCT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                         WHERE lower(c.relname) IN ('aspnetusers', 'asp_net_users') AND n.nspname <> $1 ORDER BY 1",
                        &[&schema],
                    )
                    .map_err(pg)?
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect();
                let hint = if elsewhere.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (in schema `{schema}`; the users table is in schema {}: add ?schema=NAME to the URL, or Search Path=NAME to the connection string)",
                        elsewhere
                            .iter()
                            .map(|s| format!("`{s}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(Error::NotIdentity {
                    location,
                    missing: format!("{}{hint}", m.0),
                });
            }
        };
        let mut notes = Vec::new();
        // A second connection in the same snapshot, for the child tables.
        let children = match second_connection(&mut client, address) {
            Ok(c) => Some(c),
            Err(why) => {
                // A failed statement aborts the transaction: begin it again.
                client.batch_execute("ROLLBACK").map_err(pg)?;
                begin(&mut client).map_err(pg)?;
                notes.push(format!("reading every table on one connection ({why})"));
                None
            }
        };
        let mut description = Description::of(
            "postgres",
            location.clone(),
            &layout,
            catalog.migrations.clone(),
            Some(format!("PostgreSQL {version}")),
        );
        description.notes = notes;
        let tables = |client| PgTables {
            client,
            schema: schema.clone(),
            types: types.clone(),
            location: location.clone(),
            cursors: 0,
            scratch: scratch.to_path_buf(),
        };
        Ok(PostgresSource {
            conn: tables(client),
            children: children.map(tables),
            layout,
            description,
        })
    }

    /// The resolved layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// A connection whose transaction sees the snapshot of `first`'s.
fn second_connection(first: &mut Client, address: &ServerAddress) -> Result<Client, String> {
    let snapshot: String = first
        .query_one("SELECT pg_export_snapshot()", &[])
        .map_err(|e| ferry_connect::postgres::explain(&e))?
        .get(0);
    let mut second = ferry_connect::postgres::connect(address).map_err(|e| e.to_string())?;
    begin(&mut second).map_err(|e| ferry_connect::postgres::explain(&e))?;
    second
        .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
        .map_err(|e| ferry_connect::postgres::explain(&e))?;
    Ok(second)
}

type Types = HashMap<String, HashMap<String, String>>;

/// The tables and columns of `schema`, from `pg_catalog` (which, unlike
/// information_schema, lists the tables the user may not read, so that a missing
/// privilege is reported as such), and EF's migration history.
fn read_catalog(client: &mut Client, schema: &str) -> Result<(Catalog, Types), postgres::Error> {
    let rows = client.query(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum",
        &[&schema],
    )?;
    let mut catalog = Catalog::default();
    let mut types: Types = HashMap::new();
    for row in rows {
        let (table, column, decl, typname): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        types
            .entry(table.clone())
            .or_default()
            .insert(column.clone(), typname);
        match catalog.tables.last_mut() {
            Some((t, cols)) if *t == table => cols.push(Column {
                name: column,
                decl_type: decl,
            }),
            _ => catalog.tables.push((
                table,
                vec![Column {
                    name: column,
                    decl_type: decl,
                }],
            )),
        }
    }
    if let Some((table, id, version)) = layout::migration_history(&catalog) {
        let sql = format!(
            r#"SELECT {id}::text, {version}::text FROM {}.{} ORDER BY {id} COLLATE "C""#,
            DIALECT.quote(schema),
            DIALECT.quote(&table),
            id = DIALECT.quote(&id),
            version = DIALECT.quote(&version),
        );
        catalog.migrations = client
            .query(&sql, &[])?
            .iter()
            .map(|r| layout::Migration {
                table: table.clone(),
                id: r.get(0),
                product_version: r.get(1),
            })
            .collect();
    }
    Ok((catalog, types))
}

impl PgTables {
    fn type_of(&self, table: &str, column: &str) -> &str {
        self.types
            .get(table)
            .and_then(|t| t.get(column))
            .map(String::as_str)
            .unwrap_or("text")
    }

    /// The select list of `columns` of `table`: columns of types the client cannot read
    /// come as text.
    fn column_list(&self, table: &str, columns: &[Option<String>]) -> Vec<String> {
        columns
            .iter()
            .map(|c| match c.as_deref() {
                None => "NULL".to_string(),
                Some(c) if NATIVE.contains(&self.type_of(table, c)) => DIALECT.quote(c),
                Some(c) => format!("{}::text", DIALECT.quote(c)),
            })
            .collect()
    }

    /// `q` without `ORDER BY`, to be sorted here, with the positions of its order columns
    /// (appended when it does not select them).
    fn select_unordered(&self, q: &Query) -> (String, Vec<usize>) {
        let (columns, order) = with_order_columns(q);
        let sql = format!(
            "SELECT {} FROM {}.{}",
            self.column_list(&q.table, &columns).join(", "),
            DIALECT.quote(&self.schema),
            DIALECT.quote(&q.table),
        );
        (sql, order)
    }

    /// The rows of `q`, read in storage order and sorted here.
    fn sorted(&mut self, q: &Query, budget: &Budget) -> Result<Cut, Error> {
        let (sql, order) = self.select_unordered(q);
        let mut sorter = budget.sorter(&self.scratch, order);
        let err = |e: postgres::Error| Error::Query {
            location: self.location.clone(),
            table: q.table.clone(),
            cause: ferry_connect::postgres::explain(&e).into(),
        };
        let mut rows = self
            .client
            .query_raw(
                &sql,
                std::iter::empty::<&(dyn postgres::types::ToSql + Sync)>(),
            )
            .map_err(err)?;
        let mut decoders: Option<Vec<Decode>> = None;
        let mut row = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let decoders = decoders
                .get_or_insert_with(|| r.columns().iter().map(|c| decoder(c.type_())).collect());
            row.clear();
            for (i, d) in decoders.iter().enumerate() {
                row.push(cell(&r, i, *d).map_err(err)?);
            }
            sorter.push(&row)?;
        }
        Ok(Cut::new(sorter.finish()?, q))
    }

    /// The statement of `q`: columns of types the client cannot read come as text, and
    /// text order columns sort byte by byte.
    fn select(&self, q: &Query) -> String {
        let columns = self.column_list(&q.table, &q.columns);
        let order: Vec<String> = q
            .order
            .iter()
            .map(|c| {
                if TEXT.contains(&self.type_of(&q.table, c)) {
                    format!("{} COLLATE \"C\"", DIALECT.quote(c))
                } else {
                    DIALECT.quote(c)
                }
            })
            .collect();
        let mut sql = format!(
            "SELECT {} FROM {}.{} ORDER BY {}",
            columns.join(", "),
            DIALECT.quote(&self.schema),
            DIALECT.quote(&q.table),
            order.join(", ")
        );
        if let Some(n) = q.limit {
            // SQL engines take a signed 64-bit limit.
            sql.push_str(&format!(" LIMIT {}", n.min(i64::MAX as u64)));
        }
        sql
    }

    fn query_err<'a>(&'a self, table: &'a str) -> impl Fn(postgres::Error) -> Error + 'a {
        move |e| Error::Query {
            location: self.location.clone(),
            table: table.to_string(),
            cause: ferry_connect::postgres::explain(&e).into(),
        }
    }
}

/// How a column's values become cells.
#[derive(Clone, Copy)]
enum Decode {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Uuid,
    Bytes,
    Timestamptz,
    Timestamp,
}

fn decoder(t: &Type) -> Decode {
    match *t {
        Type::BOOL => Decode::Bool,
        Type::INT2 => Decode::Int2,
        Type::INT4 => Decode::Int4,
        Type::INT8 => Decode::Int8,
        Type::FLOAT4 => Decode::Float4,
        Type::FLOAT8 => Decode::Float8,
        Type::UUID => Decode::Uuid,
        Type::BYTEA => Decode::Bytes,
        Type::TIMESTAMPTZ => Decode::Timestamptz,
        Type::TIMESTAMP => Decode::Timestamp,
        _ => Decode::Text,
    }
}

fn cell(row: &Row, i: usize, d: Decode) -> Result<Cell, postgres::Error> {
    fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Cell) -> Cell {
        v.map_or(Cell::Null, f)
    }
    Ok(match d {
        Decode::Bool => opt(row.try_get::<_, Option<bool>>(i)?, Cell::Bool),
        Decode::Int2 => opt(row.try_get::<_, Option<i16>>(i)?, |v| {
            Cell::Integer(v.into())
        }),
        Decode::Int4 => opt(row.try_get::<_, Option<i32>>(i)?, |v| {
            Cell::Integer(v.into())
        }),
        Decode::Int8 => opt(row.try_get::<_, Option<i64>>(i)?, Cell::Integer),
        Decode::Float4 => opt(row.try_get::<_, Option<f32>>(i)?, |v| Cell::Real(v.into())),
        Decode::Float8 => opt(row.try_get::<_, Option<f64>>(i)?, Cell::Real),
        Decode::Text => opt(row.try_get::<_, Option<String>>(i)?, Cell::Text),
        // Npgsql maps `Guid` to `uuid`; the application's text of it is
        // `Guid.ToString()`: lower case, hyphenated, which is also uuid's order.
        Decode::Uuid => opt(row.try_get::<_, Option<uuid::Uuid>>(i)?, |u| {
            Cell::Text(u.hyphenated().to_string())
        }),
        Decode::Bytes => opt(row.try_get::<_, Option<Vec<u8>>>(i)?, Cell::Bytes),
        Decode::Timestamptz => opt(
            row.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)?,
            |t| Cell::Time(t.fixed_offset()),
        ),
        Decode::Timestamp => opt(
            row.try_get::<_, Option<chrono::NaiveDateTime>>(i)?,
            Cell::Naive,
        ),
    })
}

/// The rows of one cursor, fetched a batch at a time on the shared connection.
struct PgRows<'c> {
    client: &'c RefCell<&'c mut Client>,
    fetch: Statement,
    batch: Vec<Row>,
    next: usize,
    done: bool,
    decoders: Option<Vec<Decode>>,
    table: &'c str,
    location: &'c str,
}

impl RowStream for PgRows<'_> {
    fn next_row(&mut self, row: &mut Vec<Cell>) -> Result<bool, Error> {
        let err = |e: postgres::Error| Error::Query {
            location: self.location.to_string(),
            table: self.table.to_string(),
            cause: ferry_connect::postgres::explain(&e).into(),
        };
        if self.next == self.batch.len() {
            if self.done {
                return Ok(false);
            }
            self.batch = self
                .client
                .borrow_mut()
                .query(&self.fetch, &[])
                .map_err(err)?;
            self.next = 0;
            if self.batch.len() < FETCH_ROWS {
                self.done = true;
            }
            if self.batch.is_empty() {
                return Ok(false);
            }
        }
        let r = &self.batch[self.next];
        self.next += 1;
        let decoders = self
            .decoders
            .get_or_insert_with(|| r.columns().iter().map(|c| decoder(c.type_())).collect());
        row.clear();
        for (i, d) in decoders.iter().enumerate() {
            row.push(cell(r, i, *d).map_err(err)?);
        }
        Ok(true)
    }
}

impl Tables for PgTables {
    fn stream(&mut self, queries: &[Query], f: &mut WithStreams<'_>) -> Result<(), Error> {
        // A table read whole is read in storage order, as a dump reads it, and sorted here:
        // an ORDER BY costs the server a sort (text keys in `COLLATE "C"`) or a heap fetch
        // per row through the key's index, on the same cores ferry runs on.
        let mut sorted = sort_each(queries, |_, q, budget| {
            Ok(if q.whole {
                Some(self.sorted(q, budget)?)
            } else {
                None
            })
        })?;
        let live: Vec<&Query> = queries
            .iter()
            .zip(&sorted)
            .filter(|(_, s)| s.is_none())
            .map(|(q, _)| q)
            .collect();
        let mut names = Vec::with_capacity(live.len());
        for q in live.iter().copied() {
            self.cursors += 1;
            let name = format!("ferry_{}", self.cursors);
            let sql = format!("DECLARE {name} NO SCROLL CURSOR FOR {}", self.select(q));
            self.client
                .batch_execute(&sql)
                .map_err(self.query_err(&q.table))?;
            names.push(name);
        }
        let mut fetches = Vec::with_capacity(live.len());
        for (name, q) in names.iter().zip(live.iter().copied()) {
            let fetch = self
                .client
                .prepare(&format!("FETCH FORWARD {FETCH_ROWS} FROM {name}"))
                .map_err(self.query_err(&q.table))?;
            fetches.push(fetch);
        }
        let location = self.location.clone();
        let result = {
            let client = RefCell::new(&mut self.client);
            let mut streams: Vec<PgRows<'_>> = fetches
                .into_iter()
                .zip(live.iter().copied())
                .map(|(fetch, q)| PgRows {
                    client: &client,
                    fetch,
                    batch: Vec::new(),
                    next: 0,
                    done: false,
                    decoders: None,
                    table: &q.table,
                    location: &location,
                })
                .collect();
            let live = streams.iter_mut().map(|s| s as &mut dyn RowStream);
            f(&mut side_by_side(&mut sorted, live))
        };
        for name in names {
            // A failed statement aborted the transaction; closing is then moot.
            let _ = self.client.batch_execute(&format!("CLOSE {name}"));
        }
        result
    }

    fn count(&mut self, table: &str) -> Result<u64, Error> {
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            DIALECT.quote(&self.schema),
            DIALECT.quote(table)
        );
        let n: i64 = self
            .client
            .query_one(&sql, &[])
            .map_err(self.query_err(table))?
            .get(0);
        Ok(n as u64)
    }
}

impl Assembled for PostgresSource {
    fn described(&self) -> &Description {
        &self.description
    }

    fn parts(&mut self) -> Parts<'_> {
        Parts {
            main: &mut self.conn,
            children: self.children.as_mut().map(|c| c as &mut dyn Tables),
            layout: &self.layout,
        }
    }
}
