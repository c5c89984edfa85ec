//! A hybrid source: a bounded history, then a live (following) source, switched with no gap
//! and no duplicate. This is how one pipeline definition warms up on history and carries on
//! with the live stream (ARCHITECTURE §3, stream–batch unification).
//!
//! ```
//! use std::io::Write;
//! use eddy_core::prelude::*;
//! use eddy_core::source::file::CsvOptions;
//! use eddy_core::source::hybrid::HybridSource;
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("0001.csv"), "n\n1\n2\n")?;
//! std::fs::write(dir.path().join("0002.csv"), "n\n3\n4")?; // `4` may be half-written
//! let source = HybridSource::snapshot_then_tail(CsvOptions::new(dir.path()))?;
//! let out = MemorySink::new();
//! let flow = Dataflow::new(DataflowConfig::default());
//! flow.source("numbers", source).sink("out", out.clone());
//! let handle = flow.start()?;
//! let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join("0002.csv"))?;
//! f.write_all(b"0\n5\n")?; // completes `40`
//! drop(f);
//! handle.stop();
//! handle.join()?;
//! assert_eq!(out.num_rows(), 5); // 1, 2, 3, 40, 5
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The position is the phase and the inner source's position; in the history phase it also
//! carries the live source's start, so a restored job switches at exactly the same place.

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use super::file::{snapshot_end, FilePosition, FileSource, FileSourceOptions, Root, StopAt};
use super::{Source, SourceContext, SourcePoll, SourcePosition};
use crate::error::{Error, Result};
use crate::message::Epoch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Phase {
    History,
    Live,
}

#[derive(Debug, Serialize, Deserialize)]
struct HybridPosition {
    phase: Phase,
    inner: SourcePosition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    live_start: Option<SourcePosition>,
}

/// Reads `history` to its end, then `live`. Both must produce the same schema.
///
/// With concrete, cloneable inner sources (as from
/// [`snapshot_then_tail`](HybridSource::snapshot_then_tail)) it is `Clone + Sync` and goes to
/// `Dataflow::source`; with boxed sources ([`HybridSource::new`]) build it per subtask in a
/// factory for `Dataflow::source_with`.
#[derive(Debug, Clone)]
pub struct HybridSource<H = Box<dyn Source>, L = Box<dyn Source>> {
    history: H,
    live: L,
    phase: Phase,
    live_start: SourcePosition,
}

impl HybridSource {
    /// History, then live, from boxed sources; an error when their schemas differ.
    pub fn new(history: Box<dyn Source>, live: Box<dyn Source>) -> Result<Self> {
        Self::of(history, live)
    }
}

impl HybridSource<FileSource, FileSource> {
    /// The file case: a file or directory that is being appended to (and rolled over to new
    /// files) while the job starts. A snapshot is taken now: the history phase reads, bounded,
    /// every file as it is at this moment, the last one cut back to its last complete line;
    /// the live phase follows from exactly that byte of that file and carries on with later
    /// files. `stop_following` ends the live phase after draining, as for a followed source.
    ///
    /// The `follow` setting of `options` is ignored. Without an explicit schema it is inferred
    /// from the complete lines present now.
    pub fn snapshot_then_tail(options: impl Into<FileSourceOptions>) -> Result<Self> {
        let options: FileSourceOptions = options.into();
        let schema = match options.schema() {
            Some(s) => s.clone(),
            None => FileSource::new(options.clone().with_follow(true))?.schema(),
        };
        let options = options.with_schema(schema);
        let end =
            snapshot_end(&Root::new(options.path()), options.csv_bytes())?.unwrap_or_default();
        let history =
            FileSource::new(options.clone().with_follow(false))?.starting_at(FilePosition {
                at: Default::default(),
                stop: Some(StopAt {
                    file: end.file.clone(),
                    offset: end.offset,
                }),
            });
        let live = FileSource::new(options.with_follow(true))?.starting_at(FilePosition {
            at: end,
            stop: None,
        });
        Self::of(history, live)
    }
}

impl<H: Source, L: Source> HybridSource<H, L> {
    /// History, then live; an error when their schemas differ.
    pub fn of(history: H, live: L) -> Result<Self> {
        let (h, l) = (history.schema(), live.schema());
        if h.fields() != l.fields() {
            return Err(Error::schema(
                "hybrid source",
                format!("history and live schemas differ: {h:?} vs {l:?}"),
            ));
        }
        let live_start = live.position();
        Ok(HybridSource {
            history,
            live,
            phase: Phase::History,
            live_start,
        })
    }

    /// Whether the history has been read and the live source is being read.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }
}

impl<H: Source, L: Source> Source for HybridSource<H, L> {
    fn schema(&self) -> SchemaRef {
        self.history.schema()
    }

