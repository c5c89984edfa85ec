//! [`FileSource`]: records from the [`LineReader`] decoded into micro-batches, with dead
//! letters, linger, positions, progress and parallel splits.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use super::csv::CsvDecoder;
use super::decode::BatchBuilder;
use super::infer::infer_schema;
use super::jsonl::JsonDecoder;
use super::reader::{LineReader, Next, ReadPos, ReaderConfig, Root, StopAt};
use super::split::file_split;
use super::FileSourceOptions;
use crate::error::{Error, Result};
use crate::operator::TaskInfo;
use crate::source::{Rejected, Source, SourceContext, SourceFactory, SourcePoll, SourcePosition};

/// A file source's position: the next record (file, byte offset, lines before it) and, for a
/// bounded slice of the input (a split, a hybrid's history), where reading stops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FilePosition {
    #[serde(flatten)]
    pub(crate) at: ReadPos,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stop: Option<StopAt>,
}

enum Decoder {
    Csv {
        decoder: Box<CsvDecoder>,
        header: bool,
    },
    Json(JsonDecoder),
}

struct Running {
    reader: LineReader,
    builder: BatchBuilder,
    decoder: Decoder,
    first_row_at: Option<Instant>,
}

/// The engine behind [`CsvSource`](super::CsvSource) and
/// [`JsonLinesSource`](super::JsonLinesSource): one file or a directory, bounded or followed,
/// decoded into micro-batches. Cheap to clone before [`open`](Source::open): a clone shares the
/// options and schema and starts from the clone's position; it never shares an open file.
pub struct FileSource {
    options: Arc<FileSourceOptions>,
    schema: SchemaRef,
    split: Option<(usize, usize)>,
    start: Option<FilePosition>,
    emitted: FilePosition,
    stopping: bool,
    running: Option<Running>,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.options.path())
            .field("split", &self.split)
            .field("position", &self.emitted)
            .finish()
    }
}

impl Clone for FileSource {
    fn clone(&self) -> Self {
        FileSource {
            options: self.options.clone(),
            schema: self.schema.clone(),
            split: self.split,
            start: self
                .start
                .clone()
                .or_else(|| self.running.as_ref().map(|_| self.emitted.clone())),
            emitted: self.emitted.clone(),
            stopping: self.stopping,
            running: None,
        }
    }
}

impl FileSource {
    /// A source over `options`; infers the schema now when none is given.
    pub fn new(options: impl Into<FileSourceOptions>) -> Result<Self> {
        let options: FileSourceOptions = options.into();
        options.validate()?;
        let schema = match options.schema() {
            Some(s) => s.clone(),
            None => infer_schema(&options)?,
        };
        BatchBuilder::new(schema.clone(), 1)?;
        Ok(FileSource {
            options: Arc::new(options),
            schema,
            split: None,
            start: None,
            emitted: FilePosition::default(),
            stopping: false,
            running: None,
        })
    }

    /// A factory for [`Dataflow::source_with`](crate::dataflow::Dataflow::source_with): subtask
    /// `i` of `p` reads its split (see [`FileSourceOptions`]); with `p = 1`, the whole input.
    /// The schema is inferred per subtask, from the same rows, so all agree.
    pub fn factory(options: impl Into<FileSourceOptions>) -> SourceFactory {
        let options: FileSourceOptions = options.into();
        Arc::new(move |task: &TaskInfo| {
            let source = FileSource::new(options.clone())?.with_split(task)?;
            Ok(Box::new(source) as Box<dyn Source>)
        })
    }

    /// This source restricted to the split of `task` (a no-op for one subtask).
    pub(crate) fn with_split(mut self, task: &TaskInfo) -> Result<Self> {
        if task.parallelism > 1 {
            if self.options.follow() {
                return Err(Error::config(
                    format!("{}.parallelism", task.operator),
                    "a followed file source is read by one subtask; set parallelism to 1",
                ));
            }
            self.split = Some((task.subtask, task.parallelism));
        }
        Ok(self)
    }

    /// The options this source reads with.
    pub fn options(&self) -> &FileSourceOptions {
        &self.options
    }

    /// This source starting at `start` instead of the beginning: a hybrid's history (from the
    /// beginning up to its stop point) or its live tail (from where the history stops).
    pub(crate) fn starting_at(mut self, start: FilePosition) -> Self {
        self.emitted = start.clone();
        self.start = Some(start);
        self
    }

    fn reader_config(&self) -> ReaderConfig {
        let root = Root::new(self.options.path());
        let assign = match (&root, self.split) {
            (Root::Dir(_), Some(split)) => Some(split),
            _ => None,
        };
        ReaderConfig {
            root,
            follow: self.options.follow(),
            csv: self.options.csv_bytes(),
            chunk_size: self.options.chunk_size(),
            max_record: self.options.max_record_bytes(),
            assign,
        }
    }

    /// Where reading starts without a seek: the whole input, or this subtask's split. A
    /// stream (FIFO, device) cannot be split: subtask 0 reads it all, the others nothing.
    fn initial(&self, cfg: &ReaderConfig) -> Result<FilePosition> {
        match (&cfg.root, self.split) {
            (Root::File(path), Some((i, _))) if is_stream(path) => Ok(FilePosition {
                at: ReadPos::default(),
                stop: (i > 0).then(|| StopAt {
                    file: String::new(),
                    offset: 0,
                }),
            }),
            (Root::File(path), Some((i, p))) => {
                let (at, stop) = file_split(path, cfg.csv, i, p)?;
                Ok(FilePosition { at, stop })
            }
            _ => Ok(FilePosition::default()),
        }
    }

