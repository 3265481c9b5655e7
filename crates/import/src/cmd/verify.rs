//! `ferry-import verify`: prove, before and after the cut-over, that nobody will be
//! locked out.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ferry_bundle::census::{CensusBuilder, HashStatus};
use ferry_bundle::{BundleReader, Location, UserRecord};
use ferry_passwords::AspNetHash;
use ferry_store::{normalize, ASPNET_ALGORITHM};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::pipeline::{self, Options, With};
use crate::summary::count;
use crate::{setup, ExitStatus};

/// Check every password hash of a bundle, test credentials, and prove a load.
///
/// Always: parses every password hash in parallel and prints the census (V2; V3 by PRF
/// and iteration count; no password; malformed, by reason), and each malformed hash with
/// its file, line and subject: those users cannot log in with a password until it is
/// reset.
///
/// With --credentials FILE.csv (columns user,password with a header row; test accounts,
/// say): finds each user by user name or e-mail, ignoring case, and runs the real PBKDF2
/// check against the bundle's hash, in parallel. Each row is reported as verified, wrong
/// password, no such user, ambiguous, no password or malformed hash. Passwords and hashes
/// are never printed.
///
/// With --target STORE (and the --schema and --mapping the load used): proves the store
/// matches the bundle record for record: every user present once under the same subject
/// id, the password data identical to the bundle's blob (or already re-hashed to pbkdf2
/// by a login), the attributes as the mapping produces them, and the same numbers of OTP
/// addresses, external logins, passkeys, TOTP devices, recovery codes and roles. Every
/// difference is reported with its subject.
///
/// Examples:
///
///   $ ferry-import verify bundle/
///   $ ferry-import verify bundle/ --credentials test-accounts.csv
///   $ ferry-import verify bundle/ --target users.db --schema schemas/scim-user.json
///
/// Malformed hashes are warnings, as in `validate`: those users are imported and must reset
/// their password. --fail-on-malformed makes them fail the run.
///
/// Exit status: 0 what was asked holds; 1 a credential that does not verify, a difference
/// from the store, a record that cannot be read, or (with --fail-on-malformed) a malformed
/// hash; 2 it could not run.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// A CSV of user,password rows to check against the bundle's hashes.
    #[arg(long, value_name = "FILE.csv")]
    pub credentials: Option<PathBuf>,
    /// A store to compare with the bundle, record for record.
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// The attribute schema the load used (with --target).
    #[arg(long, requires = "target")]
    pub schema: Option<PathBuf>,
    /// The mapping the load used (with --target; default: the built-in default).
    #[arg(long, requires = "target")]
    pub mapping: Option<PathBuf>,
    /// Threads for the password checks (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Exit 1 if any password hash is malformed (by default they are warnings).
    #[arg(long)]
    pub fail_on_malformed: bool,
    /// Print one JSON summary object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One row of the credentials file.
struct Credential {
    row: u64,
    user: String,
    password: String,
}

/// The outcome of one credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum CredentialStatus {
    Verified,
    WrongPassword,
    NoSuchUser,
    Ambiguous,
    NoPassword,
    MalformedHash,
}

impl CredentialStatus {
    fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Verified => "verified",
            CredentialStatus::WrongPassword => "wrong password",
            CredentialStatus::NoSuchUser => "no such user",
            CredentialStatus::Ambiguous => "ambiguous (several users have this e-mail)",
            CredentialStatus::NoPassword => "no password",
            CredentialStatus::MalformedHash => "malformed hash",
        }
    }
}

/// A bundle user a credential row points at.
#[derive(Clone)]
struct Candidate {
    by_name: bool,
    hash: Option<String>,
}

fn read_credentials(path: &std::path::Path) -> Result<Vec<Credential>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (Some(u), Some(p)) = (col("user"), col("password")) else {
        bail!(
            "`{}`: the header row must name the columns `user` and `password`",
            path.display()
        );
    };
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("`{}`: row {}", path.display(), i + 2))?;
        out.push(Credential {
            row: i as u64 + 2,
            user: record.get(u).unwrap_or("").to_string(),
            password: record.get(p).unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

fn progress(total: u64, what: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} {{bar:40}} {{human_pos}}/{{human_len}} ({{per_sec}})"
        ))
        .expect("valid template"),
    );
    bar
}

