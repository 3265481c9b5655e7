//! CSV table dumps (`csv:DIR`): one file per table, named after it (`AspNetUsers.csv`,
//! or `asp_net_users.csv`), with a header row of column names, as `psql \copy … CSV
//! HEADER`, PowerShell's `Export-Csv` or any tool writes them. This is how ferry reads
//! what it cannot reach directly, SQL Server first.
//!
//! - The generation is told from the headers, as from a database's columns.
//! - An optional `columns.csv` (`table_name,column_name,data_type`: a dump of
//!   `information_schema.columns`) gives the column types: integers, booleans, reals and
//!   bytes are then read as such, and custom columns keep their types in `Extra`.
//!   Without it every value is text, except keys that are all integers.
//! - An empty field is NULL: a CSV dump cannot tell an empty string from NULL.
//! - Bytes are hex (`\x0102…` as psql writes `bytea`, `0x0102…` as SQL Server's
//!   `CONVERT(varchar(max), …, 1)` writes `varbinary`).
//! - UTF-8, with or without a byte-order mark; `,`, `;`, tab or `|` as the delimiter, told
//!   from the header.
//! - The files need not be sorted: each table is put into key order by an external sort
//!   (sorted runs of bounded size in the unfinished bundle's private folder, merged on
//!   read), so memory stays flat however large the dump.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};

use crate::key::KeyType;
use crate::layout::{self, Catalog, Column, Layout};
use crate::rows::{Assembled, Cell, Parts, Query, Tables, WithStreams};
use crate::spool::{side_by_side, sort_each, Budget, Cut, Sorted};
use crate::values::{parse_bool_text, parse_hex_bytes};
use crate::{Description, Error};

/// The file of column types.
pub const COLUMNS_FILE: &str = "columns.csv";

/// A folder of CSV table dumps.
pub struct CsvSource {
    tables: CsvTables,
    layout: Layout,
    description: Description,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Integer,
    Bool,
    Real,
    Bytes,
    Text,
}

fn type_of(decl: &str) -> Type {
    let d = decl.trim().to_ascii_lowercase();
    if d == "bit" || d.starts_with("bool") || d == "tinyint(1)" {
        Type::Bool
    } else if d.contains("int") || d == "serial" || d == "bigserial" {
        Type::Integer
    } else if ["real", "float", "double"].iter().any(|t| d.contains(t)) {
        Type::Real
    } else if ["binary", "bytea", "blob", "image"]
        .iter()
        .any(|t| d.contains(t))
    {
        Type::Bytes
    } else {
        Type::Text
    }
}

struct CsvFile {
    path: PathBuf,
    delimiter: u8,
    header: Vec<String>,
}

struct CsvTables {
    files: HashMap<String, CsvFile>,
    /// Per table, per column (lower case), the declared type.
    types: HashMap<String, HashMap<String, Type>>,
    /// Whether keys are integers (read as such, so that they sort as numbers).
    integer_keys: bool,
    location: String,
    scratch: PathBuf,
}

