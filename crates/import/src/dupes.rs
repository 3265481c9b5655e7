//! Uniqueness inside a bundle, by the store core's rules ([`ferry_store::unique`]): each
//! record's claims are checked against the records before it, in a disk-backed index (a
//! temporary SQLite file), so that memory stays flat however many users the bundle holds.
//!
//! It behaves as a load does: a record meets the first of its claims, in the order a load
//! checks them, that an earlier record of the bundle or (with a target store) another
//! subject of the store holds, with the same message; a record whose subject the store
//! has already is skipped, as a load skips it; and a record that fails (for that or any
//! other reason) claims nothing, so it conflicts with no later record.
//!
//! Before its claims, a record's `Id` is checked ([`check_ids`], which `load` runs too): a
//! record with the `Id` of an earlier one is an error naming that one, and is not imported
//! (a load would otherwise skip it as an existing account, and plan write both).

use std::collections::HashSet;

use anyhow::Result;
use ferry_bundle::Location;
use ferry_schema::Problem;
use ferry_store::{Store, UniqueClaim};
use rusqlite::{params, Connection, OptionalExtension as _};

use crate::pipeline::Mapped;

/// Claims seen so far, with the record that holds each.
pub struct Dupes {
    conn: Connection,
    ids: SubjectIndex,
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
        Ok(Dupes {
            conn,
            ids: SubjectIndex::new()?,
            _dir: dir,
        })
    }

    /// Checks a chunk in bundle order, against the records before it and against
    /// `target`, and adds to each record the problem a load would report: a claim held by
    /// an earlier record (naming where it is) or by another subject of the store, or, as a
    /// warning, that the store has the subject already.
    pub fn check(&mut self, chunk: &mut [Mapped], target: Option<&dyn Store>) -> Result<()> {
        check_ids(&self.ids, chunk)?;
        let known = match target {
            Some(store) => Some(StoreFacts::of(store, chunk)?),
            None => None,
        };
        let tx = self.conn.transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO claims VALUES (?1, ?2, ?3, ?4)")?;
            let mut holder =
                tx.prepare_cached("SELECT subject, file, line FROM claims WHERE key = ?1")?;
            for (i, m) in chunk.iter_mut().enumerate() {
                let Some(r) = m.record.as_ref().filter(|_| !m.failed()) else {
                    continue;
                };
                let me = r.subject_id.as_str();
                if let Some(known) = &known {
                    if known.existing.contains(me) {
                        m.problems.push(Problem::warning(
                            "Id",
                            "subject already exists in the target: the load will skip it (or merge it with --on-conflict overwrite)",
                        ));
                        continue;
                    }
                }
                let keys: Vec<String> = m.claims.iter().map(|c| c.index_key()).collect();
                let mut held = None;
                for (c, (claim, key)) in m.claims.iter().zip(&keys).enumerate() {
                    let found: Option<(String, String, u64)> = holder
                        .query_row([key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                        .optional()?;
                    if let Some((subject, file, line)) = found {
                        held = Some((claim, subject, Some(Location { file, line })));
                        break;
                    }
                    if let Some(known) = &known {
                        if let Some(subject) = known.holder(i, c).filter(|s| *s != me) {
                            held = Some((claim, subject.to_string(), None));
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

/// What the target store holds of a chunk's records, asked in two calls for the whole
/// chunk (one round trip each to a server), not one per record and claim.
struct StoreFacts {
    /// The chunk's subjects that the store has.
    existing: HashSet<String>,
    /// The holder of each claim of each record, by record, then claim.
    holders: Vec<Vec<Option<String>>>,
}

impl StoreFacts {
    fn of(store: &dyn Store, chunk: &[Mapped]) -> Result<StoreFacts> {
        let checked = |m: &Mapped| m.record.as_ref().filter(|_| !m.failed()).is_some();
        let subjects: Vec<&str> = chunk
            .iter()
            .filter(|m| checked(m))
            .filter_map(|m| m.record.as_ref().map(|r| r.subject_id.as_str()))
            .collect();
        let existing = store.existing_subjects(&subjects)?;
        let claims: Vec<&UniqueClaim> = chunk
            .iter()
            .filter(|m| checked(m))
            .flat_map(|m| &m.claims)
            .collect();
        let mut found = store.holders(&claims)?.into_iter();
        let holders = chunk
            .iter()
            .map(|m| match checked(m) {
                true => found.by_ref().take(m.claims.len()).collect(),
                false => Vec::new(),
            })
            .collect();
        Ok(StoreFacts { existing, holders })
    }

    fn holder(&self, record: usize, claim: usize) -> Option<&str> {
        self.holders[record].get(claim)?.as_deref()
    }
}

/// A set of subject ids on disk (a temporary SQLite file), each with the record that
/// gave it first: memory stays flat however many users a bundle holds.
pub struct SubjectIndex {
    conn: Connection,
    _dir: tempfile::TempDir,
}

impl SubjectIndex {
    /// A new, empty set.
    pub fn new() -> Result<SubjectIndex> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-subjects")
            .tempdir()?;
        let conn = Connection::open(dir.path().join("subjects.db"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             CREATE TABLE subjects (subject TEXT PRIMARY KEY, file TEXT, line INTEGER)
                 WITHOUT ROWID;
             BEGIN;",
        )?;
        // One transaction for the set's whole life: it is thrown away, never committed.
        Ok(SubjectIndex { conn, _dir: dir })
    }

    /// Adds `subject`; `false` if it was there already.
    pub fn insert(&self, subject: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO subjects (subject) VALUES (?1)")?
            .execute([subject])?
            == 1)
    }

    /// Adds `subject`, given by the record at `at`; if an earlier record gave it, where
    /// that record is (and `at` is not added).
    pub fn first_at(&self, subject: &str, at: &Location) -> Result<Option<Location>> {
        let added = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO subjects VALUES (?1, ?2, ?3)")?
            .execute(params![subject, at.file, at.line])?;
        if added == 1 {
            return Ok(None);
        }
        Ok(self
            .conn
            .prepare_cached("SELECT file, line FROM subjects WHERE subject = ?1")?
            .query_row([subject], |r| {
                Ok(Location {
                    file: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    line: r.get::<_, Option<u64>>(1)?.unwrap_or_default(),
                })
            })
            .optional()?)
    }

    /// Whether `subject` is in the set.
    pub fn contains(&self, subject: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM subjects WHERE subject = ?1")?
            .exists([subject])?)
    }
}

/// The message of a record whose `Id` an earlier record of the bundle has (which the
/// problem's location, or the caller, names).
pub const GIVEN_TWICE: &str = "an earlier record has this Id; a bundle holds each account once: merge the two records by hand or remove one, then seal";

/// Checks each record of a chunk, in bundle order, for an `Id` an earlier record has:
/// such a record gets an error naming the first one, and is not imported.
pub fn check_ids(index: &SubjectIndex, chunk: &mut [Mapped]) -> Result<()> {
    for m in chunk {
        let Some(subject) = m.subject.as_deref() else {
            continue;
        };
        if let Some(first) = index.first_at(subject, &m.location)? {
            let mut problem = Problem::error("Id", GIVEN_TWICE);
            problem.related = Some(first);
            m.problems.push(problem);
            m.record = None;
            m.claims.clear();
        }
    }
    Ok(())
}
