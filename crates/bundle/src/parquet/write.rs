//! Writing users into a Parquet part: records are gathered column by column into a batch
//! of [`BATCH_ROWS`] users, each batch is handed to the Parquet writer, and the writer
//! flushes a row group whenever the encoded data it holds reaches [`ROW_GROUP_BYTES`]: so
//! memory is bounded by one row group, however large the part.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::{
    ArrayRef, BooleanArray, Int32Array, ListArray, RecordBatch, StructArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, FixedOffset, Timelike as _};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde_json::{Map, Value};

use super::schema::{self, Kind, PASSKEY_DATA, SCHEMA_VERSION, SCHEMA_VERSION_KEY};
use crate::record::{Passkey, UserRecord};

/// Users gathered before they are handed to the Parquet writer.
pub(crate) const BATCH_ROWS: usize = 8192;

/// The encoded size at which a row group is flushed: tens of thousands of users, big
/// enough to compress well and to be read a row group at a time.
pub(crate) const ROW_GROUP_BYTES: usize = 48 * 1024 * 1024;

/// The zstd level. Most of a users part is random (hashes, stamps, GUIDs), which no level
/// compresses; on a 1,000,000-user export level 1 made parts 1.7% larger than level 3
/// (183 MB against 180 MB) and saved about a tenth of the export's time.
const ZSTD_LEVEL: i32 = 1;

/// Columns whose values are (nearly) all distinct: a dictionary would only be built to
/// be thrown away.
const NO_DICTIONARY: [&[&str]; 8] = [
    &["Id"],
    &["UserName"],
    &["NormalizedUserName"],
    &["Email"],
    &["NormalizedEmail"],
    &["PasswordHash"],
    &["SecurityStamp"],
    &["ConcurrencyStamp"],
];

/// A Parquet users part being written into `W`.
pub(crate) struct PartWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    batch: Batch,
}

