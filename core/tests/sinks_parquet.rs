//! Real jobs through the file sinks and the Parquet source: write, read back, compare.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use eddy_core::prelude::*;
use eddy_core::sink::csv::{CsvSink, CsvSinkOptions};
use eddy_core::sink::jsonl::{JsonLinesSink, JsonLinesSinkOptions};
use eddy_core::sink::parquet::{temporary_path, ParquetSink, ParquetSinkOptions};
use eddy_core::source::parquet::{ParquetSource, ParquetSourceOptions};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Rows `from..from + n` with nulls in every column (all columns nullable).
fn batch(from: i64, n: i64) -> RecordBatch {
    let rows = from..from + n;
    RecordBatch::try_from_iter_with_nullable([
        (
            "id",
            Arc::new(Int64Array::from_iter(
                rows.clone().map(|i| (i % 7 != 3).then_some(i)),
            )) as _,
            true,
        ),
        (
            "name",
            Arc::new(StringArray::from_iter(
                rows.clone()
                    .map(|i| (i % 5 != 1).then(|| format!("n\"{i},x"))),
            )) as _,
            true,
        ),
        (
            "score",
            Arc::new(Float64Array::from_iter(
                rows.clone().map(|i| (i % 6 != 2).then_some(i as f64 / 8.0)),
            )) as _,
            true,
        ),
        (
            "flag",
            Arc::new(BooleanArray::from_iter(
                rows.map(|i| (i % 4 != 0).then_some(i % 3 == 0)),
            )) as _,
            true,
        ),
    ])
    .expect("test batch")
}

/// Spreads a stream round-robin over `parallelism` subtasks, for the sink that follows.
fn spread(stream: Stream, parallelism: usize) -> Stream {
    stream
        .rebalance()
        .project("spread", ["id", "name", "score", "flag"])
        .parallelism(parallelism)
}

fn input() -> Vec<RecordBatch> {
    (0..6).map(|k| batch(k * 50, 50)).collect()
}

fn all(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    concat_batches(schema, batches).expect("concat")
}

fn config(max_rows: usize) -> DataflowConfig {
    let mut c = DataflowConfig::default();
    c.bounds.max_rows = max_rows;
    c
}

fn write_parquet(path: &Path, batches: Vec<RecordBatch>, parallelism: usize) -> TestResult {
    let flow = Dataflow::new(DataflowConfig::default());
    spread(
        flow.source("in", MemorySource::from_batches(batches)?),
        parallelism,
    )
    .sink("out", ParquetSink::new(ParquetSinkOptions::new(path))?);
    flow.run()?;
    Ok(())
}

fn read_parquet(options: ParquetSourceOptions, max_rows: usize) -> Result<Vec<RecordBatch>, Error> {
    let out = MemorySink::new();
    let flow = Dataflow::new(config(max_rows));
    flow.source("in", ParquetSource::new(options)?)
        .sink("out", out.clone());
    flow.run()?;
    Ok(out.batches())
}

#[test]
fn parquet_round_trip_is_identical() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("nested/out.parquet");
    write_parquet(&path, input(), 1)?;
    assert!(!temporary_path(&path).exists());
    let got = read_parquet(ParquetSourceOptions::new(&path), 64)?;
    assert!(got.iter().all(|b| b.num_rows() <= 64));
    let schema = input()[0].schema();
    assert_eq!(got[0].schema(), schema);
    assert_eq!(all(&schema, &got), all(&schema, &input()));
    assert!(all(&schema, &got).column(1).null_count() > 0);
    // with batches of the input's size, batch for batch
    assert_eq!(read_parquet(ParquetSourceOptions::new(&path), 50)?, input());
    Ok(())
}

#[test]
fn parallel_sink_writes_one_file_per_subtask() -> TestResult {
    let dir = tempfile::tempdir()?;
    write_parquet(&dir.path().join("part.parquet"), input(), 2)?;
    let mut names: Vec<String> = std::fs::read_dir(dir.path())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    assert_eq!(names, ["part-0.parquet", "part-1.parquet"]);
    // the union, read by a parallel source, is the input
    let out = MemorySink::new();
    let flow = Dataflow::new(DataflowConfig::default());
    flow.source_with(
        "in",
        ParquetSource::factory(ParquetSourceOptions::new(dir.path())),
    )
    .parallelism(2)
    .sink("out", out.clone());
    flow.run()?;
    let schema = input()[0].schema();
    let mut got = ids(&all(&schema, &out.batches()));
    got.sort();
    let mut want = ids(&all(&schema, &input()));
    want.sort();
    assert_eq!(got, want);
    Ok(())
}

fn ids(b: &RecordBatch) -> Vec<Option<i64>> {
    let a = b
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("id column");
    a.iter().collect()
}