    fn open(&mut self, ctx: &SourceContext) -> Result<()> {
        // live first, so that the bounded history's progress total is what remains
        self.live.open(ctx)?;
        self.history.open(ctx)
    }

    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        if self.phase == Phase::History {
            match self.history.poll_next(ctx)? {
                SourcePoll::End => {
                    tracing::debug!(task = %ctx.task.task_name(), "hybrid source: history done, going live");
                    self.phase = Phase::Live;
                }
                other => return Ok(other),
            }
        }
        self.live.poll_next(ctx)
    }

    fn position(&self) -> SourcePosition {
        let pos = match self.phase {
            Phase::History => HybridPosition {
                phase: Phase::History,
                inner: self.history.position(),
                live_start: Some(self.live_start.clone()),
            },
            Phase::Live => HybridPosition {
                phase: Phase::Live,
                inner: self.live.position(),
                live_start: None,
            },
        };
        SourcePosition::of(&pos)
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        let pos: HybridPosition = position.get("hybrid source")?;
        match pos.phase {
            Phase::History => {
                self.history.seek(&pos.inner)?;
                if let Some(start) = pos.live_start {
                    self.live.seek(&start)?;
                    self.live_start = start;
                }
            }
            Phase::Live => self.live.seek(&pos.inner)?,
        }
        self.phase = pos.phase;
        Ok(())
    }

    fn stop_following(&mut self) {
        self.history.stop_following();
        self.live.stop_following();
    }

    fn on_checkpoint_complete(&mut self, epoch: Epoch, position: &SourcePosition) -> Result<()> {
        let pos: HybridPosition = position.get("hybrid source")?;
        match pos.phase {
            Phase::History => self.history.on_checkpoint_complete(epoch, &pos.inner),
            Phase::Live => self.live.on_checkpoint_complete(epoch, &pos.inner),
        }
    }
}

impl Source for Box<dyn Source> {
    fn schema(&self) -> SchemaRef {
        (**self).schema()
    }
    fn open(&mut self, ctx: &SourceContext) -> Result<()> {
        (**self).open(ctx)
    }
    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        (**self).poll_next(ctx)
    }
    fn position(&self) -> SourcePosition {
        (**self).position()
    }
    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        (**self).seek(position)
    }
    fn stop_following(&mut self) {
        (**self).stop_following()
    }
    fn on_checkpoint_complete(&mut self, epoch: Epoch, position: &SourcePosition) -> Result<()> {
        (**self).on_checkpoint_complete(epoch, position)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::Int64Type;
    use arrow::record_batch::RecordBatch;

    use super::*;
    use crate::source::file::CsvOptions;
    use crate::source::memory::MemorySource;

    fn batch(name: &str, values: Vec<i64>) -> RecordBatch {
        RecordBatch::try_from_iter([(name, Arc::new(Int64Array::from(values)) as _)]).unwrap()
    }

    /// Polls to the end: the values read and the position after each batch.
    fn drain(src: &mut impl Source, ctx: &SourceContext) -> Vec<(Vec<i64>, SourcePosition)> {
        src.open(ctx).unwrap();
        src.stop_following();
        let mut out = Vec::new();
        loop {
            match src.poll_next(ctx).unwrap() {
                SourcePoll::Batch(b) => out.push((
                    b.column(0).as_primitive::<Int64Type>().values().to_vec(),
                    src.position(),
                )),
                SourcePoll::End => return out,
                _ => {}
            }
        }
    }

    fn check_seeks<S: Source + Clone>(source: &S, ctx: &SourceContext) {
        let all = drain(&mut source.clone(), ctx);
        let flat: Vec<i64> = all.iter().flat_map(|(v, _)| v.clone()).collect();
        let mut before = 0;
        for (values, pos) in &all {
            before += values.len();
            let mut resumed = source.clone();
            resumed.seek(pos).unwrap();
            let rest: Vec<i64> = drain(&mut resumed, ctx)
                .into_iter()
                .flat_map(|(v, _)| v)
                .collect();
            assert_eq!(rest, flat[before..], "after {before} values, at {pos:?}");
        }
    }

    #[test]
    fn schemas_must_match() {
        let h = MemorySource::from_batches(vec![batch("a", vec![1])]).unwrap();
        let l = MemorySource::from_batches(vec![batch("b", vec![1])]).unwrap();
        assert!(HybridSource::new(Box::new(h), Box::new(l)).is_err());
    }

    #[test]
    fn seek_works_in_both_phases() {
        let ctx = SourceContext::standalone("hybrid");
        let h = MemorySource::from_batches(vec![batch("a", vec![1, 2]), batch("a", vec![3])]);
        let l = MemorySource::from_batches(vec![batch("a", vec![4]), batch("a", vec![5, 6])]);
        let hybrid = HybridSource::of(h.unwrap(), l.unwrap()).unwrap();
        check_seeks(&hybrid, &ctx);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.csv"), "n\n1\n2\n3\n").unwrap();
        std::fs::write(dir.path().join("2.csv"), "n\n4\n5\n6").unwrap();
        let files = HybridSource::snapshot_then_tail(CsvOptions::new(dir.path())).unwrap();
        std::fs::write(dir.path().join("3.csv"), "n\n7\n8\n").unwrap();
        let mut ctx = ctx;
        ctx.bounds.max_rows = 2;
        check_seeks(&files, &ctx);
        let all: Vec<i64> = drain(&mut files.clone(), &ctx)
            .into_iter()
            .flat_map(|(v, _)| v)
            .collect();
        assert_eq!(all, [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
