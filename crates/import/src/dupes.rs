//! Uniqueness inside a bundle, checked against a disk-backed index (a temporary SQLite
//! file), so that memory stays flat however many users the bundle holds.

use anyhow::Result;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ferry_schema::map::Severity;
use ferry_schema::Problem;
use ferry_store::{normalize, OtpChannel};
use rusqlite::{params, Connection, OptionalExtension as _};

use crate::pipeline::Mapped;

/// Keys seen so far, with the first record that held each.
pub struct Dupes {
    conn: Connection,
    _dir: tempfile::TempDir,
}

impl Dupes {
    /// A new, empty index in a private temporary folder.
    pub fn new() -> Result<Dupes> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-validate")
            .tempdir()?;
        let conn = Connection::open(dir.path().join("keys.db"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             CREATE TABLE keys (kind TEXT NOT NULL, value TEXT NOT NULL, subject TEXT NOT NULL, location TEXT NOT NULL,
                                PRIMARY KEY (kind, value)) WITHOUT ROWID;",
        )?;
        Ok(Dupes { conn, _dir: dir })
    }

    /// Checks a chunk in order; returns `(index in chunk, problem)` for every key that
    /// an earlier record already holds.
    pub fn check(&mut self, chunk: &[Mapped]) -> Result<Vec<(usize, Problem)>> {
        let tx = self.conn.transaction()?;
        let mut found = Vec::new();
        {
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO keys VALUES (?1, ?2, ?3, ?4)")?;
            let mut holder = tx.prepare_cached(
                "SELECT subject, location FROM keys WHERE kind = ?1 AND value = ?2",
            )?;
            for (i, m) in chunk.iter().enumerate() {
                let Some(r) = &m.record else { continue };
                let subject = r.subject_id.as_str();
                let location = m.location.to_string();
                let mut keys: Vec<(String, &str, String, String)> = Vec::new();
                if let Some(name) = &r.account.user_name {
                    keys.push((
                        "user name".into(),
                        "UserName",
                        normalize(name),
                        format!("'{name}' (ignoring case)"),
                    ));
                }
                for otp in &r.otp_addresses {
                    let (field, value) = match otp.channel {
                        OtpChannel::Email => ("Email", normalize(&otp.address)),
                        OtpChannel::Sms => ("PhoneNumber", otp.address.clone()),
                    };
                    keys.push((
                        format!("{} OTP address", otp.channel.as_str()),
                        field,
                        value,
                        format!("'{}'", otp.address),
                    ));
                }
                for l in &r.external_logins {
                    keys.push((
                        "external login".into(),
                        "Logins",
                        format!("{}\u{1f}{}", l.provider, l.key),
                        format!("{} '{}'", l.provider, l.key),
                    ));
                }
                for p in &r.passkeys {
                    let id = URL_SAFE_NO_PAD.encode(&p.credential_id);
                    keys.push(("passkey credential".into(), "Passkeys", id.clone(), id));
                }
                for (code, value) in &r.unique_keys {
                    if r.account.user_name.as_deref() == Some(value.as_str()) {
                        continue; // the same value as the user name, checked above
                    }
                    keys.push((
                        format!("attribute {code}"),
                        "",
                        value.clone(),
                        format!("'{value}'"),
                    ));
                }
                for (kind, field, value, shown) in keys {
                    if insert.execute(params![kind, value, subject, location])? == 0 {
                        let (other, at): (String, String) = holder
                            .query_row(params![kind, value], |row| Ok((row.get(0)?, row.get(1)?)))
                            .optional()?
                            .unwrap_or_default();
                        let field = if field.is_empty() {
                            kind.trim_start_matches("attribute ").to_string()
                        } else {
                            field.to_string()
                        };
                        found.push((
                            i,
                            Problem {
                                field,
                                message: format!(
                                    "{kind} {shown} is also used by subject {other} ({at})"
                                ),
                                severity: Severity::Error,
                            },
                        ));
                    }
                }
            }
        }
        tx.commit()?;
        Ok(found)
    }
}
