//! `ferry-import load`: load a bundle into the store.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::ValueEnum;
use ferry_store::{Item, Policy, RunId, SqliteStore, Status};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::{self, problem_line, Options};
use crate::{setup, ExitStatus};

/// Load a bundle into the User Management store.
///
/// Roles come first, from roles.ndjson (a role's name becomes its role id). Then every
/// user record is mapped, checked and written in its own savepoint inside batch
/// transactions: a bad record is reported and never stops the others, and a crash or a
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
///
/// Exit status: 0 no record failed, 1 some records failed, 2 the load could not run.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// The attribute schema file (e.g. schemas/scim-user.json).
    #[arg(long)]
    pub schema: PathBuf,
    /// The store: a SQLite file, created if missing.
    #[arg(long)]
    pub target: PathBuf,
    /// The mapping file (default: schemas/mapping.default.json, built in).
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// What to do with a subject that already exists.
    #[arg(long, value_enum, default_value_t = OnConflict::Skip)]
    pub on_conflict: OnConflict,
    /// Load only the first N records (test with a small batch first).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Write a CSV row (subject_id, file, line, status, reason, message) for every record
    /// that was not Created.
    #[arg(long, value_name = "FILE.csv")]
    pub report: Option<PathBuf>,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    pub json: bool,
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

/// Records per store transaction. Larger batches write each touched index page once per
/// commit instead of many times; a crash loses at most one batch, which a re-run loads.
const BATCH: usize = 25_000;

#[derive(Default, Clone, Copy)]
struct Counts {
    created: u64,
    updated: u64,
    skipped: u64,
    failed: u64,
}

/// Collects records into batches and writes each batch in one store transaction.
struct Loader<'a> {
    store: &'a mut SqliteStore,
    run: RunId,
    policy: Policy,
    json: bool,
    progress: &'a ProgressBar,
    log_batches: bool,
    report: Option<&'a mut csv::Writer<std::fs::File>>,
    seq: u64,
    batch_no: u64,
    counts: Counts,
    pending: Vec<Item>,
}

impl Loader<'_> {
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let items = std::mem::take(&mut self.pending);
        self.batch_no += 1;
        let outcomes = self
            .store
            .import_batch(self.run, self.policy, &items, self.seq)?;
        self.seq += items.len() as u64;
        let mut batch = Counts::default();
        for (item, o) in items.iter().zip(&outcomes) {
            match o.status {
                Status::Created => batch.created += 1,
                Status::Updated => batch.updated += 1,
                Status::Skipped => batch.skipped += 1,
                Status::Failed => {
                    batch.failed += 1;
                    if self.counts.failed + batch.failed <= PRINTED_FAILURES && !self.json {
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
                }
            }
            if o.status != Status::Created {
                if let Some(w) = self.report.as_mut() {
                    w.write_record([
                        item.subject.as_deref().unwrap_or(""),
                        &item.file,
                        &item.line.to_string(),
                        o.status.as_str(),
                        o.reason.map(|r| r.as_str()).unwrap_or(""),
                        o.message.as_deref().unwrap_or(""),
                    ])?;
                }
            }
        }
        self.counts.created += batch.created;
        self.counts.updated += batch.updated;
        self.counts.skipped += batch.skipped;
        self.counts.failed += batch.failed;
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
    let bundle = setup::bundle(&args.bundle)?;
    setup::require_sealed(&bundle)?;
    let mut mapper = setup::mapper(&args.schema, args.mapping.as_ref(), args.json)?;
    let mut store = SqliteStore::open(&args.target)?;
    let (roles, role_problems) = setup::roles(&bundle, &mut mapper)?;
    for p in &role_problems {
        eprintln!("warning: {p}; its members will fail until it is renamed in roles.ndjson");
    }
    let new_roles = store.create_roles(&roles)?;
    if !args.json {
        eprintln!(
            "roles: {} in the bundle, {new_roles} created",
            roles.len() + role_problems.len()
        );
    }
    let policy = match args.on_conflict {
        OnConflict::Skip => Policy::Skip,
        OnConflict::Overwrite => Policy::Overwrite,
    };
    let run = store.begin_run(&args.bundle.display().to_string(), policy)?;
    let mut report = match &args.report {
        Some(path) => {
            let mut w = csv::Writer::from_path(path)
                .with_context(|| format!("cannot create `{}`", path.display()))?;
            w.write_record(["subject_id", "file", "line", "status", "reason", "message"])?;
            Some(w)
        }
        None => None,
    };
    let total = bundle
        .manifest()
        .counts
        .users
        .min(args.limit.unwrap_or(u64::MAX));
    let progress = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} loading {bar:40} {human_pos}/{human_len} ({per_sec}, {eta} left)",
        )
        .expect("valid template"),
    );
    let log_batches = progress.is_hidden() && !args.json;
    let iterations = store.recovery_code_iterations();
    let opts = Options {
        hash_recovery_codes: Some(iterations),
        limit: args.limit,
    };
    let mut loader = Loader {
        store: &mut store,
        run,
        policy,
        json: args.json,
        progress: &progress,
        log_batches,
        report: report.as_mut(),
        seq: 0,
        batch_no: 0,
        counts: Counts::default(),
        pending: Vec::with_capacity(BATCH),
    };
    pipeline::run(&bundle, &mapper, &opts, &mut |chunk| {
        for m in &chunk {
            for p in m
                .problems
                .iter()
                .filter(|p| p.severity == ferry_schema::map::Severity::Warning)
            {
                if !args.json {
                    progress.suspend(|| eprintln!("{}", problem_line(m, p)));
                }
            }
        }
        progress.inc(chunk.len() as u64);
        loader.pending.extend(chunk.into_iter().map(|m| {
            let message = m.message();
            Item {
                subject: m.subject.clone(),
                file: m.location.file.clone(),
                line: m.location.line,
                record: m.record.ok_or(message),
            }
        }));
        if loader.pending.len() >= BATCH {
            loader.flush()?;
        }
        Ok(())
    })?;
    loader.flush()?;
    let Counts {
        created,
        updated,
        skipped,
        failed,
    } = loader.counts;
    progress.finish_and_clear();
    store.finish_run(run, "completed")?;
    if let Some(mut w) = report {
        w.flush()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "target": args.target.display().to_string(),
                "run": run.0,
                "created": created, "updated": updated, "skipped": skipped, "failed": failed,
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
        eprintln!("Import complete. Created: {created}, Updated: {updated}, Skipped: {skipped}, Failed: {failed} ({elapsed:.1}s)");
    }
    Ok(if failed > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
