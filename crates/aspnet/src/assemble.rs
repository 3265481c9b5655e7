//! Records assembled from an engine's rows, whatever the engine: the values decoded, the
//! fields taken by column name, passkeys gathered, and users and their child tables
//! joined by an ordered k-way merge with orphans counted. Memory holds one row per table
//! and the chunks in flight between two threads, whatever the number of users.

use std::sync::mpsc::sync_channel;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ferry_bundle::manifest::Counts;
use ferry_bundle::record::{Claim, CredentialId, Login, Passkey, Token};
use ferry_bundle::{RoleRecord, UserId, UserRecord};
use serde_json::{Map, Value};

use crate::key::Key;
use crate::layout::{Layout, PasskeyLayout, Table, PASSKEY_DATA_FIELDS, USER_FIELDS};
use crate::merge::Cursor;
use crate::rows::{Cell, Query, RowStream, Tables};
use crate::values::{parse_bool_text, parse_datetime_offset, parse_hex_bytes, parse_utc_naive};
use crate::{Error, Visit};

/// Where a value is, for error messages.
pub(crate) struct At<'a> {
    pub table: &'a str,
    pub column: &'a str,
    /// The row's key, written out only when there is an error to report.
    pub row: &'a dyn std::fmt::Display,
}

impl At<'_> {
    pub fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::Corrupt {
            table: self.table.to_string(),
            column: self.column.to_string(),
            row: self.row.to_string(),
            message: message.into(),
        }
    }
}

fn kind(c: &Cell) -> &'static str {
    match c {
        Cell::Null => "NULL",
        Cell::Integer(_) => "an integer",
        Cell::Real(_) => "a real",
        Cell::Text(_) => "text",
        Cell::Bytes(_) => "a blob",
        Cell::Bool(_) => "a boolean",
        Cell::Time(_) | Cell::Naive(_) => "a date and time",
    }
}

/// Text, or NULL. A number in a text column (SQLite is dynamically typed) is its text.
pub(crate) fn text(c: Cell, at: &At<'_>) -> Result<Option<String>, Error> {
    match c {
        Cell::Null => Ok(None),
        Cell::Text(t) => Ok(Some(t)),
        Cell::Integer(i) => Ok(Some(i.to_string())),
        Cell::Real(f) => Ok(Some(f.to_string())),
        Cell::Bool(b) => Ok(Some(b.to_string())),
        Cell::Time(t) => Ok(Some(t.to_rfc3339())),
        Cell::Naive(t) => Ok(Some(t.to_string())),
        Cell::Bytes(_) => Err(at.corrupt("expected text, found a blob")),
    }
}

fn required_text(c: Cell, at: &At<'_>) -> Result<String, Error> {
    text(c, at)?.ok_or_else(|| at.corrupt("is NULL in a NOT NULL column"))
}

/// A key value, typed as the engine returned it.
pub(crate) fn key(c: Cell, at: &At<'_>) -> Result<Key, Error> {
    match c {
        Cell::Integer(i) => Ok(Key::Integer(i)),
        Cell::Text(t) => Ok(Key::Text(t)),
        Cell::Bytes(b) => Ok(Key::Bytes(b)),
        Cell::Null => Err(at.corrupt("is NULL in a key column")),
        other => Err(at.corrupt(format!("a key cannot be {}", kind(&other)))),
    }
}

fn boolean(c: Cell, at: &At<'_>) -> Result<bool, Error> {
    match c {
        Cell::Bool(b) => Ok(b),
        Cell::Integer(0) => Ok(false),
        Cell::Integer(1) => Ok(true),
        Cell::Integer(i) => Err(at.corrupt(format!("expected a boolean (0 or 1), found {i}"))),
        Cell::Text(t) => parse_bool_text(&t)
            .ok_or_else(|| at.corrupt(format!("expected a boolean (0 or 1), found text `{t}`"))),
        other => Err(at.corrupt(format!(
            "expected a boolean (0 or 1), found {}",
            kind(&other)
        ))),
    }
}

fn integer(c: Cell, at: &At<'_>) -> Result<i64, Error> {
    match c {
        Cell::Integer(i) => Ok(i),
        Cell::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| at.corrupt(format!("expected an integer, found text `{t}`"))),
        other => Err(at.corrupt(format!("expected an integer, found {}", kind(&other)))),
    }
}

