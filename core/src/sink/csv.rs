//! A sink writing CSV text files through `arrow`'s CSV writer.
//!
//! Without checkpoints each subtask writes its own file (see [`CsvSinkOptions::path`]). In a
//! checkpointed job the sink is two-phase: each epoch goes to its own part file, with its own
//! header, published on [`commit`](Sink::commit) (see [the sink docs](super#two-phase-file-output)).

use std::path::PathBuf;

use arrow::record_batch::RecordBatch;

use super::file_target::{arrow_error, check_path};
use super::text_output::{Durable, TextOutput};
use super::Sink;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::operator::TaskInfo;

/// Settings of a [`CsvSink`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CsvSinkOptions {
    /// The file to write; parent directories are created and an existing file is replaced.
    /// With parallelism 1 this is the file itself; with more, subtask `i` writes
    /// `stem-i.ext` beside it (`out/data.csv` → `out/data-0.csv`, `out/data-1.csv`, …).
    pub path: PathBuf,
    /// Write a header row with the column names first. Default: `true`.
    #[serde(default = "default_true")]
    pub header: bool,
    /// Field delimiter. Default: `b','`. Must not be a quote, CR or LF.
    #[serde(default = "default_delimiter")]
    pub delimiter: u8,
    /// Which subtasks' files are fsynced when they close. Default: every one.
    #[serde(default)]
    pub durable: Durable,
}

fn default_true() -> bool {
    true
}

fn default_delimiter() -> u8 {
    b','
}

impl CsvSinkOptions {
    /// Options writing `path`, with a header row and `,` as delimiter.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvSinkOptions {
            path: path.into(),
            header: true,
            delimiter: b',',
            durable: Durable::Every,
        }
    }
}

/// Checks a delimiter shared by the CSV sinks.
pub(crate) fn check_delimiter(key: &str, delimiter: u8) -> Result<()> {
    if matches!(delimiter, b'"' | b'\n' | b'\r') {
        return Err(Error::config(
            key,
            format!(
                "{:?} cannot be a delimiter",
                char::from(delimiter).to_string()
            ),
        ));
    }
    Ok(())
}

/// Writes record batches as CSV. Cheap to clone; the file is created in
/// [`open`](Sink::open).
#[derive(Debug, Clone)]
pub struct CsvSink {
    options: CsvSinkOptions,
    output: TextOutput,
}

impl CsvSink {
    /// A sink with checked `options`.
    pub fn new(options: CsvSinkOptions) -> Result<Self> {
        check_path("csv sink.path", &options.path)?;
        check_delimiter("csv sink.delimiter", options.delimiter)?;
        let output = TextOutput::new(options.path.clone(), options.durable);
        Ok(CsvSink { options, output })
    }
}

impl Sink for CsvSink {
    /// Epoch parts: what a recovery does not cover is deleted.
    fn withdraws_uncommitted(&self) -> bool {
        true
    }

    fn on_checkpointing(&mut self, restored: Option<Epoch>) -> Result<()> {
        self.output.on_checkpointing(restored);
        Ok(())
    }

    fn open(&mut self, task: &TaskInfo) -> Result<()> {
        self.output.open(task)
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let (target, fresh) = self.output.target("csv")?;
        let path = target.path().to_path_buf();
        // The arrow writer flushes into our buffer at the end of each `write`.
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(self.options.header && fresh)
            .with_delimiter(self.options.delimiter)
            .build(target.writer());
        w.write(batch).map_err(|e| arrow_error(&path, e))
    }

    fn pre_commit(&mut self, epoch: Epoch) -> Result<()> {
        self.output.pre_commit(epoch)
    }

    fn commit(&mut self, epoch: Epoch) -> Result<()> {
        self.output.commit(epoch)
    }

    fn close(&mut self) -> Result<()> {
        self.output.close()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray};

    use super::*;