    /// Bytes this (bounded) source will read from `from`, for the progress gauge.
    fn total_bytes(&self, cfg: &ReaderConfig, from: &FilePosition) -> Result<u64> {
        let size = |name: &str| std::fs::metadata(cfg.root.path_of(name)).map_or(0, |m| m.len());
        let mut total = 0;
        for (i, name) in cfg.root.list(false)?.iter().enumerate() {
            if cfg.assign.is_some_and(|(me, of)| i % of != me) || *name < from.at.file {
                continue;
            }
            let mut len = size(name);
            if let Some(stop) = from.stop.as_ref() {
                if *name > stop.file {
                    continue;
                }
                if *name == stop.file {
                    len = len.min(stop.offset);
                }
            }
            if *name == from.at.file {
                len = len.saturating_sub(from.at.offset);
            }
            total += len;
        }
        Ok(total)
    }

    fn emit(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        let running = self.running.as_mut().ok_or_else(not_open)?;
        let batch = running.builder.finish()?;
        running.first_row_at = None;
        self.emitted = FilePosition {
            at: running.reader.pos().clone(),
            stop: running.reader.stop().cloned(),
        };
        ctx.progress
            .done
            .store(running.reader.consumed(), Ordering::Relaxed);
        Ok(SourcePoll::Batch(batch))
    }

    /// Nothing is pending: the position may move past skipped and rejected records.
    fn settle(&mut self, ctx: &SourceContext) {
        if let Some(running) = self.running.as_ref() {
            self.emitted = FilePosition {
                at: running.reader.pos().clone(),
                stop: running.reader.stop().cloned(),
            };
            ctx.progress
                .done
                .store(running.reader.consumed(), Ordering::Relaxed);
        }
    }
}

/// Whether `path` is a FIFO, device or socket: readable once, front to back, not seekable.
pub(crate) fn is_stream(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

fn not_open() -> Error {
    Error::Internal("file source polled before open".into())
}

impl Source for FileSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn open(&mut self, ctx: &SourceContext) -> Result<()> {
        let cfg = self.reader_config();
        let start = match self.start.take() {
            Some(p) => p,
            None => self.initial(&cfg)?,
        };
        if !cfg.follow {
            let total = self.total_bytes(&cfg, &start)?;
            ctx.progress.total.store(total, Ordering::Relaxed);
        }
        let decoder = match &*self.options {
            FileSourceOptions::Csv(c) => Decoder::Csv {
                decoder: Box::new(CsvDecoder::new(c.delimiter, c.quote)),
                header: c.header,
            },
            FileSourceOptions::JsonLines(_) => Decoder::Json(JsonDecoder::new(&self.schema)),
        };
        let max_rows = ctx.bounds.max_rows.max(1);
        let mut reader = LineReader::new(cfg, start.at.clone(), start.stop.clone());
        if self.stopping {
            reader.stop_following();
        }
        self.running = Some(Running {
            reader,
            builder: BatchBuilder::new(self.schema.clone(), max_rows)?,
            decoder,
            first_row_at: None,
        });
        self.emitted = start;
        Ok(())
    }

    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        if self.running.is_none() {
            self.open(ctx)?;
        }
        let max_rows = ctx.bounds.max_rows.max(1);
        loop {
            let running = self.running.as_mut().ok_or_else(not_open)?;
            if running.builder.rows() >= max_rows {
                return self.emit(ctx);
            }
            let Running {
                reader,
                builder,
                decoder,
                first_row_at,
            } = running;
            match reader.next()? {
                Next::Record(rec) => {
                    let decoded = match decoder {
                        Decoder::Csv { header: true, .. } if rec.first_in_file => Ok(false),
                        Decoder::Csv { decoder, .. } => decoder.decode(rec.bytes, builder),
                        Decoder::Json(decoder) => decoder.decode(rec.bytes, builder),
                    };
                    match decoded {
                        Ok(true) => {
                            first_row_at.get_or_insert_with(Instant::now);
                        }
                        Ok(false) => {}
                        Err((column, reason)) => ctx.reject(Rejected {
                            source: rec.path.display().to_string(),
                            line: rec.line,
                            column,
                            raw: String::from_utf8_lossy(rec.bytes).into_owned(),
                            reason,
                        })?,
                    }
                }
                Next::Malformed(rec, reason) => ctx.reject(Rejected {
                    source: rec.path.display().to_string(),
                    line: rec.line,
                    column: 0,
                    raw: String::from_utf8_lossy(rec.bytes).into_owned(),
                    reason,
                })?,
                Next::Idle => {
                    let lingered = first_row_at.is_some_and(|t| t.elapsed() >= ctx.bounds.linger);
                    if builder.rows() > 0 && lingered {
                        return self.emit(ctx);
                    }
                    if builder.rows() == 0 {
                        self.settle(ctx);
                    }
                    return Ok(SourcePoll::Idle);
                }
                Next::End => {
                    if builder.rows() > 0 {
                        return self.emit(ctx);
                    }
                    self.settle(ctx);
                    return Ok(SourcePoll::End);
                }
            }
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::of(&self.emitted)
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        let pos: FilePosition =
            position.get(&format!("file source {}", self.options.path().display()))?;
        self.emitted = pos.clone();
        match self.running.as_mut() {
            Some(running) => {
                running.reader.seek(pos.at, pos.stop);
                running.builder.clear();
                running.first_row_at = None;
            }
            None => self.start = Some(pos),
        }
        Ok(())
    }

    fn stop_following(&mut self) {
        self.stopping = true;
        if let Some(running) = self.running.as_mut() {
            running.reader.stop_following();
        }
    }
}
