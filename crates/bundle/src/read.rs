//! Reading a bundle back, one record at a time, each with its file and line (in a
//! Parquet part, its record number).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::encoding::Encoding;
use crate::manifest::{Manifest, Part};
use crate::parquet::read::{PartReader, UserColumns};
use crate::record::{RoleRecord, UserRecord};
use crate::share::Share;
use crate::write::hex;
use crate::Error;

/// Where a record sits: the part file and the 1-based line (in a Parquet part, the
/// 1-based record number).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The file name inside the bundle.
    pub file: String,
    /// The line (or record number), counting from 1.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A line that is not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// The record's `Id`, when the line is JSON that has one.
    pub subject: Option<String>,
    /// The JSON path of the fault, e.g. `Claims[2].Type` (empty for the whole line).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// The 1-based column of the line where the fault is, when the reader knows it
    /// without decoding (a JSON syntax error, a duplicate key, a byte that is not UTF-8).
    pub column: Option<usize>,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(subject) = &self.subject {
            write!(f, "{subject}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A part whose content is not what the manifest says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChecksumMismatch {
    /// The file name.
    pub file: String,
    /// What differs.
    pub message: String,
}

/// An opened bundle.
pub struct BundleReader {
    dir: PathBuf,
    manifest: Manifest,
    /// The users parts this reader reads (`--parts K/N`); all of them when `None`.
    share: Option<Share>,
}

impl BundleReader {
    /// Opens the bundle in `dir` and reads its manifest.
    pub fn open(dir: &Path) -> Result<BundleReader, Error> {
        let manifest = Manifest::read(dir)?;
        if let Some(version) = manifest.parquet_schema {
            if version != crate::parquet::SCHEMA_VERSION {
                return Err(Error::Unsupported(format!(
                    "`{}` has Parquet parts of schema version {version}; this tool reads version {}",
                    dir.display(),
                    crate::parquet::SCHEMA_VERSION
                )));
            }
        }
        Ok(BundleReader {
            dir: dir.to_path_buf(),
            manifest,
            share: None,
        })
    }

    /// Reads only the users parts of `share` from now on (checks still cover the whole
    /// bundle).
    pub fn restrict_to(&mut self, share: Share) {
        self.share = Some(share);
    }

    /// The users parts this reader reads, in manifest order.
    pub fn read_parts(&self) -> impl Iterator<Item = &Part> {
        let share = self.share;
        self.manifest
            .user_parts()
            .enumerate()
            .filter(move |(i, _)| share.is_none_or(|s| s.holds(*i)))
            .map(|(_, p)| p)
    }

    /// The number of users this reader reads.
    pub fn users_to_read(&self) -> u64 {
        match self.share {
            None => self.manifest.counts.users,
            Some(_) => self.read_parts().map(|p| p.records).sum(),
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The bundle folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-reads every part and compares size, SHA-256 and record count with the manifest,
    /// and checks that the manifest's counts add up and that it lists every part in the
    /// folder. Parts are hashed in parallel; the problems come in manifest order, then the
    /// folder's.
    pub fn check_parts(&self) -> Result<Vec<ChecksumMismatch>, Error> {
        use rayon::prelude::*;
        let checked: Vec<Option<ChecksumMismatch>> = self
            .manifest
            .parts
            .par_iter()
            .map(|part| check_part(&self.dir, part, self.manifest.encoding))
            .collect::<Result<_, _>>()?;
        let mut problems: Vec<ChecksumMismatch> = checked.into_iter().flatten().collect();
        let listed: u64 = self.manifest.user_parts().map(|p| p.records).sum();
        if listed != self.manifest.counts.users {
            problems.push(ChecksumMismatch {
                file: crate::MANIFEST.into(),
                message: format!(
                    "counts.users is {} but its users parts list {listed} records; the manifest was edited by hand: run `ferry-import seal` to count them again",
                    self.manifest.counts.users
                ),
            });
        }
        problems.extend(self.unlisted_parts()?);
        Ok(problems)
    }

    /// Files in the folder named as parts are (`users-*`, `roles*`) that the manifest does
    /// not list: nothing in them would be read, so they are refused, not ignored.
    fn unlisted_parts(&self) -> Result<Vec<ChecksumMismatch>, Error> {
        let listed: std::collections::HashSet<&str> = self
            .manifest
            .parts
            .iter()
            .map(|p| p.file.as_str())
            .collect();
        let mut unlisted = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if (name.starts_with("users-") || name.starts_with("roles"))
                && !listed.contains(name.as_str())
            {
                unlisted.push(ChecksumMismatch {
                    file: name,
                    message: "is in the bundle folder but not in its manifest, so none of its records would be read; move it out of the folder, or export the bundle again if it belongs in it".into(),
                });
            }
        }
        unlisted.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(unlisted)
    }

    /// Streams the users of every part in manifest order, decoded. Blank lines are
    /// skipped.
    pub fn users(
        &self,
    ) -> impl Iterator<Item = Result<(Location, Result<UserRecord, RecordError>), Error>> {
        self.user_records().map(|r| r.map(RawRecord::decode))
    }

    /// Streams the users of every part in manifest order, not yet decoded: decode each
    /// with [`RawRecord::decode`], on whichever thread (they are `Send`), so that readers
    /// can decode in parallel while the order stays the bundle's.
    pub fn user_records(&self) -> UserRecords {
        let files: Vec<String> = self.read_parts().map(|p| p.file.clone()).collect();
        let source = match self.manifest.encoding {
            Encoding::Ndjson => Source::Lines(Lines::new(self.dir.clone(), files)),
            Encoding::Parquet => Source::Rows(Rows {
                dir: self.dir.clone(),
                files: files.into_iter(),
                current: None,
            }),
        };
        UserRecords { source }
    }

    /// Streams the roles of `roles.ndjson`.
    pub fn roles(&self) -> Result<Records<RoleRecord>, Error> {
        let files = self
            .manifest
            .roles_part()
            .map(|p| p.file.clone())
            .into_iter()
            .collect();
        Ok(Records::new(self.dir.clone(), files))
    }
}

/// Hashes one part and says how it differs from its manifest entry, if it does.
pub fn check_part(
    dir: &Path,
    part: &Part,
    encoding: Encoding,
) -> Result<Option<ChecksumMismatch>, Error> {
    let path = dir.join(&part.file);
    let (bytes, sha256, lines) = match scan_file(&path) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Some(ChecksumMismatch {
                file: part.file.clone(),
                message: "listed in the manifest but missing".into(),
            }))
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mismatch = |message: String| {
        Ok(Some(ChecksumMismatch {
            file: part.file.clone(),
            message,
        }))
    };
    if bytes != part.bytes {
        return mismatch(format!(
            "changed since the manifest was written ({bytes} bytes, expected {}); if the edit was meant, run `ferry-import seal` to accept it",
            part.bytes
        ));
    }
    if sha256 != part.sha256 {
        return mismatch(format!(
            "changed since the manifest was written (the same {bytes} bytes, but its SHA-256 differs from the manifest's); if the edit was meant, run `ferry-import seal` to accept it"
        ));
    }
    let records = match encoding {
        Encoding::Ndjson => Some(lines),
        // Only a users part is Parquet; its footer says how many rows it holds.
        Encoding::Parquet if part.entity == "users" => crate::parquet::read::row_count(&path),
        Encoding::Parquet => Some(lines),
    };
    if let Some(records) = records.filter(|&n| n != part.records) {
        return mismatch(format!(
            "holds {records} records but the manifest says {}; the manifest was edited by hand: run `ferry-import seal` to count them again",
            part.records
        ));
    }
    Ok(None)
}

/// Size, SHA-256 and the number of lines that are not blank (NDJSON records) of a file,
/// in one streaming pass.
fn scan_file(path: &Path) -> std::io::Result<(u64, String, u64)> {
    let mut file = crate::fsutil::open_in_bundle(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut bytes, mut lines, mut blank) = (0u64, 0u64, true);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
        for &b in &buf[..n] {
            if b == b'\n' {
                lines += u64::from(!blank);
                blank = true;
            } else if !b.is_ascii_whitespace() {
                blank = false;
            }
        }
    }
    lines += u64::from(!blank);
    Ok((bytes, hex(&hasher.finalize()), lines))
}

