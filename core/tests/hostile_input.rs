//! Issue #14's hostile inputs for the CSV and JSON-lines sources, through a real dataflow at
//! parallelism 1, 2 and 4. Every test checks the accounting identity: rows read + dead
//! letters = records in the file (blank lines and headers are neither).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use eddy_core::prelude::*;
use eddy_core::source::file::{CsvOptions, CsvSource, JsonLinesOptions, JsonLinesSource};
use eddy_core::source::{ErrorPolicy, Rejected, SourceFactory};

/// What one run read.
#[derive(Debug)]
struct Read {
    rows: usize,
    dead: Vec<Rejected>,
    /// The values of the last column, in no particular order.
    last_column: Vec<String>,
}

fn run(factory: SourceFactory, parallelism: usize, dir: &Path) -> Result<Read> {
    let dead_path = dir.join(format!("dead-{parallelism}.jsonl"));
    let out = MemorySink::new();
    let flow = Dataflow::new(DataflowConfig {
        idle_poll: Duration::from_millis(1),
        dead_letter_path: Some(dead_path.clone()),
        on_error: ErrorPolicy::DeadLetter,
        ..DataflowConfig::default()
    });
    flow.source_with("in", factory)
        .parallelism(parallelism)
        .sink("out", out.clone());
    let summary = flow.run()?;
    let dead: Vec<Rejected> = std::fs::read_to_string(&dead_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summary.dead_letters as usize, dead.len());
    let mut last_column = Vec::new();
    for b in out.batches() {
        let col = b.column(b.num_columns() - 1);
        for r in 0..b.num_rows() {
            last_column.push(arrow::util::display::array_value_to_string(col, r).unwrap());
        }
    }
    Ok(Read {
        rows: out.num_rows(),
        dead,
        last_column,
    })
}

fn csv_factory(opts: CsvOptions) -> SourceFactory {
    CsvSource::factory(opts)
}

fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

fn ctr_schema() -> SchemaRef {
    schema(&[
        ("label", DataType::Int64),
        ("f0", DataType::Float64),
        ("c0", DataType::Utf8),
    ])
}

/// `rows` data lines `label,f0,c0` after a header, each ended by `term`.
fn ctr_csv(rows: usize, term: &str, special: &[(usize, &str)]) -> String {
    let mut s = format!("label,f0,c0{term}");
    for i in 0..rows {
        match special.iter().find(|(at, _)| *at == i) {
            Some((_, line)) => s.push_str(line),
            None => s.push_str(&format!("{},{}.5,v{}", i % 2, i % 7, i)),
        }
        s.push_str(term);
    }
    s
}

#[test]
fn a_stray_quote_inside_an_unquoted_field_swallows_nothing() {
    // #14 case 1: `ab"cd` used to open a quoted field that ran to the end of the file
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stray.csv");
    std::fs::write(&path, ctr_csv(100, "\n", &[(30, "0,2.0,ab\"cd")])).unwrap();
    for p in [1, 2, 4] {
        let got = run(
            csv_factory(CsvOptions::new(&path).with_schema(ctr_schema())),
            p,
            dir.path(),
        )
        .unwrap();
        assert_eq!((got.rows, got.dead.len()), (100, 0), "parallelism {p}");
        assert!(got.last_column.iter().any(|v| v == "ab\"cd"));
    }
    // inferred schema, too: the quote does not hide rows from inference either
    let got = run(csv_factory(CsvOptions::new(&path)), 1, dir.path()).unwrap();
    assert_eq!((got.rows, got.dead.len()), (100, 0));
}

#[test]
fn a_quoted_field_never_closed_is_one_dead_letter_naming_its_line() {
    // a quote at a field's start does open a field; never closed, its record runs to the end
    // of the file: one record by the format's rules, so one dead letter, never a silent loss
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.csv");
    std::fs::write(&path, ctr_csv(100, "\n", &[(60, "0,2.0,\"open")])).unwrap();
    for p in [1, 2] {
        let got = run(
            csv_factory(CsvOptions::new(&path).with_schema(ctr_schema())),
            p,
            dir.path(),
        )
        .unwrap();
        assert_eq!((got.rows, got.dead.len()), (60, 1), "parallelism {p}");
        assert_eq!(got.dead[0].line, 62);
        assert!(
            got.dead[0].reason.contains("never closed"),
            "{:?}",
            got.dead
        );
    }
    let flow = Dataflow::new(DataflowConfig {
        on_error: ErrorPolicy::Fail,
        ..DataflowConfig::default()
    });
    let opts = CsvOptions::new(&path).with_schema(ctr_schema());
    flow.source("in", CsvSource::new(opts).unwrap())
        .sink("out", MemorySink::new());
    let err = flow.run().unwrap_err().to_string();
    assert!(err.contains("open.csv:62:0"), "{err}");
}