    fn task(subtask: usize, parallelism: usize) -> TaskInfo {
        TaskInfo {
            operator: Arc::from("csv"),
            subtask,
            parallelism,
            key_groups: crate::keys::DEFAULT_KEY_GROUPS,
        }
    }

    fn batch(names: Vec<Option<&str>>, x: Vec<Option<f64>>) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("name", Arc::new(StringArray::from(names)) as _),
            ("x", Arc::new(Float64Array::from(x)) as _),
        ])
        .unwrap()
    }

    #[test]
    fn writes_one_header_and_rows() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("sub/out.csv");
        let mut sink = CsvSink::new(CsvSinkOptions::new(&path))?;
        sink.open(&task(0, 1))?;
        sink.write(&batch(vec![Some("a,b"), None], vec![Some(1.5), Some(2.0)]))?;
        sink.pre_commit(Epoch(1))?;
        sink.write(&batch(vec![Some("c")], vec![None]))?;
        sink.close()?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        assert_eq!(text, "name,x\n\"a,b\",1.5\n,2.0\nc,\n");
        Ok(())
    }

    #[test]
    fn no_header_and_other_delimiter_per_subtask_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let mut options = CsvSinkOptions::new(dir.path().join("out.csv"));
        options.header = false;
        options.delimiter = b';';
        let mut sink = CsvSink::new(options)?;
        sink.open(&task(1, 2))?;
        sink.write(&batch(vec![Some("a")], vec![Some(1.0)]))?;
        sink.close()?;
        let path = dir.path().join("out-1.csv");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        assert_eq!(text, "a;1.0\n");
        assert!(!dir.path().join("out.csv").exists());
        Ok(())
    }

    #[test]
    fn checkpointed_parts_each_have_a_header_and_restore_drops_uncommitted_rows() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let options = CsvSinkOptions::new(dir.path().join("out.csv"));
        let mut sink = CsvSink::new(options.clone())?;
        sink.on_checkpointing(None)?;
        sink.open(&task(0, 2))?;
        sink.write(&batch(vec![Some("a")], vec![Some(1.0)]))?;
        sink.pre_commit(Epoch(1))?;
        sink.commit(Epoch(1))?;
        sink.write(&batch(vec![Some("b")], vec![Some(2.0)]))?;
        sink.pre_commit(Epoch(2))?;
        sink.write(&batch(vec![Some("c")], vec![Some(3.0)]))?;
        drop(sink); // a failure: epoch 2 pre-committed, "c" in progress
        let mut again = CsvSink::new(options)?;
        again.on_checkpointing(Some(Epoch(1)))?;
        again.open(&task(0, 2))?;
        again.commit(Epoch(1))?; // the runtime's recovery commit is idempotent
        again.write(&batch(vec![Some("d")], vec![Some(4.0)]))?;
        again.close()?;
        let parts = dir.path().join("out");
        let mut names: Vec<String> = std::fs::read_dir(&parts)
            .map_err(|e| Error::io(&parts, e))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(&parts, e))?;
        names.sort();
        assert_eq!(
            names,
            ["part-00000-0000000001.csv", "part-00000-0000000002.csv"]
        );
        let read = |n: &str| std::fs::read_to_string(parts.join(n)).unwrap_or_default();
        assert_eq!(read(&names[0]), "name,x\na,1.0\n");
        assert_eq!(read(&names[1]), "name,x\nd,4.0\n");
        Ok(())
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(matches!(
            CsvSink::new(CsvSinkOptions::new("")),
            Err(Error::Config { .. })
        ));
        let mut o = CsvSinkOptions::new("x.csv");
        o.delimiter = b'"';
        assert!(
            matches!(CsvSink::new(o), Err(Error::Config { key, .. }) if key == "csv sink.delimiter")
        );
    }

    #[test]
    fn write_before_open_is_an_error() {
        let mut sink = CsvSink::new(CsvSinkOptions::new("x.csv")).unwrap();
        assert!(sink
            .write(&batch(vec![Some("a")], vec![Some(1.0)]))
            .is_err());
    }
}
