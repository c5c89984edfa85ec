//! The record reader under both file formats: a file or a directory read in large chunks,
//! cut into records by the [framing](super::framing) rules (lines; for CSV a quoted field may
//! hold line ends), with a replayable position (file, byte offset, line), an optional stop
//! position, and follow mode.
//!
//! A record longer than `max_record` is reported once as [`Next::Malformed`] (with its first
//! [`RAW_PREFIX`] bytes) as soon as it passes the limit, then skipped to its end with its bytes
//! dropped as they arrive, so memory stays bounded by the limit plus one read. A quoted field
//! still open at the end of a file also makes its record [`Next::Malformed`]. A file that
//! starts like a compressed or binary format is refused with an error naming it.
//!
//! In follow mode the end of the current file is not final: a trailing record without its
//! newline is held back (it may be half-written) and the reader says [`Next::Idle`]. The file is
//! final once a later file exists in the directory (the writer rolled over) or once
//! [`stop_following`](LineReader::stop_following) was called; then a trailing unterminated
//! record is delivered as a record, exactly as in bounded mode.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::framing::{binary_format, detect_terminator, Framing, Scanner, DETECT_WINDOW};
use crate::error::{Error, Result};

/// Where a reader stands: the next record starts at `offset` in `file`; `line` lines of that
/// file lie before it. `file` is empty before the first file was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReadPos {
    pub(crate) file: String,
    pub(crate) offset: u64,
    pub(crate) line: u64,
}

/// Where a bounded reader stops: no record starting at or after `offset` in `file`, and
/// nothing in a later file, is read. A record that starts before `offset` is read to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StopAt {
    pub(crate) file: String,
    pub(crate) offset: u64,
}

/// What is read: one file, or the files of a directory in name order.
#[derive(Debug, Clone)]
pub(crate) enum Root {
    File(PathBuf),
    Dir(PathBuf),
}

impl Root {
    pub(crate) fn new(path: &Path) -> Self {
        if path.is_dir() {
            Root::Dir(path.to_path_buf())
        } else {
            Root::File(path.to_path_buf())
        }
    }

    /// The path of the file named `name` (a key returned by [`Root::list`]).
    pub(crate) fn path_of(&self, name: &str) -> PathBuf {
        match self {
            Root::File(p) => p.clone(),
            Root::Dir(d) => d.join(name),
        }
    }

    /// The readable files in name order: hidden files and `*.tmp` are ignored. A missing
    /// single file is an empty list when `missing_ok` (a followed file not created yet).
    pub(crate) fn list(&self, missing_ok: bool) -> Result<Vec<String>> {
        match self {
            Root::File(p) => match std::fs::metadata(p) {
                Ok(_) => Ok(vec![file_name(p)]),
                Err(e) if e.kind() == ErrorKind::NotFound && missing_ok => Ok(Vec::new()),
                Err(e) => Err(Error::io(p, e)),
            },
            Root::Dir(d) => {
                let mut names = Vec::new();
                for entry in std::fs::read_dir(d).map_err(|e| Error::io(d, e))? {
                    let entry = entry.map_err(|e| Error::io(d, e))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') || name.ends_with(".tmp") {
                        continue;
                    }
                    // follows symlinks; an entry that vanished meanwhile is skipped
                    if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                        names.push(name);
                    }
                }
                names.sort();
                Ok(names)
            }
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// How a reader reads.
#[derive(Debug, Clone)]
pub(crate) struct ReaderConfig {
    pub(crate) root: Root,
    pub(crate) follow: bool,
    /// CSV `(quote, delimiter)`: a newline inside a quoted field does not end a record.
    /// `None` for JSON lines.
    pub(crate) csv: Option<(u8, u8)>,
    /// Bytes read per system call (the buffer grows for longer records).
    pub(crate) chunk_size: usize,
    /// Longest record; a longer one is reported as [`Next::Malformed`] and skipped.
    pub(crate) max_record: usize,
    /// Directory files taken by this subtask: `(i, p)` takes every p-th file from the i-th.
    pub(crate) assign: Option<(usize, usize)>,
}

impl ReaderConfig {
    /// The framing of a file whose line terminator is `term`.
    pub(crate) fn framing(&self, term: u8) -> Framing {
        Framing {
            term,
            csv: self.csv,
        }
    }
}

/// One record: its bytes without the line terminator, its 1-based first line, and its file.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) line: u64,
    /// The first record of its file (a CSV header, when there is one).
    pub(crate) first_in_file: bool,
    pub(crate) path: &'a Path,
}

