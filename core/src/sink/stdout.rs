//! A sink printing records as CSV text on standard output, for the CLI and quick looks.
//!
//! Every subtask writes whole batches under the stdout lock, so lines never interleave; with
//! parallelism > 1 the order of batches between subtasks is arbitrary. The header row is
//! printed once, and the optional row limit counts rows over all subtasks (clones share both).
//! Rows past the limit are consumed and dropped. A closed pipe (`eddy … | head`) is treated
//! like a reached limit: the sink stops printing and the job goes on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use super::csv::check_delimiter;
use super::file_target::arrow_error;
use super::Sink;
use crate::error::{Error, Result};
use crate::message::Epoch;

/// Settings of a [`StdoutSink`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StdoutSinkOptions {
    /// Print a header row with the column names first. Default: `true`.
    #[serde(default = "default_true")]
    pub header: bool,
    /// Field delimiter. Default: `b','`. Must not be a quote, CR or LF.
    #[serde(default = "default_delimiter")]
    pub delimiter: u8,
    /// Print at most this many rows (over all subtasks). Default: `None`, no limit.
    #[serde(default)]
    pub limit: Option<u64>,
}

fn default_true() -> bool {
    true
}

fn default_delimiter() -> u8 {
    b','
}

impl Default for StdoutSinkOptions {
    fn default() -> Self {
        StdoutSinkOptions {
            header: true,
            delimiter: b',',
            limit: None,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    printed: AtomicU64,
    header_done: AtomicBool,
    closed: AtomicBool,
}

/// Prints record batches as CSV text on stdout. Clones share the header flag and the row
/// budget.
#[derive(Debug, Clone)]
pub struct StdoutSink {
    options: StdoutSinkOptions,
    shared: Arc<Shared>,
}

impl StdoutSink {
    /// A sink with checked `options`.
    pub fn new(options: StdoutSinkOptions) -> Result<Self> {
        check_delimiter("stdout sink.delimiter", options.delimiter)?;
        Ok(StdoutSink {
            options,
            shared: Arc::default(),
        })
    }

    /// Rows printed so far, over all clones.
    pub fn rows_printed(&self) -> u64 {
        self.shared.printed.load(Ordering::Relaxed)
    }

    /// Renders the part of `batch` that is still within the limit as CSV text (with the header
    /// if it is the first output), claiming those rows from the shared budget. `None` when
    /// nothing is left to print.
    fn render(&self, batch: &RecordBatch) -> Result<Option<Vec<u8>>> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let rows = batch.num_rows() as u64;
        let take = match self.options.limit {
            None => {
                self.shared.printed.fetch_add(rows, Ordering::Relaxed);
                rows
            }
            Some(limit) => {
                let claimed =
                    self.shared
                        .printed
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                            (p < limit).then(|| (p + rows).min(limit))
                        });
                match claimed {
                    Ok(before) => (before + rows).min(limit) - before,
                    Err(_) => 0,
                }
            }
        };
        if take == 0 {
            return Ok(None);
        }
        let header = self.options.header && !self.shared.header_done.swap(true, Ordering::Relaxed);
        let mut out = Vec::with_capacity(64 * take as usize + 64);
        {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(header)
                .with_delimiter(self.options.delimiter)
                .build(&mut out);
            w.write(&batch.slice(0, take as usize))
                .map_err(|e| arrow_error(std::path::Path::new("<stdout>"), e))?;
        }
        Ok(Some(out))
    }

    fn print(&self, bytes: &[u8]) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match out.write_all(bytes).and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.shared.closed.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(Error::io("<stdout>", e)),
        }
    }
}

impl Sink for StdoutSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self.render(batch)? {
            Some(bytes) => self.print(&bytes),
            None => Ok(()),
        }
    }

    fn pre_commit(&mut self, _epoch: Epoch) -> Result<()> {
        self.print(&[])
    }

    fn close(&mut self) -> Result<()> {
        self.print(&[])
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};

    use super::*;

    fn batch(from: i64, n: i64) -> RecordBatch {
        RecordBatch::try_from_iter([
            (
                "n",
                Arc::new(Int64Array::from_iter_values(from..from + n)) as _,
            ),
            (
                "s",
                Arc::new(StringArray::from_iter_values(
                    (from..from + n).map(|i| format!("r{i}")),
                )) as _,
            ),
        ])
        .unwrap()
    }

    fn text(r: Option<Vec<u8>>) -> String {
        String::from_utf8(r.unwrap_or_default()).unwrap()
    }

    #[test]
    fn header_once_over_clones() -> Result<()> {
        let sink = StdoutSink::new(StdoutSinkOptions::default())?;
        let other = sink.clone();
        assert_eq!(text(sink.render(&batch(0, 2))?), "n,s\n0,r0\n1,r1\n");
        assert_eq!(text(other.render(&batch(2, 1))?), "2,r2\n");
        assert_eq!(sink.rows_printed(), 3);
        Ok(())
    }

    #[test]
    fn limit_is_shared_and_cuts_a_batch() -> Result<()> {
        let sink = StdoutSink::new(StdoutSinkOptions {
            header: false,
            delimiter: b'\t',
            limit: Some(3),
        })?;
        let other = sink.clone();
        assert_eq!(text(sink.render(&batch(0, 2))?), "0\tr0\n1\tr1\n");
        assert_eq!(text(other.render(&batch(2, 5))?), "2\tr2\n");
        assert_eq!(sink.render(&batch(7, 1))?, None);
        assert_eq!(sink.rows_printed(), 3);
        Ok(())
    }

    #[test]
    fn zero_limit_prints_nothing() -> Result<()> {
        let sink = StdoutSink::new(StdoutSinkOptions {
            limit: Some(0),
            ..StdoutSinkOptions::default()
        })?;
        assert_eq!(sink.render(&batch(0, 2))?, None);
        assert_eq!(sink.rows_printed(), 0);
        Ok(())
    }

    #[test]
    fn sinks_are_send_sync_clone() {
        fn check<T: Sink + Clone + Sync>() {}
        check::<StdoutSink>();
        check::<crate::sink::csv::CsvSink>();
        check::<crate::sink::jsonl::JsonLinesSink>();
        check::<crate::sink::parquet::ParquetSink>();
    }

    #[test]
    fn bad_delimiter_is_refused() {
        let o = StdoutSinkOptions {
            delimiter: b'\n',
            ..StdoutSinkOptions::default()
        };
        assert!(matches!(StdoutSink::new(o), Err(Error::Config { .. })));
    }
}
