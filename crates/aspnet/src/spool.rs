//! Rows on disk, for engines that cannot hand the assembler several ordered streams at
//! once: a [`Spool`] keeps the rows of one stream in a private file to be read back in
//! the same order, and a [`Sorter`] puts unordered rows (CSV dumps) into order within
//! bounded memory, spilling sorted runs and merging them back.
//!
//! The files are created in a private folder (the unfinished bundle's own, mode 0700:
//! the rows hold account data) and removed when dropped.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDateTime};

use crate::rows::{Cell, RowStream};
use crate::Error;

/// Orders cells as SQLite orders values: NULL, then numbers, then text (byte by byte),
/// then bytes; the other types by their value. The key cells of a row compare as
/// [`crate::Key`]s do.
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

/// Compares two rows by the cells at `order`.
fn compare_rows(order: &[usize], a: &[Cell], b: &[Cell]) -> Ordering {
    for &i in order {
        match compare(&a[i], &b[i]) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

fn write_cell(out: &mut impl Write, c: &Cell) -> io::Result<()> {
    fn bytes(out: &mut impl Write, tag: u8, b: &[u8]) -> io::Result<()> {
        out.write_all(&[tag])?;
        out.write_all(&(b.len() as u64).to_le_bytes())?;
        out.write_all(b)
    }
    match c {
        Cell::Null => out.write_all(&[0]),
        Cell::Integer(i) => {
            out.write_all(&[1])?;
            out.write_all(&i.to_le_bytes())
        }
        Cell::Real(f) => {
            out.write_all(&[2])?;
            out.write_all(&f.to_le_bytes())
        }
        Cell::Text(t) => bytes(out, 3, t.as_bytes()),
        Cell::Bytes(b) => bytes(out, 4, b),
        Cell::Bool(b) => out.write_all(&[5, *b as u8]),
        Cell::Time(t) => {
            out.write_all(&[6])?;
            out.write_all(&t.timestamp().to_le_bytes())?;
            out.write_all(&t.timestamp_subsec_nanos().to_le_bytes())?;
            out.write_all(&t.offset().local_minus_utc().to_le_bytes())
        }
        Cell::Naive(t) => {
            let utc = t.and_utc();
            out.write_all(&[7])?;
            out.write_all(&utc.timestamp().to_le_bytes())?;
            out.write_all(&utc.timestamp_subsec_nanos().to_le_bytes())
        }
    }
}

fn read_array<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "spool file is corrupt")
}

fn read_cell(r: &mut impl Read) -> io::Result<Cell> {
    let [tag] = read_array::<1>(r)?;
    Ok(match tag {
        0 => Cell::Null,
        1 => Cell::Integer(i64::from_le_bytes(read_array(r)?)),
        2 => Cell::Real(f64::from_le_bytes(read_array(r)?)),
        3 | 4 => {
            let n = u64::from_le_bytes(read_array(r)?) as usize;
            let mut b = vec![0u8; n];
            r.read_exact(&mut b)?;
            if tag == 3 {
                Cell::Text(String::from_utf8(b).map_err(|_| corrupt())?)
            } else {
                Cell::Bytes(b)
            }
        }
        5 => Cell::Bool(read_array::<1>(r)?[0] != 0),
        6 => {
            let secs = i64::from_le_bytes(read_array(r)?);
            let nanos = u32::from_le_bytes(read_array(r)?);
            let offset = i32::from_le_bytes(read_array(r)?);
            let offset = FixedOffset::east_opt(offset).ok_or_else(corrupt)?;
            Cell::Time(
                DateTime::from_timestamp(secs, nanos)
                    .ok_or_else(corrupt)?
                    .with_timezone(&offset),
            )
        }
        7 => {
            let secs = i64::from_le_bytes(read_array(r)?);
            let nanos = u32::from_le_bytes(read_array(r)?);
            let t: NaiveDateTime = DateTime::from_timestamp(secs, nanos)
                .ok_or_else(corrupt)?
                .naive_utc();
            Cell::Naive(t)
        }
        _ => return Err(corrupt()),
    })
}

