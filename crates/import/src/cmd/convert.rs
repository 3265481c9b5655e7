//! `ferry-import convert`: the same bundle in the other encoding.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use ferry_bundle::manifest::ConvertedFrom;
use ferry_bundle::read::hash_file;
use ferry_bundle::staging::Staging;
use ferry_bundle::{BundleWriter, Encoding, ManifestInfo, RawRecord, MANIFEST};

use crate::pipeline;
use crate::summary::count;
use crate::{setup, ExitStatus};

/// Re-encode a bundle: Parquet to NDJSON to fix it by hand, or NDJSON to Parquet.
///
/// The conversion is lossless both ways: every record comes back value for value, and
/// NDJSON converted to Parquet and back is byte for byte the NDJSON it was (with the
/// same --part-size). The new bundle gets its own checksums, counts and census; its
/// manifest keeps the source, the limit and the edit log of the original, and says what it
/// was converted from (`converted_from`: encoding, tool, time and the SHA-256 of the
/// original manifest).
///
/// The bundle must be sealed: convert refuses files changed since the manifest was
/// written. A record that is not valid is reported with its file and line, and nothing is
/// written. Like an export, the new bundle appears in --out only once it is complete.
///
/// Examples:
///
///   Fix a Parquet bundle by hand, then load it (or convert it back):
///   $ ferry-import convert bundle/ --to ndjson --out bundle-ndjson/
///   $ vi bundle-ndjson/users-00000.ndjson
///   $ ferry-import seal bundle-ndjson/
///   $ ferry-import convert bundle-ndjson/ --to parquet --out bundle-fixed/
///
/// Exit status: 0 converted, 1 a record is not valid (nothing written), 2 the bundle
/// could not be read, is unsealed, or --out cannot receive the new bundle.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// The encoding to convert to.
    #[arg(long, value_enum)]
    pub to: To,
    /// The folder of the new bundle. It must not exist or be empty, unless --force.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Users per part file of the new bundle.
    #[arg(long, value_name = "N", default_value_t = ferry_bundle::write::DEFAULT_PART_SIZE, value_parser = clap::value_parser!(u64).range(1..))]
    pub part_size: u64,
    /// Replace a bundle already in --out.
    #[arg(long)]
    pub force: bool,
}

/// The encodings a bundle converts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum To {
    /// One JSON object per line: the form to edit by hand.
    Ndjson,
    /// Apache Parquet: columnar and compressed, for large bundles and analysis.
    Parquet,
}

pub fn run(args: Args) -> Result<ExitStatus> {
    let started = std::time::Instant::now();
    let bundle = setup::bundle(&args.bundle)?;
    if let Some(message) = setup::unsealed(&bundle)? {
        bail!("{message}\nnot converted: seal the bundle first (`ferry-import seal`), so that the converted bundle holds what was checked");
    }
    if args.out.canonicalize().ok() == args.bundle.canonicalize().ok() {
        bail!(
            "--out `{}` is the bundle itself; choose another folder",
            args.out.display()
        );
    }
    let original = bundle.manifest().clone();
    let to = match args.to {
        To::Ndjson => Encoding::Ndjson,
        To::Parquet => Encoding::Parquet,
    };
    let (staging, said) = Staging::prepare(&args.out, args.force)?;
    for line in &said {
        eprintln!("{line}");
    }
    let mut writer = BundleWriter::new(staging.path(), to, args.part_size)?;
    for item in bundle.roles()? {
        let (location, role) = item?;
        match role {
            Ok(role) => writer.write_role(&role)?,
            Err(e) => bail!(
                "{}\nnot converted: fix the line and seal the bundle",
                e.quickfix(&location)
            ),
        }
    }
    let progress = setup::progress(original.counts.users, "converting");
    let mut broken = 0u64;
    pipeline::run(&bundle, None, &RawRecord::decode, &mut |chunk| {
        progress.inc(chunk.len() as u64);
        for (location, record) in chunk {
            match record {
                Ok(user) if broken == 0 => writer.write_user(&user)?,
                Ok(_) => {}
                Err(e) => {
                    progress.suspend(|| eprintln!("{}", e.quickfix(&location)));
                    broken += 1;
                }
            }
        }
        Ok(())
    })?;
    progress.finish_and_clear();
    if broken > 0 {
        eprintln!(
            "not converted: {} not valid; fix them, seal the bundle and convert again",
            count(broken, "record is", "records are")
        );
        writer.abandon();
        return Ok(ExitStatus::Failure);
    }
    let (_, manifest_sha256) = hash_file(&args.bundle.join(MANIFEST))
        .with_context(|| format!("cannot read `{}`", args.bundle.join(MANIFEST).display()))?;
    let manifest = writer.finish(ManifestInfo {
        tool: original.tool.clone(),
        source: original.source.clone(),
        limit: original.limit,
        orphans: original.counts.orphans.clone(),
        converted_from: Some(ConvertedFrom {
            encoding: original.encoding,
            created_at: original.created_at.clone(),
            tool: original.tool.clone(),
            manifest_sha256,
            converted_by: format!("ferry-import {}", env!("CARGO_PKG_VERSION")),
            converted_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }),
        edits: original.edits.clone(),
    })?;
    staging.commit()?;
    let size = |parts: &[ferry_bundle::Part]| parts.iter().map(|p| p.bytes).sum::<u64>();
    eprintln!(
        "converted {} from {} to {} in `{}` ({} in {}, was {} in {}) in {:.1}s",
        count(manifest.counts.users, "user", "users"),
        original.encoding,
        to,
        args.out.display(),
        megabytes(size(&manifest.parts)),
        count(manifest.parts.len() as u64, "file", "files"),
        megabytes(size(&original.parts)),
        count(original.parts.len() as u64, "file", "files"),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitStatus::Success)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
