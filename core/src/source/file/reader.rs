//! The record reader under both file formats: a file or a directory read in large chunks,
//! cut into records (lines; for CSV a quoted field may hold newlines), with a replayable
//! position (file, byte offset, line), an optional stop position, and follow mode.
//!
//! In follow mode the end of the current file is not final: a trailing record without its
//! newline is held back (it may be half-written) and the reader says [`Next::Idle`]. The file is
//! final once a later file exists in the directory (the writer rolled over) or once
//! [`stop_following`](LineReader::stop_following) was called; then a trailing unterminated
//! record is delivered as a record, exactly as in bounded mode.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use memchr::{memchr, memchr_iter};
use serde::{Deserialize, Serialize};

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
    /// CSV quote byte: a newline between quotes does not end a record. `None` for JSON lines.
    pub(crate) quote: Option<u8>,
    /// Bytes read per system call (the buffer grows for longer records).
    pub(crate) chunk_size: usize,
    /// Directory files taken by this subtask: `(i, p)` takes every p-th file from the i-th.
    pub(crate) assign: Option<(usize, usize)>,
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
    /// Nothing complete right now (follow mode).
    Idle,
    /// Nothing more, ever.
    End,
}

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
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// Finds the end of the first complete record: (its length without the newline, the number
/// of newlines it spans including its own).
pub(crate) fn find_record(avail: &[u8], quote: Option<u8>) -> Option<(usize, u64)> {
    let nl = memchr(b'\n', avail)?;
    let Some(q) = quote else {
        return Some((nl, 1));
    };
    let mut parity = memchr_iter(q, &avail[..nl]).count() % 2;
    let (mut end, mut lines) = (nl, 1);
    while parity == 1 {
        let from = end + 1;
        let next = from + memchr(b'\n', &avail[from..])?;
        parity ^= memchr_iter(q, &avail[from..next]).count() % 2;
        end = next;
        lines += 1;
    }
    Some((end, lines))
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
        self.open = None;
        self.file_done = false;
        self.start = 0;
        self.end = 0;
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
    /// while following.
    fn open_current(&mut self) -> Result<bool> {
        let path = self.cfg.root.path_of(&self.pos.file);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound && self.following() => return Ok(false),
            Err(e) => return Err(Error::io(path, e)),
        };
        if self.pos.offset > 0 {
            file.seek(SeekFrom::Start(self.pos.offset))
                .map_err(|e| Error::io(&path, e))?;
        }
        if self.buf.len() < self.cfg.chunk_size {
            self.buf.resize(self.cfg.chunk_size.max(64), 0);
        }
        self.start = 0;
        self.end = 0;
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
                if !self.open_current()? {
                    return Ok(Next::Idle);
                }
            }
            if self.stop_reached() {
                self.open = None;
                self.file_done = true;
                continue;
            }
            if let Some((len, lines)) = find_record(&self.buf[self.start..self.end], self.cfg.quote)
            {
                return Ok(self.take(len, len + 1, lines));
            }
            if self.read_more()? > 0 {
                continue;
            }
            // at the current end of the file: is it final?
            let last = if !self.following() {
                true
            } else if self.next_file()?.is_some() {
                // the writer moved on; what it appended before doing so is there now
                if self.read_more()? > 0 {
                    continue;
                }
                true
            } else {
                false
            };
            if !last {
                return Ok(Next::Idle);
            }
            if self.end > self.start {
                let len = self.end - self.start;
                let lines = 1 + memchr_iter(b'\n', &self.buf[self.start..self.end]).count() as u64;
                return Ok(self.take(len, len, lines));
            }
            self.open = None;
            self.file_done = true;
        }
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
        let path = self
            .open
            .as_ref()
            .map_or(Path::new(""), |o| o.path.as_path());
        Next::Record(Record {
            bytes: &self.buf[from..to],
            line,
            first_in_file,
            path,
        })
    }
}
