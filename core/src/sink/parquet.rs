//! A sink writing snappy-compressed Parquet files that readers never see half-written.
//!
//! **Without checkpoints** each subtask writes its file under a temporary hidden name,
//! `.<name>.tmp` beside the final path, and renames it into place on [`close`](Sink::close),
//! after writing the footer and fsyncing the file (and the directory after the rename).
//! [`pre_commit`](Sink::pre_commit) closes the current row group and fsyncs the temporary file.
//!
//! **In a checkpointed job** the sink is two-phase like the text sinks (see
//! [the sink docs](super#two-phase-file-output)): the rows of each epoch go to their own
//! complete Parquet file, `DIR/part-<subtask>-<epoch>.parquet`, whose footer is written and
//! fsynced by `pre_commit` under a hidden pending name and which `commit` publishes by rename.
//! An epoch that received no rows writes no file.
//!
//! A [`ParquetSource`](crate::source::parquet::ParquetSource) following the directory ignores
//! hidden and `*.tmp` files, so it only ever sees complete files.
//!
//! The schema is the schema of the first batch (each file's writer is created on its first
//! write), unless [`ParquetSinkOptions::schema`] gives it. Without checkpoints, a given schema
//! creates the file in [`open`](Sink::open), so a subtask that receives no rows still writes a
//! valid, empty file; without a schema it writes no file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::epoch_parts::{EpochParts, PartFile};
use super::file_target::{check_path, create_parent, parquet_error, subtask_path, sync_dir};
use super::Sink;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::operator::TaskInfo;

/// Settings of a [`ParquetSink`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ParquetSinkOptions {
    /// The file to write; parent directories are created and an existing file is replaced (on
    /// close). With parallelism 1 this is the file itself; with more, subtask `i` writes
    /// `stem-i.ext` beside it (`out/data.parquet` → `out/data-0.parquet`, …).
    pub path: PathBuf,
    /// Most rows per row group. Default: 1 048 576. A checkpoint also ends the current row
    /// group.
    #[serde(default = "default_row_group_rows")]
    pub max_row_group_rows: usize,
    /// The schema of the file. Default: `None`, the schema of the first batch.
    #[serde(skip)]
    pub schema: Option<SchemaRef>,
}

fn default_row_group_rows() -> usize {
    1 << 20
}

impl ParquetSinkOptions {
    /// Options writing `path` with row groups of at most 1 048 576 rows.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ParquetSinkOptions {
            path: path.into(),
            max_row_group_rows: default_row_group_rows(),
            schema: None,
        }
    }
}

/// The temporary name a file is written under: `.<name>.tmp` in the same directory.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// A Parquet file being written: a part of an epoch, or a subtask's temporary file.
struct ParquetPart {
    path: PathBuf,
    /// In a mutex only to make the sink `Sync` (the writer is not); it is only ever reached
    /// through `&mut self`, so it is never locked.
    writer: Mutex<ArrowWriter<File>>,
}

impl ParquetPart {
    fn create(path: PathBuf, schema: SchemaRef, options: &ParquetSinkOptions) -> Result<Self> {
        create_parent(&path)?;
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(options.max_row_group_rows))
            .build();
        let writer =
            ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| parquet_error(&path, e))?;
        Ok(ParquetPart {
            path,
            writer: Mutex::new(writer),
        })
    }

    fn writer(&mut self) -> &mut ArrowWriter<File> {
        self.writer.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let path = &self.path;
        let writer = self.writer.get_mut().unwrap_or_else(|p| p.into_inner());
        writer.write(batch).map_err(|e| parquet_error(path, e))
    }

    /// Ends the current row group, flushes and fsyncs: what was written is durable.
    fn sync(&mut self) -> Result<()> {
        let path = self.path.clone();
        let writer = self.writer();
        writer.flush().map_err(|e| parquet_error(&path, e))?;
        writer.sync().map_err(|e| Error::io(&path, e))?;
        writer.inner().sync_data().map_err(|e| Error::io(&path, e))
    }
}

impl PartFile for ParquetPart {
    fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the footer and fsyncs.
    fn seal(&mut self) -> Result<()> {
        let path = self.path.clone();
        self.writer()
            .finish()
            .map_err(|e| parquet_error(&path, e))?;
        self.sync()
    }
}

