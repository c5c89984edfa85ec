//! File sources: CSV and JSON lines from one file or a directory, bounded or following a
//! growing input, with replayable positions and parallel splits.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::datatypes::{DataType, Field, Schema};
//! use eddy_core::prelude::*;
//! use eddy_core::source::file::{CsvOptions, CsvSource};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("clicks.csv");
//! std::fs::write(&path, "user,clicks\na,1\nb,2\nb,oops\n")?;
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("user", DataType::Utf8, true),
//!     Field::new("clicks", DataType::Int64, true),
//! ]));
//! let out = MemorySink::new();
//! let flow = Dataflow::new(DataflowConfig::default());
//! flow.source("clicks", CsvSource::new(CsvOptions::new(&path).with_schema(schema))?)
//!     .sink("out", out.clone());
//! let summary = flow.run()?;
//! assert_eq!(out.num_rows(), 2);
//! assert_eq!(summary.dead_letters, 1); // line 4: `oops` is not an Int64
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Behaviour
//! - **Input**: a file, or a directory whose files are read in name order (hidden files and
//!   `*.tmp` are ignored; a writer should create files under a `.tmp` name and rename them).
//! - **Schema**: given, or inferred from the first rows (see `infer`). Types decoded: Int64,
//!   Int32, Float64, Float32, Boolean, Utf8. An empty field is a null.
//! - **Bad input** never crashes a job and is never dropped silently: a malformed record goes
//!   to [`SourceContext::reject`](crate::source::SourceContext::reject) with its file, 1-based
//!   line, 1-based column (0: the whole record), raw text and reason; the rest of the batch
//!   still goes out. Under `on-error = "fail"` the job fails with that place in the error.
//! - **Follow mode**: at the end of the input the source says `Idle`; a trailing line without
//!   its newline is held back until it is complete, the writer rolled to a later file, or
//!   [`stop_following`](crate::source::Source::stop_following) was called. A partial batch
//!   goes out once the input is idle and the linger time has passed since its first row.
//! - **Position**: file, byte offset and line after the last batch (plus the stop point of a
//!   bounded slice); seeking re-opens the file there.
//! - **Splits**: `factory(options)` gives subtask `i` of `p` the records starting in bytes
//!   `[i*len/p, (i+1)*len/p)` of a single file, or every `p`-th file of a directory. Record
//!   starts are found from the file's first byte by the framing rules, so a split never
//!   starts inside a quoted CSV field and line numbers stay exact. A split of one file reads
//!   its records in order, so outputs written per split and joined in split order are in
//!   input order (see [`split_parts`](crate::sink::split_parts)).
//! - Files that shrink (truncation, copy-truncate rotation) are not supported while following.
//!
//! | module | what |
//! |---|---|
//! | `reader` | chunked record reader: files, directories, follow mode, positions |
//! | `split` | byte-range splits, line counting, the snapshot of a growing input |
//! | `decode` | typed column builders with row rollback |
//! | `csv` | CSV fields (memchr fast path, csv-core for quoted records) |
//! | `jsonl` | JSON lines through a streaming serde visitor |
//! | `infer` | schema inference from sampled rows |
//! | `source` | [`FileSource`]: batching, dead letters, linger, position, progress |

pub(crate) mod csv;
pub(crate) mod decode;
pub(crate) mod framing;
pub(crate) mod infer;
pub(crate) mod jsonl;
mod options;
mod reader;
mod source;
mod split;
#[cfg(test)]
mod tests;

pub use options::{
    CsvOptions, FileSourceOptions, JsonLinesOptions, DEFAULT_CHUNK_SIZE, DEFAULT_INFER_ROWS,
    DEFAULT_MAX_RECORD_BYTES,
};
pub use source::FileSource;

pub(crate) use reader::{Root, StopAt};
pub(crate) use source::FilePosition;
pub(crate) use split::snapshot_end;

use arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::source::{Source, SourceContext, SourceFactory, SourcePoll, SourcePosition};

macro_rules! format_source {
    ($(#[$doc:meta])* $name:ident, $options:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(FileSource);

        impl $name {
            /// A source over `options`; infers the schema now when none is given.
            pub fn new(options: $options) -> Result<Self> {
                FileSource::new(options).map($name)
            }

            /// A factory for `Dataflow::source_with` that splits the input over the subtasks:
            /// byte ranges of one file, or files round-robin for a directory. With one subtask
            /// it is the plain source. Following sources need parallelism 1.
            pub fn factory(options: $options) -> SourceFactory {
                FileSource::factory(options)
            }

            /// The underlying [`FileSource`].
            pub fn into_inner(self) -> FileSource {
                self.0
            }
        }

        impl Source for $name {
            fn schema(&self) -> SchemaRef {
                self.0.schema()
            }
            fn open(&mut self, ctx: &SourceContext) -> Result<()> {
                self.0.open(ctx)
            }
            fn poll_next(&mut self, ctx: &SourceContext) -> Result<SourcePoll> {
                self.0.poll_next(ctx)
            }
            fn position(&self) -> SourcePosition {
                self.0.position()
            }
            fn seek(&mut self, position: &SourcePosition) -> Result<()> {
                self.0.seek(position)
            }
            fn stop_following(&mut self) {
                self.0.stop_following()
            }
            fn on_checkpoint_complete(
                &mut self,
                epoch: crate::message::Epoch,
                position: &SourcePosition,
            ) -> Result<()> {
                self.0.on_checkpoint_complete(epoch, position)
            }
        }
    };
}

format_source!(
    /// CSV records from a file or directory; see the [module docs](self) and [`CsvOptions`].
    CsvSource,
    CsvOptions
);

format_source!(
    /// JSON objects, one per line, from a file or directory; see the [module docs](self) and
    /// [`JsonLinesOptions`].
    JsonLinesSource,
    JsonLinesOptions
);
