//! Writing a bundle: records streamed into owner-only parts (NDJSON lines, or Parquet
//! row groups), whose SHA-256 is computed
//! while writing, never by reading the files back, and the manifest assembled from what
//! was written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::encoding::Encoding;
use crate::manifest::{ConvertedFrom, Edit, Manifest, Part, Source};
use crate::parquet::write::PartWriter;
use crate::record::{RoleRecord, UserRecord};
use crate::tally::Tally;
use crate::{fsutil, Error, FORMAT, ROLES_FILE, VERSION};

/// The default number of users per part.
pub const DEFAULT_PART_SIZE: u64 = 100_000;

/// What the manifest says beyond what the writer counted.
#[derive(Clone, Debug)]
pub struct ManifestInfo {
    /// The tool and version, e.g. `ferry-export 0.1.0`.
    pub tool: String,
    /// Where the records came from.
    pub source: Source,
    /// The `--limit` of a test export.
    pub limit: Option<u64>,
    /// Child rows of the source that pointed at no user or role, by table.
    pub orphans: BTreeMap<String, u64>,
    /// The bundle this one was converted from, for `ferry-import convert`.
    pub converted_from: Option<ConvertedFrom>,
    /// The hand edits the records went through (a converted bundle keeps its original's).
    pub edits: Vec<Edit>,
}

/// Streams users into `users-NNNNN.<encoding>` parts of at most `part_size` records, and
/// roles into `roles.ndjson`, counting what it writes; [`BundleWriter::finish`] writes the
/// manifest last, once every part is complete, so that a folder with a manifest is always
/// a whole bundle.
pub struct BundleWriter {
    dir: PathBuf,
    encoding: Encoding,
    part_size: u64,
    current: Option<OpenPart>,
    parts: Vec<Part>,
    created: Vec<PathBuf>,
    tally: Tally,
    line: Vec<u8>,
}

struct OpenPart {
    file_name: String,
    entity: &'static str,
    out: Sink,
    records: u64,
}

/// Where an open part's records go.
enum Sink {
    /// NDJSON lines.
    Lines(BufWriter<HashingFile>),
    /// A Parquet users part.
    Parquet(Box<PartWriter<BufWriter<HashingFile>>>),
}