/// Where one subtask writes.
enum Output {
    /// One file per subtask, written under `tmp` and renamed to `path` on close; the writer
    /// is created with the schema (in `open` when the options give it, else on first write).
    File {
        path: PathBuf,
        tmp: PathBuf,
        part: Option<ParquetPart>,
    },
    /// A checkpointed job: one part file per epoch, published on commit.
    Parts(EpochParts<ParquetPart>),
}

/// Writes record batches to Parquet files (snappy): one per subtask published by rename on
/// close, or one per epoch published on commit in a checkpointed job. Cheap to clone; files
/// are opened in [`open`](Sink::open).
pub struct ParquetSink {
    options: ParquetSinkOptions,
    /// Set by [`Sink::on_checkpointing`]: write epoch parts, reconciled with this checkpoint.
    checkpointing: Option<Option<Epoch>>,
    output: Option<Output>,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("options", &self.options)
            .field("checkpointing", &self.checkpointing)
            .finish()
    }
}

impl Clone for ParquetSink {
    /// A clone is an unopened sink with the same options.
    fn clone(&self) -> Self {
        ParquetSink {
            options: self.options.clone(),
            checkpointing: None,
            output: None,
        }
    }
}

impl ParquetSink {
    /// A sink with checked `options`.
    pub fn new(options: ParquetSinkOptions) -> Result<Self> {
        check_path("parquet sink.path", &options.path)?;
        if options.max_row_group_rows == 0 {
            return Err(Error::config(
                "parquet sink.max-row-group-rows",
                "must be at least 1",
            ));
        }
        Ok(ParquetSink {
            options,
            checkpointing: None,
            output: None,
        })
    }
}

impl Sink for ParquetSink {
    /// Epoch parts: what a recovery does not cover is deleted.
    fn withdraws_uncommitted(&self) -> bool {
        true
    }

    fn on_checkpointing(&mut self, restored: Option<Epoch>) -> Result<()> {
        self.checkpointing = Some(restored);
        Ok(())
    }

    fn open(&mut self, task: &TaskInfo) -> Result<()> {
        let output = match self.checkpointing {
            Some(restored) => Output::Parts(EpochParts::open(
                &self.options.path,
                task.subtask,
                restored,
            )?),
            None => {
                let path = subtask_path(&self.options.path, task);
                let tmp = temporary_path(&path);
                let part = match &self.options.schema {
                    Some(schema) => Some(ParquetPart::create(
                        tmp.clone(),
                        schema.clone(),
                        &self.options,
                    )?),
                    None => None,
                };
                Output::File { path, tmp, part }
            }
        };
        self.output = Some(output);
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let options = &self.options;
        let schema = || options.schema.clone().unwrap_or_else(|| batch.schema());
        let part = match self.output.as_mut() {
            None => return Err(Error::Internal("parquet sink used before open".into())),
            Some(Output::Parts(parts)) => {
                parts
                    .writer_with(|path| ParquetPart::create(path, schema(), options))?
                    .0
            }
            Some(Output::File { tmp, part, .. }) => match part {
                Some(part) => part,
                None => part.insert(ParquetPart::create(tmp.clone(), schema(), options)?),
            },
        };
        part.write(batch)
    }

    fn pre_commit(&mut self, epoch: Epoch) -> Result<()> {
        match self.output.as_mut() {
            Some(Output::Parts(parts)) => parts.pre_commit(epoch),
            Some(Output::File {
                part: Some(part), ..
            }) => part.sync(),
            _ => Ok(()),
        }
    }

    fn commit(&mut self, epoch: Epoch) -> Result<()> {
        match self.output.as_mut() {
            Some(Output::Parts(parts)) => parts.commit(epoch),
            _ => Ok(()),
        }
    }

