//! Reading users back from Parquet parts, a batch of rows at a time.
//!
//! The reader checks each file's columns against the schema once, then hands out rows of
//! a batch ([`UserColumns`]) that decode into a [`UserRecord`] on any thread. A column
//! with another type, a column that is missing, and a column ferry does not know (it
//! would be lost on import) are errors of the file, naming the column; a value that
//! cannot be a record's (a null `Id`, `Extra` that is not JSON) is a problem of that
//! record, with its field.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, BinaryArray, BooleanArray, Int32Array, ListArray, PrimitiveArray, RecordBatch,
    StringArray, StructArray,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, FixedOffset};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::{Map, Value};

use super::schema::{self, Kind, PASSKEY_DATA, SCHEMA_VERSION, SCHEMA_VERSION_KEY, USER_TEXT};
use crate::read::RecordError;
use crate::record::{Claim, CredentialId, Login, Passkey, Token, UserId, UserRecord};
use crate::Error;

/// Rows per batch read.
const READ_BATCH_ROWS: usize = 4096;

/// The batches of one Parquet users part.
pub(crate) struct PartReader {
    path: PathBuf,
    reader: ParquetRecordBatchReader,
}

fn part_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Part {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The number of rows of the Parquet file at `path`, from its footer (no row is read);
/// `None` if the file is not readable Parquet (which reading it will then say).
pub(crate) fn row_count(path: &Path) -> Option<u64> {
    let file = crate::fsutil::open_in_bundle(path).ok()?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    u64::try_from(builder.metadata().file_metadata().num_rows()).ok()
}

impl PartReader {
    /// Opens `path` and checks its schema.
    pub(crate) fn open(path: &Path) -> Result<PartReader, Error> {
        let file = crate::fsutil::open_in_bundle(path).map_err(|e| Error::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| part_error(path, format!("not a readable Parquet file: {e}")))?;
        if let Some(version) = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == SCHEMA_VERSION_KEY))
            .and_then(|kv| kv.value.as_deref())
        {
            if version != SCHEMA_VERSION.to_string() {
                return Err(part_error(
                    path,
                    format!(
                        "written with Parquet schema version {version}; this tool reads version {SCHEMA_VERSION}"
                    ),
                ));
            }
        }
        check_schema(path, builder.schema())?;
        let reader = builder
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| part_error(path, e.to_string()))?;
        Ok(PartReader {
            path: path.to_path_buf(),
            reader,
        })
    }

    /// The next batch of rows, ready to decode.
    pub(crate) fn next_batch(&mut self) -> Option<Result<Arc<UserColumns>, Error>> {
        let batch = match self.reader.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(part_error(&self.path, e.to_string()))),
        };
        Some(Ok(Arc::new(UserColumns::new(&batch))))
    }
}

/// Every column of the schema is in the file, with its type, and the file has no other.
fn check_schema(path: &Path, found: &arrow_schema::Schema) -> Result<(), Error> {
    let expected = schema::user_schema();
    for field in expected.fields() {
        match found.field_with_name(field.name()) {
            Err(_) => {
                return Err(part_error(
                    path,
                    format!("has no column `{}`", field.name()),
                ))
            }
            Ok(f) if !schema::same_shape(f.data_type(), field.data_type()) => {
                return Err(part_error(
                    path,
                    format!(
                        "column `{}` is {}, expected {} (see docs/parquet.md)",
                        field.name(),
                        schema::type_name(f.data_type()),
                        schema::type_name(field.data_type())
                    ),
                ))
            }
            Ok(_) => {}
        }
    }
    if let Some(unknown) = found
        .fields()
        .iter()
        .find(|f| expected.field_with_name(f.name()).is_err())
    {
        return Err(part_error(
            path,
            format!(
                "column `{}` is not part of a ferry bundle: it would be lost on import (move it into `Extra`, or drop it)",
                unknown.name()
            ),
        ));
    }
    Ok(())
}

/// A list column and the columns of its items.
struct List<T> {
    list: ListArray,
    items: T,
}

