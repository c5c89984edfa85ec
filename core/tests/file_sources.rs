//! File sources through a real dataflow: bounded vs followed input, the hybrid switch under a
//! live writer, and malformed input with dead letters or failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::util::display::array_value_to_string;
use eddy_core::prelude::*;
use eddy_core::source::file::{CsvOptions, CsvSource, JsonLinesOptions, JsonLinesSource};
use eddy_core::source::hybrid::HybridSource;
use eddy_core::source::{ErrorPolicy, Rejected};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn config() -> DataflowConfig {
    DataflowConfig {
        idle_poll: Duration::from_millis(1),
        ..DataflowConfig::default()
    }
}

fn rows_of(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns())
                .map(|c| array_value_to_string(b.column(c), r).unwrap())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

fn sorted_rows(sink: &MemorySink) -> Vec<String> {
    let mut rows = rows_of(&sink.batches());
    rows.sort();
    rows
}

fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("tag", DataType::Utf8, true),
        Field::new("ok", DataType::Boolean, true),
    ]))
}

fn events_csv(rows: usize) -> String {
    let mut s = String::from("id,score,tag,ok\n");
    for i in 0..rows {
        match i % 7 {
            3 => s.push_str(&format!("{i},,\"t, {i}\",true\n")),
            5 => s.push_str(&format!("{i},{}.25,\"multi\nline {i}\",\n", i % 13)),
            _ => s.push_str(&format!("{i},{}.5,t{i},false\n", i % 11)),
        }
    }
    s
}

fn events_jsonl(rows: usize) -> String {
    let mut s = String::new();
    for i in 0..rows {
        match i % 5 {
            2 => s.push_str(&format!("{{\"id\":{i},\"tag\":\"t{i}\"}}\n")),
            _ => s.push_str(&format!(
                "{{\"id\":{i},\"score\":{}.5,\"tag\":\"t{i}\",\"ok\":true}}\n",
                i % 11
            )),
        }
    }
    s
}

/// Writes `body` to `path` in pieces that cut lines anywhere, pausing briefly between them.
fn write_in_pieces(path: &Path, body: &[u8], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut f = std::fs::File::create(path).unwrap();
    let mut at = 0;
    while at < body.len() {
        let n = rng.random_range(1..400).min(body.len() - at);
        f.write_all(&body[at..at + n]).unwrap();
        f.flush().unwrap();
        at += n;
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// The one pipeline under test: source → keep rows with an id → sink. With `writer`, the job
/// follows its input while another thread runs `writer`, and is stopped once it is done.
fn run_pipeline<S: Source + Clone + Sync>(
    source: S,
    writer: Option<Box<dyn FnOnce() + Send>>,
) -> Vec<String> {
    let out = MemorySink::new();
    let flow = Dataflow::new(config());
    flow.source("events", source)
        .filter("has id", |b| Ok(arrow::compute::is_not_null(b.column(0))?))
        .sink("out", out.clone());
    let handle = flow.start().unwrap();
    if let Some(write) = writer {
        std::thread::spawn(write).join().unwrap();
        handle.stop();
    }
    let summary = handle.join().unwrap();
    assert_eq!(summary.dead_letters, 0);
    sorted_rows(&out)
}

#[test]
fn csv_bounded_and_followed_give_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let body = events_csv(1500);
    let bounded_path = dir.path().join("bounded.csv");
    std::fs::write(&bounded_path, &body).unwrap();
    let opts = |p: &Path| CsvOptions::new(p).with_schema(events_schema());
    let bounded = run_pipeline(CsvSource::new(opts(&bounded_path)).unwrap(), None);
    assert_eq!(bounded.len(), 1500);

    // the followed file does not exist yet when the job starts
    let path = dir.path().join("followed.csv");
    let source = CsvSource::new(opts(&path).with_follow(true)).unwrap();
    let write = Box::new(move || write_in_pieces(&path, body.as_bytes(), 1));
    assert_eq!(run_pipeline(source, Some(write)), bounded);
}

#[test]
fn jsonl_bounded_and_followed_give_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let body = events_jsonl(1500);
    let bounded_path = dir.path().join("bounded.jsonl");
    std::fs::write(&bounded_path, &body).unwrap();
    let opts = |p: &Path| JsonLinesOptions::new(p).with_schema(events_schema());
    let bounded = run_pipeline(JsonLinesSource::new(opts(&bounded_path)).unwrap(), None);
    assert_eq!(bounded.len(), 1500);

    let path = dir.path().join("followed.jsonl");
    std::fs::write(&path, "").unwrap();
    let source = JsonLinesSource::new(opts(&path).with_follow(true)).unwrap();
    let write = Box::new(move || write_in_pieces(&path, body.as_bytes(), 2));
    assert_eq!(run_pipeline(source, Some(write)), bounded);
}

/// Appends numbered records in pieces, rolling to a new file every `per_file` records. At
/// record `pause_at` it stops half-way through the line, says so on `ready`, and waits for `go`.
fn numbered_writer(
    dir: PathBuf,
    total: u64,
    per_file: u64,
    pause_at: u64,
) -> (
    std::thread::JoinHandle<()>,
    mpsc::Receiver<()>,
    mpsc::Sender<()>,
) {
    let (ready_tx, ready) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut f: Option<std::fs::File> = None;
        for n in 0..total {
            if n % per_file == 0 {
                let name = dir.join(format!("part-{:05}.csv", n / per_file));
                let mut file = std::fs::File::create(name).unwrap();
                file.write_all(b"n,payload\n").unwrap();
                f = Some(file);
            }
            let Some(file) = f.as_mut() else {
                unreachable!()
            };
            let line = format!("{n},p{}\n", "x".repeat((n % 17) as usize));
            let cut = rng.random_range(1..line.len());
            file.write_all(&line.as_bytes()[..cut]).unwrap();
            file.flush().unwrap();
            if n == pause_at {
                ready_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            } else if n % 10 == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            file.write_all(&line.as_bytes()[cut..]).unwrap();
            file.flush().unwrap();
        }
    });
    (writer, ready, go)
}

