//! A private copy of a WAL-mode SQLite database, so that reading it writes nothing beside it.
//!
//! SQLite opens a WAL-mode database only with its `-shm` index beside it: a reader creates
//! `-shm` and `-wal` when they are missing, writes its read marks into an existing `-shm`,
//! and cannot open the database at all in a folder it may not write to (`unable to open
//! database file`). The one mode that needs no `-shm` (`immutable=1`) ignores the `-wal`,
//! and so every change the application has committed but not yet checkpointed.
//!
//! So a WAL-mode database is copied, with its `-wal`, into a private folder, and read
//! there: SQLite replays the committed frames of the copied `-wal` when it opens the copy.
//! The copy is consistent if no WAL reset happened while it was made. In WAL mode the
//! database file is only written by checkpoints, which copy frames that stay in the `-wal`
//! until the next writer resets it; a reset rewrites the `-wal` header with new salts. So
//! the `-wal` header is read before the database is copied and again after the `-wal` is:
//! if it is the same, every page a checkpoint wrote into the copied database file is also
//! in the copied `-wal`, whose frames take precedence, and frames being appended during the
//! copy are cut off cleanly by their checksums. If it changed, the copy is made again.
//!
//! A database in rollback-journal mode is read in place: a read-only connection to it
//! creates no file.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// How many times a copy is attempted while the application keeps resetting its `-wal`.
const ATTEMPTS: u32 = 5;

/// The journal mode a database file's header declares (bytes 18 and 19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JournalMode {
    /// Rollback journal (legacy): readable in place.
    Rollback,
    /// Write-ahead log.
    Wal,
    /// No SQLite header (an empty or foreign file): SQLite itself says what it is.
    Unknown,
}

pub(crate) fn journal_mode(db: &Path) -> io::Result<JournalMode> {
    let mut header = [0u8; 20];
    let mut file = File::open(db)?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..])? {
            0 => break,
            n => read += n,
        }
    }
    if read < header.len() || &header[..16] != b"SQLite format 3\0" {
        return Ok(JournalMode::Unknown);
    }
    Ok(if header[18] == 2 || header[19] == 2 {
        JournalMode::Wal
    } else {
        JournalMode::Rollback
    })
}

/// `app.db` → `app.db-wal`.
pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push("-wal");
    PathBuf::from(name)
}

/// The 32-byte header of a `-wal` file, or `None` if there is none (or it is empty).
fn wal_header(wal: &Path) -> io::Result<Option<[u8; 32]>> {
    let mut file = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut header = [0u8; 32];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..])? {
            0 => return Ok(None),
            n => read += n,
        }
    }
    Ok(Some(header))
}

/// Size and modification time: how the database file shows it was written.
fn stamp(path: &Path) -> io::Result<(u64, Option<std::time::SystemTime>)> {
    let m = std::fs::metadata(path)?;
    Ok((m.len(), m.modified().ok()))
}

/// A private, owner-only copy of a WAL-mode database and its `-wal`, removed on drop.
pub(crate) struct Snapshot {
    /// Removed (with the copy) when the snapshot is dropped.
    _dir: tempfile::TempDir,
    db: PathBuf,
}

impl Snapshot {
    /// The copied database file.
    pub(crate) fn path(&self) -> &Path {
        &self.db
    }

    /// Copies `db` (and its `-wal`) into a new private folder inside `scratch`.
    pub(crate) fn take(db: &Path, scratch: &Path) -> Result<Snapshot, SnapshotError> {
        let dir = private_dir(scratch).map_err(|e| SnapshotError::Io(scratch.into(), e))?;
        let name = db.file_name().unwrap_or_else(|| "source.db".as_ref());
        let copy = dir.path().join(name);
        let wal = wal_path(db);
        let wal_copy = wal_path(&copy);
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| SnapshotError::Io(p, e)
        };
        for _ in 0..ATTEMPTS {
            let before = wal_header(&wal).map_err(io(&wal))?;
            let db_before = stamp(db).map_err(io(db))?;
            copy_private(db, &copy).map_err(io(db))?;
            let copied_wal = match std::fs::metadata(&wal) {
                Ok(_) => match copy_private(&wal, &wal_copy) {
                    Ok(()) => true,
                    // Removed between the check and the copy: the application closed it.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(SnapshotError::Io(wal, e)),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                Err(e) => return Err(SnapshotError::Io(wal, e)),
            };
            if !copied_wal {
                let _ = std::fs::remove_file(&wal_copy);
            }
            let after = wal_header(&wal).map_err(io(&wal))?;
            let in_copy = wal_header(&wal_copy).map_err(io(&wal_copy))?;
            let steady = match (before, after) {
                // No -wal before or after: nothing may have written the file meanwhile.
                (None, None) => stamp(db).map_err(io(db))? == db_before,
                (Some(a), Some(b)) => a == b && in_copy == Some(a),
                _ => false,
            };
            if steady {
                return Ok(Snapshot {
                    _dir: dir,
                    db: copy,
                });
            }
        }
        Err(SnapshotError::Unsteady)
    }

    /// The folder holding the copy.
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// Why a snapshot could not be taken.
#[derive(Debug)]
pub(crate) enum SnapshotError {
    /// A file could not be read or written.
    Io(PathBuf, io::Error),
    /// The application reset its `-wal` during every attempt.
    Unsteady,
}

fn private_dir(scratch: &Path) -> io::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".ferry-source-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    builder.tempdir_in(scratch)
}

/// Copies a file into a new owner-only file (it holds password hashes).
fn copy_private(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut target = options.open(to)?;
    io::copy(&mut source, &mut target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn a_copy_sees_committed_wal_frames_and_leaves_the_source_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let writer = Connection::open(&db).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3);",
            )
            .unwrap();
        assert_eq!(journal_mode(&db).unwrap(), JournalMode::Wal);
        let scratch = tempfile::tempdir().unwrap();
        let snapshot = Snapshot::take(&db, scratch.path()).unwrap();
        // The application goes on writing; the copy does not see it.
        writer.execute("INSERT INTO t VALUES (4)", []).unwrap();
        let copy = Connection::open(snapshot.path()).unwrap();
        let n: i64 = copy
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3, "the committed, un-checkpointed rows are in the copy");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(snapshot.dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let kept = snapshot.dir().to_path_buf();
        drop(copy);
        drop(snapshot);
        assert!(!kept.exists(), "the copy is removed with the snapshot");
    }

    #[test]
    fn journal_modes_are_read_from_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rollback.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert_eq!(journal_mode(&db).unwrap(), JournalMode::Rollback);
        std::fs::write(dir.path().join("empty.db"), b"").unwrap();
        assert_eq!(
            journal_mode(&dir.path().join("empty.db")).unwrap(),
            JournalMode::Unknown
        );
    }
}
