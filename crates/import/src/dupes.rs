//! Uniqueness inside a bundle, by the store core's rules ([`ferry_store::unique`]): each
//! record's claims are checked against the records before it, in a disk-backed index (a
//! temporary SQLite file), so that memory stays flat however many users the bundle holds.
//!
//! It behaves as a load does: a record meets the first of its claims, in the order a load
//! checks them, that an earlier record of the bundle or (with a target store) another
//! subject of the store holds, with the same message; a record whose subject the store
//! has already is skipped, as a load skips it; and a record that fails (for that or any
//! other reason) claims nothing, so it conflicts with no later record.

use anyhow::Result;
use ferry_bundle::Location;
use ferry_schema::Problem;
use ferry_store::Store;
use rusqlite::{params, Connection, OptionalExtension as _};

use crate::pipeline::Mapped;

/// Claims seen so far, with the record that holds each.
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
        let conn = Connection::open(dir.path().join("claims.db"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             CREATE TABLE claims (key TEXT PRIMARY KEY, subject TEXT NOT NULL, file TEXT NOT NULL,
                                  line INTEGER NOT NULL) WITHOUT ROWID;",
        )?;
        Ok(Dupes { conn, _dir: dir })
    }

    /// Checks a chunk in bundle order, against the records before it and against
    /// `target`, and adds to each record the problem a load would report: a claim held by
    /// an earlier record (naming where it is) or by another subject of the store, or, as a
    /// warning, that the store has the subject already.
    pub fn check(&mut self, chunk: &mut [Mapped], target: Option<&dyn Store>) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO claims VALUES (?1, ?2, ?3, ?4)")?;
            let mut holder =
                tx.prepare_cached("SELECT subject, file, line FROM claims WHERE key = ?1")?;
            for m in chunk.iter_mut() {
                let Some(r) = m.record.as_ref().filter(|_| !m.failed()) else {
                    continue;
                };
                let me = r.subject_id.as_str();
                if let Some(store) = target {
                    if store.has_subject(me)? {
                        m.problems.push(Problem::warning(
                            "Id",
                            "subject already exists in the target: the load will skip it (or merge it with --on-conflict overwrite)",
                        ));
                        continue;
                    }
                }
                let keys: Vec<String> = m.claims.iter().map(|c| c.index_key()).collect();
                let mut held = None;
                for (claim, key) in m.claims.iter().zip(&keys) {
                    let found: Option<(String, String, u64)> = holder
                        .query_row([key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                        .optional()?;
                    if let Some((subject, file, line)) = found {
                        held = Some((claim, subject, Some(Location { file, line })));
                        break;
                    }
                    if let Some(store) = target {
                        if let Some(subject) = store.holder(claim)?.filter(|s| s != me) {
                            held = Some((claim, subject, None));
                            break;
                        }
                    }
                }
                match held {
                    Some((claim, subject, at)) => {
                        let mut problem = Problem::error(claim.field(), claim.held_by(&subject));
                        problem.related = at;
                        m.problems.push(problem);
                    }
                    None => {
                        for key in &keys {
                            insert.execute(params![
                                key,
                                r.subject_id.as_str(),
                                m.location.file,
                                m.location.line
                            ])?;
                        }
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// A set of subject ids on disk (a temporary SQLite file): memory stays flat however many
/// users a bundle holds.
pub struct SubjectIndex {
    conn: Connection,
    _dir: tempfile::TempDir,
}

impl SubjectIndex {
    /// A new, empty set.
    pub fn new() -> Result<SubjectIndex> {
        let dir = tempfile::Builder::new().prefix("ferry-verify").tempdir()?;
        let conn = Connection::open(dir.path().join("subjects.db"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             CREATE TABLE subjects (subject TEXT PRIMARY KEY) WITHOUT ROWID;
             BEGIN;",
        )?;
        // One transaction for the set's whole life: it is thrown away, never committed.
        Ok(SubjectIndex { conn, _dir: dir })
    }

    /// Adds `subject`; `false` if it was there already.
    pub fn insert(&self, subject: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO subjects VALUES (?1)")?
            .execute([subject])?
            == 1)
    }

    /// Whether `subject` is in the set.
    pub fn contains(&self, subject: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM subjects WHERE subject = ?1")?
            .exists([subject])?)
    }
}
