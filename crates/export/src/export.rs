//! The export: source → bounded channel → bundle writer.

use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

use anyhow::{Context, Result};
use ferry_aspnet::{
    CsvSource, Description, IdentitySource, MysqlSource, PostgresSource, SqliteSource,
};
use ferry_bundle::manifest::{Counts, MigrationHistory, MigrationRow, Source};
use ferry_bundle::{BundleWriter, Encoding, ManifestInfo, RoleRecord, UserRecord};

use crate::args::{Args, Format};
use crate::output::{self, Summary};
use ferry_bundle::staging::Staging;

/// Users per message between the reader and the writer thread.
const CHUNK: usize = 512;
/// Messages in flight: the reader can be at most this many chunks ahead.
const IN_FLIGHT: usize = 8;

enum Message {
    Role(RoleRecord),
    Users(Vec<UserRecord>),
}

/// Opens the source named on the command line (or in the application's appsettings.json);
/// `scratch` is a private folder for what a source needs on disk (a copy of a WAL-mode
/// SQLite file, the spooled tables of a MySQL source, the sorted runs of CSV dumps).
fn open_source(args: &Args, scratch: &Path) -> Result<Box<dyn IdentitySource + Send>> {
    let text = match (&args.source, &args.appsettings) {
        (Some(source), _) => source.clone(),
        (None, Some(file)) => ferry_connect::appsettings::connection_string(
            file,
            &args.connection_name,
            args.environment.as_deref(),
        )?,
        (None, None) => unreachable!("clap requires --source or --appsettings"),
    };
    Ok(match ferry_connect::Spec::parse(&text)? {
        ferry_connect::Spec::Sqlite(path) => Box::new(SqliteSource::open_in(&path, scratch)?),
        ferry_connect::Spec::Server(address) => match address.engine {
            ferry_connect::Engine::Postgres => Box::new(PostgresSource::open(&address, scratch)?),
            ferry_connect::Engine::Mysql => Box::new(MysqlSource::open(&address, scratch)?),
        },
        ferry_connect::Spec::Csv(dir) => Box::new(CsvSource::open(&dir, scratch)?),
    })
}

pub fn run(args: &Args) -> Result<()> {
    let encoding = match args.format {
        Format::Ndjson => Encoding::Ndjson,
        Format::Parquet => Encoding::Parquet,
    };
    let started = Instant::now();
    let (staging, said) = Staging::prepare(&args.out, args.force)?;
    for line in &said {
        eprintln!("{line}");
    }
    let mut source = open_source(args, staging.path())?;
    let description = source.description().clone();
    let total = match args.limit {
        Some(limit) => source.user_count()?.min(limit),
        None => source.user_count()?,
    };
    let progress = output::progress(total);
    let writer = BundleWriter::new(staging.path(), encoding, args.part_size)?;

    let (tx, rx) = sync_channel::<Message>(IN_FLIGHT);
    let limit = args.limit;
    let (read, written) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<Counts> {
            let mut role_counts = source.roles(&mut |role| {
                tx.send(Message::Role(role))
                    .map_err(|_| ferry_aspnet::Error::Visitor("the writer stopped".into()))
            })?;
            if std::env::var_os("FERRY_TEST_PAUSE_AFTER_ROLES").is_some() {
                pause();
            }
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut counts = source.users(limit, &mut |user| {
                chunk.push(user);
                if chunk.len() == CHUNK {
                    let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                    tx.send(Message::Users(full))
                        .map_err(|_| ferry_aspnet::Error::Visitor("the writer stopped".into()))?;
                }
                Ok(())
            })?;
            if !chunk.is_empty() {
                tx.send(Message::Users(chunk)).ok();
            }
            counts.roles = role_counts.roles;
            counts.role_claims = role_counts.role_claims;
            counts.orphans.append(&mut role_counts.orphans);
            Ok(counts)
        });
        let written = write(writer, rx, &progress);
        // If the writer failed, the channel is closed and the reader stops at its next send.
        let read = reader.join().expect("reader thread panicked");
        (read, written)
    });
    progress.finish_and_clear();
    // Report the error that caused the stop: a reader that stops because the writer
    // failed only knows that the channel closed. Either way the staging folder goes.
    let (counts, writer) = match (read, written) {
        (Ok(counts), Ok(writer)) => (counts, writer),
        (Err(read), Err(write)) if is_writer_stop(&read) => return Err(write),
        (Err(read), _) => return Err(read),
        (Ok(_), Err(write)) => return Err(write),
    };
    let manifest = writer
        .finish(ManifestInfo {
            tool: format!("ferry-export {}", env!("CARGO_PKG_VERSION")),
            source: source_of(&description),
            limit: args.limit,
            orphans: counts.orphans,
            converted_from: None,
            edits: Vec::new(),
        })
        .context("cannot finish the bundle")?;
    staging.commit()?;
    output::report(
        &Summary {
            bundle: &args.out,
            manifest: &manifest,
            elapsed: started.elapsed(),
            notes: &description.notes,
        },
        args.json,
    );
    Ok(())
}

