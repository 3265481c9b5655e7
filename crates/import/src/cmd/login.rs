//! `ferry-import login`: log in as an imported user, as the application will.

use std::io::{BufRead as _, IsTerminal as _, Read as _};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use ferry_store::login::{self, Verdict};
use ferry_store::StoredUser;

use crate::args::OutputArgs;
use crate::{setup, ExitStatus};

/// Log in as an imported user with the password they always had.
///
/// Reads the password from standard input: one line, without its line ending (no echo
/// when standard input is a terminal). Finds the user by user name or e-mail,
/// ignoring case as ASP.NET's lookup normaliser did (`ALICE` finds alice). Refuses a
/// locked-out user (LockoutEnd in the future). Checks the password in constant time; on
/// success with any algorithm but the preferred one, re-hashes it to `pbkdf2`
/// (PBKDF2-HMAC-SHA512, 210,000 iterations), as User Management does on a first login.
/// With --totp, also checks a code of the imported authenticator (RFC 6238: SHA-1, six
/// digits, 30-second steps, two steps either side).
///
/// As the application's sign-in page must, it says the same for every refusal before
/// the password is known to be right ("the user name or password is wrong, or this
/// account cannot sign in with a password now"), and does the same work for each: one
/// password check, against the user's hash, or a preferred-format hash when there is no
/// such user or the user has none; a locked-out user's password is checked too. Give
/// --explain to see which it was (no such user, several users with that e-mail, wrong
/// password, no password, locked out until …).
///
/// Examples:
///
///   $ echo 'alice-Passw0rd!' | ferry-import login --target users.db --user alice
///   $ ferry-import login --target users.db --user ALICE@EXAMPLE.COM --totp 287082
///
/// Exit status: 0 logged in, 1 refused (no such user, wrong password, locked out, a
/// wrong or missing two-factor code), 2 the check could not run.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The store `ferry-import load` wrote: a SQLite file or a PostgreSQL address.
    #[arg(long)]
    pub target: String,
    /// The user name or e-mail address.
    #[arg(long)]
    pub user: String,
    /// A code from the user's authenticator app.
    #[arg(long, value_name = "CODE")]
    pub totp: Option<String>,
    /// Say why a login is refused (by default every refusal before the password is known
    /// to be right says the same, as a sign-in page must not tell who exists).
    #[arg(long)]
    pub explain: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The current time; `FERRY_NOW` (Unix seconds) overrides it, for tests of lockout and
/// TOTP against fixed vectors.
fn now() -> Result<DateTime<Utc>> {
    match std::env::var("FERRY_NOW") {
        Ok(s) => {
            let secs: i64 = s.trim().parse().context("FERRY_NOW must be Unix seconds")?;
            DateTime::from_timestamp(secs, 0).context("FERRY_NOW is out of range")
        }
        Err(_) => Ok(Utc::now()),
    }
}

/// The longest password line `login` reads from standard input (a password, and a
/// newline), in bytes.
const MAX_PASSWORD_LINE: usize = 4096;

fn read_password() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(rpassword::prompt_password("password: ")?);
    }
    // Bounded: `login < /dev/zero` must not try to hold a gigabyte-long "line".
    let mut raw = Vec::new();
    stdin
        .lock()
        .take(MAX_PASSWORD_LINE as u64 + 1)
        .read_until(b'\n', &mut raw)
        .context("cannot read the password from standard input")?;
    if raw.len() > MAX_PASSWORD_LINE {
        bail!(
            "the password line on standard input is longer than {} KiB; give one password, then a newline",
            MAX_PASSWORD_LINE / 1024
        );
    }
    let mut line = String::from_utf8(raw)
        .map_err(|_| anyhow::anyhow!("the password on standard input is not UTF-8"))?;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// What a refused login says without --explain.
const REFUSED: &str = "the user name or password is wrong, or this account cannot sign in with a password now (--explain says which)";

/// When the user's lockout ends, if it is in the future.
fn locked_until(user: &StoredUser, now: DateTime<Utc>) -> Option<DateTime<chrono::FixedOffset>> {
    if !user.lockout_enabled {
        return None;
    }
    let end = DateTime::parse_from_rfc3339(user.lockout_end.as_deref()?).ok()?;
    (end > now).then_some(end)
}

