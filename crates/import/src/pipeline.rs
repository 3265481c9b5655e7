//! The record pipeline every command that reads users shares: a reader thread takes the
//! bundle's records in order, a stage runs on each of them on every core (rayon), and
//! the caller's sink takes the results a chunk at a time, in bundle order. Channels are
//! bounded, so memory stays flat. The helper threads run at a lower priority than the
//! caller ([`crate::priority`]), whose thread is, in `load`, the store's single writer.
//!
//! [`map`] is the stage validate, load and plan share: a record decoded and mapped, with
//! the values it claims for itself alone.

use std::sync::mpsc::sync_channel;

use anyhow::Result;
use ferry_bundle::read::RecordError;
use ferry_bundle::{BundleReader, Location, RawRecord, UserRecord};
use ferry_schema::map::Severity;
use ferry_schema::{MapResult, Mapper, NotImported, Problem, RoleIndex};
use ferry_store::{unique_claims, ImportRecord, UniqueClaim};
use rayon::prelude::*;

/// Records per chunk.
pub const CHUNK: usize = 1000;

/// Streams every user of `bundle` through `stage` (on the helper threads) into `sink`,
/// a chunk at a time, in bundle order; stops after `limit` records when given.
pub fn run<T: Send>(
    bundle: &BundleReader,
    limit: Option<u64>,
    stage: &(dyn Fn(RawRecord) -> T + Sync),
    sink: &mut dyn FnMut(Vec<T>) -> Result<()>,
) -> Result<()> {
    run_then(bundle, limit, stage, &|chunk| Ok(chunk), sink)
}

/// [`run`] with a second stage on each whole chunk, on the helper threads, after `stage`
/// ran on each of its records: work that is cheaper for many records together than one
/// at a time (load hashes the recovery codes of a chunk's users in SIMD lanes). `finish`
/// returns the chunk's results in the order it was given them. The chunks reach it one
/// at a time, in bundle order.
pub fn run_then<T: Send, U: Send>(
    bundle: &BundleReader,
    limit: Option<u64>,
    stage: &(dyn Fn(RawRecord) -> T + Sync),
    finish: &(dyn Fn(Vec<T>) -> Result<Vec<U>> + Sync),
    sink: &mut dyn FnMut(Vec<U>) -> Result<()>,
) -> Result<()> {
    let (raw_tx, raw_rx) = sync_channel::<Result<Vec<RawRecord>>>(4);
    let (done_tx, done_rx) = sync_channel::<Result<Vec<U>>>(4);
    let records = bundle.user_records();
    let limit = limit.unwrap_or(u64::MAX);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            crate::priority::helper_thread();
            let mut chunk = Vec::with_capacity(CHUNK);
            for (n, item) in records.enumerate() {
                if n as u64 >= limit {
                    break;
                }
                match item {
                    Ok(raw) => chunk.push(raw),
                    Err(e) => {
                        let _ = raw_tx.send(Err(e.into()));
                        return;
                    }
                }
                if chunk.len() == CHUNK
                    && raw_tx
                        .send(Ok(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))))
                        .is_err()
                {
                    return;
                }
            }
            if !chunk.is_empty() {
                let _ = raw_tx.send(Ok(chunk));
            }
        });
        scope.spawn(move || {
            crate::priority::helper_thread();
            for chunk in raw_rx {
                let done = chunk.and_then(|c| finish(c.into_par_iter().map(stage).collect()));
                if done_tx.send(done).is_err() {
                    return;
                }
            }
        });
        for chunk in done_rx {
            sink(chunk?)?;
        }
        Ok(())
    })
}

/// What records are mapped with: the schema and mapping, and the bundle's roles.
#[derive(Clone, Copy)]
pub struct With<'a> {
    /// The schema and mapping.
    pub mapper: &'a Mapper,
    /// The role id of each of the bundle's roles.
    pub roles: &'a RoleIndex,
}

/// One record after mapping.
pub struct Mapped {
    /// Where it is in the bundle.
    pub location: Location,
    /// The record as read, to find a problem's column in when it is reported.
    pub raw: RawRecord,
    /// Its `Id`, when it has one.
    pub subject: Option<String>,
    /// The import record, when no problem of the mapping is an error.
    pub record: Option<ImportRecord>,
    /// The values the record claims for itself alone, in the order a load checks them.
    pub claims: Vec<UniqueClaim>,
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// Claim types and `Extra` columns no mapping rule imports.
    pub not_imported: Vec<NotImported>,
}

impl Mapped {
    /// Whether any problem is an error.
    pub fn failed(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// The problems that are errors, as one message (for the store's result row).
    pub fn message(&self) -> String {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The stage validate, load and plan share: decode and map one record.
pub fn map(with: With<'_>, raw: RawRecord) -> Mapped {
    let record = raw.decoded();
    map_read(with, raw, record)
}

/// [`map`] for a record the caller decoded already.
pub fn map_read(with: With<'_>, raw: RawRecord, record: Result<UserRecord, RecordError>) -> Mapped {
    let location = raw.location().clone();
    match record {
        Err(e) => Mapped {
            location,
            raw,
            subject: e.subject.clone(),
            record: None,
            claims: Vec::new(),
            problems: vec![Problem {
                column: e.column,
                ..Problem::error(
                    if e.field.is_empty() {
                        "(record)".to_string()
                    } else {
                        e.field
                    },
                    e.message,
                )
            }],
            not_imported: Vec::new(),
        },
        Ok(user) => {
            let MapResult {
                record,
                problems,
                not_imported,
            } = with.mapper.map(&user, with.roles);
            Mapped {
                location,
                raw,
                subject: Some(user.id.0),
                claims: record.as_ref().map(unique_claims).unwrap_or_default(),
                record,
                problems,
                not_imported,
            }
        }
    }
}

/// Formats a problem as a quickfix line, `file:LINE:COLUMN: subject: field: message`
/// (warnings `file:LINE:COLUMN: warning: …`), with the location of the other record it
/// concerns, if any. The column is the field's byte column in the line, 1 when it is not
/// known (a Parquet row, a field the record lacks).
pub fn problem_line(m: &Mapped, p: &Problem) -> String {
    let subject = m.subject.as_deref().unwrap_or("(no Id)");
    let related = p
        .related
        .as_ref()
        .map(|at| format!(" ({at})"))
        .unwrap_or_default();
    let warning = match p.severity {
        Severity::Error => "",
        Severity::Warning => "warning: ",
    };
    format!(
        "{}:{}: {warning}{subject}: {}: {}{related}",
        m.location,
        p.column.or_else(|| m.raw.column_of(&p.field)).unwrap_or(1),
        p.field,
        p.message
    )
}
