//! What an engine gives the assembler: rows of a table, the columns asked for, ordered by
//! a key, as engine-neutral [`Cell`]s.
//!
//! An engine (SQLite, PostgreSQL, MySQL, CSV dumps) implements [`Tables`]: it runs a set of
//! [`Query`]s at once, inside its snapshot, and hands the assembler one [`RowStream`] per
//! query, so that the assembler can merge them side by side. SQL engines build their
//! statements with [`select`] and their [`Dialect`]; they differ only in connection,
//! snapshot, catalog and dialect.

use chrono::{DateTime, FixedOffset, NaiveDateTime};

use crate::Error;

/// One value of a row, as the engine typed it.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// NULL (or a column the table lacks).
    Null,
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A boolean (engines with a boolean type).
    Bool(bool),
    /// A time with its offset (`timestamp with time zone`, `datetimeoffset`).
    Time(DateTime<FixedOffset>),
    /// A time without an offset (`datetime`, `timestamp`), read as UTC.
    Naive(NaiveDateTime),
}

/// The rows of one query, in the query's order. The first cell of each row is its key.
pub trait RowStream {
    /// Fills `row` with the next row; `false` at the end.
    fn next_row(&mut self, row: &mut Vec<Cell>) -> Result<bool, Error>;
}

/// Rows of `table`: the `columns` asked for (`None` for a column the table lacks, read as
/// NULL), ordered by `order` (the key first, in a binary collation), at most `limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The table, as named in the source.
    pub table: String,
    /// The columns, as named in the source; the first is the key.
    pub columns: Vec<Option<String>>,
    /// The columns to order by, key first.
    pub order: Vec<String>,
    /// At most this many rows.
    pub limit: Option<u64>,
    /// Every row of the table is read (no `--limit` stops the read early): an engine whose
    /// ordered read is slower than a scan may scan the table in storage order and sort
    /// the rows itself (see [`crate::spool::Sorter`]).
    pub whole: bool,
}

/// A function given one stream per query, in the order of the queries.
pub type WithStreams<'f> = dyn FnMut(&mut [&mut dyn RowStream]) -> Result<(), Error> + 'f;

/// An engine's tables, inside one snapshot.
pub trait Tables: Send {
    /// Runs `queries` at once and calls `f` with one stream per query.
    fn stream(&mut self, queries: &[Query], f: &mut WithStreams<'_>) -> Result<(), Error>;

    /// The number of rows of `table`.
    fn count(&mut self, table: &str) -> Result<u64, Error>;
}

/// What an engine's source is made of: its tables (and, when the engine has a second
/// connection in the same snapshot, the tables to read the children on), and the
/// resolved layout. Every engine's source is an [`crate::IdentitySource`] through it.
pub struct Parts<'a> {
    /// The tables users and roles are read from.
    pub main: &'a mut dyn Tables,
    /// The same tables on a second connection in the same snapshot, for the children.
    pub children: Option<&'a mut dyn Tables>,
    /// The layout.
    pub layout: &'a crate::Layout,
}

/// A source read by the engine-neutral assembler.
pub trait Assembled {
    /// What the source is.
    fn described(&self) -> &crate::Description;
    /// Its tables and layout.
    fn parts(&mut self) -> Parts<'_>;
}

/// How a SQL engine quotes names and orders text byte by byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialect {
    /// The quote around identifiers (`"` or a backtick).
    pub quote: char,
    /// What follows a text column in ORDER BY to compare it byte by byte, e.g.
    /// ` COLLATE BINARY`; empty when the column's own order is already binary.
    pub binary: &'static str,
}

impl Dialect {
    /// SQLite.
    pub const SQLITE: Dialect = Dialect {
        quote: '"',
        binary: " COLLATE BINARY",
    };

    /// Quotes an identifier.
    pub fn quote(&self, ident: &str) -> String {
        let q = self.quote;
        format!("{q}{}{q}", ident.replace(q, &format!("{q}{q}")))
    }
}

/// The SELECT statement of `q` in `dialect`.
pub fn select(dialect: &Dialect, q: &Query) -> String {
    let columns: Vec<String> = q
        .columns
        .iter()
        .map(|c| {
            c.as_deref()
                .map_or("NULL".to_string(), |c| dialect.quote(c))
        })
        .collect();
    let order: Vec<String> = q
        .order
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let binary = if i == 0 { dialect.binary } else { "" };
            format!("{}{binary}", dialect.quote(c))
        })
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        dialect.quote(&q.table),
        order.join(", ")
    );
    if let Some(n) = q.limit {
        // SQL engines take a signed 64-bit limit.
        sql.push_str(&format!(" LIMIT {}", n.min(i64::MAX as u64)));
    }
    sql
}

/// The columns of `q` with its order columns appended where it does not select them, and
/// the positions of the order columns among them: what a client sorts the rows of a scan by.
pub fn with_order_columns(q: &Query) -> (Vec<Option<String>>, Vec<usize>) {
    let mut columns: Vec<Option<String>> = q.columns.clone();
    let mut order = Vec::with_capacity(q.order.len());
    for o in &q.order {
        match columns
            .iter()
            .position(|c| c.as_deref() == Some(o.as_str()))
        {
            Some(i) => order.push(i),
            None => {
                order.push(columns.len());
                columns.push(Some(o.clone()));
            }
        }
    }
    (columns, order)
}

/// `q` without `ORDER BY` or limit, for a scan in storage order to be sorted by the
/// client (see [`crate::spool::Sorter`]), and the positions of its order columns in a
/// row (see [`with_order_columns`]).
pub fn select_unordered(dialect: &Dialect, q: &Query) -> (String, Vec<usize>) {
    let (columns, order) = with_order_columns(q);
    let list: Vec<String> = columns
        .iter()
        .map(|c| {
            c.as_deref()
                .map_or("NULL".to_string(), |c| dialect.quote(c))
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {}",
        list.join(", "),
        dialect.quote(&q.table)
    );
    (sql, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_quotes_orders_by_the_key_in_binary_and_limits() {
        let q = Query {
            table: "AspNetUserClaims".into(),
            columns: vec![Some("UserId".into()), None, Some("Claim\"Type".into())],
            order: vec!["UserId".into(), "Id".into()],
            limit: Some(10),
            whole: false,
        };
        assert_eq!(
            select(&Dialect::SQLITE, &q),
            r#"SELECT "UserId", NULL, "Claim""Type" FROM "AspNetUserClaims" ORDER BY "UserId" COLLATE BINARY, "Id" LIMIT 10"#
        );
    }
}
