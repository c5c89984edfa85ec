//! The files of a [`ParquetSource`](super::ParquetSource): listing a directory, reading a
//! footer, opening a reader at a row offset.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};

use crate::error::{Error, Result};

/// One file of a split: its footer and the rows this split reads of it.
#[derive(Debug)]
pub(super) struct FileEntry {
    /// File name, the key of positions.
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) meta: ArrowReaderMetadata,
    /// The row groups to read (`None`: all of them).
    pub(super) row_groups: Option<Vec<usize>>,
    /// Rows in those row groups.
    pub(super) rows: u64,
}

impl FileEntry {
    /// Reads the footer of `path`.
    pub(super) fn load(name: String, path: PathBuf) -> Result<Self> {
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| corrupt(&path, e))?;
        let rows = meta
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as u64)
            .sum();
        Ok(FileEntry {
            name,
            path,
            meta,
            row_groups: None,
            rows,
        })
    }

    /// The same file, reading only `groups`.
    pub(super) fn with_row_groups(&self, groups: Vec<usize>) -> Self {
        let all = self.meta.metadata().row_groups();
        let rows = groups
            .iter()
            .filter_map(|&g| all.get(g))
            .map(|g| g.num_rows().max(0) as u64)
            .sum();
        FileEntry {
            name: self.name.clone(),
            path: self.path.clone(),
            meta: self.meta.clone(),
            row_groups: Some(groups),
            rows,
        }
    }

    /// Fails, naming the file, unless its fields have the names and types of `schema`'s, in
    /// the same order (a non-nullable field of the file may be nullable in `schema`).
    pub(super) fn check_schema(&self, schema: &SchemaRef) -> Result<()> {
        let mine = self.meta.schema();
        let fits = mine.fields().len() == schema.fields().len()
            && mine.fields().iter().zip(schema.fields()).all(|(f, s)| {
                f.name() == s.name()
                    && f.data_type() == s.data_type()
                    && (s.is_nullable() || !f.is_nullable())
            });
        if !fits {
            return Err(Error::schema(
                format!("parquet source `{}`", self.path.display()),
                format!(
                    "the file's schema {:?} differs from the source schema {:?}",
                    mine.fields(),
                    schema.fields()
                ),
            ));
        }
        Ok(())
    }
}

/// A file that cannot be decoded: an error naming it.
pub(super) fn corrupt(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a readable Parquet file: {e}"),
        ),
    )
}

/// The visible `*.parquet` files of `dir` (not hidden, not `*.tmp`), in name order.
pub(super) fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".tmp") || !name.ends_with(".parquet") {
            continue;
        }
        let path = entry.path();
        if path.is_file() {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

/// A reader over `file` delivering at most `batch_rows` rows per batch, starting at row `row`
/// of the selected row groups.
pub(super) fn open_reader(
    file: &FileEntry,
    row: u64,
    batch_rows: usize,
) -> Result<ParquetRecordBatchReader> {
    let f = File::open(&file.path).map_err(|e| Error::io(&file.path, e))?;
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(f, file.meta.clone())
        .with_batch_size(batch_rows.max(1));
    if let Some(groups) = &file.row_groups {
        builder = builder.with_row_groups(groups.clone());
    }
    if row > 0 {
        let offset =
            usize::try_from(row).map_err(|_| corrupt(&file.path, "row offset overflows"))?;
        builder = builder.with_offset(offset);
    }
    builder.build().map_err(|e| corrupt(&file.path, e))
}
