//! `ferry-import load`: load a bundle into the store.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use clap::ValueEnum;
use ferry_store::{Importer, Item, ItemPreparer, Mode, Policy, RunCounts, RunEnd, Status};
use indicatif::ProgressBar;
use rayon::prelude::*;

use crate::args::{MappingArgs, OutputArgs};
use crate::dupes::{check_ids, SubjectIndex};
use crate::pipeline::{self, problem_line, With};
use crate::summary::{self, NotImportedTally};
use crate::{setup, ExitStatus};

/// Load a bundle into the User Management store.
///
/// Roles come first, from roles.ndjson: a role's name is its role id, or one is made from
/// the name when the name holds characters a role id may not (`Help Desk` → `Help-Desk`;
/// a mapping file's `roles` chooses another). Then every
/// user record is mapped, checked and written atomically inside batch transactions
/// (`--batch-size`): a bad record is reported and never stops the others, and a crash or a
/// kill loses at most the batch in flight, which a re-run then loads.
///
/// A record whose subject already exists is Skipped (the default, so a re-run skips
/// everything already there) or merged into it with `--on-conflict overwrite` (Updated).
/// A record that collides with another subject (a user name, e-mail OTP address,
/// external login, passkey or unique attribute value it already holds), that names a
/// missing role, or that fails validation is Failed, with the other subject named.
///
/// Passwords are stored verbatim as `aspnet-identity` hashes and re-hashed to `pbkdf2`
/// on each user's first login. Recovery codes are hashed on the way in.
///
/// Examples:
///
///   $ ferry-import load bundle/ --schema schemas/scim-user.json --target users.db --limit 20
///   $ ferry-import load bundle/ --schema schemas/scim-user.json --target users.db --report load.csv
///   $ ferry-import load bundle/ --schema schemas/scim-user.json --target postgres://ferry@db/users --parts 1/4
///
/// Exit status: 0 no record failed, 1 some records failed, 2 the load could not run.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The bundle folder.
    pub bundle: PathBuf,
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// The store: a SQLite file, created if missing, or a PostgreSQL server as a
    /// `postgres://` URL or an Npgsql connection string (`?schema=NAME` or
    /// `Search Path=NAME` for the store's schema, `ferry` by default; created if missing).
    #[arg(long)]
    pub target: String,
    /// Load only share K of N of the bundle's users parts (dealt round-robin in manifest
    /// order), so that N loaders, on N machines if you like, load one bundle into one
    /// PostgreSQL store together: run `--parts 1/N` to `--parts N/N`, one each. Each is a
    /// run of its own; `verify --target` proves the union.
    #[arg(long, value_name = "K/N")]
    pub parts: Option<ferry_bundle::Share>,
    /// What to do with a subject that already exists.
    #[arg(long, value_enum, default_value_t = OnConflict::Skip)]
    pub on_conflict: OnConflict,
    /// Records per store transaction. A commit writes every index page the transaction
    /// touched, so fewer, larger transactions load faster into SQLite (default 100,000); a
    /// crash or kill loses at most the transaction in flight (a re-run loads it). Memory
    /// does not grow with it. Into PostgreSQL the default is 1,000, one chunk: a loader
    /// that meets a value another loader has written but not committed waits for that
    /// commit, so short transactions keep loaders running side by side.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: Option<u64>,
    /// Load only the first N records (test with a small batch first).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Write a CSV row (subject_id, file, line, status, reason, message) for every record
    /// that was not Created, and for every Created record that was imported without some
    /// of its data (a claim no mapping rule imports, an e-mail that is not an address).
    #[arg(long, value_name = "FILE.csv")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What to do with a subject that already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnConflict {
    /// Leave it alone (Skipped).
    Skip,
    /// Merge the record into it, in one transaction (Updated).
    Overwrite,
}

/// Failures printed one by one before the rest are only counted.
const PRINTED_FAILURES: u64 = 50;