impl<T> List<T> {
    /// The item indexes of `row`; a null list is an empty one.
    fn range(&self, row: usize) -> std::ops::Range<usize> {
        if self.list.is_null(row) {
            return 0..0;
        }
        let offsets = self.list.value_offsets();
        offsets[row] as usize..offsets[row + 1] as usize
    }
}

fn list<T>(array: &dyn Array, items: impl FnOnce(&dyn Array) -> T) -> List<T> {
    let list = array.as_list::<i32>().clone();
    let items = items(list.values().as_ref());
    List { list, items }
}

fn strings(s: &StructArray, names: &[&str]) -> Vec<StringArray> {
    names
        .iter()
        .map(|n| {
            s.column_by_name(n)
                .expect("checked")
                .as_string::<i32>()
                .clone()
        })
        .collect()
}

struct Lockout {
    all: StructArray,
    utc: PrimitiveArray<TimestampMicrosecondType>,
    offset: Int32Array,
    nanosecond: Int32Array,
}

struct PasskeyColumns {
    all: StructArray,
    credential_id: BinaryArray,
    transports: List<StringArray>,
    other: StringArray,
}

/// One batch of rows of a Parquet users part.
pub(crate) struct UserColumns {
    text: Vec<StringArray>,
    email_confirmed: BooleanArray,
    phone_number_confirmed: BooleanArray,
    two_factor_enabled: BooleanArray,
    lockout: Lockout,
    lockout_enabled: BooleanArray,
    access_failed_count: Int32Array,
    extra: StringArray,
    claims: List<Vec<StringArray>>,
    logins: List<Vec<StringArray>>,
    tokens: List<Vec<StringArray>>,
    roles: List<StringArray>,
    passkeys: List<PasskeyColumns>,
}

impl UserColumns {
    /// The columns of a batch whose schema [`check_schema`] accepted.
    fn new(batch: &RecordBatch) -> UserColumns {
        let col = |name: &str| batch.column_by_name(name).expect("checked").as_ref();
        let lockout = col("LockoutEnd").as_struct().clone();
        UserColumns {
            text: USER_TEXT
                .iter()
                .map(|(name, _)| col(name).as_string::<i32>().clone())
                .collect(),
            email_confirmed: col("EmailConfirmed").as_boolean().clone(),
            phone_number_confirmed: col("PhoneNumberConfirmed").as_boolean().clone(),
            two_factor_enabled: col("TwoFactorEnabled").as_boolean().clone(),
            lockout: Lockout {
                utc: lockout
                    .column_by_name("Utc")
                    .expect("checked")
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone(),
                offset: lockout
                    .column_by_name("OffsetSeconds")
                    .expect("checked")
                    .as_primitive::<Int32Type>()
                    .clone(),
                nanosecond: lockout
                    .column_by_name("Nanosecond")
                    .expect("checked")
                    .as_primitive::<Int32Type>()
                    .clone(),
                all: lockout,
            },
            lockout_enabled: col("LockoutEnabled").as_boolean().clone(),
            access_failed_count: col("AccessFailedCount").as_primitive::<Int32Type>().clone(),
            extra: col("Extra").as_string::<i32>().clone(),
            claims: list(col("Claims"), |a| {
                strings(a.as_struct(), &["Type", "Value"])
            }),
            logins: list(col("Logins"), |a| {
                strings(
                    a.as_struct(),
                    &["LoginProvider", "ProviderKey", "ProviderDisplayName"],
                )
            }),
            tokens: list(col("Tokens"), |a| {
                strings(a.as_struct(), &["LoginProvider", "Name", "Value"])
            }),
            roles: list(col("Roles"), |a| a.as_string::<i32>().clone()),
            passkeys: list(col("Passkeys"), |a| {
                let all = a.as_struct().clone();
                PasskeyColumns {
                    credential_id: all
                        .column_by_name("CredentialId")
                        .expect("checked")
                        .as_binary::<i32>()
                        .clone(),
                    transports: list(
                        all.column_by_name("Transports").expect("checked").as_ref(),
                        |a| a.as_string::<i32>().clone(),
                    ),
                    other: all
                        .column_by_name("Other")
                        .expect("checked")
                        .as_string::<i32>()
                        .clone(),
                    all,
                }
            }),
        }
    }

