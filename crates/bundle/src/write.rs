//! Writing a bundle: records streamed into owner-only parts whose SHA-256 is computed
//! while writing, never by reading the files back.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::manifest::Part;
use crate::record::{RoleRecord, UserRecord};
use crate::{fsutil, Error, ROLES_FILE};

/// The default number of users per part.
pub const DEFAULT_PART_SIZE: u64 = 100_000;

/// Streams users into `users-NNNNN.ndjson` parts of at most `part_size` records, and
/// roles into `roles.ndjson`.
///
/// Nothing here writes the manifest: the caller writes it last, once every part is
/// complete, so that a folder without a manifest is never mistaken for a bundle.
pub struct BundleWriter {
    dir: PathBuf,
    part_size: u64,
    current: Option<OpenPart>,
    parts: Vec<Part>,
    created: Vec<PathBuf>,
    line: Vec<u8>,
}

struct OpenPart {
    file_name: String,
    entity: &'static str,
    out: BufWriter<HashingFile>,
    records: u64,
}

struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BundleWriter {
    /// Starts a bundle in `dir`, which must exist.
    pub fn new(dir: &Path, part_size: u64) -> BundleWriter {
        BundleWriter {
            dir: dir.to_path_buf(),
            part_size: part_size.max(1),
            current: None,
            parts: Vec::new(),
            created: Vec::new(),
            line: Vec::with_capacity(4096),
        }
    }

    /// The name of the `index`th users part.
    pub fn user_part_name(index: usize) -> String {
        format!("users-{index:05}.ndjson")
    }

    /// Appends one user as one line, starting a new part every `part_size` users.
    pub fn write_user(&mut self, record: &UserRecord) -> Result<(), Error> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        let rotate = self
            .current
            .as_ref()
            .is_some_and(|p| p.entity != "users" || p.records >= self.part_size);
        if rotate {
            self.close_current()?;
        }
        if self.current.is_none() {
            let index = self.parts.iter().filter(|p| p.entity == "users").count();
            self.open(Self::user_part_name(index), "users")?;
        }
        self.append_line()
    }

    /// Appends one role to `roles.ndjson`. Write all roles before or after the users,
    /// not interleaved with them.
    pub fn write_role(&mut self, role: &RoleRecord) -> Result<(), Error> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, role)?;
        self.line.push(b'\n');
        if self.current.as_ref().is_some_and(|p| p.entity != "roles") {
            self.close_current()?;
        }
        if self.current.is_none() {
            self.open(ROLES_FILE.to_string(), "roles")?;
        }
        self.append_line()
    }

    fn append_line(&mut self) -> Result<(), Error> {
        let part = self.current.as_mut().expect("a part is open");
        part.out
            .write_all(&self.line)
            .map_err(|e| Error::io(self.dir.join(&part.file_name), e))?;
        part.records += 1;
        Ok(())
    }

    /// Closes the last part and returns every part written, users parts first. A bundle
    /// with no users or no roles still gets an empty users part and `roles.ndjson`, so
    /// that its layout is always the same.
    pub fn finish(mut self) -> Result<Vec<Part>, Error> {
        self.close_current()?;
        if !self.parts.iter().any(|p| p.entity == "roles") {
            self.open(ROLES_FILE.to_string(), "roles")?;
            self.close_current()?;
        }
        if !self.parts.iter().any(|p| p.entity == "users") {
            self.open(Self::user_part_name(0), "users")?;
            self.close_current()?;
        }
        let mut parts = std::mem::take(&mut self.parts);
        // Users parts first (in their own order), then roles.
        parts.sort_by_key(|p| p.entity != "users");
        Ok(parts)
    }

    /// Removes every file this writer created: used when an export fails, so that no
    /// partial bundle is left behind.
    pub fn abandon(mut self) {
        self.current = None;
        for path in &self.created {
            let _ = std::fs::remove_file(path);
        }
    }

    fn open(&mut self, file_name: String, entity: &'static str) -> Result<(), Error> {
        let path = self.dir.join(&file_name);
        let file = fsutil::create_private(&path).map_err(|e| Error::io(&path, e))?;
        self.created.push(path);
        self.current = Some(OpenPart {
            file_name,
            entity,
            out: BufWriter::with_capacity(
                256 * 1024,
                HashingFile {
                    file,
                    hasher: Sha256::new(),
                    bytes: 0,
                },
            ),
            records: 0,
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), Error> {
        let Some(part) = self.current.take() else {
            return Ok(());
        };
        let path = self.dir.join(&part.file_name);
        let hashing = part
            .out
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        hashing.file.sync_all().map_err(|e| Error::io(&path, e))?;
        self.parts.push(Part {
            file: part.file_name,
            entity: part.entity.to_string(),
            records: part.records,
            bytes: hashing.bytes,
            sha256: hex(&hashing.hasher.finalize()),
        });
        Ok(())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