/// Size and SHA-256 of a file, in one streaming pass. A link is not followed.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    scan_file(path).map(|(bytes, sha256, _)| (bytes, sha256))
}

/// A stream of records from one or more part files.
pub struct Records<T> {
    lines: Lines,
    _t: std::marker::PhantomData<T>,
}

impl<T> Records<T> {
    fn new(dir: PathBuf, files: Vec<String>) -> Records<T> {
        Records {
            lines: Lines::new(dir, files),
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: serde::de::DeserializeOwned> Iterator for Records<T> {
    type Item = Result<(Location, Result<T, RecordError>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let (location, line) = match self.lines.next()? {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        let record = match line {
            Ok(line) => parse_record(&line),
            Err(e) => Err(e),
        };
        Some(Ok((location, record)))
    }
}

/// One user record of a bundle as it was read, not yet decoded.
pub struct RawRecord {
    location: Location,
    body: Body,
}

enum Body {
    /// An NDJSON line.
    Line(String),
    /// A row of a batch of a Parquet part.
    Row(Arc<UserColumns>, usize),
    /// A line that is not UTF-8 text, or too long: why.
    Unreadable(RecordError),
}

impl RawRecord {
    /// Where the record is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Decodes the record: the user, or what is wrong with it.
    pub fn decode(self) -> (Location, Result<UserRecord, RecordError>) {
        let record = self.decoded();
        (self.location, record)
    }

    /// [`RawRecord::decode`], keeping the record as read (to find columns in).
    pub fn decoded(&self) -> Result<UserRecord, RecordError> {
        match &self.body {
            Body::Line(line) => parse_record(line),
            Body::Row(batch, row) => batch.record(*row),
            Body::Unreadable(e) => Err(e.clone()),
        }
    }

    /// The 1-based column where `field` (a path such as `Claims[2].Type`) is in the
    /// record's line, or its nearest enclosing key; `None` for a Parquet row, and for a
    /// line that is not JSON or lacks the field's first key.
    pub fn column_of(&self, field: &str) -> Option<usize> {
        match &self.body {
            Body::Line(line) => crate::jsonpos::column_of(line, field),
            _ => None,
        }
    }
}

/// The user records of a bundle, in manifest order (see [`BundleReader::user_records`]).
pub struct UserRecords {
    source: Source,
}

enum Source {
    Lines(Lines),
    Rows(Rows),
}

impl Iterator for UserRecords {
    type Item = Result<RawRecord, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.source {
            Source::Lines(lines) => Some(lines.next()?.map(|(location, line)| RawRecord {
                location,
                body: match line {
                    Ok(line) => Body::Line(line),
                    Err(e) => Body::Unreadable(e),
                },
            })),
            Source::Rows(rows) => rows.next(),
        }
    }
}

/// The rows of one or more Parquet users parts, each with its file and record number.
struct Rows {
    dir: PathBuf,
    files: std::vec::IntoIter<String>,
    current: Option<OpenRows>,
}

struct OpenRows {
    file: String,
    reader: PartReader,
    batch: Option<(Arc<UserColumns>, usize)>,
    /// Rows of this file handed out so far.
    record: u64,
}

impl Iterator for Rows {
    type Item = Result<RawRecord, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let file = self.files.next()?;
                match PartReader::open(&self.dir.join(&file)) {
                    Ok(reader) => {
                        self.current = Some(OpenRows {
                            file,
                            reader,
                            batch: None,
                            record: 0,
                        })
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            let open = self.current.as_mut().expect("open");
            if let Some((batch, row)) = &mut open.batch {
                if *row < batch.len() {
                    let record = RawRecord {
                        location: Location {
                            file: open.file.clone(),
                            line: open.record + 1,
                        },
                        body: Body::Row(batch.clone(), *row),
                    };
                    *row += 1;
                    open.record += 1;
                    return Some(Ok(record));
                }
            }
            match open.reader.next_batch() {
                Some(Ok(batch)) => open.batch = Some((batch, 0)),
                Some(Err(e)) => {
                    self.current = None;
                    return Some(Err(e));
                }
                None => self.current = None,
            }
        }
    }
}

/// The non-blank lines of one or more part files, unparsed, each with its location.
struct Lines {
    dir: PathBuf,
    files: std::vec::IntoIter<String>,
    current: Option<(String, BufReader<File>, u64)>,
}

impl Lines {
    fn new(dir: PathBuf, files: Vec<String>) -> Lines {
        Lines {
            dir,
            files: files.into_iter(),
            current: None,
        }
    }
}

/// The longest line a part may hold: far above any real record, low enough that a file
/// without newlines cannot make a reader hold gigabytes.
pub const MAX_LINE: usize = 16 << 20;

/// One line of a part: its text, or why it is not text a record can be read from.
type LineText = Result<String, RecordError>;

impl Iterator for Lines {
    type Item = Result<(Location, LineText), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let file = self.files.next()?;
                let path = self.dir.join(&file);
                match crate::fsutil::open_in_bundle(&path) {
                    Ok(f) => {
                        self.current = Some((file, BufReader::with_capacity(256 * 1024, f), 0))
                    }
                    Err(e) => return Some(Err(Error::io(path, e))),
                }
            }
            let (file, reader, line) = self.current.as_mut().expect("open");
            let mut raw = Vec::new();
            match read_line_capped(reader, &mut raw, MAX_LINE) {
                Ok(None) => {
                    self.current = None;
                    continue;
                }
                Ok(Some(too_long)) => {
                    *line += 1;
                    let location = Location {
                        file: file.clone(),
                        line: *line,
                    };
                    if too_long {
                        let message = format!(
                            "the line is longer than {} MiB, the most a record may be; is this file a users part?",
                            MAX_LINE >> 20
                        );
                        return Some(Ok((location, Err(RecordError::of_line(message, None)))));
                    }
                    // A byte-order mark (as Windows editors save UTF-8) is not JSON.
                    if *line == 1 && raw.starts_with(b"\xEF\xBB\xBF") {
                        raw.drain(..3);
                    }
                    let text = match String::from_utf8(raw) {
                        Ok(text) => text,
                        Err(e) => {
                            let byte = e.utf8_error().valid_up_to() + 1;
                            let message = format!(
                                "not valid UTF-8 at byte {byte} of the line; save the file as UTF-8"
                            );
                            return Some(Ok((
                                location,
                                Err(RecordError::of_line(message, Some(byte))),
                            )));
                        }
                    };
                    if text.trim().is_empty() {
                        continue;
                    }
                    let body = text.trim_end_matches(['\n', '\r']);
                    if body.contains("}\r") || body.contains("\r{") {
                        let message = "the line holds carriage returns between records: the file has CR-only line endings (classic Mac OS); save it with LF or CRLF line endings".to_string();
                        let column = body.find('\r').map(|i| i + 1);
                        return Some(Ok((location, Err(RecordError::of_line(message, column)))));
                    }
                    return Some(Ok((location, Ok(text))));
                }
                Err(e) => {
                    let path = self.dir.join(&*file);
                    self.current = None;
                    return Some(Err(Error::io(path, e)));
                }
            }
        }
    }
}

