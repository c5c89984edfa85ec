//! Sources and sinks chosen by file extension, or a Kafka topic for a `kafka://` address
//! (parsed by the one parser, [`KafkaUri::parse`]), shared by the commands.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{bail, Context};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use eddy_core::dataflow::{Dataflow, Stream};
use eddy_core::sink::csv::{CsvSink, CsvSinkOptions};
use eddy_core::sink::jsonl::{JsonLinesSink, JsonLinesSinkOptions};
use eddy_core::sink::kafka::{KafkaSink, KafkaSinkOptions};
use eddy_core::sink::parquet::{ParquetSink, ParquetSinkOptions};
use eddy_core::sink::stdout::{StdoutSink, StdoutSinkOptions};
use eddy_core::source::file::{CsvOptions, CsvSource, JsonLinesOptions, JsonLinesSource};
use eddy_core::source::kafka::{KafkaFormat, KafkaSource, KafkaSourceOptions, KafkaUri};
use eddy_core::source::parquet::{ParquetSource, ParquetSourceOptions};
use eddy_core::source::Source;

/// File formats understood by the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
    /// Apache Parquet.
    Parquet,
}

/// The `kafka://…` address `path` holds, if it is one.
pub fn kafka_address(path: &Path) -> Option<&str> {
    path.to_str().filter(|t| KafkaUri::is_kafka(t))
}

/// The format named by `path`'s extension (for a directory: of its first data file), else CSV;
/// for a `kafka://` address its `format` (JSON lines unless `format=csv`).
pub fn format_of(path: &Path) -> DataFormat {
    if let Some(text) = kafka_address(path) {
        return match KafkaUri::parse(text).map(|u| u.format) {
            Ok(KafkaFormat::Csv) => DataFormat::Csv,
            _ => DataFormat::Jsonl,
        };
    }
    let from_ext = |p: &Path| match p.extension().and_then(|e| e.to_str()) {
        Some("jsonl") | Some("json") | Some("ndjson") => Some(DataFormat::Jsonl),
        Some("parquet") => Some(DataFormat::Parquet),
        Some("csv") => Some(DataFormat::Csv),
        _ => None,
    };
    if path.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            if let Some(f) = names.iter().find_map(|p| from_ext(p)) {
                return f;
            }
        }
    }
    from_ext(path).unwrap_or(DataFormat::Csv)
}