/// A file that hashes what is written to it.
pub(crate) struct HashingFile {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl HashingFile {
    pub(crate) fn new(file: File) -> HashingFile {
        HashingFile {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Syncs the file and returns its size and SHA-256.
    pub(crate) fn finish(self) -> io::Result<(u64, String)> {
        self.file.sync_all()?;
        Ok((self.bytes, hex(&self.hasher.finalize())))
    }
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
    pub fn new(dir: &Path, encoding: Encoding, part_size: u64) -> Result<BundleWriter, Error> {
        Ok(BundleWriter {
            dir: dir.to_path_buf(),
            encoding,
            part_size: part_size.max(1),
            current: None,
            parts: Vec::new(),
            created: Vec::new(),
            tally: Tally::default(),
            line: Vec::with_capacity(4096),
        })
    }

    /// Appends one user, starting a new part every `part_size` users.
    pub fn write_user(&mut self, record: &UserRecord) -> Result<(), Error> {
        self.tally.add_user(record);
        let rotate = self
            .current
            .as_ref()
            .is_some_and(|p| p.entity != "users" || p.records >= self.part_size);
        if rotate {
            self.close_current()?;
        }
        if self.current.is_none() {
            let index = self.parts.iter().filter(|p| p.entity == "users").count();
            self.open(self.encoding.user_part_name(index), "users")?;
        }
        let part = self.current.as_mut().expect("a part is open");
        match &mut part.out {
            Sink::Parquet(writer) => {
                writer
                    .push(record)
                    .map_err(|e| parquet_error(&self.dir, &part.file_name, e))?;
                part.records += 1;
                Ok(())
            }
            Sink::Lines(_) => {
                self.line.clear();
                serde_json::to_writer(&mut self.line, record)?;
                self.line.push(b'\n');
                self.append_line()
            }
        }
    }

    /// Appends one role to `roles.ndjson`. Write all roles before or after the users,
    /// not interleaved with them.
    pub fn write_role(&mut self, role: &RoleRecord) -> Result<(), Error> {
        self.tally.add_role(role);
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

    /// The users written so far.
    pub fn users(&self) -> u64 {
        self.tally.counts().users
    }

    fn append_line(&mut self) -> Result<(), Error> {
        let part = self.current.as_mut().expect("a part is open");
        let Sink::Lines(out) = &mut part.out else {
            unreachable!("lines go to NDJSON parts");
        };
        out.write_all(&self.line)
            .map_err(|e| Error::io(self.dir.join(&part.file_name), e))?;
        part.records += 1;
        Ok(())
    }

    /// Closes the last part, writes the manifest and returns it. A bundle with no users
    /// or no roles still gets an empty users part and `roles.ndjson`, so that its layout
    /// is always the same.
    pub fn finish(mut self, info: ManifestInfo) -> Result<Manifest, Error> {
        self.close_current()?;
        if !self.parts.iter().any(|p| p.entity == "roles") {
            self.open(ROLES_FILE.to_string(), "roles")?;
            self.close_current()?;
        }
        if !self.parts.iter().any(|p| p.entity == "users") {
            self.open(self.encoding.user_part_name(0), "users")?;
            self.close_current()?;
        }
        let mut parts = std::mem::take(&mut self.parts);
        // Users parts first (in their own order), then roles.
        parts.sort_by_key(|p| p.entity != "users");
        let (mut counts, census) = std::mem::take(&mut self.tally).finish();
        counts.orphans = info.orphans;
        let manifest = Manifest {
            format: FORMAT.to_string(),
            version: VERSION,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            tool: info.tool,
            source: info.source,
            encoding: self.encoding,
            parquet_schema: (self.encoding == Encoding::Parquet)
                .then_some(crate::parquet::SCHEMA_VERSION),
            converted_from: info.converted_from,
            limit: info.limit,
            parts,
            counts,
            password_hashes: census,
            edits: info.edits,
        };
        manifest.write(&self.dir)?;
        Ok(manifest)
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
        let out = BufWriter::with_capacity(256 * 1024, HashingFile::new(file));
        let out = if entity == "users" && self.encoding == Encoding::Parquet {
            Sink::Parquet(Box::new(
                PartWriter::new(out).map_err(|e| parquet_error(&self.dir, &file_name, e))?,
            ))
        } else {
            Sink::Lines(out)
        };
        self.current = Some(OpenPart {
            file_name,
            entity,
            out,
            records: 0,
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), Error> {
        let Some(part) = self.current.take() else {
            return Ok(());
        };
        let path = self.dir.join(&part.file_name);
        let buffered = match part.out {
            Sink::Lines(out) => out,
            Sink::Parquet(writer) => writer
                .finish()
                .map_err(|e| parquet_error(&self.dir, &part.file_name, e))?,
        };
        let hashing = buffered
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        let (bytes, sha256) = hashing.finish().map_err(|e| Error::io(&path, e))?;
        self.parts.push(Part {
            file: part.file_name,
            entity: part.entity.to_string(),
            records: part.records,
            bytes,
            sha256,
        });
        Ok(())
    }
}

/// A Parquet writer's error, as an I/O error when it is one.
fn parquet_error(dir: &Path, file: &str, e: parquet::errors::ParquetError) -> Error {
    let path = dir.join(file);
    match e {
        parquet::errors::ParquetError::External(inner) => match inner.downcast::<io::Error>() {
            Ok(io) => Error::io(path, *io),
            Err(other) => Error::Part {
                path,
                message: other.to_string(),
            },
        },
        other => Error::Part {
            path,
            message: other.to_string(),
        },
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