/// Reads one line (through its `\n`) into `raw`, keeping at most `max` bytes of it: `None`
/// at the end of the file, else whether the line was longer than `max` (the rest of it is
/// skipped).
fn read_line_capped(
    reader: &mut impl BufRead,
    raw: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    let (mut seen, mut too_long) = (0usize, false);
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((seen > 0).then_some(too_long));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let n = chunk.len();
        if raw.len() + n <= max {
            raw.extend_from_slice(chunk);
        } else {
            too_long = true;
        }
        seen += n;
        reader.consume(n);
        if done {
            return Ok(Some(too_long));
        }
    }
}

/// Parses one line. The fast path is a direct parse; only a failing line is parsed a
/// second time to find its subject id and the path of the faulty field.
///
/// A key given twice in one object is an error (serde would let the last one win).
pub fn parse_record<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, RecordError> {
    // A duplicate field of a record fails the parse; one inside `Extra` does not. Either
    // way the duplicate is what to report: the second parse of `explain` would lose it.
    let parsed = serde_json::from_str::<T>(line);
    if let Some(d) = crate::jsonpos::first_duplicate(line) {
        return Err(RecordError {
            subject: subject_of(line),
            field: d.path,
            message: format!(
                "this key is given twice (the second time at column {}); a record holds each key once: remove one of them",
                d.column
            ),
            column: Some(d.column),
        });
    }
    match parsed {
        Ok(record) => Ok(record),
        Err(_) => explain(line),
    }
}

