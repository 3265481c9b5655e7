//! `ferry-import verify`: prove, before and after the cut-over, that nobody will be
//! locked out.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ferry_bundle::census::{CensusBuilder, HashStatus};
use ferry_bundle::read::RecordError;
use ferry_bundle::{Location, RawRecord, UserRecord};
use ferry_passwords::PasswordHash;
use ferry_store::{normalize, ImportRecord, Mode, Snapshot, Store, ASPNET_ALGORITHM};
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::args::OutputArgs;
use crate::dupes::SubjectIndex;
use crate::pipeline::{self, Mapped, With};
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
    /// A store to compare with the bundle, record for record (opened read-only).
    #[arg(long)]
    pub target: Option<String>,
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
    #[command(flatten)]
    pub output: OutputArgs,
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

pub fn run(args: Args) -> Result<ExitStatus> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        builder = builder.num_threads(n.max(1));
    }
    let pool = builder.build().context("cannot start the worker threads")?;
    pool.install(|| verify(&args))
}

/// What the parallel stage makes of one record.
struct Seen {
    location: Location,
    /// The record, or what is wrong with it.
    user: Result<UserRecord, RecordError>,
    status: HashStatus,
    /// The column of `PasswordHash` in the line, for a malformed one.
    password_column: Option<usize>,
    /// The record mapped as the load mapped it (with --target).
    mapped: Option<Mapped>,
}

/// The store to prove, with what the load mapped records with.
struct Proof<'a> {
    store: Box<dyn Store>,
    with: With<'a>,
    /// The bundle's subjects, on disk, to find store users the bundle lacks.
    subjects: SubjectIndex,
    compared: u64,
    differences: u64,
}