impl<W: Write + Send> PartWriter<W> {
    pub(crate) fn new(out: W) -> parquet::errors::Result<PartWriter<W>> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level"),
            ))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_max_row_group_row_count(None)
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                SCHEMA_VERSION_KEY.to_string(),
                SCHEMA_VERSION.to_string(),
            )]));
        for column in NO_DICTIONARY {
            let path = ColumnPath::new(column.iter().map(|s| s.to_string()).collect());
            props = props.set_column_dictionary_enabled(path, false);
        }
        let writer = ArrowWriter::try_new(out, schema::user_schema(), Some(props.build()))?;
        Ok(PartWriter {
            writer,
            batch: Batch::default(),
        })
    }

    /// Adds one user.
    pub(crate) fn push(&mut self, record: &UserRecord) -> parquet::errors::Result<()> {
        self.batch.push(record);
        if self.batch.rows >= BATCH_ROWS {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> parquet::errors::Result<()> {
        if self.batch.rows > 0 {
            let batch = std::mem::take(&mut self.batch).finish();
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    /// Writes what is left and the footer, and returns the output.
    pub(crate) fn finish(mut self) -> parquet::errors::Result<W> {
        self.write_batch()?;
        self.writer.into_inner()
    }
}

/// Offsets of a list column: where each row's items start.
struct Offsets(Vec<i32>);

impl Default for Offsets {
    fn default() -> Offsets {
        Offsets(vec![0])
    }
}

impl Offsets {
    fn push(&mut self, items: usize) {
        let last = *self.0.last().expect("starts with 0");
        self.0
            .push(last + i32::try_from(items).expect("fewer than 2^31 child rows in a batch"));
    }

    fn finish(self) -> OffsetBuffer<i32> {
        OffsetBuffer::new(ScalarBuffer::from(self.0))
    }
}

fn list(items: ArrayRef, offsets: Offsets, nulls: Option<arrow_buffer::NullBuffer>) -> ArrayRef {
    let item = Arc::new(arrow_schema::Field::new_list_field(
        items.data_type().clone(),
        false,
    ));
    Arc::new(ListArray::new(item, offsets.finish(), items, nulls))
}

fn structure(fields: arrow_schema::Fields, arrays: Vec<ArrayRef>) -> ArrayRef {
    Arc::new(StructArray::new(fields, arrays, None))
}

/// The columns of up to [`BATCH_ROWS`] users.
#[derive(Default)]
struct Batch {
    rows: usize,
    text: [StringBuilder; 9],
    email_confirmed: BooleanBuilder,
    phone_number_confirmed: BooleanBuilder,
    two_factor_enabled: BooleanBuilder,
    lockout: Lockout,
    lockout_enabled: BooleanBuilder,
    access_failed_count: Int32Builder,
    extra: StringBuilder,
    claims: Pairs,
    logins: Triples,
    tokens: Triples,
    roles: (Offsets, StringBuilder),
    passkeys: Passkeys,
}

#[derive(Default)]
struct Lockout {
    utc: Vec<i64>,
    offset: Vec<i32>,
    nanosecond: Vec<i32>,
    valid: Vec<bool>,
}

impl Lockout {
    fn push(&mut self, value: Option<&DateTime<FixedOffset>>) {
        match value {
            Some(t) => {
                self.utc.push(t.timestamp_micros());
                self.offset.push(t.offset().local_minus_utc());
                self.nanosecond.push(t.nanosecond() as i32);
                self.valid.push(true);
            }
            None => {
                self.utc.push(0);
                self.offset.push(0);
                self.nanosecond.push(0);
                self.valid.push(false);
            }
        }
    }

    fn finish(self) -> ArrayRef {
        let nulls = self.valid.iter().any(|v| !v).then(|| self.valid.into());
        Arc::new(StructArray::new(
            schema::lockout_fields(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(self.utc).with_timezone("UTC")),
                Arc::new(Int32Array::from(self.offset)),
                Arc::new(Int32Array::from(self.nanosecond)),
            ],
            nulls,
        ))
    }
}

#[derive(Default)]
struct Pairs {
    offsets: Offsets,
    a: StringBuilder,
    b: StringBuilder,
}

#[derive(Default)]
struct Triples {
    offsets: Offsets,
    a: StringBuilder,
    b: StringBuilder,
    c: StringBuilder,
}

impl Triples {
    fn finish(mut self, fields: arrow_schema::Fields) -> ArrayRef {
        let items = structure(
            fields,
            vec![
                Arc::new(self.a.finish()),
                Arc::new(self.b.finish()),
                Arc::new(self.c.finish()),
            ],
        );
        list(items, self.offsets, None)
    }
}

#[derive(Default)]
struct Passkeys {
    offsets: Offsets,
    credential_id: BinaryBuilder,
    bytes: [BinaryBuilder; 3],
    text: [StringBuilder; 2],
    sign_count: Int64Builder,
    transports: (Offsets, StringBuilder, NullBufferBuilderDefault),
    bools: [BooleanBuilder; 3],
    other: StringBuilder,
}

/// A [`NullBufferBuilder`] that can be defaulted.
struct NullBufferBuilderDefault(NullBufferBuilder);

impl Default for NullBufferBuilderDefault {
    fn default() -> Self {
        NullBufferBuilderDefault(NullBufferBuilder::new(0))
    }
}

/// What a passkey `Data` value becomes in its typed column, if that column holds it
/// exactly.
enum Typed<'a> {
    Bytes(Vec<u8>),
    Text(&'a str),
    Integer(i64),
    TextList(Vec<&'a str>),
    Bool(bool),
}

fn typed(kind: Kind, value: &Value) -> Option<Typed<'_>> {
    match (kind, value) {
        (Kind::Bytes, Value::String(s)) => {
            let bytes = STANDARD.decode(s).ok()?;
            (STANDARD.encode(&bytes) == *s).then_some(Typed::Bytes(bytes))
        }
        (Kind::Text, Value::String(s)) => Some(Typed::Text(s)),
        (Kind::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            n.as_i64().map(Typed::Integer)
        }
        (Kind::TextList, Value::Array(items)) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .map(Typed::TextList),
        (Kind::Bool, Value::Bool(b)) => Some(Typed::Bool(*b)),
        _ => None,
    }
}

/// Whether rebuilding `data` from its columns (the known keys in ASP.NET's order, then
/// the rest in theirs) gives back its own key order.
fn canonical_order(data: &Map<String, Value>) -> bool {
    let mut last = None;
    let mut unknown_seen = false;
    for key in data.keys() {
        match PASSKEY_DATA.iter().position(|(k, _)| k == key) {
            Some(i) => {
                if unknown_seen || last.is_some_and(|l| l >= i) {
                    return false;
                }
                last = Some(i);
            }
            None => unknown_seen = true,
        }
    }
    true
}

impl Passkeys {
    fn push(&mut self, passkeys: &[Passkey]) {
        self.offsets.push(passkeys.len());
        for p in passkeys {
            self.credential_id.append_value(&p.credential_id.0);
            // A Data whose keys are not in ASP.NET's order is kept whole in `Other`, so
            // that it comes back key for key.
            let split = canonical_order(&p.data);
            let mut other = Map::new();
            let (mut b, mut t, mut o) = (0, 0, 0);
            for (name, kind) in PASSKEY_DATA {
                let value = p.data.get(name);
                let fit = value.filter(|_| split).and_then(|v| typed(kind, v));
                if fit.is_none() {
                    if let Some(v) = value {
                        other.insert(name.to_string(), v.clone());
                    }
                }
                match kind {
                    Kind::Bytes => {
                        match fit {
                            Some(Typed::Bytes(v)) => self.bytes[b].append_value(v),
                            _ => self.bytes[b].append_null(),
                        }
                        b += 1;
                    }
                    Kind::Text => {
                        match fit {
                            Some(Typed::Text(v)) => self.text[t].append_value(v),
                            _ => self.text[t].append_null(),
                        }
                        t += 1;
                    }
                    Kind::Integer => match fit {
                        Some(Typed::Integer(v)) => self.sign_count.append_value(v),
                        _ => self.sign_count.append_null(),
                    },
                    Kind::TextList => {
                        let (offsets, values, nulls) = &mut self.transports;
                        match fit {
                            Some(Typed::TextList(items)) => {
                                offsets.push(items.len());
                                for item in items {
                                    values.append_value(item);
                                }
                                nulls.0.append_non_null();
                            }
                            _ => {
                                offsets.push(0);
                                nulls.0.append_null();
                            }
                        }
                    }
                    Kind::Bool => {
                        match fit {
                            Some(Typed::Bool(v)) => self.bools[o].append_value(v),
                            _ => self.bools[o].append_null(),
                        }
                        o += 1;
                    }
                }
            }
            for (k, v) in &p.data {
                if !PASSKEY_DATA.iter().any(|(name, _)| name == k) {
                    other.insert(k.clone(), v.clone());
                }
            }
            if !split {
                other = p.data.clone();
            }
            if other.is_empty() {
                self.other.append_null();
            } else {
                self.other
                    .append_value(serde_json::to_string(&other).expect("JSON values serialise"));
            }
        }
    }

    fn finish(mut self) -> ArrayRef {
        let (offsets, mut values, mut nulls) = self.transports;
        let transports = list(Arc::new(values.finish()), offsets, nulls.0.finish());
        let [mut public_key, mut attestation, mut client_data] = self.bytes;
        let [mut name, mut created_at] = self.text;
        let [mut verified, mut eligible, mut backed_up] = self.bools;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.credential_id.finish()),
            Arc::new(public_key.finish()),
            Arc::new(name.finish()),
            Arc::new(created_at.finish()),
            Arc::new(self.sign_count.finish()),
            transports,
            Arc::new(verified.finish()),
            Arc::new(eligible.finish()),
            Arc::new(backed_up.finish()),
            Arc::new(attestation.finish()),
            Arc::new(client_data.finish()),
            Arc::new(self.other.finish()),
        ];
        list(
            structure(schema::passkey_fields(), columns),
            self.offsets,
            None,
        )
    }
}