fn open_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Open {
        location: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads the header of `path`: its delimiter and column names.
fn header(path: &Path) -> Result<CsvFile, Error> {
    let mut file = File::open(path).map_err(|e| open_err(path, e.to_string()))?;
    let mut start = [0u8; 3];
    let n = file
        .read(&mut start)
        .map_err(|e| open_err(path, e.to_string()))?;
    if n >= 2 && (start[..2] == [0xFF, 0xFE] || start[..2] == [0xFE, 0xFF]) {
        return Err(open_err(
            path,
            "is UTF-16; write the dump as UTF-8 (Export-Csv -Encoding utf8, sqlcmd -f 65001, bcp -C 65001)",
        ));
    }
    let reader = BufReader::new(File::open(path).map_err(|e| open_err(path, e.to_string()))?);
    let Some(first) = reader.lines().next() else {
        return Err(open_err(
            path,
            "is empty: a dump needs a header row of column names",
        ));
    };
    let first = first.map_err(|e| open_err(path, format!("line 1: {e}")))?;
    let first = first.trim_start_matches('\u{feff}');
    let delimiter = [b',', b';', b'\t', b'|']
        .into_iter()
        .max_by_key(|d| first.bytes().filter(|b| b == d).count())
        .unwrap_or(b',');
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_reader(first.as_bytes());
    let header = reader
        .records()
        .next()
        .transpose()
        .map_err(|e| open_err(path, format!("line 1: {e}")))?
        .map(|r| r.iter().map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    Ok(CsvFile {
        path: path.to_path_buf(),
        delimiter,
        header,
    })
}

fn reader(f: &CsvFile) -> Result<csv::Reader<Box<dyn std::io::Read + Send>>, Error> {
    let mut file = BufReader::with_capacity(
        256 * 1024,
        File::open(&f.path).map_err(|e| open_err(&f.path, e.to_string()))?,
    );
    // Skip a byte-order mark.
    if file
        .fill_buf()
        .map_err(|e| open_err(&f.path, e.to_string()))?
        .starts_with(b"\xEF\xBB\xBF")
    {
        file.consume(3);
    }
    Ok(csv::ReaderBuilder::new()
        .delimiter(f.delimiter)
        .has_headers(true)
        .flexible(false)
        .from_reader(Box::new(file) as Box<dyn std::io::Read + Send>))
}

impl CsvSource {
    /// Opens the dumps in `dir`; `scratch` is a private folder for the sort's runs.
    pub fn open(dir: &Path, scratch: &Path) -> Result<CsvSource, Error> {
        if !dir.is_dir() {
            return Err(if dir.exists() {
                open_err(
                    dir,
                    "is not a folder; csv: names a folder of one CSV file per table",
                )
            } else {
                Error::NotFound {
                    location: dir.display().to_string(),
                }
            });
        }
        let mut files = HashMap::new();
        let mut types_file = None;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| open_err(dir, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("csv")))
            .collect();
        entries.sort();
        for path in entries {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if stem.eq_ignore_ascii_case("columns") {
                types_file = Some(path);
                continue;
            }
            files.insert(stem, header(&path)?);
        }
        let types = match &types_file {
            Some(p) => read_types(p)?,
            None => HashMap::new(),
        };
        let mut catalog = Catalog::default();
        let mut names: Vec<&String> = files.keys().collect();
        names.sort();
        for name in names {
            let declared = types.get(&name.to_ascii_lowercase());
            let columns = files[name]
                .header
                .iter()
                .map(|c| Column {
                    name: c.clone(),
                    decl_type: declared
                        .and_then(|t| t.get(&c.to_ascii_lowercase()))
                        .map(|(decl, _)| decl.clone())
                        .unwrap_or_default(),
                })
                .collect();
            catalog.tables.push((name.clone(), columns));
        }
        let mut tables = CsvTables {
            files,
            types: types
                .into_iter()
                .map(|(t, cols)| (t, cols.into_iter().map(|(c, (_, ty))| (c, ty)).collect()))
                .collect(),
            integer_keys: false,
            location: dir.display().to_string(),
            scratch: scratch.to_path_buf(),
        };
        catalog.migrations = tables.migrations(&catalog);
        let mut layout = layout::resolve_layout(&catalog).map_err(|m| Error::NotIdentity {
            location: dir.display().to_string(),
            missing: m.0,
        })?;
        let mut notes = Vec::new();
        if types_file.is_none() {
            notes.push(format!(
                "no {COLUMNS_FILE} in `{}`: values are read as text (custom columns in Extra as strings); dump information_schema.columns there to keep their types",
                dir.display()
            ));
            // Integer keys sort as numbers: tell them from the users' ids.
            if tables.all_integer(&layout.users.name, layout.users.column(0).expect("Id"))? {
                layout.key_type = KeyType::Integer;
            }
        }
        tables.integer_keys = layout.key_type == KeyType::Integer;
        let mut description = Description::of(
            "csv",
            dir.display().to_string(),
            &layout,
            catalog.migrations.clone(),
            None,
        );
        description.notes = notes;
        Ok(CsvSource {
            tables,
            layout,
            description,
        })
    }

    /// The resolved layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// Per table (lower case), per column (lower case), the declared type and how it reads.
type Declared = HashMap<String, HashMap<String, (String, Type)>>;

/// `columns.csv`: the declared types.
fn read_types(path: &Path) -> Result<Declared, Error> {
    let f = header(path)?;
    let find = |name: &str| f.header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(t), Some(c), Some(d)) = (find("table_name"), find("column_name"), find("data_type"))
    else {
        return Err(open_err(
            path,
            "needs the columns table_name, column_name and data_type (a dump of information_schema.columns)",
        ));
    };
    let mut out: Declared = HashMap::new();
    for (i, record) in reader(&f)?.records().enumerate() {
        let record = record.map_err(|e| open_err(path, format!("line {}: {e}", i + 2)))?;
        let decl = record.get(d).unwrap_or_default().to_string();
        out.entry(record.get(t).unwrap_or_default().to_ascii_lowercase())
            .or_default()
            .insert(
                record.get(c).unwrap_or_default().to_ascii_lowercase(),
                (decl.clone(), type_of(&decl)),
            );
    }
    Ok(out)
}

fn is_key_column(column: &str) -> bool {
    ["id", "userid", "user_id", "roleid", "role_id"].contains(&column.to_ascii_lowercase().as_str())
}

impl CsvTables {
    fn file(&self, table: &str) -> Result<&CsvFile, Error> {
        self.files.get(table).ok_or_else(|| Error::Query {
            location: self.location.clone(),
            table: table.to_string(),
            cause: "no such file".into(),
        })
    }

    fn migrations(&self, catalog: &Catalog) -> Vec<layout::Migration> {
        let Some((table, id, version)) = layout::migration_history(catalog) else {
            return Vec::new();
        };
        let f = &self.files[&table];
        let find = |c: &str| f.header.iter().position(|h| h == c);
        let (Some(id), Some(version)) = (find(&id), find(&version)) else {
            return Vec::new();
        };
        let Ok(mut r) = reader(f) else {
            return Vec::new();
        };
        let mut rows: Vec<layout::Migration> = r
            .records()
            .filter_map(Result::ok)
            .map(|rec| layout::Migration {
                table: table.clone(),
                id: rec.get(id).unwrap_or_default().to_string(),
                product_version: rec.get(version).unwrap_or_default().to_string(),
            })
            .collect();
        rows.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
        rows
    }

    /// Whether every value of `column` in `table` is an integer.
    fn all_integer(&self, table: &str, column: &str) -> Result<bool, Error> {
        let f = self.file(table)?;
        let Some(i) = f.header.iter().position(|h| h == column) else {
            return Ok(false);
        };
        let mut any = false;
        for (n, record) in reader(f)?.records().enumerate() {
            let record = record.map_err(|e| self.line_error(table, n + 2, e.to_string()))?;
            match record.get(i) {
                Some(v) if v.trim().parse::<i64>().is_ok() => any = true,
                _ => return Ok(false),
            }
        }
        Ok(any)
    }

    fn line_error(&self, table: &str, line: usize, message: String) -> Error {
        Error::Query {
            location: self.location.clone(),
            table: table.to_string(),
            cause: format!("line {line}: {message}").into(),
        }
    }

    /// A field as a cell of the column's type.
    fn cell(&self, ty: Type, key: bool, text: &str) -> Result<Cell, String> {
        if text.is_empty() {
            return Ok(Cell::Null);
        }
        let ty = if key && self.integer_keys {
            Type::Integer
        } else {
            ty
        };
        Ok(match ty {
            Type::Integer => Cell::Integer(
                text.trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not an integer"))?,
            ),
            Type::Bool => Cell::Bool(
                parse_bool_text(text).ok_or_else(|| format!("`{text}` is not a boolean"))?,
            ),
            Type::Real => Cell::Real(
                text.trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not a number"))?,
            ),
            Type::Bytes => match parse_hex_bytes(text) {
                Some(b) => Cell::Bytes(b),
                None => Cell::Text(text.to_string()),
            },
            Type::Text => Cell::Text(text.to_string()),
        })
    }

    /// The rows of `q`, sorted.
    fn sorted(&self, q: &Query, budget: &Budget) -> Result<Sorted, Error> {
        let f = self.file(&q.table)?;
        let types = self.types.get(&q.table.to_ascii_lowercase());
        // The query's columns, then any order column it does not select.
        let mut wanted: Vec<Option<String>> = q.columns.clone();
        for o in &q.order {
            if !wanted.iter().any(|c| c.as_deref() == Some(o.as_str())) {
                wanted.push(Some(o.clone()));
            }
        }
        let fields: Vec<Option<(usize, Type, bool, &str)>> = wanted
            .iter()
            .map(|c| {
                c.as_deref().and_then(|c| {
                    let i = f.header.iter().position(|h| h == c)?;
                    let ty = types
                        .and_then(|t| t.get(&c.to_ascii_lowercase()))
                        .copied()
                        .unwrap_or(Type::Text);
                    Some((i, ty, is_key_column(c), c))
                })
            })
            .collect();
        let order: Vec<usize> = q
            .order
            .iter()
            .map(|o| {
                wanted
                    .iter()
                    .position(|c| c.as_deref() == Some(o.as_str()))
                    .expect("added above")
            })
            .collect();
        let mut sorter = budget.sorter(&self.scratch, order);
        let mut row = Vec::with_capacity(fields.len());
        for (n, record) in reader(f)?.records().enumerate() {
            let line = n + 2;
            let record = record.map_err(|e| self.line_error(&q.table, line, e.to_string()))?;
            row.clear();
            for field in &fields {
                row.push(match field {
                    None => Cell::Null,
                    Some((i, ty, key, name)) => self
                        .cell(*ty, *key, record.get(*i).unwrap_or_default())
                        .map_err(|m| self.line_error(&q.table, line, format!("{name}: {m}")))?,
                });
            }
            sorter.push(&row)?;
        }
        sorter.finish()
    }
}

impl Tables for CsvTables {
    fn stream(&mut self, queries: &[Query], f: &mut WithStreams<'_>) -> Result<(), Error> {
        let mut sorted = sort_each(queries, |_, q, budget| {
            Ok(Some(Cut::new(self.sorted(q, budget)?, q)))
        })?;
        f(&mut side_by_side(&mut sorted, std::iter::empty()))
    }

    fn count(&mut self, table: &str) -> Result<u64, Error> {
        let f = self.file(table)?;
        let mut n = 0;
        for record in reader(f)?.records() {
            record.map_err(|e| self.line_error(table, n as usize + 2, e.to_string()))?;
            n += 1;
        }
        Ok(n)
    }
}

impl Assembled for CsvSource {
    fn described(&self) -> &Description {
        &self.description
    }

    fn parts(&mut self) -> Parts<'_> {
        Parts {
            main: &mut self.tables,
            children: None,
            layout: &self.layout,
        }
    }
}
