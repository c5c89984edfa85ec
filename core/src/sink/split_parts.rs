//! Ordered output of a data-parallel job over one input file: subtask `i` of `p` writes the
//! rows of its split — a contiguous byte range of the input, read in order (see
//! [`file`](crate::source::file)) — to its own part file with a file sink, and once the job
//! has finished [`SplitParts`] joins the parts in subtask order. The output is then byte for
//! byte what one subtask reading the whole input writes.
//!
//! ```
//! use eddy_core::prelude::*;
//! use eddy_core::sink::csv::{CsvSink, CsvSinkOptions};
//! use eddy_core::sink::split_parts::SplitParts;
//! use eddy_core::source::file::{CsvOptions, CsvSource};
//!
//! let dir = tempfile::tempdir()?;
//! let (input, output) = (dir.path().join("in.csv"), dir.path().join("out.csv"));
//! let rows: String = (0..1000).map(|i| format!("{i},{}\n", i * 2)).collect();
//! std::fs::write(&input, format!("a,b\n{rows}"))?;
//! let parts = SplitParts::beside(&output, 2, Some(b','))?;
//! let flow = Dataflow::new(DataflowConfig::default());
//! flow.source_with("in", CsvSource::factory(CsvOptions::new(&input)))
//!     .parallelism(2)
//!     .sink("out", CsvSink::new(CsvSinkOptions::new(parts.sink_path()))?)
//!     .parallelism(2);
//! flow.run()?;
//! parts.finish_into_file(&output)?;
//! assert_eq!(std::fs::read_to_string(&output)?, format!("a,b\n{rows}"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - Text parts only (CSV, JSON lines): joining is concatenation, in the kernel where it can
//!   be (`copy_file_range`); into a file, the first part is renamed onto it and the others
//!   appended, then the file is made durable like a sink's. Only the first part needs to be
//!   durable before that: give the sinks [`Durable::FirstOnly`](super::Durable::FirstOnly).
//! - A CSV part that has rows starts with the header row (the sinks write it before their
//!   first batch): it is kept from the first part that has rows and dropped from the others,
//!   which must start with the same bytes, or the join is refused.
//! - The parts live in a hidden directory (beside the output, so that the rename stays on one
//!   file system), removed when the [`SplitParts`] is dropped, joined or not.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file_target::{check_path, subtask_path};
use crate::error::{Error, Result};
use crate::operator::TaskInfo;
use crate::source::file::framing::{Framing, Scanner};

/// The part files of one sink run with `parallelism` subtasks, and how to join them.
#[derive(Debug)]
pub struct SplitParts {
    dir: PathBuf,
    sink_path: PathBuf,
    parallelism: usize,
    /// The delimiter of CSV parts that start with a header row; `None`: no header.
    header: Option<u8>,
}

impl SplitParts {
    /// Parts of an output to be written to `path`, in a hidden directory beside it
    /// (`out/.scores.csv.parts-<pid>/`). `csv_header` is the delimiter of CSV parts with a
    /// header row, `None` for JSON lines or CSV without a header.
    pub fn beside(path: &Path, parallelism: usize, csv_header: Option<u8>) -> Result<Self> {
        check_path("split parts.path", path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = path.with_file_name(format!(".{name}.parts-{}", std::process::id()));
        Self::create(dir, &name, parallelism, csv_header)
    }

    /// Parts in a fresh hidden directory under `dir` (for an output that is a stream, such as
    /// standard output); `file_name` gives the parts their extension (`rows.csv`).
    pub fn under(
        dir: &Path,
        file_name: &str,
        parallelism: usize,
        csv_header: Option<u8>,
    ) -> Result<Self> {
        let dir = dir.join(format!(".eddy-parts-{}", std::process::id()));
        Self::create(dir, file_name, parallelism, csv_header)
    }

    fn create(
        dir: PathBuf,
        file_name: &str,
        parallelism: usize,
        header: Option<u8>,
    ) -> Result<Self> {
        // a directory of the same name was left by a killed run of this pid: start afresh
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != ErrorKind::NotFound {
                return Err(Error::io(&dir, e));
            }
        }
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let sink_path = dir.join(file_name);
        Ok(SplitParts {
            dir,
            sink_path,
            parallelism: parallelism.max(1),
            header,
        })
    }

