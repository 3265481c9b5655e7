//! `ferry-import validate`: check every record without writing anything.

use std::path::PathBuf;

use anyhow::{bail, Result};
use ferry_schema::map::Severity;
use ferry_schema::Problem;

use crate::dupes::Dupes;
use crate::pipeline::{self, problem_line, Options};
use crate::{setup, ExitStatus};

/// Check every record of a bundle against a schema, without writing anything.
///
/// Checks the manifest checksums, each record's shape, the mapped attributes' types and
/// required attributes, User Management's value rules (e-mail 3 to 320 characters with an
/// inner @, SMS phone digits at most 15, subject ids at most 200 characters, role ids,
/// recovery codes, passkeys), uniqueness inside the bundle (user names ignoring case,
/// e-mail OTP addresses, external logins, passkey credentials, unique attributes) and
/// the structure of every password hash. With --target, also the conflicts a load into
/// that store would meet.
///
/// Each problem is one line: `users-00000.ndjson:LINE: SUBJECT: FIELD: message`.
/// Warnings (e.g. a malformed password hash, which is imported but can never verify)
/// start with `warning:` and do not fail the check.
///
/// Example:
///
///   $ ferry-import validate bundle/ --schema schemas/scim-user.json
///   users-00000.ndjson:12: 4f1c…: Email: `bob@` is not an e-mail address: …
///
/// Exit status: 0 no errors, 1 errors found, 2 the check could not run.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// The attribute schema file (e.g. schemas/scim-user.json).
    #[arg(long)]
    pub schema: PathBuf,
    /// The mapping file (default: schemas/mapping.default.json, built in).
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Also check against this store: the conflicts a load would meet.
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<ExitStatus> {
    let bundle = setup::bundle(&args.bundle)?;
    let mut mapper = setup::mapper(&args.schema, args.mapping.as_ref(), false)?;
    let store = match &args.target {
        Some(path) if !path.exists() => bail!("`{}`: no such store", path.display()),
        Some(path) => Some(ferry_store::SqliteStore::open(path)?),
        None => None,
    };
    let mut errors = 0u64;
    let mut warnings = 0u64;
    let mut failed_records = 0u64;
    for p in bundle.check_parts()? {
        eprintln!("{}: {}", p.file, p.message);
        errors += 1;
    }
    let (_, role_problems) = setup::roles(&bundle, &mut mapper)?;
    for p in &role_problems {
        eprintln!("warning: {p}; its members will fail until it is renamed");
        warnings += 1;
    }
    let mut dupes = Dupes::new()?;
    let mut records = 0u64;
    let opts = Options {
        hash_recovery_codes: None,
        limit: None,
    };
    pipeline::run(&bundle, &mapper, &opts, &mut |mut chunk| {
        for (i, p) in dupes.check(&chunk)? {
            chunk[i].problems.push(p);
        }
        if let Some(store) = &store {
            for m in chunk.iter_mut() {
                if let Some(r) = &m.record {
                    for (field, message, is_error) in store.conflicts(r)? {
                        m.problems.push(Problem {
                            field,
                            message,
                            severity: if is_error {
                                Severity::Error
                            } else {
                                Severity::Warning
                            },
                        });
                    }
                }
            }
        }
        for m in &chunk {
            records += 1;
            if m.failed() {
                failed_records += 1;
            }
            for p in &m.problems {
                match p.severity {
                    Severity::Error => errors += 1,
                    Severity::Warning => warnings += 1,
                }
                eprintln!("{}", problem_line(m, p));
            }
        }
        Ok(())
    })?;
    let census = &bundle.manifest().password_hashes;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "bundle": args.bundle.display().to_string(),
                "records": records,
                "failed_records": failed_records,
                "errors": errors,
                "warnings": warnings,
                "malformed_password_hashes": census.malformed_total(),
            })
        );
    } else {
        eprintln!(
            "checked {records} records: {errors} errors in {failed_records} records, {warnings} warnings ({} malformed password hashes)",
            census.malformed_total()
        );
    }
    Ok(if errors > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