#[test]
fn seek_on_a_directory_resumes_with_the_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    for k in 0..3 {
        write_parquet(
            &dir.path().join(format!("f{k}.parquet")),
            vec![batch(k * 100, 100)],
            1,
        )?;
    }
    let options = ParquetSourceOptions::new(dir.path());
    let everything = read_parquet(options.clone(), 30)?;
    let schema = everything[0].schema();
    let mut ctx = SourceContext::standalone("pq");
    ctx.bounds.max_rows = 30;
    for k in [0, 1, 3, 4, 7, everything.len()] {
        let mut first = ParquetSource::new(options.clone())?;
        first.open(&ctx)?;
        for _ in 0..k {
            assert!(matches!(first.poll_next(&ctx)?, SourcePoll::Batch(_)));
        }
        let position = first.position();
        let mut second = ParquetSource::new(options.clone())?;
        second.seek(&position)?;
        let out = MemorySink::new();
        let flow = Dataflow::new(config(30));
        flow.source("rest", second).sink("out", out.clone());
        flow.run()?;
        let head: usize = everything[..k].iter().map(|b| b.num_rows()).sum();
        let want = all(&schema, &everything).slice(head, 300 - head);
        assert_eq!(all(&schema, &out.batches()), want, "after {k} batches");
    }
    Ok(())
}

#[test]
fn following_a_directory_reads_every_published_file_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut options = ParquetSourceOptions::new(dir.path());
    options.follow = true;
    options.schema = Some(batch(0, 1).schema());
    let out = MemorySink::new();
    let flow = Dataflow::new(config(16));
    flow.source("follow", ParquetSource::new(options)?)
        .sink("out", out.clone());
    let handle = flow.start()?;
    let publish_dir = dir.path().to_path_buf();
    let publisher = std::thread::spawn(move || -> Result<(), Error> {
        for k in 0..8 {
            // the sink writes `.name.tmp` and renames on close
            let path = publish_dir.join(format!("part-{k:03}.parquet"));
            let mut sink = ParquetSink::new(ParquetSinkOptions::new(&path))?;
            let task = TaskInfo {
                operator: Arc::from("publisher"),
                subtask: 0,
                parallelism: 1,
                key_groups: eddy_core::keys::DEFAULT_KEY_GROUPS,
            };
            sink.open(&task)?;
            sink.write(&batch(k * 40, 25))?;
            std::thread::sleep(Duration::from_millis(5));
            sink.write(&batch(k * 40 + 25, 15))?;
            sink.close()?;
            std::thread::sleep(Duration::from_millis(15));
        }
        Ok(())
    });
    publisher.join().map_err(|_| "publisher panicked")??;
    // let the source catch up live before stopping, so that following is what is tested
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.num_rows() < 320 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        out.num_rows(),
        320,
        "the source picks up new files while running"
    );
    handle.stop();
    handle.join()?;
    let got = ids(&all(&batch(0, 1).schema(), &out.batches()));
    let want = ids(&batch(0, 320));
    assert_eq!(got, want, "every row exactly once, in file order");
    Ok(())
}

#[test]
fn csv_sink_output_reads_back_identically() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("out.csv");
    let flow = Dataflow::new(DataflowConfig::default());
    flow.source("in", MemorySource::from_batches(input())?)
        .sink("out", CsvSink::new(CsvSinkOptions::new(&path))?);
    flow.run()?;
    let schema = input()[0].schema();
    let reader = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .build(File::open(&path)?)?;
    let got = reader.collect::<Result<Vec<_>, _>>()?;
    assert_eq!(all(&schema, &got), all(&schema, &input()));
    Ok(())
}

#[test]
fn jsonl_sink_output_reads_back_identically() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("out.jsonl");
    let flow = Dataflow::new(DataflowConfig::default());
    flow.source("in", MemorySource::from_batches(input())?)
        .sink("out", JsonLinesSink::new(JsonLinesSinkOptions::new(&path))?);
    flow.run()?;
    let schema = input()[0].schema();
    let reader = arrow::json::ReaderBuilder::new(schema.clone())
        .build(std::io::BufReader::new(File::open(&path)?))?;
    let got = reader.collect::<Result<Vec<_>, _>>()?;
    assert_eq!(all(&schema, &got), all(&schema, &input()));
    Ok(())
}

#[test]
fn parallel_csv_sink_files_union_to_the_input() -> TestResult {
    let dir = tempfile::tempdir()?;
    let flow = Dataflow::new(DataflowConfig::default());
    spread(flow.source("in", MemorySource::from_batches(input())?), 2).sink(
        "out",
        CsvSink::new(CsvSinkOptions::new(dir.path().join("out.csv")))?,
    );
    flow.run()?;
    let schema = input()[0].schema();
    let mut got = Vec::new();
    for k in 0..2 {
        let file = File::open(dir.path().join(format!("out-{k}.csv")))?;
        let reader = arrow::csv::ReaderBuilder::new(schema.clone())
            .with_header(true)
            .build(file)?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        assert!(!batches.is_empty(), "subtask {k} wrote rows");
        got.extend(ids(&all(&schema, &batches)));
    }
    got.sort();
    let mut want = ids(&all(&schema, &input()));
    want.sort();
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn sink_io_errors_name_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x")?;
    let flow = Dataflow::new(DataflowConfig::default());
    flow.source("in", MemorySource::from_batches(input())?)
        .sink(
            "out",
            CsvSink::new(CsvSinkOptions::new(blocker.join("out.csv")))?,
        );
    let err = flow.run().expect_err("a file is in the way");
    assert!(
        err.to_string().contains(&blocker.display().to_string()),
        "{err}"
    );
    Ok(())
}
