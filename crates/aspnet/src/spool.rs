//! Rows put into order on the client, for engines whose own order is slower than a scan
//! (SQLite's random lookups into a table through an index, MySQL's sorts of rows with long
//! text) or that have none (CSV dumps): a [`Sorter`] takes unordered rows and gives them
//! back in key order within bounded memory, spilling sorted runs to private files and
//! merging them on read.
//!
//! Rows are kept serialized in one buffer, each beside a key encoded so that comparing
//! two keys byte by byte orders them as [`compare`] orders their cells: sorting moves
//! small entries and compares bytes, and a run on disk is the same bytes.
//!
//! The files are created in a private folder (the unfinished bundle's own, mode 0700:
//! the rows hold account data) and removed when dropped.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDateTime};

use crate::rows::{Cell, Query, RowStream};
use crate::Error;

/// A cell borrowed from an engine's row, serialized into a sorter without being copied
/// into a [`Cell`] first.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CellRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Bool(bool),
    Time(&'a DateTime<FixedOffset>),
    Naive(&'a NaiveDateTime),
}

impl Cell {
    pub(crate) fn as_cell_ref(&self) -> CellRef<'_> {
        match self {
            Cell::Null => CellRef::Null,
            Cell::Integer(i) => CellRef::Integer(*i),
            Cell::Real(f) => CellRef::Real(*f),
            Cell::Text(t) => CellRef::Text(t),
            Cell::Bytes(b) => CellRef::Bytes(b),
            Cell::Bool(b) => CellRef::Bool(*b),
            Cell::Time(t) => CellRef::Time(t),
            Cell::Naive(t) => CellRef::Naive(t),
        }
    }
}

impl CellRef<'_> {
    /// The owned cell.
    pub(crate) fn to_cell(self) -> Cell {
        match self {
            CellRef::Null => Cell::Null,
            CellRef::Integer(i) => Cell::Integer(i),
            CellRef::Real(f) => Cell::Real(f),
            CellRef::Text(t) => Cell::Text(t.to_string()),
            CellRef::Bytes(b) => Cell::Bytes(b.to_vec()),
            CellRef::Bool(b) => Cell::Bool(b),
            CellRef::Time(t) => Cell::Time(*t),
            CellRef::Naive(t) => Cell::Naive(*t),
        }
    }
}

