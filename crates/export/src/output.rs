//! What the user sees: a progress bar on a terminal, a summary on stderr, or one JSON
//! object on stdout.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use ferry_bundle::Manifest;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} exporting users {bar:40} {human_pos}/{human_len} ({per_sec}, {eta} left)",
        )
        .expect("valid template"),
    );
    bar
}

pub struct Summary<'a> {
    pub bundle: &'a Path,
    pub manifest: &'a Manifest,
    pub elapsed: Duration,
    /// How the source was read, for the user.
    pub notes: &'a [String],
}

pub fn report(summary: &Summary<'_>, json: bool) {
    let m = summary.manifest;
    let c = &m.counts;
    let census = &m.password_hashes;
    if json {
        let value = serde_json::json!({
            "bundle": summary.bundle.display().to_string(),
            "source": m.source,
            "limit": m.limit,
            "counts": c,
            "parts": m.parts.len(),
            "password_hashes": census,
            "elapsed_seconds": summary.elapsed.as_secs_f64(),
        });
        // A closed stdout (e.g. piped into `head`) is not an error.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
        return;
    }
    eprintln!(
        "exported {} users ({} claims, {} logins, {} tokens, {} memberships, {} passkeys) and {} roles from `{}` ({}, {}) to `{}` in {:.1}s",
        c.users,
        c.claims,
        c.logins,
        c.tokens,
        c.user_roles,
        c.passkeys,
        c.roles,
        m.source.location,
        m.source.generation,
        m.source.naming,
        summary.bundle.display(),
        summary.elapsed.as_secs_f64()
    );
    eprintln!("password hashes: {}", census.summary());
    if let Some(warning) = census.clear_text_warning() {
        eprintln!("{warning}");
    }
    if let Some(reasons) = census.malformed_summary() {
        eprintln!(
            "warning: {} users have malformed password hashes ({reasons}) and will not be able to log in with a password until it is reset; `ferry-import verify` lists them",
            census.malformed_total()
        );
    }
    for note in summary.notes {
        eprintln!("note: {note}");
    }
    for (table, n) in &c.orphans {
        eprintln!("warning: {n} rows of {table} point at no user or role and were not exported");
    }
    if let Some(limit) = m.limit {
        eprintln!("note: --limit {limit}: this bundle holds only the first {limit} users");
    }
}
