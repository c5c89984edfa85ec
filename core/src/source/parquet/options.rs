//! The settings of a [`ParquetSource`](super::ParquetSource) and its replayable position.

use std::path::PathBuf;

use arrow::datatypes::SchemaRef;

/// Settings of a [`ParquetSource`](super::ParquetSource).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ParquetSourceOptions {
    /// A `.parquet` file, or a directory of them.
    pub path: PathBuf,
    /// Keep watching the directory for new files instead of ending. Default: `false`.
    #[serde(default)]
    pub follow: bool,
    /// The schema, when the files may not exist yet (following an empty directory). Default:
    /// `None`, the schema of the first file; files must match it either way.
    #[serde(skip)]
    pub schema: Option<SchemaRef>,
}

impl ParquetSourceOptions {
    /// Options reading `path` once, taking the schema from the files.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ParquetSourceOptions {
            path: path.into(),
            follow: false,
            schema: None,
        }
    }
}

/// The replayable position: the next row to deliver is row `row` of file `file`, which is
/// file number `file_index` of this split. `file` is `None` before any file exists.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Position {
    pub(super) file_index: usize,
    pub(super) file: Option<String>,
    pub(super) row: u64,
}