    /// The number of rows.
    pub(crate) fn len(&self) -> usize {
        self.text[0].len()
    }

    /// Decodes row `row` into a record, or says what is wrong with it.
    pub(crate) fn record(&self, row: usize) -> Result<UserRecord, RecordError> {
        let id = opt(&self.text[0], row);
        let problem = |field: String, message: String| RecordError {
            subject: id.map(str::to_string),
            field,
            message,
            column: None,
        };
        let null = |field: &str| problem(field.to_string(), "is null".into());
        let text = |i: usize| opt(&self.text[i], row).map(str::to_string);
        let boolean = |a: &BooleanArray, field: &str| {
            if a.is_null(row) {
                Err(null(field))
            } else {
                Ok(a.value(row))
            }
        };
        let id = id.ok_or_else(|| null("Id"))?;
        let lockout_end = if self.lockout.all.is_null(row) {
            None
        } else {
            Some(lockout(&self.lockout, row).map_err(|m| problem("LockoutEnd".into(), m))?)
        };
        let extra = match opt(&self.extra, row) {
            None => Map::new(),
            Some(json) => serde_json::from_str::<Map<String, Value>>(json)
                .map_err(|e| problem("Extra".into(), format!("is not a JSON object: {e}")))?,
        };
        let mut claims = Vec::new();
        for i in self.claims.range(row) {
            let c = &self.claims.items;
            claims.push(Claim {
                claim_type: opt(&c[0], i).map(str::to_string),
                value: opt(&c[1], i).map(str::to_string),
            });
        }
        let required = |a: &StringArray, i: usize, field: String| {
            opt(a, i)
                .map(str::to_string)
                .ok_or_else(|| problem(field, "is null".into()))
        };
        let mut logins = Vec::new();
        for (n, i) in self.logins.range(row).enumerate() {
            let c = &self.logins.items;
            logins.push(Login {
                login_provider: required(&c[0], i, format!("Logins[{n}].LoginProvider"))?,
                provider_key: required(&c[1], i, format!("Logins[{n}].ProviderKey"))?,
                provider_display_name: opt(&c[2], i).map(str::to_string),
            });
        }
        let mut tokens = Vec::new();
        for (n, i) in self.tokens.range(row).enumerate() {
            let c = &self.tokens.items;
            tokens.push(Token {
                login_provider: required(&c[0], i, format!("Tokens[{n}].LoginProvider"))?,
                name: required(&c[1], i, format!("Tokens[{n}].Name"))?,
                value: opt(&c[2], i).map(str::to_string),
            });
        }
        let mut roles = Vec::new();
        for (n, i) in self.roles.range(row).enumerate() {
            roles.push(required(&self.roles.items, i, format!("Roles[{n}]"))?);
        }
        let mut passkeys = Vec::new();
        for (n, i) in self.passkeys.range(row).enumerate() {
            passkeys.push(
                passkey(&self.passkeys.items, i)
                    .map_err(|(field, m)| problem(format!("Passkeys[{n}].{field}"), m))?,
            );
        }
        Ok(UserRecord {
            id: UserId(id.to_string()),
            user_name: text(1),
            normalized_user_name: text(2),
            email: text(3),
            normalized_email: text(4),
            email_confirmed: boolean(&self.email_confirmed, "EmailConfirmed")?,
            password_hash: text(5),
            security_stamp: text(6),
            concurrency_stamp: text(7),
            phone_number: text(8),
            phone_number_confirmed: boolean(&self.phone_number_confirmed, "PhoneNumberConfirmed")?,
            two_factor_enabled: boolean(&self.two_factor_enabled, "TwoFactorEnabled")?,
            lockout_end,
            lockout_enabled: boolean(&self.lockout_enabled, "LockoutEnabled")?,
            access_failed_count: if self.access_failed_count.is_null(row) {
                return Err(null("AccessFailedCount"));
            } else {
                self.access_failed_count.value(row)
            },
            extra,
            claims,
            logins,
            tokens,
            roles,
            passkeys,
        })
    }
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// `LockoutEnd` from its instant, offset and nanosecond.
fn lockout(l: &Lockout, row: usize) -> Result<DateTime<FixedOffset>, String> {
    if l.utc.is_null(row) || l.offset.is_null(row) || l.nanosecond.is_null(row) {
        return Err("Utc, OffsetSeconds and Nanosecond must all be set".into());
    }
    let micros = l.utc.value(row);
    let nanosecond = l.nanosecond.value(row);
    let offset = FixedOffset::east_opt(l.offset.value(row))
        .ok_or_else(|| format!("OffsetSeconds {} is not an offset", l.offset.value(row)))?;
    let disagree = || "Utc and Nanosecond disagree on the fraction of the second".to_string();
    // `Utc` is the whole seconds plus the microseconds of `Nanosecond` (which, in a leap
    // second, counts past one second).
    let nanosecond = u32::try_from(nanosecond).map_err(|_| disagree())?;
    let whole = micros - i64::from(nanosecond / 1000);
    if whole.rem_euclid(1_000_000) != 0 {
        return Err(disagree());
    }
    let time = DateTime::from_timestamp(whole.div_euclid(1_000_000), nanosecond)
        .ok_or_else(|| "is out of range".to_string())?;
    Ok(time.with_timezone(&offset))
}

/// One passkey: its `Data` rebuilt from the typed columns (the known keys in ASP.NET's
/// order) and `Other` (the rest, in its own order). When every typed column is null,
/// `Other` is the whole `Data` as it was.
fn passkey(p: &PasskeyColumns, i: usize) -> Result<Passkey, (String, String)> {
    if p.credential_id.is_null(i) {
        return Err(("CredentialId".into(), "is null".into()));
    }
    let other = match (!p.other.is_null(i)).then(|| p.other.value(i)) {
        None => Map::new(),
        Some(json) => serde_json::from_str::<Map<String, Value>>(json)
            .map_err(|e| ("Other".to_string(), format!("is not a JSON object: {e}")))?,
    };
    let mut typed = Vec::new();
    for (name, kind) in PASSKEY_DATA {
        let column = p.all.column_by_name(name).expect("checked");
        if column.is_null(i) {
            continue;
        }
        let value = match kind {
            Kind::Bytes => Value::String(STANDARD.encode(column.as_binary::<i32>().value(i))),
            Kind::Text => Value::String(column.as_string::<i32>().value(i).to_string()),
            Kind::Integer => Value::from(column.as_primitive::<Int64Type>().value(i)),
            Kind::Bool => Value::Bool(column.as_boolean().value(i)),
            Kind::TextList => Value::Array(
                p.transports
                    .range(i)
                    .enumerate()
                    .map(|(n, j)| {
                        let items = &p.transports.items;
                        if items.is_null(j) {
                            Err((format!("{name}[{n}]"), "is null".to_string()))
                        } else {
                            Ok(Value::String(items.value(j).to_string()))
                        }
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        typed.push((name, value));
    }
    let data = if typed.is_empty() {
        other
    } else {
        let mut other = other;
        let mut data = Map::new();
        for (name, _) in PASSKEY_DATA {
            if let Some(pos) = typed.iter().position(|(n, _)| *n == name) {
                let (_, v) = typed.swap_remove(pos);
                if other.contains_key(name) {
                    return Err((
                        "Other".into(),
                        format!("has `{name}`, which its own column holds already"),
                    ));
                }
                data.insert(name.to_string(), v);
            } else if let Some(v) = other.shift_remove(name) {
                data.insert(name.to_string(), v);
            }
        }
        data.extend(other);
        data
    };
    Ok(Passkey {
        credential_id: CredentialId(p.credential_id.value(i).to_vec()),
        data,
    })
}
