//! `ferry-import plan`: the mapped import records, for a host that calls User
//! Management's importer itself.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ferry_store::ImportRecord;
use serde_json::{json, Value};

use crate::args::MappingArgs;
use crate::dupes::Dupes;
use crate::pipeline::{self, problem_line, With};
use crate::summary::{count, NotImportedTally};
use crate::{setup, ExitStatus};

/// Write the mapped import records, one JSON object per line.
///
/// Each line is shaped like User Management's `UserImportRecord` (SubjectId,
/// ProfileAttributes, Authenticators, Memberships), for a host that calls
/// `IUserImporter.ImportAsync` itself. ASP.NET passwords are `aspnet-identity` hashed
/// password data with the blob as a parameter, exactly as the migration guide's
/// `CreateImportData` makes it; other formats get their own algorithm id
/// (`aspnet-membership`, `bcrypt`, `argon2`; PBKDF2 PHC strings become `pbkdf2`), and a
/// clear-text Membership password is hashed with `pbkdf2` first (docs/password-formats.md
/// has the verifiers a host registers). Recovery codes are plain text, since the
/// importer hashes them. Every check `validate` makes is made, uniqueness inside the bundle
/// included: a record with an error is left out, reported and counted, exactly as `load`
/// would fail it.
/// The files are owner-only: they hold hashes and 2FA secrets.
///
/// Writes DIR/plan-00000.ndjson (100,000 records per file) and DIR/roles.json.
///
/// Example:
///
///   $ ferry-import plan bundle/ --schema schemas/scim-user.json --out plan/
///
/// Exit status: 0 every record planned, 1 some records had errors, 2 it could not run.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The bundle folder.
    pub bundle: PathBuf,
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// The folder to write (created; must be empty if it exists).
    #[arg(long)]
    pub out: PathBuf,
}

const PER_FILE: u64 = 100_000;

fn private_file(path: &Path) -> Result<BufWriter<std::fs::File>> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    Ok(BufWriter::new(o.open(path).with_context(|| {
        format!("cannot create `{}`", path.display())
    })?))
}

/// The record as User Management's `UserImportRecord` serialises.
pub fn user_import_record(r: &ImportRecord) -> Value {
    let list = |v: Vec<Value>| {
        if v.is_empty() {
            Value::Null
        } else {
            Value::Array(v)
        }
    };
    let password = r.password.as_ref().map(|p| {
        json!({"HashedPasswordData": {
            "AlgorithmId": p.algorithm,
            "Hash": STANDARD.encode(&p.hash),
            "Salt": STANDARD.encode(&p.salt),
            "Parameters": p.parameters,
        }})
    });
    let guid = |b: &[u8; 16]| {
        format!(
            "{}-{}-{}-{}-{}",
            hex(&b[0..4]),
            hex(&b[4..6]),
            hex(&b[6..8]),
            hex(&b[8..10]),
            hex(&b[10..16])
        )
    };
    json!({
        "SubjectId": r.subject_id.as_str(),
        "ProfileAttributes": if r.profile.is_empty() { Value::Null } else { Value::Object(r.profile.clone()) },
        "Authenticators": {
            "Password": password,
            "OtpAddresses": list(r.otp_addresses.iter().map(|o| json!({"Channel": o.channel.as_str(), "Address": o.address})).collect()),
            "ExternalAuthenticatorAddresses": list(r.external_logins.iter().map(|l| json!({"Name": l.provider, "Id": l.key})).collect()),
            "Passkeys": list(r.passkeys.iter().map(|p| json!({
                "CredentialId": STANDARD.encode(&p.credential_id),
                "PublicKeyCose": STANDARD.encode(&p.public_key_cose),
                "Algorithm": p.algorithm,
                "SignCount": p.sign_count,
                "BackupEligible": p.backup_eligible,
                "BackedUp": p.backed_up,
                "Aaguid": guid(&p.aaguid),
                "Name": p.name,
            })).collect()),
            "TotpDevices": list(r.totp_devices.iter().map(|t| json!({"Name": t.name, "PlainBytesTotpKey": STANDARD.encode(&t.key)})).collect()),
            "RecoveryCodes": list(r.recovery_codes.iter().map(|c| Value::String(c.clone())).collect()),
        },
        "Memberships": if r.roles.is_empty() { Value::Null } else {
            json!({"DirectRoles": r.roles.iter().map(|x| x.as_str()).collect::<Vec<_>>()})
        },
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn run(args: Args) -> Result<ExitStatus> {
    let bundle = setup::bundle(&args.bundle)?;
    setup::require_sealed(&bundle)?;
    let mapper = setup::mapper(&args.mapping.schema, args.mapping.mapping.as_ref(), false)?;
    if args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!("`{}` is not empty", args.out.display());
    }
    crate::private::create_dir(&args.out)?;
    let roles = setup::roles(&bundle, &mapper, false)?;
    let mut roles_file = private_file(&args.out.join("roles.json"))?;
    let roles_json: Vec<Value> = roles
        .create
        .iter()
        .map(|r| json!({"RoleId": r.id.as_str(), "Name": r.name, "Claims": r.claims}))
        .collect();
    serde_json::to_writer_pretty(&mut roles_file, &roles_json)?;
    roles_file.flush()?;

    let (mut planned, mut failed) = (0u64, 0u64);
    let mut out: Option<BufWriter<std::fs::File>> = None;
    let mut dupes = Dupes::new()?;
    let mut not_imported = NotImportedTally::default();
    let with = With {
        mapper: &mapper,
        roles: &roles.index,
    };
    pipeline::run(
        &bundle,
        None,
        &|raw| {
            let mut m = pipeline::map(with, raw);
            // A clear-text Membership password never leaves ferry as it is.
            if let Some(r) = m.record.as_mut() {
                ferry_store::hash_clear_password(r);
            }
            m
        },
        &mut |mut chunk| {
            dupes.check(&mut chunk, None)?;
            for m in &chunk {
                for p in &m.problems {
                    eprintln!("{}", problem_line(m, p));
                }
                not_imported.add(&m.not_imported);
                let Some(r) = m.record.as_ref().filter(|_| !m.failed()) else {
                    failed += 1;
                    continue;
                };
                if planned % PER_FILE == 0 {
                    if let Some(mut w) = out.take() {
                        w.flush()?;
                    }
                    out = Some(private_file(
                        &args
                            .out
                            .join(format!("plan-{:05}.ndjson", planned / PER_FILE)),
                    )?);
                }
                let w = out.as_mut().expect("open");
                serde_json::to_writer(&mut *w, &user_import_record(r))?;
                w.write_all(b"\n")?;
                planned += 1;
            }
            Ok(())
        },
    )?;
    if let Some(mut w) = out {
        w.flush()?;
    }
    for line in not_imported.lines() {
        eprintln!("{line}");
    }
    eprintln!(
        "planned {} into `{}`; {} left out with errors",
        count(planned, "record", "records"),
        args.out.display(),
        count(failed, "record", "records")
    );
    Ok(ExitStatus::failed_if(failed > 0))
}
