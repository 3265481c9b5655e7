//! The record pipeline shared by validate, load and plan: a reader thread reads lines, a
//! mapping thread parses and maps chunks in parallel (rayon), and the caller consumes
//! mapped chunks in bundle order. Channels are bounded, so memory stays flat. The helper
//! threads run at a lower priority than the caller ([`crate::priority`]).

use std::sync::mpsc::sync_channel;

use anyhow::Result;
use ferry_bundle::read::{parse_record, RecordError};
use ferry_bundle::{BundleReader, Location, UserRecord};
use ferry_schema::map::Severity;
use ferry_schema::{MapResult, Mapper, NotImported, Problem, RoleIndex};
use ferry_store::ImportRecord;
use rayon::prelude::*;

/// Records per chunk.
pub const CHUNK: usize = 1000;

/// One record after mapping.
pub struct Mapped {
    /// Where it is in the bundle.
    pub location: Location,
    /// Its `Id`, when it has one.
    pub subject: Option<String>,
    /// The import record, when no problem is an error.
    pub record: Option<ImportRecord>,
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

    /// The problems as one message (for the store's result row).
    pub fn message(&self) -> String {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A line of a user part, parsed on the mapping threads.
type Raw = (Location, String);

/// Options of a pipeline run.
pub struct Options {
    /// Hash recovery codes with this many iterations (load).
    pub hash_recovery_codes: Option<u32>,
    /// Stop after this many records.
    pub limit: Option<u64>,
}

/// What records are mapped with: the schema and mapping, and the bundle's roles.
#[derive(Clone, Copy)]
pub struct With<'a> {
    /// The schema and mapping.
    pub mapper: &'a Mapper,
    /// The role id of each of the bundle's roles.
    pub roles: &'a RoleIndex,
}

/// Streams every user of `bundle` through `mapper` into `sink`, a chunk at a time.
pub fn run(
    bundle: &BundleReader,
    with: With<'_>,
    opts: &Options,
    sink: &mut dyn FnMut(Vec<Mapped>) -> Result<()>,
) -> Result<()> {
    run_with(bundle, with, opts, &|m| m, sink)
}

/// Like [`run`], but each mapped record also goes through `prepare` on the mapping
/// threads, so that the sink's thread only does what must be done in order.
pub fn run_with<T: Send>(
    bundle: &BundleReader,
    with: With<'_>,
    opts: &Options,
    prepare: &(dyn Fn(Mapped) -> T + Sync),
    sink: &mut dyn FnMut(Vec<T>) -> Result<()>,
) -> Result<()> {
    let (raw_tx, raw_rx) = sync_channel::<Result<Vec<Raw>>>(4);
    let (mapped_tx, mapped_rx) = sync_channel::<Result<Vec<T>>>(4);
    let records = bundle.user_lines();
    let limit = opts.limit.unwrap_or(u64::MAX);
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
                let mapped = chunk.map(|c| {
                    c.into_par_iter()
                        .map(|raw| prepare(map_one(with, opts, raw)))
                        .collect()
                });
                if mapped_tx.send(mapped).is_err() {
                    return;
                }
            }
        });
        for chunk in mapped_rx {
            sink(chunk?)?;
        }
        Ok(())
    })
}

fn map_one(with: With<'_>, opts: &Options, (location, line): Raw) -> Mapped {
    let parsed: Result<UserRecord, RecordError> = parse_record(&line);
    drop(line);
    match parsed {
        Err(e) => Mapped {
            location,
            subject: e.subject.clone(),
            record: None,
            problems: vec![Problem {
                field: if e.field.is_empty() {
                    "(record)".into()
                } else {
                    e.field
                },
                message: e.message,
                severity: Severity::Error,
            }],
            not_imported: Vec::new(),
        },
        Ok(user) => {
            let MapResult {
                mut record,
                problems,
                not_imported,
            } = with.mapper.map(&user, with.roles);
            if let (Some(iterations), Some(r)) = (opts.hash_recovery_codes, record.as_mut()) {
                ferry_store::hash_recovery_codes(r, iterations);
            }
            Mapped {
                location,
                subject: Some(user.id.0.clone()),
                record,
                problems,
                not_imported,
            }
        }
    }
}

/// Formats a problem as `file:LINE: subject: field: message` (warnings prefixed).
pub fn problem_line(m: &Mapped, p: &Problem) -> String {
    let subject = m.subject.as_deref().unwrap_or("(no Id)");
    match p.severity {
        Severity::Error => format!("{}: {subject}: {}: {}", m.location, p.field, p.message),
        Severity::Warning => format!(
            "warning: {}: {subject}: {}: {}",
            m.location, p.field, p.message
        ),
    }
}