/// The `Id` of a line that is valid JSON, when it has a string one.
fn subject_of(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Subject {
        #[serde(rename = "Id")]
        id: Option<serde_json::Value>,
    }
    let s: Subject = serde_json::from_str(line).ok()?;
    match s.id? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn explain<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, RecordError> {
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            // The parser ran into the end of the line (or its newline, inside a string):
            // the line was cut, whatever it was parsing.
            let cut = line.trim_end_matches(['\n', '\r']).len() + 1;
            return if e.is_eof() || e.line() > 1 {
                RecordError::of_line(
                    format!(
                        "the line ends early, at column {cut}: the record is cut off ({})",
                        strip_position(&e.to_string())
                    ),
                    Some(cut),
                )
            } else {
                RecordError::of_line(
                    format!(
                        "not valid JSON at column {}: {}",
                        e.column(),
                        strip_position(&e.to_string())
                    ),
                    Some(e.column()),
                )
            }
            .into_err();
        }
    };
    let subject = value.get("Id").and_then(|v| v.as_str()).map(str::to_string);
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(record) => Ok(record),
        Err(e) => {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            RecordError {
                subject,
                column: crate::jsonpos::column_of(line, &field),
                field,
                message: strip_position(&e.into_inner().to_string()),
            }
            .into_err()
        }
    }
}

