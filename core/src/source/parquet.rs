//! A source over a Parquet file or a directory of Parquet files, bounded or following.
//!
//! * **Files.** `path` is one file, or a directory whose `*.parquet` files are read in name
//!   order; hidden files (`.name`) and `*.tmp` files are ignored, which is how
//!   [`ParquetSink`](crate::sink::parquet::ParquetSink) keeps its files invisible until they
//!   are complete. The schema comes from the footers (or the options); every file must have
//!   its column names and types in the same order (a column that is non-nullable in a file
//!   may be nullable in the schema), and a file that does not is an error naming it.
//! * **Codecs**: uncompressed, snappy, zstd, lz4 (both kinds), gzip and brotli pages are read.
//! * **Batches** hold at most `ctx.bounds.max_rows` rows and never span two files.
//! * **Position** = file (index and name) + rows of it already delivered; [`Source::seek`]
//!   resumes exactly there, skipping rows through the reader's row offset (pages and row
//!   groups before it are not decoded). A position belongs to one split: resume with the same
//!   parallelism.
//! * **Following** (`follow: true`, directories only): when every file has been read, the
//!   directory is listed again on each poll and new files are read as they appear; meanwhile
//!   the source is [`SourcePoll::Idle`]. Writers publish by rename, so a visible `.parquet`
//!   file is complete: a file whose footer cannot be read is an error naming it, never a
//!   half-loaded file. New files must sort after the files already seen (sequence numbers or
//!   timestamps in the names): a new file that sorts before the last file seen is skipped with
//!   a warning, because its place in the replay order has passed.
//!   [`stop_following`](Source::stop_following) makes the source list the directory one last
//!   time, read what it found and end.
//! * **Progress**: total = rows of this split's files (from their footers; files found while
//!   following add theirs), done = rows up to the current position.
//! * **Parallel reading**: [`ParquetSource::factory`] assigns the files of a directory to
//!   subtasks round-robin in name order, and the row groups of a single file round-robin.

mod files;
mod options;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;

use super::{Source, SourceContext, SourceFactory, SourcePoll, SourcePosition};
use crate::error::{Error, Result};
use crate::operator::TaskInfo;
use files::{corrupt, list_dir, open_reader, FileEntry};
pub use options::ParquetSourceOptions;
use options::Position;

/// Reads Parquet files as record batches; see the [module docs](self).
pub struct ParquetSource {
    options: Arc<ParquetSourceOptions>,
    schema: SchemaRef,
    is_dir: bool,
    subtask: usize,
    parallelism: usize,
    /// This split's files, in name order.
    files: Vec<Arc<FileEntry>>,
    /// Every file name of the directory seen so far (all splits), for following.
    known: BTreeSet<String>,
    /// Files of the directory assigned so far (all splits): the next file's round-robin number.
    assigned: usize,
    cursor: usize,
    row: u64,
    /// Rows of `files[..cursor]`.
    rows_before: u64,
    /// The open file reader; in a mutex only to make the source `Sync` (the reader is not),
    /// and only ever reached through `&mut self`, so it is never locked.
    reader: Option<Mutex<ParquetRecordBatchReader>>,
    stopping: bool,
}

impl std::fmt::Debug for ParquetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSource")
            .field("path", &self.options.path)
            .field("subtask", &self.subtask)
            .field("parallelism", &self.parallelism)
            .field("files", &self.files.len())
            .field("position", &self.position_value())
            .finish()
    }
}

impl Clone for ParquetSource {
    /// A clone resumes at the same position; its file reader is reopened on the next poll.
    fn clone(&self) -> Self {
        ParquetSource {
            options: self.options.clone(),
            schema: self.schema.clone(),
            is_dir: self.is_dir,
            subtask: self.subtask,
            parallelism: self.parallelism,
            files: self.files.clone(),
            known: self.known.clone(),
            assigned: self.assigned,
            cursor: self.cursor,
            row: self.row,
            rows_before: self.rows_before,
            reader: None,
            stopping: self.stopping,
        }
    }
}

