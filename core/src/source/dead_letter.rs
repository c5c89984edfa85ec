//! Malformed records are never dropped silently and never crash a job: under the default
//! policy they are written to a dead-letter file (JSON lines: source, line, column, raw text,
//! reason) and counted; under `on-error = "fail"` the first one stops the job with an error
//! naming the place.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// What to do with a malformed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// Write it to the dead-letter sink, count it, continue.
    #[default]
    DeadLetter,
    /// Stop the job with an error naming file, line and column.
    Fail,
}

impl std::str::FromStr for ErrorPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "dead-letter" | "skip" => Ok(ErrorPolicy::DeadLetter),
            "fail" => Ok(ErrorPolicy::Fail),
            other => Err(Error::config(
                "on-error",
                format!("unknown policy `{other}` (expected `dead-letter` or `fail`)"),
            )),
        }
    }
}

/// One malformed record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rejected {
    /// The source it came from (usually the file path).
    pub source: String,
    /// 1-based line (or record) number in that source.
    pub line: u64,
    /// 1-based field number at fault, 0 when the record as a whole is at fault.
    pub column: usize,
    /// The raw text (invalid UTF-8 replaced by U+FFFD).
    pub raw: String,
    /// Why it was rejected.
    pub reason: String,
}

impl Rejected {
    /// Row `row` of `batch` as one JSON object, the raw text of a record an operator rejects
    /// (its input is batches, not text).
    pub fn row_json(batch: &arrow::record_batch::RecordBatch, row: usize) -> String {
        let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
        let written = writer
            .write(&batch.slice(row, 1))
            .and_then(|_| writer.finish());
        match written {
            Ok(()) => String::from_utf8_lossy(&writer.into_inner())
                .trim_end()
                .to_string(),
            Err(e) => format!("(row {row} not printable: {e})"),
        }
    }
}

enum Target {
    Memory(Vec<Rejected>),
    File { path: PathBuf, out: BufWriter<File> },
}

/// The dead-letter sink shared by every source of a job.
pub struct DeadLetterSink {
    policy: ErrorPolicy,
    count: AtomicU64,
    target: Mutex<Target>,
}

impl std::fmt::Debug for DeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterSink")
            .field("policy", &self.policy)
            .field("count", &self.count())
            .finish()
    }
}

impl DeadLetterSink {
    /// Keeps rejected records in memory (tests, embedded use).
    pub fn in_memory(policy: ErrorPolicy) -> Self {
        DeadLetterSink {
            policy,
            count: AtomicU64::new(0),
            target: Mutex::new(Target::Memory(Vec::new())),
        }
    }

    /// Writes rejected records as JSON lines to `path` (created or truncated now).
    pub fn to_file(path: impl AsRef<Path>, policy: ErrorPolicy) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(DeadLetterSink {
            policy,
            count: AtomicU64::new(0),
            target: Mutex::new(Target::File {
                path,
                out: BufWriter::new(file),
            }),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> ErrorPolicy {
        self.policy
    }

    /// Applies the policy to one malformed record.
    pub fn reject(&self, r: Rejected) -> Result<()> {
        if self.policy == ErrorPolicy::Fail {
            return Err(Error::Malformed {
                source_name: r.source,
                line: r.line,
                column: r.column,
                reason: r.reason,
            });
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut target = self
            .target
            .lock()
            .map_err(|_| Error::Internal("dead-letter lock poisoned".into()))?;
        match &mut *target {
            Target::Memory(v) => v.push(r),
            Target::File { path, out } => {
                let line = serde_json::to_string(&r)
                    .map_err(|e| Error::Internal(format!("dead-letter encoding: {e}")))?;
                writeln!(out, "{line}").map_err(|e| Error::io(path.clone(), e))?;
            }
        }
        Ok(())
    }

    /// How many records were rejected so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The records kept in memory (empty for a file sink).
    pub fn records(&self) -> Vec<Rejected> {
        match &*self.target.lock().unwrap_or_else(|p| p.into_inner()) {
            Target::Memory(v) => v.clone(),
            Target::File { .. } => Vec::new(),
        }
    }

    /// The dead-letter file, if any.
    pub fn path(&self) -> Option<PathBuf> {
        match &*self.target.lock().unwrap_or_else(|p| p.into_inner()) {
            Target::Memory(_) => None,
            Target::File { path, .. } => Some(path.clone()),
        }
    }

    /// Flushes the file.
    pub fn flush(&self) -> Result<()> {
        if let Target::File { path, out } =
            &mut *self.target.lock().unwrap_or_else(|p| p.into_inner())
        {
            out.flush().map_err(|e| Error::io(path.clone(), e))?;
        }
        Ok(())
    }
}