/// Orders cells as SQLite orders values: NULL, then numbers, then text (byte by byte),
/// then bytes; the other types by their value. The key cells of a row compare as
/// [`crate::Key`]s do.
#[cfg(test)]
pub(crate) fn compare(a: &Cell, b: &Cell) -> Ordering {
    fn rank(c: &Cell) -> u8 {
        match c {
            Cell::Null => 0,
            Cell::Integer(_) | Cell::Real(_) | Cell::Bool(_) => 1,
            Cell::Time(_) | Cell::Naive(_) => 2,
            Cell::Text(_) => 3,
            Cell::Bytes(_) => 4,
        }
    }
    match (a, b) {
        (Cell::Integer(x), Cell::Integer(y)) => x.cmp(y),
        (Cell::Real(x), Cell::Real(y)) => x.total_cmp(y),
        (Cell::Integer(x), Cell::Real(y)) => (*x as f64).total_cmp(y),
        (Cell::Real(x), Cell::Integer(y)) => x.total_cmp(&(*y as f64)),
        (Cell::Bool(x), Cell::Bool(y)) => x.cmp(y),
        (Cell::Text(x), Cell::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Cell::Bytes(x), Cell::Bytes(y)) => x.cmp(y),
        (Cell::Time(x), Cell::Time(y)) => x.cmp(y),
        (Cell::Naive(x), Cell::Naive(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Appends `c` to `key` so that keys compare byte by byte as [`compare`] orders cells:
/// a rank byte, then numbers as order-preserving big-endian bits (integers by their value
/// as a float, then exactly), times as their UTC instant, text and bytes with every zero
/// byte escaped and a terminator (so that a prefix sorts first). Where `compare` calls an
/// integer and a float of the same value equal, the key puts the float first.
fn encode_key(key: &mut Vec<u8>, c: CellRef<'_>) {
    fn float(f: f64) -> [u8; 8] {
        let bits = f.to_bits();
        // total_cmp's order as unsigned bytes.
        let ordered = if bits >> 63 == 1 {
            !bits
        } else {
            bits ^ (1 << 63)
        };
        ordered.to_be_bytes()
    }
    fn instant(key: &mut Vec<u8>, secs: i64, nanos: u32) {
        key.push(2);
        key.extend_from_slice(&((secs as u64) ^ (1 << 63)).to_be_bytes());
        key.extend_from_slice(&nanos.to_be_bytes());
    }
    fn escaped(key: &mut Vec<u8>, rank: u8, mut b: &[u8]) {
        key.push(rank);
        // Zero bytes are rare: copy the runs between them whole.
        while let Some(zero) = memchr::memchr(0, b) {
            key.extend_from_slice(&b[..=zero]);
            key.push(0xff);
            b = &b[zero + 1..];
        }
        key.extend_from_slice(b);
        key.extend_from_slice(&[0, 0]);
    }
    match c {
        CellRef::Null => key.push(0),
        CellRef::Integer(i) => {
            key.push(1);
            key.extend_from_slice(&float(i as f64));
            key.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
        }
        CellRef::Bool(b) => {
            key.push(1);
            key.extend_from_slice(&float(b as u8 as f64));
            key.extend_from_slice(&((b as u64) ^ (1 << 63)).to_be_bytes());
        }
        CellRef::Real(f) => {
            key.push(1);
            key.extend_from_slice(&float(f));
            key.extend_from_slice(&[0; 8]);
        }
        CellRef::Time(t) => instant(key, t.timestamp(), t.timestamp_subsec_nanos()),
        CellRef::Naive(t) => {
            let utc = t.and_utc();
            instant(key, utc.timestamp(), utc.timestamp_subsec_nanos())
        }
        CellRef::Text(t) => escaped(key, 3, t.as_bytes()),
        CellRef::Bytes(b) => escaped(key, 4, b),
    }
}

/// Appends a row: the length of all its text, its text, then its cells (a text cell
/// holds only its length), so that reading it back checks the UTF-8 of a row's text
/// once, not cell by cell.
fn write_row(out: &mut Vec<u8>, row: &[CellRef<'_>]) {
    let text: usize = row
        .iter()
        .map(|c| match c {
            CellRef::Text(t) => t.len(),
            _ => 0,
        })
        .sum();
    out.extend_from_slice(&(text as u64).to_le_bytes());
    for c in row {
        if let CellRef::Text(t) = c {
            out.extend_from_slice(t.as_bytes());
        }
    }
    for &c in row {
        write_cell(out, c);
    }
}

fn write_cell(out: &mut Vec<u8>, c: CellRef<'_>) {
    match c {
        CellRef::Null => out.push(0),
        CellRef::Integer(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_le_bytes());
        }
        CellRef::Real(f) => {
            out.push(2);
            out.extend_from_slice(&f.to_le_bytes());
        }
        CellRef::Text(t) => {
            out.push(3);
            out.extend_from_slice(&(t.len() as u64).to_le_bytes());
        }
        CellRef::Bytes(b) => {
            out.push(4);
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        }
        CellRef::Bool(b) => out.extend_from_slice(&[5, b as u8]),
        CellRef::Time(t) => {
            out.push(6);
            out.extend_from_slice(&t.timestamp().to_le_bytes());
            out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
            out.extend_from_slice(&t.offset().local_minus_utc().to_le_bytes());
        }
        CellRef::Naive(t) => {
            let utc = t.and_utc();
            out.push(7);
            out.extend_from_slice(&utc.timestamp().to_le_bytes());
            out.extend_from_slice(&utc.timestamp_subsec_nanos().to_le_bytes());
        }
    }
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "spool file is corrupt")
}

/// Takes `N` bytes off the front of `b`.
fn take<const N: usize>(b: &mut &[u8]) -> io::Result<[u8; N]> {
    let (head, rest) = b.split_first_chunk::<N>().ok_or_else(corrupt)?;
    *b = rest;
    Ok(*head)
}

/// Takes `n` bytes off the front of `b`.
fn take_slice<'b>(b: &mut &'b [u8], n: usize) -> io::Result<&'b [u8]> {
    if n > b.len() {
        return Err(corrupt());
    }
    let (value, rest) = b.split_at(n);
    *b = rest;
    Ok(value)
}

/// Reads a cell; a text cell's text is the next `len` bytes of `text`.
fn read_cell(b: &mut &[u8], text: &mut &str) -> io::Result<Cell> {
    let [tag] = take::<1>(b)?;
    Ok(match tag {
        0 => Cell::Null,
        1 => Cell::Integer(i64::from_le_bytes(take(b)?)),
        2 => Cell::Real(f64::from_le_bytes(take(b)?)),
        3 => {
            let n = u64::from_le_bytes(take(b)?) as usize;
            // None past the end and off a character boundary.
            let (value, rest) = text.split_at_checked(n).ok_or_else(corrupt)?;
            *text = rest;
            Cell::Text(value.to_string())
        }
        4 => {
            let n = u64::from_le_bytes(take(b)?) as usize;
            Cell::Bytes(take_slice(b, n)?.to_vec())
        }
        5 => Cell::Bool(take::<1>(b)?[0] != 0),
        6 => {
            let secs = i64::from_le_bytes(take(b)?);
            let nanos = u32::from_le_bytes(take(b)?);
            let offset = i32::from_le_bytes(take(b)?);
            let offset = FixedOffset::east_opt(offset).ok_or_else(corrupt)?;
            Cell::Time(
                DateTime::from_timestamp(secs, nanos)
                    .ok_or_else(corrupt)?
                    .with_timezone(&offset),
            )
        }
        7 => {
            let secs = i64::from_le_bytes(take(b)?);
            let nanos = u32::from_le_bytes(take(b)?);
            let t: NaiveDateTime = DateTime::from_timestamp(secs, nanos)
                .ok_or_else(corrupt)?
                .naive_utc();
            Cell::Naive(t)
        }
        _ => return Err(corrupt()),
    })
}

/// Decodes a row written by [`write_row`] into `row`.
fn read_row(mut b: &[u8], row: &mut Vec<Cell>) -> io::Result<()> {
    row.clear();
    let n = u64::from_le_bytes(take(&mut b)?) as usize;
    let mut text = simdutf8::basic::from_utf8(take_slice(&mut b, n)?).map_err(|_| corrupt())?;
    while !b.is_empty() {
        row.push(read_cell(&mut b, &mut text)?);
    }
    if !text.is_empty() {
        return Err(corrupt());
    }
    Ok(())
}

fn spool_error(path: &Path, e: io::Error) -> Error {
    Error::Open {
        location: path.display().to_string(),
        message: format!("cannot use the spool file: {e}"),
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A private file of sorted rows, each written as its key's length, its row's length, the
/// key and the row.
fn create_run(dir: &Path) -> Result<(PathBuf, File), Error> {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".ferry-spool-{}-{n}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(&path).map_err(|e| spool_error(&path, e))?;
    Ok((path, file))
}

/// The rows of a spilled run, read back in order; the file is removed when this is
/// dropped.
pub(crate) struct Run {
    path: PathBuf,
    reader: BufReader<File>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Run {
    /// Reads the next key and row into the buffers; `false` at the end of the run.
    fn next_into(&mut self, key: &mut Vec<u8>, row: &mut Vec<u8>) -> Result<bool, Error> {
        let read = |r: &mut BufReader<File>, key: &mut Vec<u8>, row: &mut Vec<u8>| {
            let mut lengths = [0u8; 8];
            match r.read_exact(&mut lengths) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                other => other?,
            }
            let k = u32::from_le_bytes(lengths[..4].try_into().expect("4 bytes")) as usize;
            let n = u32::from_le_bytes(lengths[4..].try_into().expect("4 bytes")) as usize;
            key.resize(k, 0);
            r.read_exact(key)?;
            row.resize(n, 0);
            r.read_exact(row)?;
            io::Result::Ok(true)
        };
        read(&mut self.reader, key, row).map_err(|e| spool_error(&self.path, e))
    }
}

/// The read buffer of a run: a sort of a large table merges tens of runs at once, so this
/// is what the merge's memory grows by per run.
const READ_BUFFER: usize = 64 * 1024;

/// The memory a [`Sorter`] (or all the sorters of one read, see [`Budget`]) fills before
/// it spills a sorted run.
pub(crate) const SORT_BUDGET: usize = 32 * 1024 * 1024;

/// The least a sorter is given when the others have taken the budget.
const MIN_BUDGET: usize = 1024 * 1024;

/// One memory budget for the sorters of one read, which are filled one after another and
/// then read side by side: a sorter gets what those before it kept in memory left over.
pub(crate) struct Budget {
    left: usize,
}

impl Budget {
    /// A sorter of rows by the cells at `order`, spilling into `dir`.
    pub(crate) fn sorter(&self, dir: &Path, order: Vec<usize>) -> Sorter {
        Sorter::new(dir, order, self.left.max(MIN_BUDGET))
    }
}

/// Sorts the queries of one read that `sort` sorts (it gives `None` for a query the engine
/// reads in order itself), one after another within one [`Budget`].
pub(crate) fn sort_each(
    queries: &[Query],
    mut sort: impl FnMut(usize, &Query, &Budget) -> Result<Option<Cut>, Error>,
) -> Result<Vec<Option<Cut>>, Error> {
    let mut budget = Budget { left: SORT_BUDGET };
    let mut sorted = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let cut = sort(i, q, &budget)?;
        if let Some(cut) = &cut {
            budget.left = budget.left.saturating_sub(cut.sorted.held());
        }
        sorted.push(cut);
    }
    Ok(sorted)
}

/// One stream per query, in the order of the queries: the rows of each query sorted by
/// [`sort_each`], and for each of the others the next of `live`.
pub(crate) fn side_by_side<'a>(
    sorted: &'a mut [Option<Cut>],
    mut live: impl Iterator<Item = &'a mut dyn RowStream>,
) -> Vec<&'a mut dyn RowStream> {
    sorted
        .iter_mut()
        .map(|s| match s {
            Some(cut) => cut as &mut dyn RowStream,
            None => live.next().expect("one live stream per query not sorted"),
        })
        .collect()
}