    /// The path to give the file sink (run with the same parallelism): subtask `i` writes
    /// the part beside it that [`subtask_path`] names.
    pub fn sink_path(&self) -> &Path {
        &self.sink_path
    }

    /// The part files in subtask order.
    fn parts(&self) -> impl Iterator<Item = PathBuf> + '_ {
        (0..self.parallelism).map(|subtask| {
            subtask_path(
                &self.sink_path,
                &TaskInfo {
                    operator: Arc::from("split parts"),
                    subtask,
                    parallelism: self.parallelism,
                    key_groups: crate::keys::DEFAULT_KEY_GROUPS,
                },
            )
        })
    }

    /// Joins the parts in order into `path` (replaced atomically): the first part is renamed
    /// onto it, the others are appended; then the file is flushed to disk while the scratch
    /// files (and the replaced output's blocks) are freed.
    pub fn finish_into_file(self, path: &Path) -> Result<()> {
        let mut parts = self.parts();
        let first = parts.next().unwrap_or_else(|| self.sink_path.clone());
        // an output being replaced keeps a link here, so the rename does not free its blocks
        // (tens of milliseconds for a large file): the cleanup below does, beside the sync.
        // Best effort: without the link (no old output, no hard links) the rename frees them.
        let _ = fs::hard_link(path, self.dir.join(".replaced"));
        fs::rename(&first, path).map_err(|e| Error::io(path, e))?;
        let mut out = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut header = None;
        for part in parts {
            let mut file = File::open(&part).map_err(|e| Error::io(&part, e))?;
            if header.is_none() && self.header.is_some() {
                // the output's header row, once it has one (the first part may be empty)
                out.seek(SeekFrom::Start(0))
                    .map_err(|e| Error::io(path, e))?;
                header = self.first_record(&mut out, path)?;
            }
            self.skip_header(&mut file, &part, header.as_deref())?;
            // not O_APPEND: the kernel copies (copy_file_range) only into a plain file offset
            out.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
            std::io::copy(&mut file, &mut out).map_err(|e| Error::io(path, e))?;
        }
        let dir = self.dir.clone();
        let cleanup = std::thread::spawn(move || fs::remove_dir_all(dir));
        let synced = out.sync_data().map_err(|e| Error::io(path, e));
        // best effort, as in `drop`
        let _ = cleanup.join();
        synced
    }

    /// Writes the parts in order to `out` (named `name` in errors). A closed pipe ends the
    /// output early without an error, like the stdout sink.
    pub fn finish_into(self, out: &mut dyn Write, name: &str) -> Result<()> {
        let mut header: Option<Vec<u8>> = None;
        for part in self.parts() {
            let mut file = File::open(&part).map_err(|e| Error::io(&part, e))?;
            if header.is_none() && self.header.is_some() {
                header = self.first_record(&mut file, &part)?;
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| Error::io(&part, e))?;
            } else {
                self.skip_header(&mut file, &part, header.as_deref())?;
            }
            match std::io::copy(&mut file, out) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(Error::io(name, e)),
            }
        }
        match out.flush() {
            Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(Error::io(name, e)),
            _ => Ok(()),
        }
    }

    /// Positions `file` after its header row when the output already has `header`; a part
    /// with rows must start with exactly that header.
    fn skip_header(&self, file: &mut File, path: &Path, header: Option<&[u8]>) -> Result<()> {
        let Some(header) = header else { return Ok(()) };
        match self.first_record(file, path)? {
            None => Ok(()),
            Some(own) if own == header => file
                .seek(SeekFrom::Start(own.len() as u64))
                .map(drop)
                .map_err(|e| Error::io(path, e)),
            Some(own) => Err(Error::Internal(format!(
                "part {} starts with the header {:?}, the output with {:?}",
                path.display(),
                String::from_utf8_lossy(&own),
                String::from_utf8_lossy(header)
            ))),
        }
    }

    /// The first record of the CSV text in `file` with its terminator (`None`: the file is
    /// empty, or this is not a CSV with a header); reads from the current position.
    fn first_record(&self, file: &mut File, path: &Path) -> Result<Option<Vec<u8>>> {
        let Some(delimiter) = self.header else {
            return Ok(None);
        };
        let mut scanner = Scanner::new(Framing {
            term: b'\n',
            csv: Some((b'"', delimiter)),
        });
        let (mut record, mut buf) = (Vec::new(), [0u8; 8192]);
        loop {
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(path, e)),
            };
            if n == 0 {
                // no terminator: a file without rows is empty, anything else is malformed
                if record.is_empty() {
                    return Ok(None);
                }
                return Err(Error::Internal(format!(
                    "part {} has no complete header row",
                    path.display()
                )));
            }
            if let Some(end) = scanner.feed(&buf[..n]) {
                record.extend_from_slice(&buf[..=end]);
                return Ok(Some(record));
            }
            record.extend_from_slice(&buf[..n]);
        }
    }
}

