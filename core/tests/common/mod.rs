//! Helpers shared by the checkpoint and failover integration tests.

#![allow(dead_code)] // each test binary uses its own subset

pub mod txn;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use eddy_core::source::generator::GeneratorSource;

/// `rows` events `(k, ts)`: `ts` counts up from 0 (ms) and `k` cycles through `k0..k{keys-1}`.
pub fn keyed_events(rows: u64, keys: i64) -> GeneratorSource {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
    ]));
    GeneratorSource::new(
        schema,
        Some(rows),
        Arc::new(move |start, len| {
            let ts: Vec<i64> = (start as i64..(start + len as u64) as i64).collect();
            let k: Vec<String> = ts.iter().map(|t| format!("k{}", t % keys)).collect();
            Ok(RecordBatch::try_from_iter([
                ("k", Arc::new(StringArray::from(k)) as ArrayRef),
                ("ts", Arc::new(Int64Array::from(ts)) as ArrayRef),
            ])?)
        }),
    )
}

/// The data rows (headers dropped), sorted, of every file in `dir` whose name starts with
/// `prefix`.
pub fn csv_rows(dir: &Path, prefix: &str) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            let text = std::fs::read_to_string(&path).unwrap();
            rows.extend(text.lines().skip(1).map(str::to_string));
        }
    }
    rows.sort();
    rows
}

/// Polls `done` every millisecond; fails the test (naming `what`) if it is still false after
/// two minutes — a hang guard, not a timing assertion.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "hung waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