fn is_writer_stop(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<ferry_aspnet::Error>(),
        Some(ferry_aspnet::Error::Visitor(_))
    )
}

fn source_of(d: &Description) -> Source {
    Source {
        engine: d.engine.to_string(),
        location: d.location.clone(),
        generation: d.generation.as_str().to_string(),
        evidence: d.evidence.clone(),
        naming: d.naming.as_str().to_string(),
        tables: d.tables.clone(),
        extra_user_columns: d.extra_user_columns.clone(),
        key_type: d.key_type.as_str().to_string(),
        migrations: match (d.migrations.first(), d.migrations.last()) {
            (Some(first), Some(last)) => Some(MigrationHistory {
                table: first.table.clone(),
                count: d.migrations.len() as u64,
                first: MigrationRow {
                    id: first.id.clone(),
                    product_version: first.product_version.clone(),
                },
                last: MigrationRow {
                    id: last.id.clone(),
                    product_version: last.product_version.clone(),
                },
            }),
            _ => None,
        },
        server_version: d.server_version.clone(),
    }
}

/// Test only: stops for good, or, with `FERRY_TEST_RESUME_FILE`, until that file exists
/// (so that a test can change the source while an export is under way). The writer
/// pauses after `FERRY_TEST_PAUSE_AFTER_USERS` users; the reader, with
/// `FERRY_TEST_PAUSE_AFTER_ROLES`, between the roles and the users.
fn pause() {
    match std::env::var_os("FERRY_TEST_RESUME_FILE") {
        Some(file) => {
            let _ = std::fs::write(Path::new(&file).with_extension("paused"), b"");
            while !Path::new(&file).exists() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        None => loop {
            std::thread::park();
        },
    }
}

/// Writes what the reader sends; returns the writer to finish, or abandons it on error.
fn write(
    mut writer: BundleWriter,
    rx: Receiver<Message>,
    progress: &indicatif::ProgressBar,
) -> Result<BundleWriter> {
    // Test only: stop writing for good after this many users, so that tests can interrupt
    // an export that is certainly under way (`FERRY_TEST_PAUSE_AFTER_USERS`).
    let pause_after: Option<u64> = std::env::var("FERRY_TEST_PAUSE_AFTER_USERS")
        .ok()
        .and_then(|n| n.parse().ok());
    let mut written = 0u64;
    let result = (|| -> Result<()> {
        for message in rx.iter() {
            match message {
                Message::Role(role) => writer.write_role(&role)?,
                Message::Users(users) => {
                    for user in &users {
                        writer.write_user(user)?;
                        written += 1;
                        if pause_after == Some(written) {
                            pause();
                        }
                    }
                    progress.inc(users.len() as u64);
                }
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(writer),
        Err(e) => {
            writer.abandon();
            Err(e)
        }
    }
}
