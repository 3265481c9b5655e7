//! Reading an Identity database from a SQLite file, read-only, in one snapshot.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::layout::{self, Catalog, Column, Layout};
use crate::rows::{
    select, select_unordered, Assembled, Cell, Dialect, Parts, Query, RowStream, Tables,
    WithStreams,
};
use crate::snapshot::{self, JournalMode, Snapshot, SnapshotError};
use crate::spool::{side_by_side, sort_each, Budget, CellRef, Cut};
use crate::{Description, Error};

/// An Identity database in a SQLite file.
///
/// The file is opened read-only (`SQLITE_OPEN_READ_ONLY`, `PRAGMA query_only`), and
/// everything is read inside one transaction, so the export sees one consistent
/// snapshot even if the application keeps writing. Nothing is ever written beside the
/// file: a database in WAL mode is read from a private copy of it and its `-wal` (see
/// the `snapshot` module), since SQLite writes a `-shm` beside any WAL database it opens.
pub struct SqliteSource {
    conn: SqliteTables,
    /// A second connection in the same snapshot, for the child tables: users and their
    /// children are read on two threads.
    children: Option<SqliteTables>,
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
    Dialect::SQLITE.quote(ident)
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
            return Err(Error::NotFound {
                location: path.display().to_string(),
            });
        }
        if path.is_dir() {
            return Err(Error::Open {
                location: path.display().to_string(),
                message: "is a folder, not a SQLite database file".into(),
            });
        }
        let mode = snapshot::journal_mode(path).map_err(|e| Error::Open {
            location: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut notes = Vec::new();
        let copy = match mode {
            JournalMode::Wal => {
                let copy = Snapshot::take(path, scratch).map_err(|e| match e {
                    SnapshotError::Io(file, e) => Error::Open {
                        location: path.display().to_string(),
                        message: format!(
                            "cannot copy `{}` to read it without writing beside it: {e}",
                            file.display()
                        ),
                    },
                    SnapshotError::Unsteady => Error::Open {
                        location: path.display().to_string(),
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
        let mut source = SqliteSource::open_file(path, read_from, scratch)?;
        source.description.notes = notes;
        source._copy = copy;
        Ok(source)
    }

    /// Opens `read_from` (the file itself, or its private copy); errors name `path`;
    /// tables sorted here spill into `scratch`.
    fn open_file(path: &Path, read_from: &Path, scratch: &Path) -> Result<SqliteSource, Error> {
        let open_err = |e: rusqlite::Error| Error::Open {
            location: path.display().to_string(),
            message: e.to_string(),
        };
        let not_a_database = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                Error::Open {
                    location: path.display().to_string(),
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
                    location: path.display().to_string(),
                    message: "not a SQLite database".into(),
                }
            }
            e => open_err(e),
        })?;
        let layout = layout::resolve_layout(&catalog).map_err(|m| Error::NotIdentity {
            location: path.display().to_string(),
            missing: m.0,
        })?;
        let location = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let description = Description::of(
            "sqlite",
            location.clone(),
            &layout,
            catalog.migrations.clone(),
            None,
        );
        Ok(SqliteSource {
            conn: SqliteTables {
                conn,
                location: location.clone(),
                scratch: scratch.to_path_buf(),
            },
            children: children.map(|conn| SqliteTables {
                conn,
                location,
                scratch: scratch.to_path_buf(),
            }),
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
    if let Some((table, id, version)) = layout::migration_history(&catalog) {
        let sql = format!(
            "SELECT {}, {} FROM {} ORDER BY {}",
            quote(&id),
            quote(&version),
            quote(&table),
            quote(&id)
        );
        catalog.migrations = conn
            .prepare(&sql)?
            .query_map([], |r| {
                Ok(layout::Migration {
                    table: table.clone(),
                    id: r.get(0)?,
                    product_version: r.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(catalog)
}

fn query_err<'a>(location: &'a str, table: &'a str) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |e| Error::Query {
        location: location.to_string(),
        table: table.to_string(),
        cause: Box::new(e),
    }
}

/// One connection's tables, inside its read transaction.
struct SqliteTables {
    conn: Connection,
    /// The file name, for errors.
    location: String,
    /// A private folder for the runs of tables sorted here.
    scratch: PathBuf,
}

/// The rows of one SQLite statement as cells.
struct SqliteRows<'s> {
    rows: rusqlite::Rows<'s>,
    columns: usize,
    table: &'s str,
    location: &'s str,
}

/// The cell of one SQLite value, borrowed; text that is not UTF-8 is an error naming the
/// table and column.
fn cell_ref<'v>(
    v: ValueRef<'v>,
    row: &rusqlite::Row<'_>,
    i: usize,
    table: &str,
) -> Result<CellRef<'v>, Error> {
    Ok(match v {
        ValueRef::Null => CellRef::Null,
        ValueRef::Integer(i) => CellRef::Integer(i),
        ValueRef::Real(f) => CellRef::Real(f),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(t) => CellRef::Text(t),
            Err(_) => {
                return Err(Error::Corrupt {
                    table: table.to_string(),
                    column: row
                        .as_ref()
                        .column_name(i)
                        .map(str::to_string)
                        .unwrap_or_default(),
                    row: "?".into(),
                    message: "text is not valid UTF-8".into(),
                })
            }
        },
        ValueRef::Blob(b) => CellRef::Bytes(b),
    })
}

impl RowStream for SqliteRows<'_> {
    fn next_row(&mut self, row: &mut Vec<Cell>) -> Result<bool, Error> {
        let Some(r) = self
            .rows
            .next()
            .map_err(query_err(self.location, self.table))?
        else {
            return Ok(false);
        };
        row.clear();
        for i in 0..self.columns {
            let v = r.get_ref(i).map_err(query_err(self.location, self.table))?;
            row.push(cell_ref(v, r, i, self.table)?.to_cell());
        }
        Ok(true)
    }
}

impl SqliteTables {
    /// Whether SQLite reads `sql` in the order it asks for without a lookup into the
    /// table per row: by scanning the table (an `INTEGER PRIMARY KEY` or a `WITHOUT
    /// ROWID` key) or a covering index. Otherwise it steps through an index and looks
    /// every row up in the table (rows an application inserted over the years, in an
    /// order unrelated to their keys: a random read per row), or sorts.
    fn reads_in_order(&self, sql: &str, table: &str) -> Result<bool, Error> {
        let mut plan = self
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .map_err(query_err(&self.location, table))?;
        let details: Vec<String> = plan
            .query_map([], |r| r.get(3))
            .map_err(query_err(&self.location, table))?
            .collect::<Result<_, _>>()
            .map_err(query_err(&self.location, table))?;
        Ok(!details
            .iter()
            .any(|d| d.contains("USING INDEX") || d.contains("TEMP B-TREE")))
    }

    /// The rows of `q`, read in storage order and sorted here.
    fn sorted(&self, q: &Query, budget: &Budget) -> Result<Cut, Error> {
        let (sql, order) = select_unordered(&Dialect::SQLITE, q);
        let mut sorter = budget.sorter(&self.scratch, order);
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(query_err(&self.location, &q.table))?;
        let columns = stmt.column_count();
        let mut rows = stmt
            .query([])
            .map_err(query_err(&self.location, &q.table))?;
        // The cells of a row, borrowed from it: on the stack for the tables of Identity
        // (a dozen columns at most), not allocated per row.
        const ON_STACK: usize = 32;
        while let Some(r) = rows.next().map_err(query_err(&self.location, &q.table))? {
            let cell = |i| {
                let v = r.get_ref(i).map_err(query_err(&self.location, &q.table))?;
                cell_ref(v, r, i, &q.table)
            };
            if columns <= ON_STACK {
                let mut cells = [CellRef::Null; ON_STACK];
                for (i, c) in cells.iter_mut().enumerate().take(columns) {
                    *c = cell(i)?;
                }
                sorter.push_refs(&cells[..columns])?;
            } else {
                let cells = (0..columns).map(cell).collect::<Result<Vec<_>, _>>()?;
                sorter.push_refs(&cells)?;
            }
        }
        Ok(Cut::new(sorter.finish()?, q))
    }
}

impl Tables for SqliteTables {
    fn stream(&mut self, queries: &[Query], f: &mut WithStreams<'_>) -> Result<(), Error> {
        // A table read whole whose order costs a lookup per row is scanned in storage
        // order and sorted here: on a 1,000,000-user database, reading the claims by
        // user through the index took 3.3 s in SQLite alone, the scan 0.4 s.
        let mut sorted = sort_each(queries, |_, q, budget| {
            let sql = select(&Dialect::SQLITE, q);
            Ok(if q.whole && !self.reads_in_order(&sql, &q.table)? {
                Some(self.sorted(q, budget)?)
            } else {
                None
            })
        })?;
        let mut stmts = Vec::with_capacity(queries.len());
        for (q, s) in queries.iter().zip(&sorted) {
            if s.is_none() {
                let stmt = self
                    .conn
                    .prepare(&select(&Dialect::SQLITE, q))
                    .map_err(query_err(&self.location, &q.table))?;
                stmts.push((stmt, q));
            }
        }
        let mut live = Vec::with_capacity(stmts.len());
        for (stmt, q) in stmts.iter_mut() {
            let columns = stmt.column_count();
            live.push(SqliteRows {
                rows: stmt
                    .query([])
                    .map_err(query_err(&self.location, &q.table))?,
                columns,
                table: &q.table,
                location: &self.location,
            });
        }
        let live = live.iter_mut().map(|s| s as &mut dyn RowStream);
        f(&mut side_by_side(&mut sorted, live))
    }

    fn count(&mut self, table: &str) -> Result<u64, Error> {
        self.conn
            .query_row(
                &format!("SELECT COUNT(*) FROM {}", Dialect::SQLITE.quote(table)),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(query_err(&self.location, table))
    }
}

impl Assembled for SqliteSource {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentitySource as _;
    use ferry_bundle::manifest::Counts;
    use ferry_bundle::UserRecord;
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
    fn a_whole_read_sorted_here_gives_what_the_ordered_read_gives() {
        use ferry_fixtures::KeyType;
        let generations = [
            Generation::Classic2,
            Generation::CoreV1,
            Generation::CoreV2,
            Generation::CoreV3,
            Generation::CoreV3Preview,
        ];
        for (n, generation) in generations.into_iter().enumerate() {
            for key_type in [KeyType::String, KeyType::Integer, KeyType::Guid] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("app.db");
                let opts = Options {
                    users: 200,
                    generation,
                    key_type,
                    real_world: true,
                    snake_case: n % 2 == 1,
                    ..Options::default()
                };
                generate(&path, &opts, None).unwrap();
                let scratch = tempfile::tempdir().unwrap();
                let mut source = SqliteSource::open_in(&path, scratch.path()).unwrap();
                // Without a limit, tables whose order costs a lookup per row are scanned
                // and sorted here; with one, SQLite reads them through their indexes.
                let users = source.layout.users.name.clone();
                let ordered = format!(
                    "SELECT * FROM {} ORDER BY {}",
                    quote(&users),
                    quote(source.layout.users.column(0).unwrap())
                );
                let in_order = source.conn.reads_in_order(&ordered, &users).unwrap();
                // (Classic Identity keeps text keys whatever the fixture's key type.)
                let integer_key =
                    key_type == KeyType::Integer && generation != Generation::Classic2;
                assert_eq!(
                    in_order, integer_key,
                    "{generation:?} {key_type:?}: only an INTEGER PRIMARY KEY is the table's own order"
                );
                let (whole, whole_counts) = read_all(&mut source, None);
                let (limited, limited_counts) = read_all(&mut source, Some(u64::MAX));
                assert_eq!(whole.len(), limited.len());
                assert_eq!(whole, limited, "{generation:?} {key_type:?}");
                assert_eq!(whole_counts, limited_counts);
                assert_eq!(
                    std::fs::read_dir(scratch.path()).unwrap().count(),
                    0,
                    "no run is left behind"
                );
            }
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_an_error_in_a_sorted_table_too() {
        let dir = tempfile::tempdir().unwrap();
        let db = fixture(dir.path(), 20);
        let conn = Connection::open(&db).unwrap();
        conn.execute(
            r#"UPDATE "AspNetUserClaims" SET "ClaimValue" = CAST(X'FF61' AS TEXT) WHERE "Id" = 3"#,
            [],
        )
        .unwrap();
        drop(conn);
        for limit in [None, Some(1000)] {
            let mut source = SqliteSource::open(&db).unwrap();
            let err = source.users(limit, &mut |_| Ok(())).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("AspNetUserClaims")
                    && text.contains("ClaimValue")
                    && text.contains("UTF-8"),
                "{limit:?}: {text}"
            );
        }
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