impl ParquetSource {
    /// A source reading every file of `options.path` (one subtask). Lists the files and reads
    /// their footers now, so that the schema is known.
    pub fn new(options: ParquetSourceOptions) -> Result<Self> {
        let path = &options.path;
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let is_dir = meta.is_dir();
        if options.follow && !is_dir {
            return Err(Error::config(
                "parquet source.follow",
                format!(
                    "`{}` is a file; only a directory can be followed",
                    path.display()
                ),
            ));
        }
        let names = if is_dir {
            list_dir(path)?
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            vec![(name, path.clone())]
        };
        let mut files = Vec::with_capacity(names.len());
        for (name, p) in &names {
            files.push(Arc::new(FileEntry::load(name.clone(), p.clone())?));
        }
        let schema = match (&options.schema, files.first()) {
            (Some(s), _) => s.clone(),
            (None, Some(f)) => f.meta.schema().clone(),
            (None, None) => {
                return Err(Error::config(
                    "parquet source.schema",
                    format!(
                        "no .parquet file in `{}` to take the schema from; give the schema",
                        path.display()
                    ),
                ))
            }
        };
        for f in &files {
            f.check_schema(&schema)?;
        }
        Ok(ParquetSource {
            schema,
            is_dir,
            subtask: 0,
            parallelism: 1,
            known: names.into_iter().map(|(n, _)| n).collect(),
            assigned: files.len(),
            files,
            cursor: 0,
            row: 0,
            rows_before: 0,
            reader: None,
            stopping: false,
            options: Arc::new(options),
        })
    }

    /// The share of subtask `subtask` of `parallelism`: for a directory every
    /// `parallelism`-th file in name order (new files too, when following), for a single file
    /// every `parallelism`-th row group. Call it on a fresh source from [`ParquetSource::new`].
    pub fn for_subtask(mut self, subtask: usize, parallelism: usize) -> Result<Self> {
        if subtask >= parallelism || self.parallelism != 1 || self.cursor != 0 || self.row != 0 {
            return Err(Error::config(
                "parquet source.parallelism",
                format!(
                    "cannot take split {subtask} of {parallelism} from a source that is split \
                     {} of {} or has started",
                    self.subtask, self.parallelism
                ),
            ));
        }
        self.subtask = subtask;
        self.parallelism = parallelism;
        if self.is_dir {
            self.files = std::mem::take(&mut self.files)
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % parallelism == subtask)
                .map(|(_, f)| f)
                .collect();
        } else if let Some(f) = self.files.pop() {
            let groups = (0..f.meta.metadata().num_row_groups())
                .filter(|g| g % parallelism == subtask)
                .collect();
            self.files.push(Arc::new(f.with_row_groups(groups)));
        }
        Ok(self)
    }

    /// A factory for [`Dataflow::source_with`](crate::dataflow::Dataflow::source_with): each
    /// subtask lists the files and reads its round-robin share (see
    /// [`for_subtask`](ParquetSource::for_subtask)).
    pub fn factory(options: ParquetSourceOptions) -> SourceFactory {
        let options = Arc::new(options);
        Arc::new(move |task: &TaskInfo| {
            let source = ParquetSource::new((*options).clone())?
                .for_subtask(task.subtask, task.parallelism)?;
            Ok(Box::new(source) as Box<dyn Source>)
        })
    }

    /// Total rows of this split's files known so far.
    pub fn total_rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    fn position_value(&self) -> Position {
        match (self.files.get(self.cursor), self.files.last()) {
            (Some(f), _) => Position {
                file_index: self.cursor,
                file: Some(f.name.clone()),
                row: self.row,
            },
            // past the end: "after the last row of the last file" reads the same and survives
            // files found later while following
            (None, Some(last)) => Position {
                file_index: self.files.len() - 1,
                file: Some(last.name.clone()),
                row: last.rows,
            },
            (None, None) => Position {
                file_index: 0,
                file: None,
                row: 0,
            },
        }
    }

    /// Lists the directory for new files; returns how many joined this split.
    fn discover(&mut self, ctx: &SourceContext) -> Result<usize> {
        let last = self.known.last().cloned();
        let mut added = 0;
        for (name, path) in list_dir(&self.options.path)? {
            if self.known.contains(&name) {
                continue;
            }
            self.known.insert(name.clone());
            if last.as_ref().is_some_and(|l| &name < l) {
                tracing::warn!(
                    file = %path.display(),
                    "parquet source: skipping a new file that sorts before files already read"
                );
                continue;
            }
            let index = self.assigned;
            self.assigned += 1;
            if index % self.parallelism != self.subtask {
                continue;
            }
            let entry = FileEntry::load(name, path)?;
            entry.check_schema(&self.schema)?;
            ctx.progress
                .total
                .fetch_add(entry.rows, std::sync::atomic::Ordering::Relaxed);
            self.files.push(Arc::new(entry));
            added += 1;
        }
        Ok(added)
    }

    fn advance(&mut self) {
        if let Some(f) = self.files.get(self.cursor) {
            self.rows_before += f.rows;
        }
        self.cursor += 1;
        self.row = 0;
        self.reader = None;
    }

    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if Arc::ptr_eq(&batch.schema(), &self.schema) || *batch.schema() == *self.schema {
            return Ok(batch);
        }
        Ok(RecordBatch::try_new(
            self.schema.clone(),
            batch.columns().to_vec(),
        )?)
    }
}

