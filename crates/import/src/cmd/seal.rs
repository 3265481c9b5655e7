//! `ferry-import seal`: accept hand edits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use ferry_bundle::manifest::{Edit, EditedFile};
use ferry_bundle::read::{hash_file, RecordError};
use ferry_bundle::Tally;

use crate::dupes::{SubjectIndex, GIVEN_TWICE};
use crate::summary::count;
use crate::{setup, ExitStatus};

/// Accept hand edits: re-checksum the bundle and log the edit in its manifest.
///
/// Every line of every part must still be a valid record, and each record's `Id` its
/// own (a line that is not, or a second record with an earlier one's `Id`, is reported
/// with its file, line and field, and nothing is sealed). The counts and the
/// password census are recomputed; each changed file is logged under `edits` with its
/// record counts and checksums before and after.
///
/// Example:
///
///   $ vi bundle/users-00000.ndjson        # fix a duplicate e-mail, drop a user, …
///   $ ferry-import seal bundle/
///
/// Exit status: 0 sealed (or nothing to seal), 1 a line is not a valid record, 2 the
/// bundle could not be read or written.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The bundle folder.
    pub bundle: PathBuf,
}

pub fn run(args: Args) -> Result<ExitStatus> {
    let bundle = setup::bundle(&args.bundle)?;
    let mut manifest = bundle.manifest().clone();
    let mut broken = 0u64;
    let mut tally = Tally::default();
    let mut records: BTreeMap<String, u64> = BTreeMap::new();
    let ids = SubjectIndex::new()?;
    for raw in bundle.user_records() {
        let raw = raw?;
        let loc = raw.location();
        *records.entry(loc.file.clone()).or_default() += 1;
        match raw.decoded() {
            Ok(u) => match ids.first_at(&u.id.0, loc)? {
                None => tally.add_user(&u),
                Some(first) => {
                    let given_twice = RecordError {
                        subject: Some(u.id.0.clone()),
                        field: "Id".into(),
                        message: format!("{GIVEN_TWICE} ({first})"),
                        column: raw.column_of("Id"),
                    };
                    eprintln!("{}", given_twice.quickfix(loc));
                    broken += 1;
                }
            },
            Err(e) => {
                eprintln!("{}", e.quickfix(loc));
                broken += 1;
            }
        }
    }
    for item in bundle.roles()? {
        let (loc, record) = item?;
        *records.entry(loc.file.clone()).or_default() += 1;
        match record {
            Ok(r) => tally.add_role(&r),
            Err(e) => {
                eprintln!("{}", e.quickfix(&loc));
                broken += 1;
            }
        }
    }
    if broken > 0 {
        eprintln!(
            "not sealed: {} not valid records; fix them and seal again",
            count(broken, "line is", "lines are")
        );
        return Ok(ExitStatus::Failure);
    }
    let mut changed = Vec::new();
    for part in manifest.parts.iter_mut() {
        let (bytes, sha256) = hash_file(&bundle.dir().join(&part.file))?;
        let after = records.get(&part.file).copied().unwrap_or(0);
        if sha256 != part.sha256 || bytes != part.bytes || after != part.records {
            changed.push(EditedFile {
                file: part.file.clone(),
                records_before: part.records,
                records_after: after,
                sha256_before: part.sha256.clone(),
                sha256_after: sha256.clone(),
            });
            part.sha256 = sha256;
            part.bytes = bytes;
            part.records = after;
        }
    }
    let (mut counts, census) = tally.finish();
    counts.orphans = manifest.counts.orphans.clone();
    if changed.is_empty() && counts == manifest.counts {
        eprintln!("nothing to seal: every file matches the manifest");
        return Ok(ExitStatus::Success);
    }
    if changed.is_empty() {
        eprintln!("sealed manifest.json: its counts were recounted from the parts");
    }
    manifest.counts = counts;
    manifest.password_hashes = census;
    manifest.edits.push(Edit {
        sealed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        tool: format!("ferry-import {}", env!("CARGO_PKG_VERSION")),
        files: changed.clone(),
    });
    manifest.write(bundle.dir())?;
    for f in &changed {
        eprintln!(
            "sealed {}: {} (was {})",
            f.file,
            count(f.records_after, "record", "records"),
            f.records_before
        );
    }
    Ok(ExitStatus::Success)
}
