//! Options of the file sources, with their defaults.

use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};

/// Default number of rows sampled for schema inference.
pub const DEFAULT_INFER_ROWS: usize = 1000;
/// Default read size: 1 MiB per system call.
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
/// Default longest record: 16 MiB. A longer one is a dead letter, and memory stays bounded
/// whatever the input (`/dev/zero` included).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 << 20;

/// How to read CSV. Build with [`CsvOptions::new`] and set fields as needed.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// A file, or a directory read in name order. No default.
    pub path: PathBuf,
    /// The schema. Default `None`: inferred from the first [`infer_rows`](Self::infer_rows)
    /// rows. Columns are matched by position.
    pub schema: Option<SchemaRef>,
    /// Rows sampled for inference. Default 1000.
    pub infer_rows: usize,
    /// Whether the first line of every file is a header (skipped; names the columns when the
    /// schema is inferred). Default `true`.
    pub header: bool,
    /// Field delimiter. Default `b','`.
    pub delimiter: u8,
    /// Quote character; doubled inside a quoted field. Default `b'"'`.
    pub quote: u8,
    /// Follow the input as it grows (end of input is `Idle`, not `End`). Default `false`.
    pub follow: bool,
    /// Bytes read per system call. Default 1 MiB.
    pub chunk_size: usize,
    /// Longest record in bytes (quoted newlines included); a longer record is a dead letter
    /// and is skipped to its end without being held in memory. Default 16 MiB.
    pub max_record_bytes: usize,
}

impl CsvOptions {
    /// Defaults for `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        CsvOptions {
            path: path.as_ref().to_path_buf(),
            schema: None,
            infer_rows: DEFAULT_INFER_ROWS,
            header: true,
            delimiter: b',',
            quote: b'"',
            follow: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// With an explicit schema.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Following (or not) the growing input.
    pub fn with_follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// With another record length limit.
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
    }

    /// With another delimiter.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// With or without a header line.
    pub fn with_header(mut self, header: bool) -> Self {
        self.header = header;
        self
    }
}

/// How to read JSON lines (one JSON object per line). Build with [`JsonLinesOptions::new`].
#[derive(Debug, Clone)]
pub struct JsonLinesOptions {
    /// A file, or a directory read in name order. No default.
    pub path: PathBuf,
    /// The schema. Default `None`: inferred from the first rows. Keys not in the schema are
    /// ignored; a missing key is a null (an error for a non-nullable field).
    pub schema: Option<SchemaRef>,
    /// Rows sampled for inference. Default 1000.
    pub infer_rows: usize,
    /// Follow the input as it grows. Default `false`.
    pub follow: bool,
    /// Bytes read per system call. Default 1 MiB.
    pub chunk_size: usize,
    /// Longest line in bytes; a longer line is a dead letter and is skipped to its end
    /// without being held in memory. Default 16 MiB.
    pub max_record_bytes: usize,
}

impl JsonLinesOptions {
    /// Defaults for `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        JsonLinesOptions {
            path: path.as_ref().to_path_buf(),
            schema: None,
            infer_rows: DEFAULT_INFER_ROWS,
            follow: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// With an explicit schema.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Following (or not) the growing input.
    pub fn with_follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// With another line length limit.
    pub fn with_max_record_bytes(mut self, max: usize) -> Self {
        self.max_record_bytes = max;
        self
    }
}

/// Either format's options, for code that handles both (e.g. the hybrid source).
#[derive(Debug, Clone)]
pub enum FileSourceOptions {
    /// CSV.
    Csv(CsvOptions),
    /// JSON lines.
    JsonLines(JsonLinesOptions),
}

impl From<CsvOptions> for FileSourceOptions {
    fn from(o: CsvOptions) -> Self {
        FileSourceOptions::Csv(o)
    }
}

impl From<JsonLinesOptions> for FileSourceOptions {
    fn from(o: JsonLinesOptions) -> Self {
        FileSourceOptions::JsonLines(o)
    }
}

impl FileSourceOptions {
    /// The file or directory.
    pub fn path(&self) -> &Path {
        match self {
            FileSourceOptions::Csv(o) => &o.path,
            FileSourceOptions::JsonLines(o) => &o.path,
        }
    }

    /// The explicit schema, if any.
    pub fn schema(&self) -> Option<&SchemaRef> {
        match self {
            FileSourceOptions::Csv(o) => o.schema.as_ref(),
            FileSourceOptions::JsonLines(o) => o.schema.as_ref(),
        }
    }

    /// Whether the input is followed.
    pub fn follow(&self) -> bool {
        match self {
            FileSourceOptions::Csv(o) => o.follow,
            FileSourceOptions::JsonLines(o) => o.follow,
        }
    }

    /// The same options, following or not.
    pub fn with_follow(self, follow: bool) -> Self {
        match self {
            FileSourceOptions::Csv(o) => FileSourceOptions::Csv(o.with_follow(follow)),
            FileSourceOptions::JsonLines(o) => FileSourceOptions::JsonLines(o.with_follow(follow)),
        }
    }

    /// The same options with an explicit schema.
    pub fn with_schema(self, schema: SchemaRef) -> Self {
        match self {
            FileSourceOptions::Csv(o) => FileSourceOptions::Csv(o.with_schema(schema)),
            FileSourceOptions::JsonLines(o) => FileSourceOptions::JsonLines(o.with_schema(schema)),
        }
    }

    pub(crate) fn chunk_size(&self) -> usize {
        match self {
            FileSourceOptions::Csv(o) => o.chunk_size,
            FileSourceOptions::JsonLines(o) => o.chunk_size,
        }
    }

    /// `(quote, delimiter)` for CSV, `None` for JSON lines.
    pub(crate) fn csv_bytes(&self) -> Option<(u8, u8)> {
        match self {
            FileSourceOptions::Csv(o) => Some((o.quote, o.delimiter)),
            FileSourceOptions::JsonLines(_) => None,
        }
    }

    /// The record length limit.
    pub fn max_record_bytes(&self) -> usize {
        match self {
            FileSourceOptions::Csv(o) => o.max_record_bytes,
            FileSourceOptions::JsonLines(o) => o.max_record_bytes,
        }
    }

    /// The same options with another record length limit.
    pub fn with_max_record_bytes(self, max: usize) -> Self {
        match self {
            FileSourceOptions::Csv(o) => FileSourceOptions::Csv(o.with_max_record_bytes(max)),
            FileSourceOptions::JsonLines(o) => {
                FileSourceOptions::JsonLines(o.with_max_record_bytes(max))
            }
        }
    }

    /// Checks the settings, naming the one at fault.
    pub(crate) fn validate(&self) -> Result<()> {
        let infer_rows = match self {
            FileSourceOptions::Csv(o) => {
                for (key, b) in [("delimiter", o.delimiter), ("quote", o.quote)] {
                    if b == b'\n' || b == b'\r' {
                        return Err(Error::config(key, "cannot be a line terminator"));
                    }
                }
                if o.delimiter == o.quote {
                    return Err(Error::config("quote", "must differ from the delimiter"));
                }
                o.infer_rows
            }
            FileSourceOptions::JsonLines(o) => o.infer_rows,
        };
        if self.chunk_size() == 0 {
            return Err(Error::config("chunk-size", "must be at least 1"));
        }
        if self.max_record_bytes() == 0 {
            return Err(Error::config("max-record-bytes", "must be at least 1"));
        }
        if self.schema().is_none() && infer_rows == 0 {
            return Err(Error::config(
                "infer-rows",
                "must be at least 1 when no schema is given",
            ));
        }
        Ok(())
    }
}
