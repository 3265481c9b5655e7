//! The Arrow schema of a Parquet users part, version [`SCHEMA_VERSION`].
//!
//! One row per user, with the same column names as the NDJSON record. The user fields
//! are scalar columns of their own types; the child rows are lists of structs inside the
//! user's row, so that a user and everything that hangs off it stay one record, as in
//! NDJSON. `docs/parquet.md` describes every column; `schemas/parquet-users.json` is the
//! same description as data, checked against this module by a test.

use std::sync::{Arc, OnceLock};

use arrow_schema::extension::Json;
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};

/// The version of the Parquet schema this crate writes and reads, recorded in the
/// manifest (`parquet_schema`) and in each file's key-value metadata
/// ([`SCHEMA_VERSION_KEY`]).
pub const SCHEMA_VERSION: u32 = 1;

/// The key of the schema version in a Parquet file's key-value metadata.
pub const SCHEMA_VERSION_KEY: &str = "ferry.parquet_schema";

/// How a known key of a passkey's `Data` is typed in its own column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Standard base64 text in JSON, bytes in Parquet.
    Bytes,
    /// A string.
    Text,
    /// An integer.
    Integer,
    /// A list of strings.
    TextList,
    /// A boolean.
    Bool,
}

/// The keys of the `Data` that ASP.NET writes for a passkey, in its order, each with the
/// column type it gets. Any other key, and any value of a known key that its column
/// cannot hold exactly, goes to the passkey's `Other` column.
pub(crate) const PASSKEY_DATA: [(&str, Kind); 10] = [
    ("PublicKey", Kind::Bytes),
    ("Name", Kind::Text),
    ("CreatedAt", Kind::Text),
    ("SignCount", Kind::Integer),
    ("Transports", Kind::TextList),
    ("IsUserVerified", Kind::Bool),
    ("IsBackupEligible", Kind::Bool),
    ("IsBackedUp", Kind::Bool),
    ("AttestationObject", Kind::Bytes),
    ("ClientDataJson", Kind::Bytes),
];

/// The text columns of a user, in schema order, with whether they may be null.
pub(crate) const USER_TEXT: [(&str, bool); 9] = [
    ("Id", false),
    ("UserName", true),
    ("NormalizedUserName", true),
    ("Email", true),
    ("NormalizedEmail", true),
    ("PasswordHash", true),
    ("SecurityStamp", true),
    ("ConcurrencyStamp", true),
    ("PhoneNumber", true),
];

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn json(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true).with_extension_type(Json::default())
}

fn list(name: &str, item: DataType, nullable: bool) -> Field {
    Field::new(name, DataType::List(item_field(item)), nullable)
}

fn item_field(item: DataType) -> FieldRef {
    Arc::new(Field::new_list_field(item, false))
}