impl Batch {
    fn push(&mut self, r: &UserRecord) {
        self.rows += 1;
        let text = [
            Some(r.id.as_str()),
            r.user_name.as_deref(),
            r.normalized_user_name.as_deref(),
            r.email.as_deref(),
            r.normalized_email.as_deref(),
            r.password_hash.as_deref(),
            r.security_stamp.as_deref(),
            r.concurrency_stamp.as_deref(),
            r.phone_number.as_deref(),
        ];
        for (builder, value) in self.text.iter_mut().zip(text) {
            builder.append_option(value);
        }
        self.email_confirmed.append_value(r.email_confirmed);
        self.phone_number_confirmed
            .append_value(r.phone_number_confirmed);
        self.two_factor_enabled.append_value(r.two_factor_enabled);
        self.lockout.push(r.lockout_end.as_ref());
        self.lockout_enabled.append_value(r.lockout_enabled);
        self.access_failed_count.append_value(r.access_failed_count);
        if r.extra.is_empty() {
            self.extra.append_null();
        } else {
            self.extra
                .append_value(serde_json::to_string(&r.extra).expect("JSON values serialise"));
        }
        self.claims.offsets.push(r.claims.len());
        for c in &r.claims {
            self.claims.a.append_option(c.claim_type.as_deref());
            self.claims.b.append_option(c.value.as_deref());
        }
        self.logins.offsets.push(r.logins.len());
        for l in &r.logins {
            self.logins.a.append_value(&l.login_provider);
            self.logins.b.append_value(&l.provider_key);
            self.logins
                .c
                .append_option(l.provider_display_name.as_deref());
        }
        self.tokens.offsets.push(r.tokens.len());
        for t in &r.tokens {
            self.tokens.a.append_value(&t.login_provider);
            self.tokens.b.append_value(&t.name);
            self.tokens.c.append_option(t.value.as_deref());
        }
        self.roles.0.push(r.roles.len());
        for role in &r.roles {
            self.roles.1.append_value(role);
        }
        self.passkeys.push(&r.passkeys);
    }