/// A mapped record made ready for the store on the mapping threads.
struct Prepared {
    /// The record's warnings, formatted.
    warnings: Vec<String>,
    /// What the report says of the record if it is imported: its warnings and the data
    /// no rule imports.
    note: Option<String>,
    not_imported: Vec<ferry_schema::NotImported>,
    item: Item,
}

/// What load's prepare step does on the mapping threads, beyond mapping.
struct Preparation {
    /// Hash recovery codes with this many iterations (the store's setting).
    recovery_iterations: u32,
    /// The store's own work on each item.
    store: ItemPreparer,
    /// The `Id`s of the records before, to fail a record whose `Id` an earlier one has
    /// (the store would skip it as existing, and one account would be lost unseen).
    ids: Mutex<SubjectIndex>,
}

/// 2FA users whose recovery codes are hashed together: 40 codes when each has ASP.NET's
/// ten, five full batches of 8 AVX-512 lanes (ten of 4 AVX2 lanes), and a chunk of 1,000
/// records with 5% on 2FA still splits into a dozen tasks to share among the cores.
const RECOVERY_GROUP: usize = 4;

/// Prepares a chunk of mapped records: the recovery codes of its users hashed in groups
/// of [`RECOVERY_GROUP`] users on every core, then each record made ready for the store.
fn prepare_chunk(mut chunk: Vec<pipeline::Mapped>, p: &Preparation) -> Result<Vec<Prepared>> {
    check_ids(&p.ids.lock().expect("not poisoned"), &mut chunk)?;
    let mut with_codes: Vec<&mut ferry_store::ImportRecord> = chunk
        .iter_mut()
        .filter_map(|m| m.record.as_mut())
        .filter(|r| !r.recovery_codes.is_empty())
        .collect();
    with_codes
        .par_chunks_mut(RECOVERY_GROUP)
        .for_each(|group| ferry_store::hash_recovery_codes_of(group, p.recovery_iterations));
    Ok(chunk.into_par_iter().map(|m| prepare(m, p)).collect())
}

fn prepare(mut m: pipeline::Mapped, p: &Preparation) -> Prepared {
    // Its recovery codes were hashed with the chunk's (prepare_chunk).
    if let Some(r) = m.record.as_mut() {
        ferry_store::hash_clear_password(r);
    }
    let warning_problems: Vec<&ferry_schema::Problem> = m
        .problems
        .iter()
        .filter(|p| p.severity == ferry_schema::map::Severity::Warning)
        .collect();
    let warnings = warning_problems
        .iter()
        .map(|p| problem_line(&m, p))
        .collect();
    let mut notes: Vec<String> = warning_problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect();
    notes.extend(summary::record_note(&m.not_imported));
    let message = m.message();
    let mut item = Item::with_claims(
        m.subject,
        m.location.file,
        m.location.line,
        m.record.ok_or(message),
        m.claims,
    );
    (p.store)(&mut item);
    Prepared {
        warnings,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        not_imported: m.not_imported,
        item,
    }
}

/// Writes chunks of records as they come and commits every `batch_size` records, so that
/// mapping (on the other threads) and writing overlap.
struct Loader<'a, 's> {
    importer: Box<dyn Importer + 's>,
    json: bool,
    progress: &'a ProgressBar,
    log_batches: bool,
    report: Option<&'a mut csv::Writer<std::fs::File>>,
    batch_size: u64,
    batch_no: u64,
    /// Records written since the last commit, and what became of them.
    in_batch: u64,
    batch: RunCounts,
    /// What became of the records committed so far.
    counts: RunCounts,
    /// Test only: end the process abruptly, as `kill -9` would, after this many commits
    /// (`FERRY_TEST_ABORT_AFTER_COMMITS`), so that tests of an interrupted load are exact.
    abort_after: Option<u64>,
}