/// What the reader has next.
#[derive(Debug)]
pub(crate) enum Next<'a> {
    Record(Record<'a>),
    /// A record that cannot be one by the framing rules (longer than the limit, or a quoted
    /// field never closed): `bytes` holds at most its first [`RAW_PREFIX`] bytes.
    Malformed(Record<'a>, String),
    /// Nothing complete right now (follow mode).
    Idle,
    /// Nothing more, ever.
    End,
}

/// The most bytes of a malformed record kept for its dead letter.
pub(crate) const RAW_PREFIX: usize = 1024;

struct OpenFile {
    path: PathBuf,
    file: File,
}

/// Reads records; see the module docs.
pub(crate) struct LineReader {
    cfg: ReaderConfig,
    pos: ReadPos,
    stop: Option<StopAt>,
    stopping: bool,
    open: Option<OpenFile>,
    file_done: bool,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    consumed: u64,
    /// The current file's record scanner; `None` until its terminator is known.
    scanner: Option<Scanner>,
    /// Bytes of the pending record (from `start`) already fed to the scanner.
    scanned: usize,
    /// The pending record is over the limit: its bytes are dropped until it ends.
    skipping: bool,
    /// Bytes of the pending record dropped so far.
    dropped: u64,
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// Reads from `offset` until `buf` is full or the file ends; the bytes read.
fn read_full_at(file: &mut File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<usize> {
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(path, e))?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(n)
}

/// Refuses a compressed or binary file by its first bytes, saying what it is.
fn refuse_binary(path: &Path, head: &[u8]) -> Result<()> {
    match binary_format(head) {
        Some(what) => Err(Error::schema(
            format!("file source {}", path.display()),
            format!("the file is {what}; CSV and JSON lines are read as plain text"),
        )),
        None => Ok(()),
    }
}

/// The line terminator of the (regular) file at `path`; see [`detect_terminator`].
pub(crate) fn terminator_of(path: &Path) -> Result<u8> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = vec![0u8; DETECT_WINDOW];
    let n = read_full_at(&mut file, path, 0, &mut head)?;
    Ok(detect_terminator(&head[..n], true).unwrap_or(b'\n'))
}

impl LineReader {
    pub(crate) fn new(cfg: ReaderConfig, pos: ReadPos, stop: Option<StopAt>) -> Self {
        LineReader {
            cfg,
            pos,
            stop,
            stopping: false,
            open: None,
            file_done: false,
            buf: Vec::new(),
            start: 0,
            end: 0,
            consumed: 0,
            scanner: None,
            scanned: 0,
            skipping: false,
            dropped: 0,
        }
    }

    /// The position after the last record returned.
    pub(crate) fn pos(&self) -> &ReadPos {
        &self.pos
    }

    /// The stop position, if any.
    pub(crate) fn stop(&self) -> Option<&StopAt> {
        self.stop.as_ref()
    }

    /// Bytes consumed since this reader was created (for progress).
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Follow mode ends: drain what is there, then [`Next::End`].
    pub(crate) fn stop_following(&mut self) {
        self.stopping = true;
    }

    /// Moves to `pos` (the file is re-opened on the next read).
    pub(crate) fn seek(&mut self, pos: ReadPos, stop: Option<StopAt>) {
        self.pos = pos;
        self.stop = stop;
        self.close();
        self.file_done = false;
    }

    /// Forgets the open file and every partial record.
    fn close(&mut self) {
        self.open = None;
        self.start = 0;
        self.end = 0;
        self.scanner = None;
        self.scanned = 0;
        self.skipping = false;
        self.dropped = 0;
    }

    fn following(&self) -> bool {
        self.cfg.follow && !self.stopping
    }

    fn stop_reached(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| {
            self.pos.file > s.file || (self.pos.file == s.file && self.pos.offset >= s.offset)
        })
    }

    /// The first file after the current one (in name order, within the stop position).
    fn next_file(&self) -> Result<Option<String>> {
        let names = self.cfg.root.list(self.cfg.follow)?;
        let assigned = names.into_iter().enumerate().filter(|(i, _)| {
            self.cfg
                .assign
                .is_none_or(|(me, of)| of <= 1 || i % of == me)
        });
        for (_, name) in assigned {
            if self.stop.as_ref().is_some_and(|s| name > s.file) {
                return Ok(None);
            }
            if self.pos.file.is_empty() || name > self.pos.file {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Opens the current file at the current offset; `false` when it does not exist (yet)
    /// while following. Past the file's start, its terminator is read from its first bytes.
    fn open_current(&mut self) -> Result<bool> {
        let path = self.cfg.root.path_of(&self.pos.file);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound && self.following() => return Ok(false),
            Err(e) => return Err(Error::io(path, e)),
        };
        self.close();
        if self.pos.offset > 0 {
            let mut head = vec![0u8; DETECT_WINDOW];
            let n = read_full_at(&mut file, &path, 0, &mut head)?;
            refuse_binary(&path, &head[..n])?;
            let term = detect_terminator(&head[..n], true).unwrap_or(b'\n');
            self.scanner = Some(Scanner::new(self.cfg.framing(term)));
            file.seek(SeekFrom::Start(self.pos.offset))
                .map_err(|e| Error::io(&path, e))?;
        }
        if self.buf.len() < self.cfg.chunk_size {
            self.buf.resize(self.cfg.chunk_size.max(64), 0);
        }
        self.open = Some(OpenFile { path, file });
        Ok(true)
    }

    /// Reads more of the current file into the buffer; 0 at its (current) end.
    fn read_more(&mut self) -> Result<usize> {
        let Some(open) = self.open.as_mut() else {
            return Ok(0);
        };
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).max(64);
            self.buf.resize(grown, 0);
        }
        loop {
            match open.file.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&open.path, e)),
            }
        }
    }

    /// Whether the end of the current file (reached now) is final.
    fn at_final_end(&mut self) -> Result<Option<bool>> {
        if !self.following() {
            return Ok(Some(true));
        }
        if self.next_file()?.is_some() {
            // the writer moved on; what it appended before doing so is there now
            if self.read_more()? > 0 {
                return Ok(None);
            }
            return Ok(Some(true));
        }
        Ok(Some(false))
    }

    /// The next record, or why there is none.
    pub(crate) fn next(&mut self) -> Result<Next<'_>> {
        loop {
            if self.open.is_none() {
                if self.file_done || self.pos.file.is_empty() {
                    match self.next_file()? {
                        Some(name) => {
                            self.pos = ReadPos {
                                file: name,
                                offset: 0,
                                line: 0,
                            };
                            self.file_done = false;
                        }
                        None if self.following() => return Ok(Next::Idle),
                        None => return Ok(Next::End),
                    }
                }
                if self.stop_reached() {
                    // checked before opening: a split past its stop never touches the file
                    self.file_done = true;
                    continue;
                }
                if !self.open_current()? {
                    return Ok(Next::Idle);
                }
            }
            if !self.skipping && self.stop_reached() {
                self.close();
                self.file_done = true;
                continue;
            }
            if self.scanner.is_none() {
                // at the file's start: its first bytes tell what it is
                refuse_binary(self.path(), &self.buf[self.start..self.end])?;
                if let Some(term) = detect_terminator(&self.buf[self.start..self.end], false) {
                    self.scanner = Some(Scanner::new(self.cfg.framing(term)));
                }
            }
            if let Some(scanner) = self.scanner.as_mut() {
                let from = self.start + self.scanned;
                if let Some(j) = scanner.feed(&self.buf[from..self.end]) {
                    let len = self.scanned + j;
                    let lines = scanner.lines();
                    scanner.reset();
                    self.scanned = 0;
                    if self.skipping {
                        self.end_skip(len + 1, lines);
                        continue;
                    }
                    if len > self.cfg.max_record {
                        return Ok(self.malformed(len + 1, lines, self.too_long()));
                    }
                    return Ok(self.take(len, len + 1, lines));
                }
                self.scanned = self.end - self.start;
                if self.skipping {
                    self.dropped += self.scanned as u64;
                    self.consumed += self.scanned as u64;
                    self.start = self.end;
                    self.scanned = 0;
                } else if self.end - self.start > self.cfg.max_record {
                    self.skipping = true;
                    let line = self.pos.line + 1;
                    return Ok(self.report(line, self.too_long()));
                }
            }
            if self.read_more()? > 0 {
                continue;
            }
            match self.at_final_end()? {
                None => continue,
                Some(false) => return Ok(Next::Idle),
                Some(true) => {}
            }
            let pending = self.end - self.start;
            let scanner = self.scanner.get_or_insert_with(|| {
                let term = detect_terminator(&self.buf[self.start..self.end], true);
                Scanner::new(self.cfg.framing(term.unwrap_or(b'\n')))
            });
            if self.scanned < pending {
                // the terminator became known only now: scan what is there
                if scanner
                    .feed(&self.buf[self.start + self.scanned..self.end])
                    .is_some()
                {
                    self.scanned = 0;
                    scanner.reset();
                    continue;
                }
                self.scanned = pending;
            }
            let lines = scanner.lines();
            let unclosed = scanner.in_quotes();
            scanner.reset();
            self.scanned = 0;
            if self.skipping {
                self.end_skip(pending, lines);
            } else if pending > self.cfg.max_record {
                // held whole only because its terminator was not known yet (at most 64 KiB)
                return Ok(self.malformed(pending, lines, self.too_long()));
            } else if pending > 0 && unclosed {
                let reason =
                    "a quoted field is never closed (the record runs to the end of the file)";
                return Ok(self.malformed(pending, lines, reason.to_string()));
            } else if pending > 0 {
                return Ok(self.take(pending, pending, lines));
            }
            self.close();
            self.file_done = true;
        }
    }

    fn too_long(&self) -> String {
        format!(
            "record longer than the limit of {} bytes (max-record-bytes); skipped to its end",
            self.cfg.max_record
        )
    }

    /// The path of the open file (empty when none).
    fn path(&self) -> &Path {
        self.open
            .as_ref()
            .map_or(Path::new(""), |o| o.path.as_path())
    }

    /// Reports the pending record (its first bytes) as malformed without consuming it.
    fn report(&self, line: u64, reason: String) -> Next<'_> {
        let prefix = (self.end - self.start).min(RAW_PREFIX);
        Next::Malformed(
            Record {
                bytes: &self.buf[self.start..self.start + prefix],
                line,
                first_in_file: self.pos.offset == 0,
                path: self.path(),
            },
            reason,
        )
    }

    /// Consumes a whole malformed record held in the buffer and reports it.
    fn malformed(&mut self, consumed: usize, lines: u64, reason: String) -> Next<'_> {
        let line = self.pos.line + 1;
        let prefix = consumed.min(RAW_PREFIX);
        let from = self.start;
        self.start += consumed;
        self.pos.offset += consumed as u64;
        self.pos.line += lines;
        self.consumed += consumed as u64;
        Next::Malformed(
            Record {
                bytes: &self.buf[from..from + prefix],
                line,
                first_in_file: false,
                path: self.path(),
            },
            reason,
        )
    }

    /// The skipped record ends `consumed` bytes into the buffer: move past it.
    fn end_skip(&mut self, consumed: usize, lines: u64) {
        self.start += consumed;
        self.pos.offset += self.dropped + consumed as u64;
        self.pos.line += lines;
        self.consumed += consumed as u64;
        self.dropped = 0;
        self.skipping = false;
    }

    /// Consumes a record of `len` bytes (plus terminator: `consumed` in all) spanning `lines`.
    fn take(&mut self, len: usize, consumed: usize, lines: u64) -> Next<'_> {
        let first_in_file = self.pos.offset == 0;
        let line = self.pos.line + 1;
        let mut from = self.start;
        let mut to = self.start + len;
        self.start += consumed;
        self.pos.offset += consumed as u64;
        self.pos.line += lines;
        self.consumed += consumed as u64;
        if first_in_file && self.buf[from..to].starts_with(BOM) {
            from += BOM.len();
        }
        if to > from && self.buf[to - 1] == b'\r' {
            to -= 1;
        }
        Next::Record(Record {
            bytes: &self.buf[from..to],
            line,
            first_in_file,
            path: self.path(),
        })
    }
}