impl Source for ParquetSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn open(&mut self, ctx: &SourceContext) -> Result<()> {
        if ctx.task.parallelism != self.parallelism || ctx.task.subtask != self.subtask {
            return Err(Error::config(
                "parquet source.parallelism",
                format!(
                    "this source is split {} of {} but runs as subtask {} of {}; use \
                     ParquetSource::factory for parallel reading",
                    self.subtask, self.parallelism, ctx.task.subtask, ctx.task.parallelism
                ),
            ));
        }
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        ctx.progress.total.store(self.total_rows(), relaxed);
        ctx.progress
            .done
            .store(self.rows_before + self.row, relaxed);
        Ok(())
    }

    fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
        loop {
            if let Some(reader) = &mut self.reader {
                let reader = reader.get_mut().unwrap_or_else(|p| p.into_inner());
                match reader.next() {
                    Some(Ok(batch)) if batch.num_rows() > 0 => {
                        self.row += batch.num_rows() as u64;
                        ctx.progress.done.store(
                            self.rows_before + self.row,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        return Ok(SourcePoll::Batch(self.conform(batch)?));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(corrupt(&self.files[self.cursor].path, e)),
                    None => {
                        self.advance();
                        continue;
                    }
                }
            }
            if let Some(f) = self.files.get(self.cursor) {
                if self.row >= f.rows {
                    self.advance();
                } else {
                    self.reader = Some(Mutex::new(open_reader(f, self.row, ctx.bounds.max_rows)?));
                }
                continue;
            }
            if !self.options.follow {
                return Ok(SourcePoll::End);
            }
            if self.discover(ctx)? > 0 {
                continue;
            }
            // the listing above was the last one when stopping
            return Ok(if self.stopping {
                SourcePoll::End
            } else {
                SourcePoll::Idle
            });
        }
    }

    fn position(&self) -> SourcePosition {
        SourcePosition::of(&self.position_value())
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<()> {
        let p: Position = position.get("parquet source")?;
        let Some(name) = p.file else {
            (self.cursor, self.row, self.rows_before, self.reader) = (0, 0, 0, None);
            return Ok(());
        };
        let index = match self.files.get(p.file_index) {
            Some(f) if f.name == name => Some(p.file_index),
            _ => self.files.iter().position(|f| f.name == name),
        };
        let Some(index) = index else {
            return Err(Error::config(
                "parquet source.position",
                format!(
                    "file `{name}` is not among the files of split {} of {} of `{}`",
                    self.subtask,
                    self.parallelism,
                    self.options.path.display()
                ),
            ));
        };
        if p.row > self.files[index].rows {
            return Err(Error::config(
                "parquet source.position",
                format!(
                    "row {} is past the end of `{name}` ({} rows)",
                    p.row, self.files[index].rows
                ),
            ));
        }
        self.rows_before = self.files[..index].iter().map(|f| f.rows).sum();
        self.cursor = index;
        self.row = p.row;
        self.reader = None;
        Ok(())
    }

    fn stop_following(&mut self) {
        self.stopping = true;
    }
}

#[cfg(test)]
mod tests;
