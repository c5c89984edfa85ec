//! A sink writing JSON lines (one object per record) through `arrow`'s JSON writer.
//!
//! Each subtask writes its own file (see [`JsonLinesSinkOptions::path`]). On a checkpoint
//! barrier [`pre_commit`](Sink::pre_commit) flushes and fsyncs what was written so far, so it
//! is durable; [`commit`](Sink::commit) does nothing yet: lines appear as they are written, and
//! a rollback to an earlier checkpoint is not undone in the file. Whole files per epoch,
//! published on commit, come with the checkpoint work.

use std::path::PathBuf;

use arrow::json::writer::LineDelimited;
use arrow::record_batch::RecordBatch;

use super::file_target::{arrow_error, check_path, subtask_path, FileTarget};
use super::Sink;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::operator::TaskInfo;

/// Settings of a [`JsonLinesSink`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct JsonLinesSinkOptions {
    /// The file to write; parent directories are created and an existing file is replaced.
    /// With parallelism 1 this is the file itself; with more, subtask `i` writes
    /// `stem-i.ext` beside it (`out/data.jsonl` → `out/data-0.jsonl`, …).
    pub path: PathBuf,
    /// Write null values as `"key": null`. Default: `false` (null fields are left out, which
    /// JSON readers with a schema read back as null).
    #[serde(default)]
    pub explicit_nulls: bool,
}

impl JsonLinesSinkOptions {
    /// Options writing `path`, leaving null fields out.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonLinesSinkOptions {
            path: path.into(),
            explicit_nulls: false,
        }
    }
}

/// Writes record batches as JSON lines. Cheap to clone; the file is created in
/// [`open`](Sink::open).
#[derive(Debug)]
pub struct JsonLinesSink {
    options: JsonLinesSinkOptions,
    file: Option<FileTarget>,
}

impl Clone for JsonLinesSink {
    /// A clone is an unopened sink with the same options.
    fn clone(&self) -> Self {
        JsonLinesSink {
            options: self.options.clone(),
            file: None,
        }
    }
}

impl JsonLinesSink {
    /// A sink with checked `options`.
    pub fn new(options: JsonLinesSinkOptions) -> Result<Self> {
        check_path("jsonl sink.path", &options.path)?;
        Ok(JsonLinesSink {
            options,
            file: None,
        })
    }

    fn target(&mut self) -> Result<&mut FileTarget> {
        self.file
            .as_mut()
            .ok_or_else(|| Error::Internal("jsonl sink used before open".into()))
    }
}

impl Sink for JsonLinesSink {
    fn open(&mut self, task: &TaskInfo) -> Result<()> {
        self.file = Some(FileTarget::create(subtask_path(&self.options.path, task))?);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let explicit_nulls = self.options.explicit_nulls;
        let target = self.target()?;
        let path = target.path().to_path_buf();
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(explicit_nulls)
            .build::<_, LineDelimited>(target.writer());
        w.write(batch).map_err(|e| arrow_error(&path, e))?;
        w.finish().map_err(|e| arrow_error(&path, e))
    }

    fn pre_commit(&mut self, _epoch: Epoch) -> Result<()> {
        self.target()?.sync()
    }

    fn close(&mut self) -> Result<()> {
        match self.file.take() {
            Some(mut t) => t.sync(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{BooleanArray, Int64Array};

    use super::*;

    fn task() -> TaskInfo {
        TaskInfo {
            operator: Arc::from("jsonl"),
            subtask: 0,
            parallelism: 1,
        }
    }

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from(vec![Some(1), None])) as _),
            ("b", Arc::new(BooleanArray::from(vec![true, false])) as _),
        ])
        .unwrap()
    }

    #[test]
    fn writes_lines() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("out.jsonl");
        let mut sink = JsonLinesSink::new(JsonLinesSinkOptions::new(&path))?;
        sink.open(&task())?;
        sink.write(&batch())?;
        sink.pre_commit(Epoch(1))?;
        sink.write(&batch())?;
        sink.close()?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let line = "{\"n\":1,\"b\":true}\n{\"b\":false}\n";
        assert_eq!(text, format!("{line}{line}"));
        Ok(())
    }

    #[test]
    fn explicit_nulls() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("out.jsonl");
        let mut options = JsonLinesSinkOptions::new(&path);
        options.explicit_nulls = true;
        let mut sink = JsonLinesSink::new(options)?;
        sink.open(&task())?;
        sink.write(&batch())?;
        sink.close()?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        assert_eq!(text, "{\"n\":1,\"b\":true}\n{\"n\":null,\"b\":false}\n");
        Ok(())
    }

    #[test]
    fn clone_is_unopened() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let mut sink = JsonLinesSink::new(JsonLinesSinkOptions::new(dir.path().join("a.jsonl")))?;
        sink.open(&task())?;
        let mut copy = sink.clone();
        assert!(copy.write(&batch()).is_err());
        Ok(())
    }
}