fn verify(args: &Args) -> Result<ExitStatus> {
    let json = args.output.json;
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

    // With --target: the store, read-only, and the mapping the load used.
    let (store, mapping) = match &args.target {
        Some(target) => {
            let Some(schema) = &args.schema else {
                bail!("--target needs the --schema the load used");
            };
            let store = setup::store(target, Mode::ReadOnly)?;
            let mapper = setup::mapper(schema, args.mapping.as_ref(), true)?;
            let roles = setup::roles(&bundle, &mapper, true)?;
            (Some(store), Some((mapper, roles)))
        }
        None => (None, None),
    };
    let mut proof = match (store, &mapping) {
        (Some(store), Some((mapper, roles))) => Some(Proof {
            store,
            with: With {
                mapper,
                roles: &roles.index,
            },
            subjects: SubjectIndex::new()?,
            compared: 0,
            differences: 0,
        }),
        _ => None,
    };
    let with = proof.as_ref().map(|p| p.with);

    // One pass over the bundle: hashes classified and records mapped in parallel; the
    // census, malformed hashes, the users the credentials name and the store comparison
    // in bundle order.
    let bar = setup::progress(bundle.manifest().counts.users, "checking");
    let mut census = CensusBuilder::default();
    let mut malformed: Vec<Value> = Vec::new();
    let mut unreadable = 0u64;
    let stage = |raw: RawRecord| {
        let location = raw.location().clone();
        let user = raw.decoded();
        let status = match &user {
            Ok(u) => HashStatus::of(u.password_hash.as_deref()),
            Err(_) => HashStatus::None,
        };
        let password_column = matches!(status, HashStatus::Malformed(_))
            .then(|| raw.column_of("PasswordHash"))
            .flatten();
        let mapped = with.map(|w| pipeline::map_read(w, raw, user.clone()));
        Seen {
            location,
            user,
            status,
            password_column,
            mapped,
        }
    };
    pipeline::run(&bundle, None, &stage, &mut |chunk| {
        // What the store holds of the chunk's subjects, asked in one call.
        let mut snapshots = match proof.as_ref() {
            Some(proof) => {
                let subjects: Vec<&str> = chunk
                    .iter()
                    .filter_map(|seen| seen.mapped.as_ref()?.subject.as_deref())
                    .collect();
                let found = proof.store.snapshots(&subjects)?;
                subjects
                    .iter()
                    .map(|s| s.to_string())
                    .zip(found)
                    .collect::<HashMap<String, Option<Snapshot>>>()
            }
            None => HashMap::new(),
        };
        for seen in chunk {
            bar.inc(1);
            let user = match &seen.user {
                Ok(u) => u,
                Err(e) => {
                    bar.suspend(|| eprintln!("{}", e.quickfix(&seen.location)));
                    unreadable += 1;
                    continue;
                }
            };
            census.add(&seen.status);
            if let HashStatus::Malformed(reason) = &seen.status {
                let reason = format!("{} ({reason})", reason.code());
                if !json {
                    bar.suspend(|| {
                        eprintln!(
                            "{}:{}: warning: {}: PasswordHash: malformed: {reason}",
                            seen.location,
                            seen.password_column.unwrap_or(1),
                            user.id
                        )
                    });
                }
                malformed.push(json!({"file": seen.location.file, "line": seen.location.line, "subject": user.id, "reason": reason}));
            }
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
            if let (Some(proof), Some(mapped)) = (proof.as_mut(), &seen.mapped) {
                let snapshot = mapped
                    .subject
                    .as_deref()
                    .and_then(|s| snapshots.remove(s))
                    .flatten();
                for d in proof.check(mapped, snapshot)? {
                    proof.differences += 1;
                    if !json {
                        bar.suspend(|| eprintln!("store: {d}"));
                    }
                }
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let census = census.finish();
    let mut failed = unreadable > 0 || (args.fail_on_malformed && !malformed.is_empty());

    if !json {
        eprintln!(
            "password hashes of {}: {}",
            count(census.users, "user", "users"),
            census.summary()
        );
        if let Some(warning) = census.clear_text_warning() {
            eprintln!("{warning}");
        }
        match census.malformed_summary() {
            None => eprintln!("every password hash is well-formed"),
            Some(reasons) => eprintln!(
                "warning: {} will not be able to log in with a password until it is reset (their hashes are malformed: {reasons})",
                count(census.malformed_total(), "user", "users")
            ),
        }
    }

    // Credentials: the real check of each row's password against its user's hash.
    let mut statuses: Vec<(u64, String, CredentialStatus)> =
        check_credentials(&credentials, &candidates)
            .into_iter()
            .zip(&credentials)
            .map(|(status, c)| (c.row, c.user.clone(), status))
            .collect();
    statuses.sort_by_key(|s| s.0);
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    for (row, user, status) in &statuses {
        *by_status.entry(status.as_str()).or_default() += 1;
        if *status != CredentialStatus::Verified {
            failed = true;
        }
        if !json {
            eprintln!("credentials row {row}: {user}: {}", status.as_str());
        }
    }
    if !statuses.is_empty() && !json {
        let verified = by_status.get("verified").copied().unwrap_or(0);
        eprintln!("credentials: {verified} of {} verified", statuses.len());
    }

    // The store's users the bundle lacks.
    let mut differences = None;
    if let Some(proof) = proof.as_mut() {
        let mut extra = Vec::new();
        let index = &proof.subjects;
        proof.store.subjects(&mut |subject| {
            if !index
                .contains(subject)
                .map_err(|e| ferry_store::Error::Backend(e.to_string()))?
            {
                extra.push(subject.to_string());
            }
            Ok(())
        })?;
        extra.sort();
        for subject in &extra {
            proof.differences += 1;
            if !json {
                eprintln!("store: {subject}: in the store but not in the bundle");
            }
        }
        if !json {
            if proof.differences == 0 {
                eprintln!(
                    "store: all {} loaded records match the bundle",
                    proof.compared
                );
            } else {
                eprintln!(
                    "store: {} from the bundle",
                    count(proof.differences, "difference", "differences")
                );
            }
        }
        failed |= proof.differences > 0;
        differences = Some(proof.differences);
    }

    if json {
        println!(
            "{}",
            json!({
                "bundle": args.bundle.display().to_string(),
                "password_hashes": census,
                "malformed": malformed,
                "credentials": by_status,
                "credential_rows": statuses.iter().map(|(row, user, s)| json!({"row": row, "user": user, "status": s.as_str()})).collect::<Vec<_>>(),
                "store_differences": differences,
            })
        );
    }
    Ok(ExitStatus::failed_if(failed))
}

/// Hashes checked together in SIMD lanes: rows are sorted by PRF and iteration count
/// first, so each group is one or two full batches, and the groups run on every core.
const CREDENTIAL_GROUP: usize = 64;

/// The outcome of each credential row, in order: the hash of the bundle user it names
/// checked against its password, PBKDF2 hashes with the same parameters together.
fn check_credentials(
    credentials: &[Credential],
    candidates: &[Vec<Candidate>],
) -> Vec<CredentialStatus> {
    let picked: Vec<Result<PasswordHash, CredentialStatus>> = candidates
        .par_iter()
        .map(|found| pick_hash(found))
        .collect();
    let mut statuses: Vec<CredentialStatus> = picked
        .iter()
        .map(|p| match p {
            Ok(_) => CredentialStatus::WrongPassword,
            Err(s) => *s,
        })
        .collect();
    let mut to_check: Vec<(usize, &PasswordHash)> = picked
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.as_ref().ok().map(|h| (i, h)))
        .collect();
    to_check.sort_by_key(|(_, h)| h.pbkdf2().map(|c| (c.prf, c.iterations)));
    let verified: Vec<(usize, bool)> = to_check
        .par_chunks(CREDENTIAL_GROUP)
        .flat_map_iter(|group| {
            let pairs: Vec<(&PasswordHash, &str)> = group
                .iter()
                .map(|(i, h)| (*h, credentials[*i].password.as_str()))
                .collect();
            let answers = ferry_passwords::hash::verify_batch(&pairs);
            group
                .iter()
                .map(|(i, _)| *i)
                .zip(answers)
                .collect::<Vec<_>>()
        })
        .collect();
    for (i, ok) in verified {
        if ok {
            statuses[i] = CredentialStatus::Verified;
        }
    }
    statuses
}

/// The hash a credential row is checked against, given the bundle users it names, or
/// why there is none.
fn pick_hash(found: &[Candidate]) -> Result<PasswordHash, CredentialStatus> {
    let by_name: Vec<&Candidate> = found.iter().filter(|f| f.by_name).collect();
    let candidate = match (by_name.as_slice(), found) {
        ([one], _) => *one,
        ([], []) => return Err(CredentialStatus::NoSuchUser),
        ([], [one]) => one,
        _ => return Err(CredentialStatus::Ambiguous),
    };
    match candidate.hash.as_deref() {
        None | Some("") => Err(CredentialStatus::NoPassword),
        Some(text) => PasswordHash::parse(text).map_err(|_| CredentialStatus::MalformedHash),
    }
}

impl Proof<'_> {
    /// The differences of one bundle record from the store, as `subject: what` lines.
    /// `snapshot` is what the store holds for the record's subject.
    fn check(&mut self, m: &Mapped, snapshot: Option<Snapshot>) -> Result<Vec<String>> {
        let subject = m.subject.clone().unwrap_or_default();
        let at = |what: String| format!("{subject}: {what}");
        if !self.subjects.insert(&subject)? {
            return Ok(vec![at(format!(
                "appears twice in the bundle ({})",
                m.location
            ))]);
        }
        let Some(record) = m.record.as_ref().filter(|_| !m.failed()) else {
            return Ok(match snapshot {
                None => vec![at(format!(
                    "not in the store: the record has errors ({}): {}",
                    m.location,
                    m.message()
                ))],
                Some(_) => Vec::new(),
            });
        };
        self.compared += 1;
        let Some(s) = snapshot else {
            return Ok(vec![at(format!("not in the store ({})", m.location))]);
        };
        Ok(differences(record, &s).into_iter().map(at).collect())
    }
}

/// How what the store holds for a subject differs from what the record would load.
fn differences(record: &ImportRecord, s: &Snapshot) -> Vec<String> {
    let mut diffs = Vec::new();
    match (&record.password, &s.password) {
        (None, None) => {}
        (Some(_), Some(have)) if have.algorithm == ferry_passwords::preferred::ALGORITHM_ID => {
            // Re-hashed by a login since the load (or at the load, for a clear-text
            // Membership password), or a PBKDF2 PHC string stored as pbkdf2.
        }
        (Some(want), Some(have)) if have.algorithm == want.algorithm => {
            if have != want {
                let what = if have.algorithm == ASPNET_ALGORITHM {
                    "blob"
                } else {
                    "hash"
                };
                diffs.push(format!(
                    "the stored password {what} differs from the bundle's"
                ));
            }
        }
        (Some(want), Some(have)) => diffs.push(format!(
            "the password has algorithm `{}`, the bundle's `{}`",
            have.algorithm, want.algorithm
        )),
        (Some(_), None) => diffs.push("the password is missing".into()),
        (None, Some(_)) => diffs.push("the store has a password the bundle does not".into()),
    }
    if record.profile != s.profile {
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
    diffs
}