    fn close(&mut self) -> Result<()> {
        match self.output.take() {
            Some(Output::Parts(mut parts)) => parts.close(),
            Some(Output::File {
                path,
                tmp,
                part: Some(mut part),
            }) => {
                part.seal()?;
                drop(part);
                std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
                sync_dir(&path)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn task() -> TaskInfo {
        TaskInfo {
            operator: Arc::from("pq"),
            subtask: 0,
            parallelism: 1,
            key_groups: crate::keys::DEFAULT_KEY_GROUPS,
        }
    }

    fn batch(n: i64) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from_iter_values(0..n)) as _),
            (
                "s",
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| (i % 3 != 0).then(|| i.to_string())),
                )) as _,
            ),
        ])
        .unwrap()
    }

    fn read(path: &Path) -> (Vec<RecordBatch>, usize) {
        let file = File::open(path).unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let groups = b.metadata().num_row_groups();
        let batches = b
            .build()
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>();
        (batches.unwrap(), groups)
    }

    #[test]
    fn visible_only_after_close() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("x/out.parquet");
        let mut sink = ParquetSink::new(ParquetSinkOptions::new(&path))?;
        sink.open(&task())?;
        sink.write(&batch(10))?;
        sink.pre_commit(Epoch(1))?;
        sink.write(&batch(5))?;
        assert!(!path.exists());
        assert!(dir.path().join("x/.out.parquet.tmp").exists());
        sink.close()?;
        assert!(!dir.path().join("x/.out.parquet.tmp").exists());
        let (batches, groups) = read(&path);
        assert_eq!(groups, 2, "the checkpoint ends a row group");
        let all = arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
        let want = arrow::compute::concat_batches(&batch(1).schema(), &[batch(10), batch(5)])?;
        assert_eq!(all, want);
        Ok(())
    }

    #[test]
    fn checkpointed_epochs_are_complete_files_published_on_commit() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let parts = dir.path().join("out");
        let mut sink = ParquetSink::new(ParquetSinkOptions::new(dir.path().join("out.parquet")))?;
        sink.on_checkpointing(None)?;
        sink.open(&task())?;
        sink.write(&batch(10))?;
        sink.pre_commit(Epoch(1))?;
        sink.pre_commit(Epoch(2))?; // no rows: no file
        let part = |e: u64| parts.join(format!("part-00000-{e:010}.parquet"));
        assert!(parts.join(".pending-00000-0000000001.parquet").exists());
        assert!(!part(1).exists(), "visible before its checkpoint completed");
        sink.commit(Epoch(2))?;
        assert_eq!(read(&part(1)).0, vec![batch(10)]);
        sink.write(&batch(5))?;
        sink.close()?;
        assert_eq!(read(&part(3)).0, vec![batch(5)]);
        let names: Vec<String> = std::fs::read_dir(&parts)
            .map_err(|e| Error::io(&parts, e))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io(&parts, e))?;
        assert_eq!(names.len(), 2, "{names:?}");
        Ok(())
    }

    #[test]
    fn no_rows_and_no_schema_writes_nothing_but_a_schema_writes_an_empty_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("empty.parquet");
        let mut sink = ParquetSink::new(ParquetSinkOptions::new(&path))?;
        sink.open(&task())?;
        sink.pre_commit(Epoch(1))?;
        sink.close()?;
        assert!(!path.exists());
        let mut options = ParquetSinkOptions::new(&path);
        options.schema = Some(Arc::new(Schema::new(vec![Field::new(
            "n",
            DataType::Int64,
            true,
        )])));
        let mut sink = ParquetSink::new(options)?;
        sink.open(&task())?;
        sink.close()?;
        let (batches, _) = read(&path);
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
        Ok(())
    }

    #[test]
    fn row_group_size_and_checks() -> Result<()> {
        assert!(ParquetSink::new(ParquetSinkOptions {
            max_row_group_rows: 0,
            ..ParquetSinkOptions::new("a.parquet")
        })
        .is_err());
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("rg.parquet");
        let mut sink = ParquetSink::new(ParquetSinkOptions {
            max_row_group_rows: 4,
            ..ParquetSinkOptions::new(&path)
        })?;
        sink.open(&task())?;
        sink.write(&batch(10))?;
        sink.close()?;
        assert_eq!(read(&path).1, 3);
        assert_eq!(
            temporary_path(Path::new("d/a.parquet")),
            PathBuf::from("d/.a.parquet.tmp")
        );
        Ok(())
    }
}