struct Report<'a> {
    args: &'a Args,
    subject: Option<String>,
}

impl Report<'_> {
    fn finish(&self, ok: bool, message: &str, rehashed: bool) -> ExitStatus {
        if self.args.output.json {
            println!(
                "{}",
                serde_json::json!({
                    "user": self.args.user,
                    "subject": self.subject,
                    "ok": ok,
                    "message": message,
                    "rehashed": rehashed,
                })
            );
        } else if ok {
            eprintln!("{message}");
        } else {
            eprintln!("refused: {message}");
        }
        if ok {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        }
    }
}

pub fn run(args: Args) -> Result<ExitStatus> {
    let mut store = setup::existing_store(&args.target)?;
    let password = read_password()?;
    let now = now()?;
    let mut report = Report {
        args: &args,
        subject: None,
    };
    let users = store.find_for_login(&args.user)?;
    let (user, mut refusal) = match users.as_slice() {
        [] => (None, Some(format!("no user named `{}`", args.user))),
        [one] => (Some(one.clone()), None),
        many => (
            None,
            Some(format!(
                "{} users have the e-mail address `{}`; log in with the user name",
                many.len(),
                args.user
            )),
        ),
    };
    if let Some(user) = &user {
        report.subject = Some(user.subject_id.clone());
        if user.password.is_none() {
            refusal = Some("this user has no password (external login or passkey only)".into());
        }
    }
    // One password check whatever the case, so that timing does not tell a user that
    // does not exist (or has no password, or is locked out) from a wrong password.
    // A malformed hash (or one above the cost ceilings) is never run: the placeholder
    // is checked instead.
    let stored = user.as_ref().and_then(|u| u.password.as_ref());
    let malformed = stored.and_then(login::malformed);
    let placeholder = login::placeholder_hash();
    let checked = stored.filter(|_| malformed.is_none());
    let verdict = login::verify(&password, checked.unwrap_or(&placeholder));
    if let Some(end) = user.as_ref().and_then(|u| locked_until(u, now)) {
        refusal.get_or_insert(format!("locked out until {}", end.to_rfc3339()));
    }
    if let Some(reason) = malformed {
        refusal.get_or_insert(format!(
            "this user's password hash is malformed ({reason}); it cannot verify until the password is reset"
        ));
    }
    if verdict == Verdict::Failed {
        refusal.get_or_insert("wrong password".into());
    }
    let (Some(user), Some(stored), None) = (&user, stored, &refusal) else {
        let why = refusal.unwrap_or_default();
        let message = if args.explain { why.as_str() } else { REFUSED };
        report.subject = report.subject.filter(|_| args.explain);
        return Ok(report.finish(false, message, false));
    };
    let mut rehashed = false;
    if verdict == Verdict::SuccessRehashNeeded {
        store.set_password(user.id, &login::preferred_hash(&password))?;
        rehashed = true;
    }
    let from = stored.algorithm.clone();
    let second_factor = match (&args.totp, user.totp_devices.is_empty()) {
        (Some(_), true) => {
            return Ok(report.finish(
                false,
                "password verified, but this user has no authenticator for --totp",
                rehashed,
            ))
        }
        (Some(code), false) => {
            let secs = u64::try_from(now.timestamp()).unwrap_or(0);
            if !user
                .totp_devices
                .iter()
                .any(|d| ferry_passwords::totp::verify(&d.key, code, secs))
            {
                return Ok(report.finish(
                    false,
                    "password verified, but the two-factor code is wrong",
                    rehashed,
                ));
            }
            " with a two-factor code"
        }
        (None, false) if user.two_factor_enabled => {
            return Ok(report.finish(
                false,
                "password verified; this user has two-factor authentication: give --totp CODE",
                rehashed,
            ))
        }
        (None, _) => "",
    };
    let mut message = format!(
        "logged in as `{}` (subject {}){second_factor}",
        args.user, user.subject_id
    );
    if rehashed {
        message.push_str(&format!("; password re-hashed from {from} to pbkdf2"));
    }
    Ok(report.finish(true, &message, rehashed))
}