/// The fields of `LockoutEnd`: the instant in UTC (what queries compare), the offset it
/// was written with, and the nanosecond of its second (the 100 ns ticks of .NET, finer
/// than the microseconds of `Utc`).
pub(crate) fn lockout_fields() -> Fields {
    Fields::from(vec![
        Field::new(
            "Utc",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("OffsetSeconds", DataType::Int32, false),
        Field::new("Nanosecond", DataType::Int32, false),
    ])
}

pub(crate) fn claim_fields() -> Fields {
    Fields::from(vec![text("Type", true), text("Value", true)])
}

pub(crate) fn login_fields() -> Fields {
    Fields::from(vec![
        text("LoginProvider", false),
        text("ProviderKey", false),
        text("ProviderDisplayName", true),
    ])
}

pub(crate) fn token_fields() -> Fields {
    Fields::from(vec![
        text("LoginProvider", false),
        text("Name", false),
        text("Value", true),
    ])
}

pub(crate) fn passkey_fields() -> Fields {
    let mut fields = vec![Field::new("CredentialId", DataType::Binary, false)];
    for (name, kind) in PASSKEY_DATA {
        fields.push(match kind {
            Kind::Bytes => Field::new(name, DataType::Binary, true),
            Kind::Text => text(name, true),
            Kind::Integer => Field::new(name, DataType::Int64, true),
            Kind::TextList => list(name, DataType::Utf8, true),
            Kind::Bool => Field::new(name, DataType::Boolean, true),
        });
    }
    fields.push(json("Other"));
    Fields::from(fields)
}

/// The schema of a users part.
pub fn user_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields: Vec<Field> = USER_TEXT[..5]
                .iter()
                .map(|&(name, nullable)| text(name, nullable))
                .collect();
            fields.push(Field::new("EmailConfirmed", DataType::Boolean, false));
            fields.extend(
                USER_TEXT[5..]
                    .iter()
                    .map(|&(name, nullable)| text(name, nullable)),
            );
            fields.extend([
                Field::new("PhoneNumberConfirmed", DataType::Boolean, false),
                Field::new("TwoFactorEnabled", DataType::Boolean, false),
                Field::new("LockoutEnd", DataType::Struct(lockout_fields()), true),
                Field::new("LockoutEnabled", DataType::Boolean, false),
                Field::new("AccessFailedCount", DataType::Int32, false),
                json("Extra"),
                list("Claims", DataType::Struct(claim_fields()), false),
                list("Logins", DataType::Struct(login_fields()), false),
                list("Tokens", DataType::Struct(token_fields()), false),
                list("Roles", DataType::Utf8, false),
                list("Passkeys", DataType::Struct(passkey_fields()), false),
            ]);
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// Whether a column read from a file has the shape ferry expects: the same types and
/// struct field names, whatever the list item names, nullability and metadata (other
/// writers name list items `element` and mark every column nullable; nulls where ferry
/// writes none are reported per record).
pub(crate) fn same_shape(found: &DataType, expected: &DataType) -> bool {
    match (found, expected) {
        (DataType::List(a), DataType::List(b)) => same_shape(a.data_type(), b.data_type()),
        (DataType::Struct(a), DataType::Struct(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b.iter())
                    .all(|(x, y)| x.name() == y.name() && same_shape(x.data_type(), y.data_type()))
        }
        (DataType::Timestamp(unit, Some(_)), DataType::Timestamp(expected_unit, Some(_))) => {
            unit == expected_unit
        }
        (a, b) => a == b,
    }
}

/// A type as the documentation writes it: `utf8`, `list<struct<Type: utf8, …>>`.
pub(crate) fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "utf8".into(),
        DataType::Binary => "binary".into(),
        DataType::Boolean => "bool".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) => format!("timestamp[us, {tz}]"),
        DataType::List(item) => format!("list<{}>", type_name(item.data_type())),
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// The schema as data: for each column, its name, type, whether it may be null and
/// whether it holds JSON text. `schemas/parquet-users.json` is this, pretty-printed.
pub fn describe() -> serde_json::Value {
    fn field(f: &Field) -> serde_json::Value {
        let mut v = serde_json::json!({
            "name": f.name(),
            "type": type_name(f.data_type()),
            "nullable": f.is_nullable(),
        });
        if f.extension_type_name() == Some("arrow.json") {
            v["json"] = true.into();
        }
        let children: Option<&Fields> = match f.data_type() {
            DataType::Struct(fields) => Some(fields),
            DataType::List(item) => match item.data_type() {
                DataType::Struct(fields) => Some(fields),
                _ => None,
            },
            _ => None,
        };
        if let Some(children) = children {
            v["fields"] = children.iter().map(|c| field(c)).collect();
        }
        v
    }
    serde_json::json!({
        "$comment": "The Arrow schema of a ferry Parquet users part (one row per user). Generated from crates/bundle/src/parquet/schema.rs; a test keeps the two equal. See docs/parquet.md.",
        "schema_version": SCHEMA_VERSION,
        "compression": "zstd",
        "columns": user_schema().fields().iter().map(|f| field(f)).collect::<Vec<_>>(),
    })
}