fn bytes(c: Cell, at: &At<'_>) -> Result<Option<Vec<u8>>, Error> {
    match c {
        Cell::Null => Ok(None),
        Cell::Bytes(b) => Ok(Some(b)),
        // A dump's hex (`\x…`, `0x…`); else the text's own bytes (SQLite's typing).
        Cell::Text(t) => Ok(Some(parse_hex_bytes(&t).unwrap_or_else(|| t.into_bytes()))),
        other => Err(at.corrupt(format!("expected bytes, found {}", kind(&other)))),
    }
}

/// A date and time: with its offset, or (for `utc` columns such as classic
/// `LockoutEndDateUtc`, and engines' offset-less types) as UTC.
fn datetime(
    c: Cell,
    utc: bool,
    at: &At<'_>,
) -> Result<Option<chrono::DateTime<chrono::FixedOffset>>, Error> {
    let utc_offset = chrono::FixedOffset::east_opt(0).expect("zero offset");
    match c {
        Cell::Null => Ok(None),
        Cell::Time(t) => Ok(Some(t)),
        Cell::Naive(t) => Ok(Some(t.and_utc().with_timezone(&utc_offset))),
        Cell::Text(t) => {
            let parsed = if utc {
                parse_utc_naive(&t).or_else(|| parse_datetime_offset(&t))
            } else {
                parse_datetime_offset(&t)
            };
            parsed
                .map(Some)
                .ok_or_else(|| at.corrupt(format!("not a date and time: `{t}`")))
        }
        other => Err(at.corrupt(format!("expected a date and time, found {}", kind(&other)))),
    }
}

/// A custom (`Extra`) column's value, as its declared type suggests.
fn extra_value(c: Cell, decl_type: &str) -> Value {
    let t = decl_type.to_ascii_uppercase();
    match c {
        Cell::Null => Value::Null,
        Cell::Integer(i) if (t.contains("BOOL") || t == "BIT") && (i == 0 || i == 1) => {
            Value::Bool(i == 1)
        }
        Cell::Integer(i) => Value::from(i),
        Cell::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Cell::Text(s) => Value::String(s),
        Cell::Bytes(b) => Value::String(STANDARD.encode(b)),
        Cell::Bool(b) => Value::Bool(b),
        Cell::Time(t) => Value::String(t.to_rfc3339()),
        Cell::Naive(t) => Value::String(t.to_string()),
    }
}

/// A query of `table`'s columns `fields` (logical field indexes), keyed by field `key`
/// and ordered by it and then by `then`.
fn query(t: &Table, key: usize, fields: &[usize], then: &[usize]) -> Query {
    let mut columns = vec![t.column(key).map(str::to_string)];
    columns.extend(fields.iter().map(|&i| t.column(i).map(str::to_string)));
    let mut order = vec![t.column(key).unwrap_or("?").to_string()];
    order.extend(then.iter().filter_map(|&i| t.column(i)).map(str::to_string));
    Query {
        table: t.name.clone(),
        columns,
        order,
        limit: None,
        whole: true,
    }
}

/// The rows of `stream` as `(key, item)`, the key read from the first cell.
fn keyed<'s, T: 's>(
    stream: &'s mut dyn RowStream,
    table: &'s Table,
    key_field: usize,
    mut decode: impl FnMut(&mut [Cell], &At<'_>) -> Result<T, Error> + 's,
) -> impl Iterator<Item = Result<(Key, T), Error>> + 's {
    let mut row = Vec::new();
    std::iter::from_fn(move || match stream.next_row(&mut row) {
        Ok(false) => None,
        Err(e) => Some(Err(e)),
        Ok(true) => Some((|| {
            let at = At {
                table: &table.name,
                column: table.column(key_field).unwrap_or("?"),
                row: &"?",
            };
            let key = key(std::mem::replace(&mut row[0], Cell::Null), &at)?;
            let at = At {
                table: &table.name,
                column: "",
                row: &key,
            };
            let item = decode(&mut row[1..], &at)?;
            Ok((key, item))
        })()),
    })
}

/// Takes cell `i` out of a row.
fn take(row: &mut [Cell], i: usize) -> Cell {
    std::mem::replace(&mut row[i], Cell::Null)
}

