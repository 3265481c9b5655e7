//! `ferry-import validate`: check every record without writing anything.

use std::path::PathBuf;

use anyhow::{bail, Result};
use ferry_schema::map::Severity;
use ferry_store::Mode;

use crate::args::{MappingArgs, OutputArgs};
use crate::dupes::Dupes;
use crate::pipeline::{self, problem_line, With};
use crate::summary::{count, NotImportedTally};
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
/// Each problem is one quickfix line, `users-00000.ndjson:LINE:COLUMN: SUBJECT: FIELD:
/// message`, COLUMN being the byte where the field's key starts (1 when unknown, as for
/// a Parquet record). Warnings (e.g. a malformed password hash, which is imported but can
/// never verify) say `warning:` after the column and do not fail the check.
///
/// Example:
///
///   $ ferry-import validate bundle/ --schema schemas/scim-user.json
///   users-00000.ndjson:12:90: 4f1c…: Email: Email OTP address 'BOB@X.ORG' is already …
///   $ vim -q <(ferry-import validate bundle/ --schema schemas/scim-user.json 2>&1)
///
/// Exit status: 0 no errors, 1 errors found, 2 the check could not run or the bundle has
/// unsealed edits (every record is still checked and reported; `seal` accepts the edits).
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The bundle folder.
    pub bundle: PathBuf,
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// Also check against this store (opened read-only): the conflicts a load would meet.
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: Args) -> Result<ExitStatus> {
    let bundle = setup::bundle(&args.bundle)?;
    let mapper = setup::mapper(&args.mapping.schema, args.mapping.mapping.as_ref(), false)?;
    let store = match &args.target {
        Some(target) => Some(setup::store(target, Mode::ReadOnly)?),
        None => None,
    };
    let mut errors = 0u64;
    let mut warnings = 0u64;
    let mut failed_records = 0u64;
    // An unsealed edit is checked like the rest, then ends the run with exit 2, as load
    // would refuse the bundle.
    let unsealed = setup::unsealed(&bundle)?;
    let roles = setup::roles(&bundle, &mapper, false)?;
    let mut dupes = Dupes::new()?;
    let mut records = 0u64;
    let mut not_imported = NotImportedTally::default();
    let with = With {
        mapper: &mapper,
        roles: &roles.index,
    };
    pipeline::run(
        &bundle,
        None,
        &|raw| pipeline::map(with, raw),
        &mut |mut chunk| {
            dupes.check(&mut chunk, store.as_deref())?;
            for m in &chunk {
                records += 1;
                if m.failed() {
                    failed_records += 1;
                }
                not_imported.add(&m.not_imported);
                for p in &m.problems {
                    match p.severity {
                        Severity::Error => errors += 1,
                        Severity::Warning => warnings += 1,
                    }
                    eprintln!("{}", problem_line(m, p));
                }
            }
            Ok(())
        },
    )?;
    let census = &bundle.manifest().password_hashes;
    if args.output.json {
        println!(
            "{}",
            serde_json::json!({
                "bundle": args.bundle.display().to_string(),
                "records": records,
                "failed_records": failed_records,
                "errors": errors,
                "warnings": warnings,
                "malformed_password_hashes": census.malformed_total(),
                "not_imported": not_imported.to_json(),
                "sealed": unsealed.is_none(),
            })
        );
    } else {
        for line in not_imported.lines() {
            eprintln!("{line}");
        }
        eprintln!(
            "checked {}: {} in {}, {} ({})",
            count(records, "record", "records"),
            count(errors, "error", "errors"),
            count(failed_records, "record", "records"),
            count(warnings, "warning", "warnings"),
            count(
                census.malformed_total(),
                "malformed password hash",
                "malformed password hashes"
            )
        );
    }
    if let Some(message) = unsealed {
        bail!("{message}");
    }
    Ok(ExitStatus::failed_if(errors > 0))
}