#[test]
fn hybrid_switches_from_snapshot_to_tail_with_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let total = 6000;
    // the source starts mid-way: after two roll-overs, half-way through a line
    let (writer, ready, go) = numbered_writer(dir.path().to_path_buf(), total, 700, 1500);
    ready.recv().unwrap();
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, false),
    ]));
    let source =
        HybridSource::snapshot_then_tail(CsvOptions::new(dir.path()).with_schema(schema)).unwrap();
    let out = MemorySink::new();
    let flow = Dataflow::new(config());
    flow.source("numbers", source).sink("out", out.clone());
    let handle = flow.start().unwrap();
    go.send(()).unwrap();
    writer.join().unwrap();
    handle.stop();
    let summary = handle.join().unwrap();
    assert_eq!(summary.dead_letters, 0);
    let got: Vec<i64> = out
        .batches()
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    let want: Vec<i64> = (0..total as i64).collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want, "every record exactly once, in order");
}

fn dead_letter_lines(path: &Path) -> Vec<Rejected> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_malformed<S: Source + Clone + Sync>(
    source: S,
    dead: &Path,
    policy: ErrorPolicy,
) -> (Result<JobSummary>, MemorySink) {
    let out = MemorySink::new();
    let flow = Dataflow::new(DataflowConfig {
        dead_letter_path: Some(dead.to_path_buf()),
        on_error: policy,
        bounds: eddy_core::source::BatchBounds {
            max_rows: 3,
            ..Default::default()
        },
        ..config()
    });
    flow.source("in", source).sink("out", out.clone());
    (flow.run(), out)
}

use eddy_core::metrics::JobSummary;

#[test]
fn malformed_csv_rows_go_to_dead_letters_or_fail_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    let mut body = b"id,score,tag,ok\n1,0.5,a,true\n2,0.7\n3,abc,c,false\n".to_vec();
    body.extend_from_slice(b"4,0.9,\xff\xfe,true\n5,1.0,\"e, quoted\",\n6,2,f,TRUE\n");
    std::fs::write(&path, &body).unwrap();
    let dead = dir.path().join("dead.jsonl");
    let opts = CsvOptions::new(&path).with_schema(events_schema());

    let (summary, out) = run_malformed(
        CsvSource::new(opts.clone()).unwrap(),
        &dead,
        ErrorPolicy::DeadLetter,
    );
    let summary = summary.unwrap();
    assert_eq!(
        sorted_rows(&out),
        ["1|0.5|a|true", "5|1.0|e, quoted|", "6|2.0|f|true"]
    );
    let rejected = dead_letter_lines(&dead);
    let places: Vec<_> = rejected.iter().map(|r| (r.line, r.column)).collect();
    assert_eq!(places, [(3, 0), (4, 2), (5, 3)]);
    assert!(rejected.iter().all(|r| r.source.ends_with("bad.csv")));
    assert_eq!(rejected[0].raw, "2,0.7");
    assert_eq!(summary.dead_letters, 3);
    assert!(
        summary.to_string().contains("malformed records: 3"),
        "{summary}"
    );

    let (failed, _) = run_malformed(CsvSource::new(opts).unwrap(), &dead, ErrorPolicy::Fail);
    let err = failed.unwrap_err().to_string();
    assert!(err.contains("bad.csv:3:0"), "{err}");
}

#[test]
fn malformed_jsonl_lines_go_to_dead_letters_or_fail_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    let body =
        "{\"id\":1,\"tag\":\"a\"}\n{\"id\":\"two\"}\n{\"id\":3,\n[1,2]\n{\"id\":5,\"ok\":false}\n";
    std::fs::write(&path, body).unwrap();
    let dead = dir.path().join("dead.jsonl");
    let opts = JsonLinesOptions::new(&path).with_schema(events_schema());

    let (summary, out) = run_malformed(
        JsonLinesSource::new(opts.clone()).unwrap(),
        &dead,
        ErrorPolicy::DeadLetter,
    );
    let summary = summary.unwrap();
    assert_eq!(sorted_rows(&out), ["1||a|", "5|||false"]);
    let places: Vec<_> = dead_letter_lines(&dead)
        .iter()
        .map(|r| (r.line, r.column))
        .collect();
    assert_eq!(places, [(2, 1), (3, 0), (4, 0)]);
    assert_eq!(summary.dead_letters, 3);

    let (failed, _) = run_malformed(
        JsonLinesSource::new(opts).unwrap(),
        &dead,
        ErrorPolicy::Fail,
    );
    let err = failed.unwrap_err().to_string();
    assert!(err.contains("bad.jsonl:2:1"), "{err}");
}

#[test]
fn parallel_splits_through_a_dataflow_read_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    std::fs::write(
        &path,
        events_csv(2000).replace("\"multi\nline", "\"multi line"),
    )
    .unwrap();
    let opts = CsvOptions::new(&path).with_schema(events_schema());
    let single = run_pipeline(CsvSource::new(opts.clone()).unwrap(), None);
    let out = MemorySink::new();
    let flow = Dataflow::new(config());
    flow.source_with("events", CsvSource::factory(opts))
        .parallelism(4)
        .sink("out", out.clone());
    let summary = flow.run().unwrap();
    assert_eq!(summary.dead_letters, 0);
    assert_eq!(sorted_rows(&out), single);
}