fn spool_error(path: &Path, e: io::Error) -> Error {
    Error::Open {
        location: path.display().to_string(),
        message: format!("cannot use the spool file: {e}"),
    }
}

/// A private file of rows, written once and read back in order.
pub(crate) struct Spool {
    path: PathBuf,
    /// `None` once handed to a reader, which then owns the file.
    out: Option<BufWriter<File>>,
    rows: u64,
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Spool {
    /// A new spool file in `dir`.
    pub(crate) fn create(dir: &Path) -> Result<Spool, Error> {
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
        Ok(Spool {
            out: Some(BufWriter::with_capacity(256 * 1024, file)),
            path,
            rows: 0,
        })
    }

    /// Appends a row.
    pub(crate) fn push(&mut self, row: &[Cell]) -> Result<(), Error> {
        let write = |out: &mut BufWriter<File>| -> io::Result<()> {
            out.write_all(&(row.len() as u32).to_le_bytes())?;
            for c in row {
                write_cell(out, c)?;
            }
            Ok(())
        };
        let out = self
            .out
            .as_mut()
            .expect("a spool is written until it is read");
        write(out).map_err(|e| spool_error(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    /// The rows, from the first.
    pub(crate) fn into_reader(mut self) -> Result<SpoolReader, Error> {
        let path = self.path.clone();
        let file = self
            .out
            .take()
            .expect("read once")
            .into_inner()
            .map_err(|e| spool_error(&path, e.into_error()))?;
        drop(file);
        let file = File::open(&path).map_err(|e| spool_error(&path, e))?;
        Ok(SpoolReader {
            // Small: an external sort merges hundreds of runs at once, one reader each.
            reader: BufReader::with_capacity(READ_BUFFER, file),
            left: self.rows,
            path,
        })
    }
}

/// The rows of a [`Spool`], in the order they were written; the file is removed when
/// this is dropped.
pub(crate) struct SpoolReader {
    path: PathBuf,
    reader: BufReader<File>,
    left: u64,
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl SpoolReader {
    fn next_into(&mut self, row: &mut Vec<Cell>) -> Result<bool, Error> {
        if self.left == 0 {
            return Ok(false);
        }
        let read = |r: &mut BufReader<File>, row: &mut Vec<Cell>| -> io::Result<()> {
            let n = u32::from_le_bytes(read_array(r)?) as usize;
            row.clear();
            for _ in 0..n {
                row.push(read_cell(r)?);
            }
            Ok(())
        };
        read(&mut self.reader, row).map_err(|e| spool_error(&self.path, e))?;
        self.left -= 1;
        Ok(true)
    }
}

impl RowStream for SpoolReader {
    fn next_row(&mut self, row: &mut Vec<Cell>) -> Result<bool, Error> {
        self.next_into(row)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // A spool turned into a reader has its file removed by the reader instead.
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The read buffer of a spool: a sort of a large table merges hundreds of runs at once,
/// so this is what the merge's memory grows by per run.
const READ_BUFFER: usize = 32 * 1024;

/// The memory a [`Sorter`] fills before it spills a sorted run.
pub(crate) const SORT_BUDGET: usize = 32 * 1024 * 1024;

fn cell_size(c: &Cell) -> usize {
    std::mem::size_of::<Cell>()
        + match c {
            Cell::Text(t) => t.len(),
            Cell::Bytes(b) => b.len(),
            _ => 0,
        }
}

/// Puts rows into the order of the cells at `order`, within about `budget` bytes of
/// memory: full chunks are sorted and spilled to runs, which are merged on read.
pub(crate) struct Sorter {
    dir: PathBuf,
    order: Vec<usize>,
    budget: usize,
    chunk: Vec<Vec<Cell>>,
    bytes: usize,
    runs: Vec<SpoolReader>,
}

impl Sorter {
    pub(crate) fn new(dir: &Path, order: Vec<usize>, budget: usize) -> Sorter {
        Sorter {
            dir: dir.to_path_buf(),
            order,
            budget,
            chunk: Vec::new(),
            bytes: 0,
            runs: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<Cell>) -> Result<(), Error> {
        self.bytes += row.iter().map(cell_size).sum::<usize>() + 24;
        self.chunk.push(row);
        if self.bytes >= self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn sort_chunk(&mut self) {
        let order = &self.order;
        // Stable, so that rows with equal keys keep their file order.
        self.chunk.sort_by(|a, b| compare_rows(order, a, b));
    }

    fn spill(&mut self) -> Result<(), Error> {
        self.sort_chunk();
        let mut spool = Spool::create(&self.dir)?;
        for row in self.chunk.drain(..) {
            spool.push(&row)?;
        }
        self.runs.push(spool.into_reader()?);
        self.bytes = 0;
        Ok(())
    }

    /// The rows in order.
    pub(crate) fn finish(mut self) -> Result<Sorted, Error> {
        if self.runs.is_empty() {
            self.sort_chunk();
            return Ok(Sorted::Memory(self.chunk.into_iter()));
        }
        if !self.chunk.is_empty() {
            self.spill()?;
        }
        let mut heap = BinaryHeap::new();
        let mut runs = self.runs;
        for (i, run) in runs.iter_mut().enumerate() {
            let mut row = Vec::new();
            if run.next_into(&mut row)? {
                heap.push(Head {
                    row,
                    run: i,
                    order: self.order.clone(),
                });
            }
        }
        Ok(Sorted::Runs { runs, heap })
    }
}

/// A run's next row in the merge heap: the smallest row first, and of equal rows the one
/// from the earlier run (so the sort stays stable).
pub(crate) struct Head {
    row: Vec<Cell>,
    run: usize,
    order: Vec<usize>,
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
        compare_rows(&self.order, &other.row, &self.row).then(other.run.cmp(&self.run))
    }
}

/// Sorted rows: in memory when they fit, else merged from runs on disk.
pub(crate) enum Sorted {
    Memory(std::vec::IntoIter<Vec<Cell>>),
    Runs {
        runs: Vec<SpoolReader>,
        heap: BinaryHeap<Head>,
    },
}

impl RowStream for Sorted {
    fn next_row(&mut self, row: &mut Vec<Cell>) -> Result<bool, Error> {
        match self {
            Sorted::Memory(rows) => match rows.next() {
                Some(r) => {
                    *row = r;
                    Ok(true)
                }
                None => Ok(false),
            },
            Sorted::Runs { runs, heap } => {
                let Some(mut head) = heap.pop() else {
                    return Ok(false);
                };
                std::mem::swap(row, &mut head.row);
                if runs[head.run].next_into(&mut head.row)? {
                    heap.push(head);
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
    pub(crate) fn new(sorted: Sorted, q: &crate::rows::Query) -> Cut {
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

    #[test]
    fn a_spool_gives_back_every_cell_type() {
        let dir = tempfile::tempdir().unwrap();
        let t = DateTime::parse_from_rfc3339("2030-01-02T03:04:05.1234567+02:00").unwrap();
        let row = vec![
            Cell::Null,
            Cell::Integer(-7),
            Cell::Real(2.5),
            text("Zoë 山田"),
            Cell::Bytes(vec![0, 1, 255]),
            Cell::Bool(true),
            Cell::Time(t),
            Cell::Naive(t.naive_utc()),
        ];
        let mut spool = Spool::create(dir.path()).unwrap();
        spool.push(&row).unwrap();
        spool.push(&[]).unwrap();
        let mut reader = spool.into_reader().unwrap();
        let mut got = Vec::new();
        assert!(reader.next_row(&mut got).unwrap());
        assert_eq!(got, row);
        assert!(reader.next_row(&mut got).unwrap());
        assert!(got.is_empty());
        assert!(!reader.next_row(&mut got).unwrap());
        drop(reader);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "removed");
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
            sorter.push(row).unwrap();
        }
        expected.sort_by(|a, b| compare_rows(&[0, 1], a, b));
        let mut sorted = sorter.finish().unwrap();
        assert!(matches!(sorted, Sorted::Runs { .. }));
        let mut got = Vec::new();
        let mut row = Vec::new();
        while sorted.next_row(&mut row).unwrap() {
            got.push(row.clone());
        }
        assert_eq!(got, expected, "sorted, equal keys in input order");
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