#[test]
fn cr_only_line_endings_are_lines() {
    // #14 case 2: classic-Mac `\r` files read as one giant line (0 rows, exit 0)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mac.csv");
    std::fs::write(&path, ctr_csv(500, "\r", &[(9, "1,oops,x")])).unwrap();
    for p in [1, 2, 4] {
        let got = run(csv_factory(CsvOptions::new(&path)), p, dir.path()).unwrap();
        assert_eq!((got.rows, got.dead.len()), (499, 1), "parallelism {p}");
        assert_eq!((got.dead[0].line, got.dead[0].column), (11, 2));
    }
    let inferred = CsvSource::new(CsvOptions::new(&path)).unwrap().schema();
    assert_eq!(inferred.fields().len(), 3);
    assert_eq!(inferred.field(0).data_type(), &DataType::Int64);
}

#[test]
fn splits_never_start_inside_a_quoted_multi_line_field() {
    // #14 case 4: byte-range splits landed inside quotes: half the rows lost, bogus dead letters
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.csv");
    let mut body = String::from("id,text\n");
    let rows = 20_000;
    for i in 0..rows {
        body.push_str(&format!(
            "{i},\"line one of {i}\nline two, \"\"quoted\"\"\nthree\"\n"
        ));
    }
    std::fs::write(&path, body).unwrap();
    let schema = schema(&[("id", DataType::Int64), ("text", DataType::Utf8)]);
    for p in [1, 2, 4] {
        let got = run(
            csv_factory(CsvOptions::new(&path).with_schema(schema.clone())),
            p,
            dir.path(),
        )
        .unwrap();
        assert_eq!((got.rows, got.dead.len()), (rows, 0), "parallelism {p}");
        assert!(got.last_column[0].ends_with("\nthree"));
    }
}