pub fn run(args: Args) -> Result<ExitStatus> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        builder = builder.num_threads(n.max(1));
    }
    let pool = builder.build().context("cannot start the worker threads")?;
    pool.install(|| verify(&args))
}

fn verify(args: &Args) -> Result<ExitStatus> {
    let bundle = setup::bundle(&args.bundle)?;
    setup::require_sealed(&bundle)?;
    let credentials = match &args.credentials {
        Some(p) => read_credentials(p)?,
        None => Vec::new(),
    };
    let mut wanted: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, c) in credentials.iter().enumerate() {
        wanted.entry(normalize(c.user.trim())).or_default().push(i);
    }
    let mut candidates: Vec<Vec<Candidate>> = vec![Vec::new(); credentials.len()];

    // One pass over the bundle: the census in parallel, malformed hashes with their
    // location, and the users the credentials name.
    let total = bundle.manifest().counts.users;
    let bar = progress(total, "checking hashes");
    let mut census = CensusBuilder::default();
    let mut malformed: Vec<(Location, String, String)> = Vec::new();
    let mut chunk: Vec<(Location, UserRecord)> = Vec::with_capacity(pipeline::CHUNK);
    let mut unreadable = 0u64;
    let mut flush = |chunk: &mut Vec<(Location, UserRecord)>| {
        let (part, bad): (CensusBuilder, Vec<(Location, String, String)>) = chunk
            .par_iter()
            .fold(
                || (CensusBuilder::default(), Vec::new()),
                |(mut c, mut bad), (loc, user)| {
                    let status = HashStatus::of(user.password_hash.as_deref());
                    if let HashStatus::Malformed(reason) = &status {
                        bad.push((
                            loc.clone(),
                            user.id.0.clone(),
                            format!("{} ({reason})", reason.code()),
                        ));
                    }
                    c.add(&status);
                    (c, bad)
                },
            )
            .reduce(
                || (CensusBuilder::default(), Vec::new()),
                |(mut a, mut x), (b, y)| {
                    a.merge(b);
                    x.extend(y);
                    (a, x)
                },
            );
        census.merge(part);
        malformed.extend(bad);
        bar.inc(chunk.len() as u64);
        chunk.clear();
    };
    for item in bundle.users()? {
        let (location, record) = item?;
        let user = match record {
            Ok(u) => u,
            Err(e) => {
                bar.suspend(|| eprintln!("{location}: {e}"));
                unreadable += 1;
                continue;
            }
        };
        if !wanted.is_empty() {
            let name = user.user_name.as_deref().map(normalize);
            let email = user.email.as_deref().map(|e| normalize(e.trim()));
            for (key, by_name) in [(name, true), (email, false)] {
                if let Some(rows) = key.and_then(|k| wanted.get(&k)) {
                    for &row in rows {
                        candidates[row].push(Candidate {
                            by_name,
                            hash: user.password_hash.clone(),
                        });
                    }
                }
            }
        }
        chunk.push((location, user));
        if chunk.len() == pipeline::CHUNK {
            flush(&mut chunk);
        }
    }
    flush(&mut chunk);
    bar.finish_and_clear();
    let census = census.finish();
    malformed.sort();
    let mut failed = unreadable > 0 || (args.fail_on_malformed && !malformed.is_empty());

    if !args.json {
        for (loc, subject, reason) in &malformed {
            eprintln!("warning: {loc}: {subject}: PasswordHash: malformed: {reason}");
        }
        let mut kinds = vec![format!("{} V2", census.v2)];
        kinds.extend(
            census
                .v3
                .iter()
                .map(|v| format!("{} V3 {} {}", v.count, v.prf, v.iterations)),
        );
        kinds.push(format!("{} without a password", census.none));
        kinds.extend(
            census
                .malformed
                .iter()
                .map(|m| format!("{} malformed ({})", m.count, m.reason)),
        );
        eprintln!(
            "password hashes of {} users: {}",
            census.users,
            kinds.join(", ")
        );
        if malformed.is_empty() {
            eprintln!("every password hash is well-formed");
        } else {
            eprintln!(
                "warning: {} will not be able to log in with a password until it is reset (their hashes are malformed)",
                count(malformed.len() as u64, "user", "users")
            );
        }
    }

    // Credentials: the real PBKDF2 check, in parallel across rows.
    let mut statuses: Vec<(u64, String, CredentialStatus)> = credentials
        .par_iter()
        .zip(candidates.par_iter())
        .map(|(c, found)| {
            let by_name: Vec<&Candidate> = found.iter().filter(|f| f.by_name).collect();
            let pick: Result<&Candidate, CredentialStatus> =
                match (by_name.as_slice(), found.as_slice()) {
                    ([one], _) => Ok(one),
                    ([], []) => Err(CredentialStatus::NoSuchUser),
                    ([], [one]) => Ok(one),
                    _ => Err(CredentialStatus::Ambiguous),
                };
            let status = match pick {
                Err(s) => s,
                Ok(candidate) => match candidate.hash.as_deref() {
                    None | Some("") => CredentialStatus::NoPassword,
                    Some(text) => match AspNetHash::parse(text) {
                        Err(_) => CredentialStatus::MalformedHash,
                        Ok(hash) if hash.verify(&c.password) => CredentialStatus::Verified,
                        Ok(_) => CredentialStatus::WrongPassword,
                    },
                },
            };
            (c.row, c.user.clone(), status)
        })
        .collect();
    statuses.sort_by_key(|s| s.0);
    let mut by_status: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (row, user, status) in &statuses {
        *by_status.entry(status.as_str()).or_default() += 1;
        if *status != CredentialStatus::Verified {
            failed = true;
        }
        if !args.json {
            eprintln!("credentials row {row}: {user}: {}", status.as_str());
        }
    }
    if !statuses.is_empty() && !args.json {
        let verified = by_status.get("verified").copied().unwrap_or(0);
        eprintln!("credentials: {verified} of {} verified", statuses.len());
    }

    // The store, record for record.
    let mut differences = 0u64;
    if let Some(target) = &args.target {
        let Some(schema) = &args.schema else {
            bail!("--target needs the --schema the load used");
        };
        differences = prove(&bundle, target, schema, args.mapping.as_ref(), args.json)?;
        failed |= differences > 0;
    }

    if args.json {
        println!(
            "{}",
            json!({
                "bundle": args.bundle.display().to_string(),
                "password_hashes": census,
                "malformed": malformed.iter().map(|(l, s, r)| json!({"file": l.file, "line": l.line, "subject": s, "reason": r})).collect::<Vec<_>>(),
                "credentials": by_status,
                "credential_rows": statuses.iter().map(|(row, user, s)| json!({"row": row, "user": user, "status": s.as_str()})).collect::<Vec<_>>(),
                "store_differences": args.target.as_ref().map(|_| differences),
            })
        );
    }
    Ok(if failed {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

/// Compares the store with the bundle; returns the number of differences.
fn prove(
    bundle: &BundleReader,
    target: &std::path::Path,
    schema: &std::path::Path,
    mapping: Option<&PathBuf>,
    json: bool,
) -> Result<u64> {
    let store = setup::existing_store(target)?;
    let mapper = setup::mapper(schema, mapping, true)?;
    let roles = setup::roles(bundle, &mapper, true)?;
    let with = With {
        mapper: &mapper,
        roles: &roles.index,
    };
    let conn = store.connection();
    // The bundle's subjects, on disk (memory stays flat), to find store users it lacks.
    conn.execute_batch(
        "PRAGMA temp_store = FILE; CREATE TEMP TABLE IF NOT EXISTS bundle_subjects (subject TEXT PRIMARY KEY) WITHOUT ROWID;
         DELETE FROM bundle_subjects;",
    )?;
    let mut differences = 0u64;
    let mut report = |subject: &str, message: String| {
        differences += 1;
        if !json {
            eprintln!("store: {subject}: {message}");
        }
    };
    let bar = progress(bundle.manifest().counts.users, "comparing with the store");
    let opts = Options {
        hash_recovery_codes: None,
        limit: None,
    };
    let mut compared = 0u64;
    pipeline::run(bundle, with, &opts, &mut |chunk| {
        let tx = conn.unchecked_transaction()?;
        for m in &chunk {
            bar.inc(1);
            let subject = m.subject.clone().unwrap_or_default();
            if tx.execute(
                "INSERT OR IGNORE INTO bundle_subjects VALUES (?1)",
                [&subject],
            )? == 0
            {
                bar.suspend(|| {
                    report(
                        &subject,
                        format!("appears twice in the bundle ({})", m.location),
                    )
                });
                continue;
            }
            let snapshot = store.snapshot(&subject)?;
            let Some(record) = &m.record else {
                if snapshot.is_none() {
                    bar.suspend(|| {
                        report(
                            &subject,
                            format!(
                                "not in the store: the record has errors ({}): {}",
                                m.location,
                                m.message()
                            ),
                        )
                    });
                }
                continue;
            };
            compared += 1;
            let Some(s) = snapshot else {
                bar.suspend(|| report(&subject, format!("not in the store ({})", m.location)));
                continue;
            };
            let mut diffs = Vec::new();
            match (&record.password, &s.password) {
                (None, None) => {}
                (Some(want), Some(have)) if have.algorithm == ASPNET_ALGORITHM => {
                    if have.parameters.get("blob") != want.parameters.get("blob") {
                        diffs
                            .push("the stored password blob differs from the bundle's".to_string());
                    }
                }
                (Some(_), Some(have))
                    if have.algorithm == ferry_passwords::preferred::ALGORITHM_ID =>
                {
                    // Re-hashed by a login since the load: the user has logged in.
                }
                (Some(_), Some(have)) => {
                    diffs.push(format!("the password has algorithm `{}`", have.algorithm))
                }
                (Some(_), None) => diffs.push("the password is missing".into()),
                (None, Some(_)) => {
                    diffs.push("the store has a password the bundle does not".into())
                }
            }
            if Value::Object(record.profile.clone()) != Value::Object(s.profile.clone()) {
                diffs.push("the profile attributes differ from what the mapping produces".into());
            }
            let counts = [
                (
                    "OTP addresses",
                    record.otp_addresses.len() as u64,
                    s.otp_addresses,
                ),
                (
                    "external logins",
                    record.external_logins.len() as u64,
                    s.external_logins,
                ),
                ("passkeys", record.passkeys.len() as u64, s.passkeys),
                (
                    "TOTP devices",
                    record.totp_devices.len() as u64,
                    s.totp_devices,
                ),
                (
                    "recovery codes",
                    record.recovery_codes.len() as u64,
                    s.recovery_codes,
                ),
                ("roles", record.roles.len() as u64, s.roles.len() as u64),
            ];
            for (what, want, have) in counts {
                if want != have {
                    diffs.push(format!("{have} {what} in the store, {want} in the bundle"));
                }
            }
            let mut roles: Vec<String> = record.roles.iter().map(|r| r.to_string()).collect();
            roles.sort();
            if roles.len() == s.roles.len() && roles != s.roles {
                diffs.push(format!(
                    "roles {:?} in the store, {:?} in the bundle",
                    s.roles, roles
                ));
            }
            for d in diffs {
                bar.suspend(|| report(&subject, d));
            }
        }
        tx.commit()?;
        Ok(())
    })?;
    bar.finish_and_clear();
    let extra: Vec<String> = conn
        .prepare("SELECT subject_id FROM users WHERE subject_id NOT IN (SELECT subject FROM bundle_subjects) ORDER BY subject_id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for subject in &extra {
        report(subject, "in the store but not in the bundle".into());
    }
    conn.execute_batch("DROP TABLE temp.bundle_subjects")?;
    if !json {
        if differences == 0 {
            eprintln!("store: all {compared} loaded records match the bundle");
        } else {
            eprintln!(
                "store: {} from the bundle",
                count(differences, "difference", "differences")
            );
        }
    }
    Ok(differences)
}
