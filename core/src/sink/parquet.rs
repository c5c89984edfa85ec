//! A sink writing snappy-compressed Parquet files that readers never see half-written.
//!
//! Each subtask writes its file under a temporary hidden name, `.<name>.tmp` beside the final
//! path, and renames it into place on [`close`](Sink::close), after writing the footer and
//! fsyncing the file (and the directory after the rename). A
//! [`ParquetSource`](crate::source::parquet::ParquetSource) following the directory ignores
//! hidden and `*.tmp` files, so it only ever sees complete files.
//!
//! [`pre_commit`](Sink::pre_commit) closes the current row group and fsyncs the temporary file,
//! so everything written so far is durable; [`commit`](Sink::commit) does nothing yet. The file
//! becomes visible only on `close`; whole files per epoch, published on commit, come with the
//! checkpoint work.
//!
//! The schema is the schema of the first batch (the writer is created on the first write),
//! unless [`ParquetSinkOptions::schema`] gives it: then the file is created in
//! [`open`](Sink::open), and a subtask that receives no rows still writes a valid, empty file.
//! Without a schema, a subtask that receives no rows writes no file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

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

struct Open {
    path: PathBuf,
    tmp: PathBuf,
    /// In a mutex only to make the sink `Sync` (the writer is not); it is only ever reached
    /// through `&mut self`, so it is never locked.
    writer: Option<Mutex<ArrowWriter<File>>>,
}

fn exclusive<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|p| p.into_inner())
}

/// Writes record batches to a Parquet file (snappy), published by rename on close. Cheap to
/// clone; files are opened in [`open`](Sink::open).
pub struct ParquetSink {
    options: ParquetSinkOptions,
    open: Option<Open>,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("options", &self.options)
            .field("path", &self.open.as_ref().map(|o| &o.path))
            .finish()
    }
}

impl Clone for ParquetSink {
    /// A clone is an unopened sink with the same options.
    fn clone(&self) -> Self {
        ParquetSink {
            options: self.options.clone(),
            open: None,
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
            open: None,
        })
    }

    fn create_writer(&self, tmp: &Path, schema: SchemaRef) -> Result<ArrowWriter<File>> {
        create_parent(tmp)?;
        let file = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(self.options.max_row_group_rows))
            .build();
        ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| parquet_error(tmp, e))
    }
}

/// Ends the current row group, flushes and fsyncs.
fn sync(writer: &mut ArrowWriter<File>, tmp: &Path) -> Result<()> {
    writer.flush().map_err(|e| parquet_error(tmp, e))?;
    writer.sync().map_err(|e| Error::io(tmp, e))?;
    writer.inner().sync_data().map_err(|e| Error::io(tmp, e))
}

impl Sink for ParquetSink {
    fn open(&mut self, task: &TaskInfo) -> Result<()> {
        let path = subtask_path(&self.options.path, task);
        let tmp = temporary_path(&path);
        let writer = match &self.options.schema {
            Some(schema) => Some(Mutex::new(self.create_writer(&tmp, schema.clone())?)),
            None => None,
        };
        self.open = Some(Open { path, tmp, writer });
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut open = self
            .open
            .take()
            .ok_or_else(|| Error::Internal("parquet sink used before open".into()))?;
        let result = (|| {
            if open.writer.is_none() {
                open.writer = Some(Mutex::new(self.create_writer(&open.tmp, batch.schema())?));
            }
            match &mut open.writer {
                Some(w) => exclusive(w)
                    .write(batch)
                    .map_err(|e| parquet_error(&open.tmp, e)),
                None => Ok(()),
            }
        })();
        self.open = Some(open);
        result
    }

    fn pre_commit(&mut self, _epoch: Epoch) -> Result<()> {
        match &mut self.open {
            Some(Open {
                tmp,
                writer: Some(w),
                ..
            }) => sync(exclusive(w), tmp),
            _ => Ok(()),
        }
    }

    fn close(&mut self) -> Result<()> {
        let Some(Open { path, tmp, writer }) = self.open.take() else {
            return Ok(());
        };
        let Some(writer) = writer else {
            return Ok(());
        };
        let mut writer = writer.into_inner().unwrap_or_else(|p| p.into_inner());
        writer.finish().map_err(|e| parquet_error(&tmp, e))?;
        sync(&mut writer, &tmp)?;
        drop(writer);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&path)
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