impl Loader<'_, '_> {
    fn write(&mut self, mut items: &[Item], mut notes: &[Option<String>]) -> Result<()> {
        while !items.is_empty() {
            let room = (self.batch_size - self.in_batch).min(items.len() as u64) as usize;
            let (now, rest) = items.split_at(room);
            let (now_notes, rest_notes) = notes.split_at(room);
            self.write_batch_part(now, now_notes)?;
            items = rest;
            notes = rest_notes;
        }
        Ok(())
    }

    /// Writes records that fit in the current batch, and commits it when it is full.
    fn write_batch_part(&mut self, items: &[Item], notes: &[Option<String>]) -> Result<()> {
        let outcomes = self.importer.write(items)?;
        for ((item, o), note) in items.iter().zip(&outcomes).zip(notes) {
            self.batch.add(o.status);
            let printed = self.counts.failed + self.batch.failed <= PRINTED_FAILURES;
            if o.status == Status::Failed && printed && !self.json {
                self.progress.suspend(|| {
                    eprintln!(
                        "FAILED {} ({}:{}): {}",
                        item.subject.as_deref().unwrap_or("(no Id)"),
                        item.file,
                        item.line,
                        o.message.as_deref().unwrap_or("")
                    )
                });
            }
            let message = match (o.status, o.message.as_deref(), note) {
                (Status::Created, _, None) => None,
                (Status::Created | Status::Updated, _, Some(note)) => Some(note.as_str()),
                (_, message, _) => Some(message.unwrap_or("")),
            };
            if let (Some(w), Some(message)) = (self.report.as_mut(), message) {
                w.write_record([
                    item.subject.as_deref().unwrap_or(""),
                    &item.file,
                    &item.line.to_string(),
                    o.status.as_str(),
                    o.reason.map(|r| r.as_str()).unwrap_or(""),
                    message,
                ])?;
            }
        }
        self.in_batch += items.len() as u64;
        if self.in_batch >= self.batch_size {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        if self.in_batch == 0 {
            return Ok(());
        }
        self.importer.commit()?;
        self.batch_no += 1;
        if self.abort_after == Some(self.batch_no) {
            std::process::abort();
        }
        let batch = std::mem::take(&mut self.batch);
        self.in_batch = 0;
        self.counts += batch;
        if self.log_batches {
            eprintln!(
                "Batch {}: created={}, updated={}, skipped={}, failed={}",
                self.batch_no, batch.created, batch.updated, batch.skipped, batch.failed
            );
        }
        Ok(())
    }
}

pub fn run(args: Args) -> Result<ExitStatus> {
    let started = Instant::now();
    let mut bundle = setup::bundle(&args.bundle)?;
    setup::require_sealed(&bundle)?;
    if let Some(share) = args.parts {
        bundle.restrict_to(share);
        let parts = bundle.manifest().user_parts().count();
        if parts < share.of() as usize && !args.output.json {
            eprintln!(
                "warning: the bundle has {parts} users parts for {} shares, so some shares have none; export with a smaller --part-size to share the work",
                share.of()
            );
        }
    }
    let json = args.output.json;
    let mapper = setup::mapper(&args.mapping.schema, args.mapping.mapping.as_ref(), json)?;
    let mut store = setup::store(&args.target, Mode::ReadWrite)?;
    let roles = setup::roles(&bundle, &mapper, json)?;
    let new_roles = store.create_roles(&roles.create)?;
    if !json {
        eprintln!(
            "roles: {} in the bundle, {new_roles} created",
            roles.create.len()
        );
    }
    let policy = match args.on_conflict {
        OnConflict::Skip => Policy::Skip,
        OnConflict::Overwrite => Policy::Overwrite,
    };
    let run_of = match args.parts {
        Some(share) => format!("{} (parts {share})", args.bundle.display()),
        None => args.bundle.display().to_string(),
    };
    let run = store.begin_run(&run_of, policy)?;
    let mut report = match &args.report {
        Some(path) => {
            let mut w = csv::Writer::from_writer(crate::private::create_file(path)?);
            w.write_record(["subject_id", "file", "line", "status", "reason", "message"])?;
            Some(w)
        }
        None => None,
    };
    let total = bundle.users_to_read().min(args.limit.unwrap_or(u64::MAX));
    let progress = setup::progress(total, "loading");
    let log_batches = progress.is_hidden() && !json;
    let preparation = Preparation {
        recovery_iterations: store.recovery_code_iterations(),
        store: store.item_preparer(),
        ids: Mutex::new(SubjectIndex::new()?),
    };
    let mut not_imported = NotImportedTally::default();
    let target = store.describe();
    let batch_size = args.batch_size.unwrap_or(store.batch_size());
    // The loader borrows the store until its block ends.
    let (written, counts) = {
        let mut loader = Loader {
            importer: store.importer(run, policy)?,
            json,
            progress: &progress,
            log_batches,
            report: report.as_mut(),
            batch_size,
            batch_no: 0,
            in_batch: 0,
            batch: RunCounts::default(),
            counts: RunCounts::default(),
            abort_after: std::env::var("FERRY_TEST_ABORT_AFTER_COMMITS")
                .ok()
                .and_then(|n| n.parse().ok()),
        };
        let with = With {
            mapper: &mapper,
            roles: &roles.index,
        };
        let stage = |raw| pipeline::map(with, raw);
        let finish = |chunk| prepare_chunk(chunk, &preparation);
        let written = pipeline::run_then(&bundle, args.limit, &stage, &finish, &mut |chunk| {
            if !json {
                for w in chunk.iter().flat_map(|p| &p.warnings) {
                    progress.suspend(|| eprintln!("{w}"));
                }
            }
            progress.inc(chunk.len() as u64);
            let mut items = Vec::with_capacity(chunk.len());
            let mut notes = Vec::with_capacity(chunk.len());
            for p in chunk {
                not_imported.add(&p.not_imported);
                items.push(p.item);
                notes.push(p.note);
            }
            loader.write(&items, &notes)?;
            // Freeing a chunk's records is work the writer need not wait for.
            rayon::spawn(move || drop(items));
            Ok(())
        })
        .and_then(|()| loader.commit());
        (written, loader.counts)
    };
    progress.finish_and_clear();
    if let Err(e) = written {
        // The run ends `failed` with the reason, and the counts of what it committed
        // (the batch in flight was rolled back). If even that cannot be written (a full
        // disk), the next load marks the run interrupted; its counts are already those
        // of its commits.
        let _ = store.finish_run(run, &RunEnd::Failed(format!("{e:#}")), counts);
        return Err(e.context(format!(
            "the load stopped; run {} ended `failed` with {} committed (a re-run resumes: what is in the store is skipped)",
            run.0,
            summary::count(counts.created + counts.updated + counts.skipped + counts.failed, "record", "records"),
        )));
    }
    store.finish_run(run, &RunEnd::Completed, counts)?;
    let RunCounts {
        created,
        updated,
        skipped,
        failed,
    } = counts;
    if let Some(mut w) = report {
        w.flush()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "target": target,
                "run": run.0,
                "created": created, "updated": updated, "skipped": skipped, "failed": failed,
                "not_imported": not_imported.to_json(),
                "elapsed_seconds": elapsed,
            })
        );
    } else {
        if failed > PRINTED_FAILURES {
            eprintln!(
                "… and {} more failures{}",
                failed - PRINTED_FAILURES,
                if args.report.is_some() {
                    " (all in the report)"
                } else {
                    "; --report FILE.csv lists them all"
                }
            );
        }
        for line in not_imported.lines() {
            eprintln!("{line}");
        }
        eprintln!("Import complete. Created: {created}, Updated: {updated}, Skipped: {skipped}, Failed: {failed} ({elapsed:.1}s)");
    }
    Ok(ExitStatus::failed_if(failed > 0))
}