    fn finish(self) -> RecordBatch {
        let Batch {
            rows: _,
            text,
            mut email_confirmed,
            mut phone_number_confirmed,
            mut two_factor_enabled,
            lockout,
            mut lockout_enabled,
            mut access_failed_count,
            mut extra,
            mut claims,
            logins,
            tokens,
            roles,
            passkeys,
        } = self;
        let mut text = text
            .map(|mut b| Arc::new(b.finish()) as ArrayRef)
            .into_iter();
        let mut columns: Vec<ArrayRef> = text.by_ref().take(5).collect();
        columns.push(bools(&mut email_confirmed));
        columns.extend(text);
        columns.extend([
            bools(&mut phone_number_confirmed),
            bools(&mut two_factor_enabled),
            lockout.finish(),
            bools(&mut lockout_enabled),
            Arc::new(access_failed_count.finish()),
            Arc::new(extra.finish()),
            list(
                structure(
                    schema::claim_fields(),
                    vec![Arc::new(claims.a.finish()), Arc::new(claims.b.finish())],
                ),
                claims.offsets,
                None,
            ),
            logins.finish(schema::login_fields()),
            tokens.finish(schema::token_fields()),
            {
                let (offsets, mut values) = roles;
                list(Arc::new(values.finish()), offsets, None)
            },
            passkeys.finish(),
        ]);
        RecordBatch::try_new(schema::user_schema(), columns)
            .expect("the batch is built to the schema")
    }
}

fn bools(b: &mut BooleanBuilder) -> ArrayRef {
    let array: BooleanArray = b.finish();
    Arc::new(array)
}