impl Drop for SplitParts {
    fn drop(&mut self) {
        // best effort: the parts are scratch files (the joined output was moved out of here)
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(dir: &Path, contents: &[&str], header: Option<u8>) -> Result<SplitParts> {
        let parts = SplitParts::under(dir, "rows.csv", contents.len(), header)?;
        for (path, text) in parts.parts().zip(contents) {
            fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        Ok(parts)
    }

    fn joined(dir: &Path, contents: &[&str], header: Option<u8>) -> Result<(String, String)> {
        let mut streamed = Vec::new();
        parts(dir, contents, header)?.finish_into(&mut streamed, "test")?;
        let out = dir.join("out.csv");
        parts(dir, contents, header)?.finish_into_file(&out)?;
        let file = fs::read_to_string(&out).map_err(|e| Error::io(&out, e))?;
        Ok((String::from_utf8_lossy(&streamed).into_owned(), file))
    }

    #[test]
    fn joins_in_order_with_one_header_even_when_the_first_parts_are_empty() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let h = "\"a\nb\",c\n"; // a header whose first name holds a newline
        for (contents, want) in [
            (
                vec![&*format!("{h}1,2\n"), &*format!("{h}3,4\n")],
                format!("{h}1,2\n3,4\n"),
            ),
            (vec!["", "", &*format!("{h}5,6\n")], format!("{h}5,6\n")),
            (
                vec!["", &*format!("{h}1,2\n"), "", &*format!("{h}3,4\n")],
                format!("{h}1,2\n3,4\n"),
            ),
            (vec!["", ""], String::new()),
        ] {
            let (streamed, file) = joined(dir.path(), &contents, Some(b','))?;
            assert_eq!(streamed, want);
            assert_eq!(file, want);
        }
        // JSON lines: plain concatenation
        let (streamed, file) = joined(dir.path(), &["{\"a\":1}\n", "", "{\"a\":2}\n"], None)?;
        assert_eq!(streamed, "{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(file, streamed);
        // the scratch directory is gone
        let left: Vec<_> = fs::read_dir(dir.path())
            .map_err(|e| Error::io(dir.path(), e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".eddy-parts"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        Ok(())
    }

    #[test]
    fn a_part_with_another_header_or_a_missing_part_is_refused() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let out = dir.path().join("out.csv");
        let bad = parts(dir.path(), &["a,b\n1,2\n", "a,c\n3,4\n"], Some(b','))?;
        assert!(
            matches!(bad.finish_into_file(&out), Err(Error::Internal(m)) if m.contains("header"))
        );
        let bad = parts(dir.path(), &["a,b\n1,2\n", "a,b"], Some(b','))?;
        assert!(bad.finish_into(&mut Vec::new(), "test").is_err());
        let missing = parts(dir.path(), &["a,b\n1,2\n", "a,b\n3,4\n"], Some(b','))?;
        let second = missing.parts().nth(1).expect("two parts");
        fs::remove_file(&second).map_err(|e| Error::io(&second, e))?;
        assert!(
            matches!(missing.finish_into_file(&out), Err(Error::Io { path, .. }) if path == second)
        );
        Ok(())
    }
}