/// `at` for column `column` of the table.
fn col<'a>(at: &At<'a>, table: &'a Table, field: usize) -> At<'a> {
    At {
        table: at.table,
        column: table.column(field).unwrap_or(""),
        row: at.row,
    }
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

/// Reads every role with its claims, in `Id` order.
pub(crate) fn read_roles(
    tables: &mut dyn Tables,
    l: &Layout,
    visit: &mut Visit<'_, RoleRecord>,
) -> Result<Counts, Error> {
    let mut counts = Counts::default();
    let Some(roles) = &l.roles else {
        return Ok(counts);
    };
    let mut queries = vec![query(roles, 0, &[1, 2, 3], &[])];
    if let Some(t) = &l.role_claims {
        queries.push(query(t, 0, &[1, 2], &[3]));
    }
    tables.stream(&queries, &mut |streams| {
        let (first, rest) = streams.split_at_mut(1);
        let claim_rows = match (&l.role_claims, rest.first_mut()) {
            (Some(t), Some(s)) => Some(keyed(&mut **s, t, 0, move |row, at| {
                Ok(Claim {
                    claim_type: text(take(row, 0), &col(at, t, 1))?,
                    value: text(take(row, 1), &col(at, t, 2))?,
                })
            })),
            _ => None,
        };
        let claims_table = l
            .role_claims
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let mut claims = Cursor::new(claim_rows, &claims_table, "RoleId");
        let role_rows = keyed(&mut *first[0], roles, 0, |row, at| {
            Ok((
                text(take(row, 0), &col(at, roles, 1))?,
                text(take(row, 1), &col(at, roles, 2))?,
                text(take(row, 2), &col(at, roles, 3))?,
            ))
        });
        let mut last: Option<Key> = None;
        for item in role_rows {
            let (id, (name, normalized_name, concurrency_stamp)) = item?;
            check_increasing(&mut last, &id, roles)?;
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
            counts.orphans.insert(claims_table.clone(), claims.orphans);
        }
        Ok(())
    })?;
    Ok(counts)
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

/// The queries of the child tables the layout has, in a fixed order (claims, logins,
/// tokens, roles, passkeys), each ordered by user id.
/// The queries of the child tables; `whole` when every user is read.
fn child_queries(l: &Layout, whole: bool) -> Vec<Query> {
    let mut qs = Vec::new();
    if let Some(t) = &l.claims {
        qs.push(query(t, 0, &[1, 2], &[3]));
    }
    if let Some(t) = &l.logins {
        qs.push(query(t, 0, &[1, 2, 3], &[1, 2]));
    }
    if let Some(t) = &l.tokens {
        qs.push(query(t, 0, &[1, 2, 3], &[1, 2]));
    }
    if let Some(t) = &l.user_roles {
        qs.push(query(t, 0, &[1], &[1]));
    }
    if let Some(t) = passkey_table(l) {
        let data: Vec<usize> = std::iter::once(0).chain(2..t.columns.len()).collect();
        qs.push(query(t, 1, &data, &[0]));
    }
    for q in &mut qs {
        q.whole = whole;
    }
    qs
}

fn passkey_table(l: &Layout) -> Option<&Table> {
    match &l.passkeys {
        Some(PasskeyLayout::Json(t)) | Some(PasskeyLayout::Flat(t)) => Some(t),
        None => None,
    }
}

/// Hands `f` the child rows of `streams` (one per [`child_queries`] query) grouped by
/// user id in ascending order: a k-way ordered merge.
fn with_groups<R>(
    streams: &mut [&mut dyn RowStream],
    l: &Layout,
    f: &mut dyn FnMut(&mut Groups<'_>) -> Result<R, Error>,
) -> Result<R, Error> {
    let mut it = streams.iter_mut();
    let mut next_for = |present: bool| if present { it.next() } else { None };
    let claims_s = next_for(l.claims.is_some());
    let logins_s = next_for(l.logins.is_some());
    let tokens_s = next_for(l.tokens.is_some());
    let roles_s = next_for(l.user_roles.is_some());
    let passkeys_s = next_for(passkey_table(l).is_some());
    let name = |t: &Option<Table>| t.as_ref().map(|t| t.name.clone()).unwrap_or_default();
    let passkeys_name = passkey_table(l).map(|t| t.name.clone()).unwrap_or_default();
    let flat = matches!(l.passkeys, Some(PasskeyLayout::Flat(_)));

    let mut claims = Cursor::new(
        claims_s.zip(l.claims.as_ref()).map(|(s, t)| {
            keyed(&mut **s, t, 0, move |row, at| {
                Ok(Claim {
                    claim_type: text(take(row, 0), &col(at, t, 1))?,
                    value: text(take(row, 1), &col(at, t, 2))?,
                })
            })
        }),
        &name(&l.claims),
        "UserId",
    );
    let mut logins = Cursor::new(
        logins_s.zip(l.logins.as_ref()).map(|(s, t)| {
            keyed(&mut **s, t, 0, move |row, at| {
                Ok(Login {
                    login_provider: required_text(take(row, 0), &col(at, t, 1))?,
                    provider_key: required_text(take(row, 1), &col(at, t, 2))?,
                    provider_display_name: text(take(row, 2), &col(at, t, 3))?,
                })
            })
        }),
        &name(&l.logins),
        "UserId",
    );
    let mut tokens = Cursor::new(
        tokens_s.zip(l.tokens.as_ref()).map(|(s, t)| {
            keyed(&mut **s, t, 0, move |row, at| {
                Ok(Token {
                    login_provider: required_text(take(row, 0), &col(at, t, 1))?,
                    name: required_text(take(row, 1), &col(at, t, 2))?,
                    value: text(take(row, 2), &col(at, t, 3))?,
                })
            })
        }),
        &name(&l.tokens),
        "UserId",
    );
    let mut roles = Cursor::new(
        roles_s.zip(l.user_roles.as_ref()).map(|(s, t)| {
            keyed(&mut **s, t, 0, move |row, at| {
                Ok(key(take(row, 0), &col(at, t, 1))?.to_id_string())
            })
        }),
        &name(&l.user_roles),
        "UserId",
    );
    let mut passkeys = Cursor::new(
        passkeys_s
            .zip(passkey_table(l))
            .map(|(s, t)| keyed(&mut **s, t, 1, move |row, at| passkey(row, at, t, flat))),
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

/// Reads the users in `Id` order (the first `limit`), each with its child rows, and
/// visits them. The child tables are read on `children`, on a thread of their own, when
/// given (a second connection inside the same snapshot); else on `main`, interleaved.
pub(crate) fn read_users(
    main: &mut dyn Tables,
    children: Option<&mut dyn Tables>,
    l: &Layout,
    limit: Option<u64>,
    visit: &mut Visit<'_, UserRecord>,
) -> Result<Counts, Error> {
    let mut user_query = Query {
        table: l.users.name.clone(),
        columns: l.users.columns.clone(),
        order: vec![l.users.column(0).expect("Id is required").to_string()],
        limit,
        whole: limit.is_none(),
    };
    user_query
        .columns
        .extend(l.extra.iter().map(|c| Some(c.name.clone())));
    let mut counts = Counts::default();
    let Some(children) = children else {
        let mut queries = vec![user_query];
        queries.extend(child_queries(l, limit.is_none()));
        main.stream(&queries, &mut |streams| {
            let (users, rest) = streams.split_at_mut(1);
            counts = with_groups(rest, l, &mut |groups| {
                merge_users(&mut *users[0], l, limit, groups, visit)
            })?;
            Ok(())
        })?;
        return Ok(counts);
    };
    let (tx, rx) = sync_channel::<Vec<Group>>(GROUP_CHUNKS_IN_FLIGHT);
    let child_qs = child_queries(l, limit.is_none());
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            children.stream(&child_qs, &mut |streams| {
                with_groups(streams, l, &mut |groups| {
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
                })
            })
        });
        // The receiver moves into the iterator: when the users side stops early (--limit,
        // a corrupt row, a writer that failed), dropping it closes the channel, so the
        // child thread's next send fails and it ends instead of blocking on a full
        // channel while it is joined.
        let mut groups = rx.into_iter().flatten().map(Ok);
        let users = main.stream(&[user_query], &mut |streams| {
            counts = merge_users(&mut *streams[0], l, limit, &mut groups, visit)?;
            Ok(())
        });
        drop(groups);
        // A failed child read also ends the channel early: its error wins, or users read
        // after it would silently lose their children.
        let children_result = reader.join().expect("child reader thread panicked");
        match (users, children_result) {
            (_, Err(e)) => Err(e),
            (users, Ok(())) => users,
        }
    })?;
    Ok(counts)
}

/// Reads users from `stream` and attaches the child group of each.
fn merge_users(
    stream: &mut dyn RowStream,
    l: &Layout,
    limit: Option<u64>,
    groups: &mut Groups<'_>,
    visit: &mut Visit<'_, UserRecord>,
) -> Result<Counts, Error> {
    let users = &l.users;
    let mut counts = Counts::default();
    let mut orphans = Counts::default();
    let mut pending: Option<Group> = None;
    let mut next = |pending: &mut Option<Group>| -> Result<(), Error> {
        *pending = groups.next().transpose()?;
        Ok(())
    };
    next(&mut pending)?;
    let cols = UserColumns::new();
    let mut row = Vec::new();
    let mut last: Option<Key> = None;
    while stream.next_row(&mut row)? {
        let (id, mut record) = user_record(&mut row, l, &cols)?;
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
    let name = |t: &Option<Table>| t.as_ref().map(|t| t.name.clone()).unwrap_or_default();
    for (table, n) in [
        (name(&l.claims), orphans.claims),
        (name(&l.logins), orphans.logins),
        (name(&l.tokens), orphans.tokens),
        (name(&l.user_roles), orphans.user_roles),
        (
            passkey_table(l).map(|t| t.name.clone()).unwrap_or_default(),
            orphans.passkeys,
        ),
    ] {
        if n > 0 {
            counts.orphans.insert(table, n);
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

/// The position of user field `name` in a row of the users query, whose columns are
/// [`USER_FIELDS`] in order, then the extra ones.
fn field(name: &str) -> usize {
    USER_FIELDS
        .iter()
        .position(|f| *f == name)
        .expect("a user field")
}

/// Where each user field is in a row of the users query, resolved by name once.
struct UserColumns {
    id: usize,
    user_name: usize,
    normalized_user_name: usize,
    email: usize,
    normalized_email: usize,
    email_confirmed: usize,
    password_hash: usize,
    security_stamp: usize,
    concurrency_stamp: usize,
    phone_number: usize,
    phone_number_confirmed: usize,
    two_factor_enabled: usize,
    lockout_end: usize,
    lockout_enabled: usize,
    access_failed_count: usize,
    /// The first extra column.
    extra: usize,
}

impl UserColumns {
    fn new() -> UserColumns {
        UserColumns {
            id: field("Id"),
            user_name: field("UserName"),
            normalized_user_name: field("NormalizedUserName"),
            email: field("Email"),
            normalized_email: field("NormalizedEmail"),
            email_confirmed: field("EmailConfirmed"),
            password_hash: field("PasswordHash"),
            security_stamp: field("SecurityStamp"),
            concurrency_stamp: field("ConcurrencyStamp"),
            phone_number: field("PhoneNumber"),
            phone_number_confirmed: field("PhoneNumberConfirmed"),
            two_factor_enabled: field("TwoFactorEnabled"),
            lockout_end: field("LockoutEnd"),
            lockout_enabled: field("LockoutEnabled"),
            access_failed_count: field("AccessFailedCount"),
            extra: USER_FIELDS.len(),
        }
    }
}

/// One `AspNetUsers` row as a record without children, with its typed key.
fn user_record(row: &mut [Cell], l: &Layout, c: &UserColumns) -> Result<(Key, UserRecord), Error> {
    let users = &l.users;
    let id_at = At {
        table: &users.name,
        column: users.column(c.id).unwrap_or("Id"),
        row: &"?",
    };
    let key = key(take(row, c.id), &id_at)?;
    let id = key.to_id_string();
    let at = |i: usize| At {
        table: &users.name,
        column: users.column(i).unwrap_or(USER_FIELDS[i]),
        row: &id,
    };
    let mut text_at = |i: usize| text(take(row, i), &at(i));
    let user_name = text_at(c.user_name)?;
    let normalized_user_name = text_at(c.normalized_user_name)?;
    let email = text_at(c.email)?;
    let normalized_email = text_at(c.normalized_email)?;
    let security_stamp = text_at(c.security_stamp)?;
    let concurrency_stamp = text_at(c.concurrency_stamp)?;
    let phone_number = text_at(c.phone_number)?;
    // A column the source lacks (classic tables) reads as NULL; booleans default to false.
    let mut flag = |i: usize| -> Result<bool, Error> {
        if users.column(i).is_none() {
            return Ok(false);
        }
        boolean(take(row, i), &at(i))
    };
    let email_confirmed = flag(c.email_confirmed)?;
    let phone_number_confirmed = flag(c.phone_number_confirmed)?;
    let two_factor_enabled = flag(c.two_factor_enabled)?;
    let lockout_enabled = flag(c.lockout_enabled)?;
    let lockout_end = datetime(
        take(row, c.lockout_end),
        l.lockout_is_utc,
        &at(c.lockout_end),
    )?;
    let access_failed_count = if users.column(c.access_failed_count).is_some() {
        let i = c.access_failed_count;
        let n = integer(take(row, i), &at(i))?;
        i32::try_from(n).map_err(|_| at(i).corrupt(format!("{n} does not fit a 32-bit integer")))?
    } else {
        0
    };
    let password_hash = match take(row, c.password_hash) {
        Cell::Bytes(_) => {
            return Err(at(c.password_hash).corrupt("expected base64 text, found a blob"))
        }
        v => text(v, &at(c.password_hash))?,
    };
    let mut extra = Map::new();
    for (k, column) in l.extra.iter().enumerate() {
        extra.insert(
            column.name.clone(),
            extra_value(take(row, c.extra + k), &column.decl_type),
        );
    }
    let record = UserRecord {
        id: UserId(id.clone()),
        user_name,
        normalized_user_name,
        email,
        normalized_email,
        email_confirmed,
        password_hash,
        security_stamp,
        concurrency_stamp,
        phone_number,
        phone_number_confirmed,
        two_factor_enabled,
        lockout_end,
        lockout_enabled,
        access_failed_count,
        extra,
        claims: Vec::new(),
        logins: Vec::new(),
        tokens: Vec::new(),
        roles: Vec::new(),
        passkeys: Vec::new(),
    };
    Ok((key, record))
}

/// `Data` with ASP.NET's keys in the order ASP.NET writes them (already so in a text
/// column; `jsonb` keeps its own order), the others after them in their order.
fn in_aspnet_order(mut map: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(map.len());
    for field in PASSKEY_DATA_FIELDS {
        if let Some(v) = map.shift_remove(field) {
            out.insert(field.to_string(), v);
        }
    }
    out.extend(map);
    out
}

/// One passkey row after its user id: `CredentialId`, then `Data` or the flat data
/// columns (see [`PASSKEY_DATA_FIELDS`]).
fn passkey(row: &mut [Cell], at: &At<'_>, table: &Table, flat: bool) -> Result<Passkey, Error> {
    let credential = bytes(take(row, 0), &col(at, table, 0))?
        .ok_or_else(|| col(at, table, 0).corrupt("is NULL"))?;
    let data = if !flat {
        let a = col(at, table, 2);
        let json = required_text(take(row, 1), &a)?;
        match serde_json::from_str::<Value>(&json) {
            Ok(Value::Object(map)) => in_aspnet_order(map),
            Ok(_) => return Err(a.corrupt("Data is JSON but not an object")),
            Err(e) => return Err(a.corrupt(format!("Data is not JSON: {e}"))),
        }
    } else {
        let mut map = Map::new();
        for (k, field) in PASSKEY_DATA_FIELDS.iter().enumerate() {
            let table_index = 2 + k;
            if table.column(table_index).is_none() {
                continue;
            }
            let v = take(row, 1 + k);
            let a = col(at, table, table_index);
            let value = match *field {
                "PublicKey" | "AttestationObject" | "ClientDataJson" => match bytes(v, &a)? {
                    Some(b) => Value::String(STANDARD.encode(b)),
                    None => Value::Null,
                },
                "SignCount" => match v {
                    Cell::Null => Value::Null,
                    v => Value::from(integer(v, &a)?),
                },
                "IsUserVerified" | "IsBackupEligible" | "IsBackedUp" => match v {
                    Cell::Null => Value::Null,
                    v => Value::Bool(boolean(v, &a)?),
                },
                "CreatedAt" => match datetime(v, false, &a)? {
                    None => Value::Null,
                    Some(d) => Value::String(d.to_rfc3339()),
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
