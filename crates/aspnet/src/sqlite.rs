//! Reading an Identity database from a SQLite file, read-only, in one snapshot.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ferry_bundle::manifest::Counts;
use ferry_bundle::record::{Claim, CredentialId, Login, Passkey, Token};
use ferry_bundle::{RoleRecord, UserId, UserRecord};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};
use serde_json::{Map, Value};

use crate::layout::{
    self, Catalog, Column, Layout, PasskeyLayout, Table, LOCKOUT_END, PASSKEY_DATA_FIELDS,
};
use crate::merge::Cursor;
use crate::values::{parse_bool_text, parse_datetime_offset, parse_utc_naive};
use crate::{Description, Error, IdentitySource, Visit};

/// An Identity database in a SQLite file.
///
/// The file is opened read-only (`SQLITE_OPEN_READ_ONLY`, `PRAGMA query_only`), and
/// everything is read inside one transaction, so the export sees one consistent
/// snapshot even if the application keeps writing.
pub struct SqliteSource {
    conn: Connection,
    layout: Layout,
    description: Description,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn col_or_null(c: Option<&str>) -> String {
    c.map(quote).unwrap_or_else(|| "NULL".to_string())
}

impl SqliteSource {
    /// Opens `path` and resolves its Identity layout.
    pub fn open(path: &Path) -> Result<SqliteSource, Error> {
        if !path.exists() {
            return Err(Error::NotFound { path: path.into() });
        }
        let open_err = |e: rusqlite::Error| Error::Open {
            path: path.into(),
            message: e.to_string(),
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(open_err)?;
        conn.execute_batch("PRAGMA query_only = 1; BEGIN")
            .map_err(open_err)?;
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
        };
        Ok(SqliteSource {
            conn,
            layout,
            description,
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
        source: Box::new(e),
    }
}

/// Runs `stmt` and maps each row to `(parent key, item)`.
fn rows_of<'s, T>(
    rows: rusqlite::Rows<'s>,
    table: &'s Table,
    key_index: usize,
    map: impl Fn(&Row<'_>, &At<'_>) -> Result<T, Error> + 's,
) -> impl Iterator<Item = Result<(String, T), Error>> + 's {
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
            let key = required_text(row.get_ref(0).map_err(query_err(&table.name))?, &at)?;
            let at = At {
                table: &table.name,
                column: "",
                row: &key,
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
        let mut last: Option<String> = None;
        for item in role_rows.by_ref() {
            let (id, (name, normalized_name, concurrency_stamp)) = item?;
            check_increasing(&mut last, &id, &roles)?;
            let mut record = RoleRecord {
                id,
                name,
                normalized_name,
                concurrency_stamp,
                claims: Vec::new(),
            };
            claims.take_for(&record.id, &mut record.claims)?;
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
        let l = self.layout.clone();
        let conn = &self.conn;
        let users = &l.users;

        // Users, template columns first in USER_FIELDS order, then the extra ones.
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

        macro_rules! child {
            ($table:expr, $sql:expr) => {
                match $table {
                    Some(t) => Some((conn.prepare(&$sql(t)).map_err(query_err(&t.name))?, t)),
                    None => None,
                }
            };
        }
        let mut claim_stmt = child!(&l.claims, |t| child_sql(t, 0, &[1, 2], &[3]));
        let mut login_stmt = child!(&l.logins, |t| child_sql(t, 0, &[1, 2, 3], &[1, 2]));
        let mut token_stmt = child!(&l.tokens, |t| child_sql(t, 0, &[1, 2, 3], &[1, 2]));
        let mut role_stmt = child!(&l.user_roles, |t| child_sql(t, 0, &[1], &[1]));
        let passkey_table = match &l.passkeys {
            Some(PasskeyLayout::Json(t)) | Some(PasskeyLayout::Flat(t)) => Some(t.clone()),
            None => None,
        };
        let flat = matches!(l.passkeys, Some(PasskeyLayout::Flat(_)));
        let mut passkey_stmt = child!(&passkey_table, |t: &Table| {
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
                    |row, at| required_text(get(row, 1, at.table)?, at),
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

        let mut counts = Counts::default();
        let mut rows = user_stmt.query([]).map_err(query_err(&users.name))?;
        let mut last: Option<String> = None;
        let extra_base = users.columns.len();
        while let Some(row) = rows.next().map_err(query_err(&users.name))? {
            let g = |i: usize| get(row, i, &users.name);
            let id_at = At {
                table: &users.name,
                column: users.column(0).unwrap_or("Id"),
                row: "?",
            };
            let id = required_text(g(0)?, &id_at)?;
            check_increasing(&mut last, &id, users)?;
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
            let lockout_text = text(g(LOCKOUT_END)?, &at(LOCKOUT_END))?;
            let lockout_end = match lockout_text {
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
            let access_failed = if users.column(14).is_some() {
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
                ValueRef::Blob(_) => {
                    return Err(at(6).corrupt("expected base64 text, found a blob"))
                }
                v => text(v, &at(6))?,
            };
            let mut record = UserRecord {
                id: UserId(id.clone()),
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
                access_failed_count: access_failed,
                extra,
                claims: Vec::new(),
                logins: Vec::new(),
                tokens: Vec::new(),
                roles: Vec::new(),
                passkeys: Vec::new(),
            };
            claims.take_for(&id, &mut record.claims)?;
            logins.take_for(&id, &mut record.logins)?;
            tokens.take_for(&id, &mut record.tokens)?;
            roles.take_for(&id, &mut record.roles)?;
            passkeys.take_for(&id, &mut record.passkeys)?;
            counts.users += 1;
            visit(record)?;
        }
        if limit.is_none() {
            claims.drain()?;
            logins.drain()?;
            tokens.drain()?;
            roles.drain()?;
            passkeys.drain()?;
        }
        counts.claims = claims.taken;
        counts.logins = logins.taken;
        counts.tokens = tokens.taken;
        counts.user_roles = roles.taken;
        counts.passkeys = passkeys.taken;
        for (name, orphans) in [
            (claims_name, claims.orphans),
            (logins_name, logins.orphans),
            (tokens_name, tokens.orphans),
            (roles_name, roles.orphans),
            (passkeys_name, passkeys.orphans),
        ] {
            if orphans > 0 {
                counts.orphans.insert(name, orphans);
            }
        }
        Ok(counts)
    }
}

fn check_increasing(last: &mut Option<String>, id: &str, table: &Table) -> Result<(), Error> {
    if let Some(prev) = last {
        if id <= prev.as_str() {
            return Err(Error::Order {
                table: table.name.clone(),
                column: table.column(0).unwrap_or("Id").to_string(),
                message: format!("`{id}` came after `{prev}`"),
            });
        }
    }
    *last = Some(id.to_string());
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