/// Parses `name:type,name:type,…` (types: int64, int32, float64, float32, utf8, bool) into a
/// schema, naming the entry at fault.
pub fn parse_schema(text: &str) -> anyhow::Result<SchemaRef> {
    let mut fields = Vec::new();
    for (i, entry) in text.split(',').enumerate() {
        let Some((name, ty)) = entry.trim().split_once(':') else {
            bail!("--schema entry {} `{entry}`: expected NAME:TYPE", i + 1);
        };
        let data_type = match ty.trim().to_ascii_lowercase().as_str() {
            "int64" | "i64" | "long" => DataType::Int64,
            "int32" | "i32" | "int" => DataType::Int32,
            "float64" | "f64" | "double" => DataType::Float64,
            "float32" | "f32" | "float" => DataType::Float32,
            "utf8" | "string" | "str" => DataType::Utf8,
            "bool" | "boolean" => DataType::Boolean,
            other => bail!(
                "--schema entry {} `{entry}`: unknown type `{other}` (int64, int32, float64, float32, utf8, bool)",
                i + 1
            ),
        };
        fields.push(Field::new(name.trim(), data_type, true));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Adds a source reading `path` (a file or directory) to `flow`, split over `parallelism`
/// subtasks when bounded; `schema` overrides inference.
pub fn source(
    flow: &Dataflow,
    path: &Path,
    format: Option<DataFormat>,
    schema: Option<SchemaRef>,
    follow: bool,
    parallelism: usize,
) -> anyhow::Result<(Stream, SchemaRef)> {
    let input = InputOptions {
        format,
        schema,
        follow,
        parallelism,
        ..InputOptions::default()
    };
    source_with(flow, path, &input)
}

/// How [`source_with`] reads its input.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// The format; default: [`format_of`] the path.
    pub format: Option<DataFormat>,
    /// The schema; default: inferred (CSV, JSON lines) or the files' own (Parquet).
    pub schema: Option<SchemaRef>,
    /// Follow the input as it grows (one subtask).
    pub follow: bool,
    /// Subtasks of the source when bounded (0 means 1).
    pub parallelism: usize,
    /// Longest CSV / JSON-lines record; a longer one is a dead letter. Default 16 MiB.
    pub max_record_bytes: Option<usize>,
    /// Columns that must hold a value: a CSV / JSON-lines record with none there is a dead
    /// letter. Each must be a column of the schema.
    pub required: Vec<String>,
}

/// The schema with the `required` columns made non-nullable; names a missing one.
fn require(schema: SchemaRef, required: &[String], path: &Path) -> anyhow::Result<SchemaRef> {
    if required.is_empty() {
        return Ok(schema);
    }
    let fields = schema
        .fields()
        .iter()
        .map(|f| {
            let needed = required.iter().any(|r| r == f.name());
            f.as_ref().clone().with_nullable(f.is_nullable() && !needed)
        })
        .collect::<Vec<_>>();
    if let Some(missing) = required
        .iter()
        .find(|r| schema.fields().iter().all(|f| f.name() != *r))
    {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        bail!(
            "column `{missing}` is not in {} (columns: {})",
            path.display(),
            names.join(", ")
        );
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Adds a source reading `path` (a file or directory, or a `kafka://` topic) to `flow` as
/// `input` says.
pub fn source_with(
    flow: &Dataflow,
    path: &Path,
    input: &InputOptions,
) -> anyhow::Result<(Stream, SchemaRef)> {
    if let Some(address) = kafka_address(path) {
        return kafka_source(flow, address, input, None);
    }
    let format = input.format.unwrap_or_else(|| format_of(path));
    let parallelism = if input.follow {
        1
    } else {
        input.parallelism.max(1)
    };
    let follow = input.follow;
    let schema = input.schema.clone();
    let name = format!("source {}", path.display());
    let (stream, schema) = match format {
        DataFormat::Csv => {
            let mut options = CsvOptions::new(path).with_follow(follow);
            if let Some(s) = schema {
                options = options.with_schema(s);
            }
            if let Some(max) = input.max_record_bytes {
                options = options.with_max_record_bytes(max);
            }
            // open once now, so a bad path or header is reported before the job starts, and
            // every split then reads with the same (inferred) schema
            let probe = CsvSource::new(options.clone())
                .with_context(|| format!("reading {}", path.display()))?;
            let schema = require(probe.schema(), &input.required, path)?;
            let options = options.with_schema(schema.clone());
            (flow.source_with(&name, CsvSource::factory(options)), schema)
        }
        DataFormat::Jsonl => {
            let mut options = JsonLinesOptions::new(path).with_follow(follow);
            if let Some(s) = schema {
                options = options.with_schema(s);
            }
            if let Some(max) = input.max_record_bytes {
                options = options.with_max_record_bytes(max);
            }
            let probe = JsonLinesSource::new(options.clone())
                .with_context(|| format!("reading {}", path.display()))?;
            let schema = require(probe.schema(), &input.required, path)?;
            let options = options.with_schema(schema.clone());
            (
                flow.source_with(&name, JsonLinesSource::factory(options)),
                schema,
            )
        }
        DataFormat::Parquet => {
            let mut options = ParquetSourceOptions::new(path);
            options.follow = follow;
            options.schema = schema;
            let probe = ParquetSource::new(options.clone())
                .with_context(|| format!("reading {}", path.display()))?;
            (
                flow.source_with(&name, ParquetSource::factory(options)),
                probe.schema(),
            )
        }
    };
    Ok((stream.parallelism(parallelism), schema))
}

/// Adds a source reading member `index` of `count`'s share of the Kafka topic `path`
/// (`eddy worker`: the partitions `p % count == index`) to `flow` as `input` says.
pub fn member_source(
    flow: &Dataflow,
    path: &Path,
    input: &InputOptions,
    index: usize,
    count: usize,
) -> anyhow::Result<(Stream, SchemaRef)> {
    match kafka_address(path) {
        Some(address) => kafka_source(flow, address, input, Some((index, count))),
        None => bail!("{}: not a kafka:// address", path.display()),
    }
}

/// Adds a source reading the Kafka topic `address` to `flow` (of member `.0` of `.1`, only
/// the partitions `p % .1 == .0`): partitions split over `input.parallelism` subtasks
/// (followed or not); `--follow` and `--format` override the address's `follow` and `format`.
fn kafka_source(
    flow: &Dataflow,
    address: &str,
    input: &InputOptions,
    member: Option<(usize, usize)>,
) -> anyhow::Result<(Stream, SchemaRef)> {
    let mut uri = KafkaUri::parse(address)?;
    uri.follow |= input.follow;
    match input.format {
        Some(DataFormat::Jsonl) => uri.format = KafkaFormat::Json,
        Some(DataFormat::Csv) => uri.format = KafkaFormat::Csv,
        Some(DataFormat::Parquet) => {
            bail!("{address}: Kafka messages are read as JSON or CSV, not Parquet")
        }
        None => {}
    }
    let mut options = KafkaSourceOptions::new(uri);
    if let Some((index, count)) = member {
        options = options.with_member(index, count);
    }
    if let Some(s) = &input.schema {
        options = options.with_schema(s.clone());
    }
    // connect once now, so a bad address or topic is reported before the job starts, and
    // every subtask then reads with the same (inferred) schema
    let probe = KafkaSource::new(options.clone()).with_context(|| format!("reading {address}"))?;
    let schema = require(probe.schema(), &input.required, Path::new(address))?;
    let (factory, schema) = KafkaSource::factory(options.with_schema(schema))
        .with_context(|| format!("reading {address}"))?;
    let stream = flow.source_with(&format!("source {address}"), factory);
    Ok((stream.parallelism(input.parallelism.max(1)), schema))
}

/// Ends `stream` in a sink writing `path` (format by extension; a `kafka://` address: one
/// JSON message per row, at-least-once, or exactly-once with `delivery=exactly-once` when the
/// job checkpoints into `checkpoint_dir`, which then holds the staged epochs under
/// `kafka-staging/`), or stdout when `None`. The sink has one subtask, so the output is one
/// file whatever the parallelism upstream.
pub fn sink(
    stream: &Stream,
    name: &str,
    path: Option<&Path>,
    checkpoint_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let node = match path {
        None => stream.sink(
            name,
            StdoutSink::new(StdoutSinkOptions::default()).context("stdout sink")?,
        ),
        Some(path) if kafka_address(path).is_some() => {
            let address = kafka_address(path).unwrap_or_default();
            let uri = KafkaUri::parse(address)?;
            let mut options = KafkaSinkOptions::new(uri);
            if let Some(dir) = checkpoint_dir {
                options = options.with_staging_dir(dir.join("kafka-staging"));
            }
            stream.sink(name, KafkaSink::new(options)?)
        }
        Some(path) => match format_of(path) {
            DataFormat::Csv => stream.sink(name, CsvSink::new(CsvSinkOptions::new(path))?),
            DataFormat::Jsonl => {
                stream.sink(name, JsonLinesSink::new(JsonLinesSinkOptions::new(path))?)
            }
            DataFormat::Parquet => {
                stream.sink(name, ParquetSink::new(ParquetSinkOptions::new(path))?)
            }
        },
    };
    node.parallelism(1);
    Ok(())
}
