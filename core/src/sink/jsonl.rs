//! A sink writing JSON lines (one object per record) through `arrow`'s JSON writer.
//!
//! Without checkpoints each subtask writes its own file (see [`JsonLinesSinkOptions::path`]).
//! In a checkpointed job the sink is two-phase: each epoch goes to its own part file, published
//! on [`commit`](Sink::commit) (see [the sink docs](super#two-phase-file-output)).

use std::path::PathBuf;

use arrow::json::writer::LineDelimited;
use arrow::record_batch::RecordBatch;

use super::file_target::{arrow_error, check_path};
use super::text_output::{Durable, TextOutput};
use super::Sink;
use crate::error::Result;
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
    /// Which subtasks' files are fsynced when they close. Default: every one.
    #[serde(default)]
    pub durable: Durable,
}

impl JsonLinesSinkOptions {
    /// Options writing `path`, leaving null fields out.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonLinesSinkOptions {
            path: path.into(),
            explicit_nulls: false,
            durable: Durable::Every,
        }
    }
}

/// Writes record batches as JSON lines. Cheap to clone; the file is created in
/// [`open`](Sink::open).
#[derive(Debug, Clone)]
pub struct JsonLinesSink {
    options: JsonLinesSinkOptions,
    output: TextOutput,
}

impl JsonLinesSink {
    /// A sink with checked `options`.
    pub fn new(options: JsonLinesSinkOptions) -> Result<Self> {
        check_path("jsonl sink.path", &options.path)?;
        let output = TextOutput::new(options.path.clone(), options.durable);
        Ok(JsonLinesSink { options, output })
    }
}

impl Sink for JsonLinesSink {
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
        let (target, _) = self.output.target("jsonl")?;
        let path = target.path().to_path_buf();
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(self.options.explicit_nulls)
            .build::<_, LineDelimited>(target.writer());
        w.write(batch).map_err(|e| arrow_error(&path, e))?;
        w.finish().map_err(|e| arrow_error(&path, e))
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

    use arrow::array::{BooleanArray, Int64Array};

    use super::*;
    use crate::error::Error;

    fn task() -> TaskInfo {
        TaskInfo {
            operator: Arc::from("jsonl"),
            subtask: 0,
            parallelism: 1,
            key_groups: crate::keys::DEFAULT_KEY_GROUPS,
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
    fn checkpointed_jobs_get_one_part_per_epoch_published_on_commit() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let mut sink = JsonLinesSink::new(JsonLinesSinkOptions::new(dir.path().join("out.jsonl")))?;
        sink.on_checkpointing(None)?;
        sink.open(&task())?;
        sink.write(&batch())?;
        sink.pre_commit(Epoch(1))?;
        let part = |e: u64| dir.path().join(format!("out/part-00000-{e:010}.jsonl"));
        assert!(!part(1).exists(), "visible before its checkpoint completed");
        sink.commit(Epoch(1))?;
        sink.write(&batch())?;
        sink.close()?;
        let line = "{\"n\":1,\"b\":true}\n{\"b\":false}\n";
        for e in [1, 2] {
            let text = std::fs::read_to_string(part(e)).map_err(|err| Error::io(part(e), err))?;
            assert_eq!(text, line);
        }
        assert!(!dir.path().join("out.jsonl").exists());
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