#[test]
fn json_lines_one_odd_value_does_not_retype_a_column() {
    // #14 case 5: one early `"f0": [1,2]` (or a string, or `true`) made f0 Utf8 for every row
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.jsonl");
    let mut body = String::new();
    let rows = 1000;
    for i in 0..rows {
        let line = match i {
            2 => r#"{"f0": [1,2], "n": 1, "c": "a"}"#.to_string(),
            4 => r#"{"f0": "abc", "n": 2, "c": "b"}"#.to_string(),
            6 => r#"{"f0": true, "n": 3, "c": "c"}"#.to_string(),
            // the only float of `n` is in a row rejected for f0: it must not make n Float64
            8 => r#"{"f0": {"x": 1}, "n": 2.5, "c": "d"}"#.to_string(),
            // trailing bytes: rejected when read, so ignored by inference
            10 => r#"{"f0": 1.0, "n": "text", "c": "e"} junk"#.to_string(),
            _ => format!(r#"{{"f0": {}.25, "n": {i}, "c": "v{i}"}}"#, i % 9),
        };
        body.push_str(&line);
        body.push('\n');
    }
    std::fs::write(&path, body).unwrap();
    let opts = JsonLinesOptions::new(&path);
    let inferred = JsonLinesSource::new(opts.clone()).unwrap().schema();
    assert_eq!(inferred.field(0).data_type(), &DataType::Float64);
    assert_eq!(inferred.field(1).data_type(), &DataType::Int64);
    assert_eq!(inferred.field(2).data_type(), &DataType::Utf8);
    for p in [1, 2] {
        let got = run(JsonLinesSource::factory(opts.clone()), p, dir.path()).unwrap();
        assert_eq!((got.rows, got.dead.len()), (rows - 5, 5), "parallelism {p}");
        let mut lines: Vec<u64> = got.dead.iter().map(|d| d.line).collect();
        lines.sort();
        assert_eq!(lines, [3, 5, 7, 9, 11]);
    }
}

#[test]
fn a_bad_value_among_the_inference_rows_is_a_dead_letter_like_later_ones() {
    // #14 case 8: `label = yes` on line 52 made `label` Utf8 (the job then failed), while the
    // same value after the sampled rows was a dead letter
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yes.csv");
    std::fs::write(
        &path,
        ctr_csv(3000, "\n", &[(50, "yes,1.0,a"), (2500, "yes,1.0,b")]),
    )
    .unwrap();
    let inferred = CsvSource::new(CsvOptions::new(&path)).unwrap().schema();
    assert_eq!(inferred.field(0).data_type(), &DataType::Int64);
    let got = run(csv_factory(CsvOptions::new(&path)), 2, dir.path()).unwrap();
    assert_eq!((got.rows, got.dead.len()), (2998, 2));
    let mut places: Vec<_> = got.dead.iter().map(|d| (d.line, d.column)).collect();
    places.sort();
    assert_eq!(places, [(52, 1), (2502, 1)]);
    // a column that is mostly text stays text: many "outliers" are no outliers
    let path = dir.path().join("mixed.csv");
    let mut body = String::from("id\n");
    for i in 0..200 {
        body.push_str(&if i % 10 == 0 {
            format!("x{i}\n")
        } else {
            format!("{i}\n")
        });
    }
    std::fs::write(&path, body).unwrap();
    let inferred = CsvSource::new(CsvOptions::new(&path)).unwrap().schema();
    assert_eq!(inferred.field(0).data_type(), &DataType::Utf8);
}

#[test]
fn a_record_over_the_length_limit_is_a_dead_letter_and_reading_goes_on() {
    // #14 case 17 (record length): a huge record is a dead letter, never held whole in memory
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.csv");
    let long = format!("1,2.0,{}", "x".repeat(300_000));
    let quoted = format!("1,2.0,\"{}\"", "y\n".repeat(100_000));
    std::fs::write(
        &path,
        ctr_csv(
            1000,
            "\n",
            &[(100, &long), (700, &quoted), (900, "1,bad,z")],
        ),
    )
    .unwrap();
    for p in [1, 2] {
        let mut opts = CsvOptions::new(&path)
            .with_schema(ctr_schema())
            .with_max_record_bytes(64 * 1024);
        opts.chunk_size = 4096;
        let got = run(csv_factory(opts), p, dir.path()).unwrap();
        assert_eq!((got.rows, got.dead.len()), (997, 3), "parallelism {p}");
        let mut dead = got.dead.clone();
        dead.sort_by_key(|d| d.line);
        // line numbers after the skipped quoted record (100,000 newlines) stay exact
        let lines: Vec<u64> = dead.iter().map(|d| d.line).collect();
        assert_eq!(lines, [102, 702, 100_902]);
        assert!(dead[..2]
            .iter()
            .all(|d| d.raw.len() <= 1024 && d.reason.contains("limit")));
    }
    // a file that is one long record without any line end: a dead letter, not a header
    let one = dir.path().join("one.csv");
    std::fs::write(&one, "z".repeat(5000)).unwrap();
    let opts = CsvOptions::new(&one)
        .with_schema(ctr_schema())
        .with_max_record_bytes(100);
    let got = run(csv_factory(opts), 1, dir.path()).unwrap();
    assert_eq!((got.rows, got.dead.len()), (0, 1));
    // the default limit is 16 MiB: the same file reads whole
    let got = run(
        csv_factory(CsvOptions::new(&path).with_schema(ctr_schema())),
        1,
        dir.path(),
    )
    .unwrap();
    assert_eq!((got.rows, got.dead.len()), (999, 1));
    let lines: Vec<&str> = got.last_column.iter().map(|s| s.as_str()).collect();
    assert!(lines.iter().any(|l| l.len() == 300_000));
}

#[test]
fn compressed_input_is_refused_naming_the_format_not_read_as_garbage() {
    // #14 case 24: gzip input was read as CSV (binary garbage became column names)
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("data.csv.gz");
    // a gzip member header and some deflate bytes
    std::fs::write(
        &gz,
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcbH\xcd\xc9\xc9\x07\x00",
    )
    .unwrap();
    let err = CsvSource::new(CsvOptions::new(&gz))
        .unwrap_err()
        .to_string();
    assert!(err.contains("data.csv.gz") && err.contains("gzip"), "{err}");
    // with a schema nothing is inferred: reading refuses it
    let opts = CsvOptions::new(&gz).with_schema(ctr_schema());
    let err = run(csv_factory(opts), 1, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("gzip"), "{err}");
    let zst = dir.path().join("data.jsonl");
    std::fs::write(&zst, b"\x28\xb5\x2f\xfd\x04\x58\x00\x00").unwrap();
    let err = JsonLinesSource::new(JsonLinesOptions::new(&zst))
        .unwrap_err()
        .to_string();
    assert!(err.contains("zstd"), "{err}");
}

#[test]
fn parquet_files_in_every_codec_are_readable() {
    // #14 case 24: zstd, lz4, gzip and brotli Parquet files could not be read
    use eddy_core::source::parquet::{ParquetSource, ParquetSourceOptions};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    use parquet::file::properties::WriterProperties;

    let dir = tempfile::tempdir().unwrap();
    let schema = ctr_schema();
    let batch = arrow::record_batch::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(arrow::array::Int64Array::from_iter_values(0..100)),
            Arc::new(arrow::array::Float64Array::from_iter_values(
                (0..100).map(|i| i as f64 / 2.0),
            )),
            Arc::new(arrow::array::StringArray::from_iter_values(
                (0..100).map(|i| format!("v{i}")),
            )),
        ],
    )
    .unwrap();
    let codecs = [
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
        ("lz4", Compression::LZ4),
        ("lz4_raw", Compression::LZ4_RAW),
        ("gzip", Compression::GZIP(GzipLevel::default())),
        ("brotli", Compression::BROTLI(BrotliLevel::default())),
        ("snappy", Compression::SNAPPY),
    ];
    for (name, codec) in codecs {
        let path = dir.path().join(format!("{name}.parquet"));
        let props = WriterProperties::builder().set_compression(codec).build();
        let file = std::fs::File::create(&path).unwrap();
        let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let out = MemorySink::new();
        let flow = Dataflow::new(DataflowConfig::default());
        let source = ParquetSource::new(ParquetSourceOptions::new(&path)).unwrap();
        flow.source("in", source).sink("out", out.clone());
        let summary = flow.run().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((out.num_rows(), summary.dead_letters), (100, 0), "{name}");
    }
}