/// Where a row and its key are in a sorter's buffer.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    /// The key's first 8 bytes, big-endian: most comparisons end here.
    prefix: u64,
    at: u32,
    key: u32,
    row: u32,
}

impl Entry {
    fn key<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.at as usize..][..self.key as usize]
    }
    fn row<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.at as usize + self.key as usize..][..self.row as usize]
    }
    fn key_and_row<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        &buf[self.at as usize..][..self.key as usize + self.row as usize]
    }
}

/// Rows per gathered write of a spill: two slices each, within the 1024 of `IOV_MAX`.
const GATHER: usize = 512;

/// Writes all of `slices`, however many calls the kernel takes.
fn write_all_vectored(out: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn prefix(key: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    let n = key.len().min(8);
    p[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(p)
}

/// Rows serialized one after another, with where each is.
struct Chunk {
    buf: Vec<u8>,
    entries: Vec<Entry>,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            buf: Vec::new(),
            entries: Vec::new(),
        }
    }

    fn held(&self) -> usize {
        self.buf.len() + self.entries.len() * std::mem::size_of::<Entry>()
    }

    fn push(&mut self, order: &[usize], row: &[CellRef<'_>]) {
        let at = self.buf.len();
        for &i in order {
            encode_key(&mut self.buf, row[i]);
        }
        let key_end = self.buf.len();
        write_row(&mut self.buf, row);
        let key = &self.buf[at..key_end];
        self.entries.push(Entry {
            prefix: prefix(key),
            at: at as u32,
            key: (key_end - at) as u32,
            row: (self.buf.len() - key_end) as u32,
        });
    }

    fn sort(&mut self) {
        let buf = &self.buf;
        // Stable, so that rows with equal keys keep their order.
        self.entries.sort_by(|a, b| {
            a.prefix
                .cmp(&b.prefix)
                .then_with(|| a.key(buf).cmp(b.key(buf)))
        });
    }

    /// Sorts the rows and writes them to a new run in `dir`.
    fn spill(&mut self, dir: &Path) -> Result<Run, Error> {
        self.sort();
        let (path, mut out) = create_run(dir)?;
        // Each row goes from the chunk to the kernel in one gathered write with its
        // lengths, without a copy through a buffer of our own.
        let write = |out: &mut File, buf: &[u8], entries: &[Entry]| {
            let mut lengths = Vec::with_capacity(GATHER);
            for batch in entries.chunks(GATHER) {
                lengths.clear();
                lengths.extend(batch.iter().map(|e| {
                    let mut l = [0u8; 8];
                    l[..4].copy_from_slice(&e.key.to_le_bytes());
                    l[4..].copy_from_slice(&e.row.to_le_bytes());
                    l
                }));
                let mut slices: Vec<IoSlice<'_>> = batch
                    .iter()
                    .zip(&lengths)
                    .flat_map(|(e, l)| [IoSlice::new(l), IoSlice::new(e.key_and_row(buf))])
                    .collect();
                write_all_vectored(out, &mut slices)?;
            }
            io::Result::Ok(())
        };
        write(&mut out, &self.buf, &self.entries).map_err(|e| spool_error(&path, e))?;
        drop(out);
        let file = File::open(&path).map_err(|e| spool_error(&path, e))?;
        self.buf.clear();
        self.entries.clear();
        Ok(Run {
            path,
            reader: BufReader::with_capacity(READ_BUFFER, file),
        })
    }
}

/// A chunk being sorted and spilled on a thread of its own.
type Spilling = std::thread::JoinHandle<(Result<Run, Error>, Chunk)>;

/// Puts rows into the order of the cells at `order`, within about `budget` bytes of
/// memory: full chunks are sorted and spilled to runs, which are merged on read. Rows
/// with equal keys keep the order they were pushed in.
///
/// A full chunk is sorted and written on a thread of its own while the next one fills,
/// so a large table is read and sorted on two cores; each of the two chunks gets half
/// the budget.
pub(crate) struct Sorter {
    dir: PathBuf,
    order: Vec<usize>,
    budget: usize,
    chunk: Chunk,
    spilling: Option<Spilling>,
    /// The chunk back from the last spill, emptied, to fill next.
    spare: Option<Chunk>,
    runs: Vec<Run>,
}

impl Sorter {
    pub(crate) fn new(dir: &Path, order: Vec<usize>, budget: usize) -> Sorter {
        Sorter {
            dir: dir.to_path_buf(),
            order,
            budget,
            chunk: Chunk::new(),
            spilling: None,
            spare: None,
            runs: Vec::new(),
        }
    }

    /// Adds a row.
    pub(crate) fn push(&mut self, row: &[Cell]) -> Result<(), Error> {
        let cells: Vec<CellRef<'_>> = row.iter().map(Cell::as_cell_ref).collect();
        self.push_refs(&cells)
    }

    /// Adds a row of borrowed cells.
    pub(crate) fn push_refs(&mut self, row: &[CellRef<'_>]) -> Result<(), Error> {
        self.chunk.push(&self.order, row);
        // Offsets are 32-bit: spill well before a chunk reaches 4 GiB, whatever the budget.
        if self.chunk.held() >= self.budget / 2 || self.chunk.buf.len() >= u32::MAX as usize / 2 {
            self.spill()?;
        }
        Ok(())
    }

    /// Waits for the chunk being spilled, if any, and keeps its run.
    fn settle(&mut self) -> Result<(), Error> {
        if let Some(spilling) = self.spilling.take() {
            let (run, chunk) = spilling.join().expect("a spill thread panicked");
            self.runs.push(run?);
            self.spare = Some(chunk);
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), Error> {
        // At most two chunks: the one spilling and the one filling.
        self.settle()?;
        let next = self.spare.take().unwrap_or_else(Chunk::new);
        let mut full = std::mem::replace(&mut self.chunk, next);
        let dir = self.dir.clone();
        self.spilling = Some(std::thread::spawn(move || {
            let run = full.spill(&dir);
            (run, full)
        }));
        Ok(())
    }

    /// The rows in order.
    pub(crate) fn finish(mut self) -> Result<Sorted, Error> {
        if self.runs.is_empty() && self.spilling.is_none() {
            let mut chunk = self.chunk;
            chunk.sort();
            chunk.buf.shrink_to_fit();
            return Ok(Sorted::Memory {
                buf: chunk.buf,
                entries: chunk.entries.into_iter(),
            });
        }
        if !self.chunk.entries.is_empty() {
            self.spill()?;
        }
        self.settle()?;
        drop(self.spare.take());
        drop(std::mem::replace(&mut self.chunk, Chunk::new()));
        let mut heap = BinaryHeap::with_capacity(self.runs.len());
        for (i, run) in self.runs.iter_mut().enumerate() {
            let mut head = Head {
                key: Vec::new(),
                row: Vec::new(),
                run: i,
            };
            if run.next_into(&mut head.key, &mut head.row)? {
                heap.push(head);
            }
        }
        Ok(Sorted::Runs {
            runs: self.runs,
            heap,
        })
    }
}

/// A run's next row in the merge heap: the smallest key first, and of equal keys the one
/// from the earlier run (so the sort stays stable).
pub(crate) struct Head {
    key: Vec<u8>,
    row: Vec<u8>,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse.
        other.key.cmp(&self.key).then(other.run.cmp(&self.run))
    }
}

/// Sorted rows: in memory when they fit, else merged from runs on disk.
pub(crate) enum Sorted {
    Memory {
        buf: Vec<u8>,
        entries: std::vec::IntoIter<Entry>,
    },
    Runs {
        runs: Vec<Run>,
        heap: BinaryHeap<Head>,
    },
}

impl Sorted {
    /// The bytes kept in memory until the rows are read.
    fn held(&self) -> usize {
        match self {
            Sorted::Memory { buf, entries } => {
                buf.capacity() + entries.len() * std::mem::size_of::<Entry>()
            }
            Sorted::Runs { runs, .. } => runs.len() * READ_BUFFER,
        }
    }
}

impl RowStream for Sorted {
    fn next_row(&mut self, row: &mut Vec<Cell>) -> Result<bool, Error> {
        match self {
            Sorted::Memory { buf, entries } => match entries.next() {
                Some(e) => {
                    // Written by this process a moment ago, in memory: cannot be corrupt.
                    read_row(e.row(buf), row).expect("a row this sorter serialized");
                    Ok(true)
                }
                None => Ok(false),
            },
            Sorted::Runs { runs, heap } => {
                let Some(mut head) = heap.peek_mut() else {
                    return Ok(false);
                };
                read_row(&head.row, row).map_err(|e| spool_error(&runs[head.run].path, e))?;
                let Head {
                    key,
                    row: bytes,
                    run,
                } = &mut *head;
                if !runs[*run].next_into(key, bytes)? {
                    std::collections::binary_heap::PeekMut::pop(head);
                }
                Ok(true)
            }
        }
    }
}

/// Sorted rows cut to a query's columns (dropping the order columns added to sort by)
/// and limit.
pub(crate) struct Cut {
    sorted: Sorted,
    columns: usize,
    left: Option<u64>,
}

impl Cut {
    pub(crate) fn new(sorted: Sorted, q: &Query) -> Cut {
        Cut {
            sorted,
            columns: q.columns.len(),
            left: q.limit,
        }
    }
}

impl RowStream for Cut {
    fn next_row(&mut self, row: &mut Vec<Cell>) -> Result<bool, Error> {
        if self.left == Some(0) {
            return Ok(false);
        }
        if !self.sorted.next_row(row)? {
            return Ok(false);
        }
        row.truncate(self.columns);
        if let Some(n) = self.left.as_mut() {
            *n -= 1;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    fn every_type() -> Vec<Cell> {
        let t = DateTime::parse_from_rfc3339("2030-01-02T03:04:05.1234567+02:00").unwrap();
        vec![
            Cell::Null,
            Cell::Integer(-7),
            Cell::Real(2.5),
            text("Zoë 山田"),
            Cell::Bytes(vec![0, 1, 255]),
            Cell::Bool(true),
            Cell::Time(t),
            Cell::Naive(t.naive_utc()),
        ]
    }

    fn drain(sorted: &mut Sorted) -> Vec<Vec<Cell>> {
        let mut got = Vec::new();
        let mut row = Vec::new();
        while sorted.next_row(&mut row).unwrap() {
            got.push(row.clone());
        }
        got
    }

    #[test]
    fn sorted_rows_come_back_with_every_cell_type_in_memory_and_through_runs() {
        for budget in [SORT_BUDGET, 1] {
            let dir = tempfile::tempdir().unwrap();
            let mut sorter = Sorter::new(dir.path(), vec![0], budget);
            let row = every_type();
            sorter.push(&[text("b"), Cell::Null]).unwrap();
            sorter.push(&row).unwrap();
            let mut sorted = sorter.finish().unwrap();
            assert_eq!(matches!(sorted, Sorted::Runs { .. }), budget == 1);
            let got = drain(&mut sorted);
            assert_eq!(got, vec![row, vec![text("b"), Cell::Null]]);
            drop(sorted);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "removed");
        }
    }

    #[test]
    fn a_row_of_several_texts_comes_back_and_a_cut_through_a_character_is_corrupt() {
        let cells = [
            text("山田"),
            Cell::Bytes(vec![0xe5, 0xb1]),
            text(""),
            text("Zoë"),
        ];
        let refs: Vec<CellRef<'_>> = cells.iter().map(Cell::as_cell_ref).collect();
        let mut buf = Vec::new();
        write_row(&mut buf, &refs);
        let mut row = Vec::new();
        read_row(&buf, &mut row).unwrap();
        assert_eq!(row, cells);

        // The first text cell claims 4 bytes: the middle of 田's three.
        let mut cut = Vec::new();
        write_row(&mut cut, &[CellRef::Text("山田")]);
        let at = cut.len() - 8;
        cut[at..].copy_from_slice(&4u64.to_le_bytes());
        let err = read_row(&cut, &mut row).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // Text that the cells do not all account for is corrupt too.
        cut[at..].copy_from_slice(&3u64.to_le_bytes());
        assert!(read_row(&cut, &mut row).is_err());
    }

    #[test]
    fn keys_compare_as_cells_do() {
        let t = DateTime::parse_from_rfc3339("2030-01-02T03:04:05+02:00").unwrap();
        let cells = vec![
            Cell::Null,
            Cell::Integer(i64::MIN),
            Cell::Integer(-1),
            Cell::Real(-0.5),
            Cell::Integer(0),
            Cell::Real(0.5),
            Cell::Integer(1),
            Cell::Integer(2),
            Cell::Integer((1 << 53) + 1),
            Cell::Integer(i64::MAX),
            Cell::Naive(t.naive_utc() - chrono::Duration::seconds(1)),
            Cell::Time(t),
            text(""),
            text("\0"),
            text("\0a"),
            text("A"),
            text("a"),
            text("a\0"),
            text("ab"),
            text("é"),
            Cell::Bytes(vec![]),
            Cell::Bytes(vec![0]),
            Cell::Bytes(vec![0, 0]),
            Cell::Bytes(vec![1]),
        ];
        for (i, a) in cells.iter().enumerate() {
            for (j, b) in cells.iter().enumerate() {
                let (mut ka, mut kb) = (Vec::new(), Vec::new());
                encode_key(&mut ka, a.as_cell_ref());
                encode_key(&mut kb, b.as_cell_ref());
                assert_eq!(ka.cmp(&kb), i.cmp(&j), "{a:?} against {b:?}");
                if compare(a, b) != Ordering::Equal {
                    assert_eq!(ka.cmp(&kb), compare(a, b), "{a:?} against {b:?}");
                }
            }
        }
    }

    #[test]
    fn the_sorter_orders_rows_through_runs_stably() {
        let dir = tempfile::tempdir().unwrap();
        // A tiny budget: every few rows become a run.
        let mut sorter = Sorter::new(dir.path(), vec![0, 1], 300);
        let mut expected = Vec::new();
        for i in 0..200i64 {
            let key = text(&format!("u{:03}", (i * 37) % 50));
            let row = vec![key, Cell::Integer(i % 3), Cell::Integer(i)];
            expected.push(row.clone());
            sorter.push(&row).unwrap();
        }
        expected.sort_by(|a, b| compare(&a[0], &b[0]).then(compare(&a[1], &b[1])));
        let mut sorted = sorter.finish().unwrap();
        assert!(matches!(sorted, Sorted::Runs { .. }));
        assert_eq!(
            drain(&mut sorted),
            expected,
            "sorted, equal keys in input order"
        );
    }

    #[test]
    fn cells_order_as_sqlite_orders_values() {
        let mut cells = vec![
            Cell::Bytes(vec![0]),
            text("b"),
            text("B"),
            Cell::Integer(10),
            Cell::Integer(9),
            Cell::Null,
        ];
        cells.sort_by(compare);
        assert_eq!(
            cells,
            vec![
                Cell::Null,
                Cell::Integer(9),
                Cell::Integer(10),
                text("B"),
                text("b"),
                Cell::Bytes(vec![0])
            ]
        );
    }
}