impl RecordError {
    fn into_err<T>(self) -> Result<T, RecordError> {
        Err(self)
    }

    /// The error as a quickfix line: `file:line:column: subject: field: message` (column
    /// 1 when it is not known).
    pub fn quickfix(&self, at: &Location) -> String {
        format!("{at}:{}: {self}", self.column.unwrap_or(1))
    }

    /// A fault of the whole line, found before it could be decoded.
    fn of_line(message: String, column: Option<usize>) -> RecordError {
        RecordError {
            subject: None,
            field: String::new(),
            message,
            column,
        }
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_is_named_with_its_path_and_subject() {
        let line = r#"{"Id":"u7","UserName":"x","NormalizedUserName":null,"Email":null,"NormalizedEmail":null,"EmailConfirmed":"yes","PasswordHash":null,"SecurityStamp":null,"ConcurrencyStamp":null,"PhoneNumber":null,"PhoneNumberConfirmed":false,"TwoFactorEnabled":false,"LockoutEnd":null,"LockoutEnabled":false,"AccessFailedCount":0}"#;
        let err = parse_record::<UserRecord>(line).unwrap_err();
        assert_eq!(err.subject.as_deref(), Some("u7"));
        assert_eq!(err.field, "EmailConfirmed");
        assert!(
            err.message.contains("expected a boolean"),
            "{}",
            err.message
        );
    }

    #[test]
    fn broken_json_says_where() {
        let err = parse_record::<UserRecord>(r#"{"Id":"u7", x}"#).unwrap_err();
        assert!(
            err.message.starts_with("not valid JSON at column 13"),
            "{}",
            err.message
        );
        // Cut off, at the end or inside a string before the newline.
        for cut in [r#"{"Id":"u7", "#, "{\"Id\":\"u7\n"] {
            let err = parse_record::<UserRecord>(cut).unwrap_err();
            assert!(
                err.message.starts_with("the line ends early, at column"),
                "{cut:?}: {}",
                err.message
            );
        }
    }
}
