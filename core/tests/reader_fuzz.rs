//! Property test over the CSV and JSON-lines readers (issue #14's acceptance): random bytes
//! and random mutations of valid files, read at parallelism 1 and 2 with small buffers and a
//! small record limit, never panic, always end, and keep the accounting identity
//!
//! > rows read + dead letters = records in the file
//!
//! for **both** kinds of input. "Records in the file" is counted by [`records`], a naive
//! byte-at-a-time reading of the format's own rules, written apart from the reader: the line
//! terminator is `\r` when the file's first line end is a lone `\r`, else `\n`; in CSV a quote
//! opens a quoted field only at a field's start, a doubled quote inside one is a quote, and a
//! quoted field holds terminators; a record is what lies between terminators (the last one
//! needs none). Not counted: the CSV header (the file's first record, unless malformed) and
//! blank records (CSV: empty; JSON lines: only whitespace), after a leading byte-order mark
//! and a trailing `\r` are dropped. A record longer than the limit, or one whose quoted field
//! is still open at the end of the file, counts (it is a dead letter).

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use eddy_core::operator::TaskInfo;
use eddy_core::source::file::{CsvOptions, CsvSource, JsonLinesOptions, JsonLinesSource};
use eddy_core::source::{
    BatchBounds, DeadLetterSink, ErrorPolicy, SourceContext, SourceFactory, SourcePoll,
};
use proptest::prelude::*;

/// The record limit the readers get: small, so that random input hits it.
const MAX: usize = 96;
const BOM: &[u8] = b"\xef\xbb\xbf";

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Float64, true),
        Field::new("c", DataType::Utf8, true),
    ]))
}

/// The records of `bytes` by the format's rules (see the crate docs above).
fn records(bytes: &[u8], csv: bool) -> usize {
    let window = &bytes[..bytes.len().min(64 * 1024)];
    let term = match window.iter().position(|&b| b == b'\n' || b == b'\r') {
        Some(i) if window[i] == b'\r' && i + 1 < window.len() && window[i + 1] != b'\n' => b'\r',
        _ => b'\n',
    };
    // (start, end, quote left open)
    let mut recs: Vec<(usize, usize, bool)> = Vec::new();
    let (mut start, mut quoted, mut after_quote, mut field_start) = (0, false, false, true);
    for (i, &b) in bytes.iter().enumerate() {
        if csv && quoted {
            if after_quote {
                after_quote = false;
                if b == b'"' {
                    continue; // a doubled quote
                }
                quoted = false; // closed: this byte is plain
            } else {
                after_quote = b == b'"';
                continue;
            }
        }
        if b == term {
            recs.push((start, i, false));
            start = i + 1;
            field_start = true;
            continue;
        }
        if csv && b == b'"' && field_start {
            quoted = true;
        }
        field_start = b == b',';
    }
    if start < bytes.len() {
        recs.push((start, bytes.len(), quoted && !after_quote));
    }
    let mut count = 0;
    for (start, end, open) in recs {
        if end - start > MAX || open {
            count += 1;
            continue;
        }
        let mut body = &bytes[start..end];
        if start == 0 && body.starts_with(BOM) {
            body = &body[BOM.len()..];
        }
        if let Some(rest) = body.strip_suffix(b"\r") {
            body = rest;
        }
        let blank = if csv {
            body.is_empty()
        } else {
            body.trim_ascii().is_empty()
        };
        if (csv && start == 0) || blank {
            continue; // the header, or a blank line
        }
        count += 1;
    }
    count
}

/// Reads `factory` as `p` subtasks one after the other: (rows, dead letters).
fn read(factory: &SourceFactory, p: usize) -> (usize, u64) {
    let dead = Arc::new(DeadLetterSink::in_memory(ErrorPolicy::DeadLetter));
    let mut rows = 0;
    for i in 0..p {
        let task = TaskInfo {
            operator: Arc::from("fuzz"),
            subtask: i,
            parallelism: p,
            key_groups: eddy_core::keys::DEFAULT_KEY_GROUPS,
        };
        let ctx = SourceContext {
            task: task.clone(),
            bounds: BatchBounds {
                max_rows: 3,
                ..BatchBounds::default()
            },
            dead_letters: dead.clone(),
            progress: Default::default(),
        };
        let mut source = factory(&task).unwrap();
        source.open(&ctx).unwrap();
        let mut polls = 0;
        loop {
            polls += 1;
            assert!(polls < 100_000, "the reader does not end");
            match source.poll_next(&ctx).unwrap() {
                SourcePoll::Batch(b) => rows += b.num_rows(),
                SourcePoll::End => break,
                other => panic!("a bounded file source returned {other:?}"),
            }
        }
    }
    (rows, dead.count())
}

fn check(path: &Path, bytes: &[u8], csv: bool, chunk: usize) -> Result<(), TestCaseError> {
    std::fs::write(path, bytes).unwrap();
    let want = records(bytes, csv);
    let factory = if csv {
        let mut opts = CsvOptions::new(path)
            .with_schema(schema())
            .with_max_record_bytes(MAX);
        opts.chunk_size = chunk;
        // inference must not panic either (it may refuse)
        let _ = CsvSource::new(CsvOptions::new(path).with_max_record_bytes(MAX));
        CsvSource::factory(opts)
    } else {
        let mut opts = JsonLinesOptions::new(path)
            .with_schema(schema())
            .with_max_record_bytes(MAX);
        opts.chunk_size = chunk;
        let _ = JsonLinesSource::new(JsonLinesOptions::new(path).with_max_record_bytes(MAX));
        JsonLinesSource::factory(opts)
    };
    for p in [1, 2] {
        let (rows, dead) = read(&factory, p);
        prop_assert_eq!(
            rows + dead as usize,
            want,
            "parallelism {}: {} rows + {} dead letters in {:?}",
            p,
            rows,
            dead,
            String::from_utf8_lossy(bytes)
        );
    }
    Ok(())
}

/// Bytes drawn mostly from the characters that structure CSV and JSON, some arbitrary.
fn structural() -> impl Strategy<Value = u8> {
    prop_oneof![
        8 => prop::sample::select(b",\"\n\r{}[]:a1.- ".to_vec()),
        1 => any::<u8>(),
    ]
}

/// A valid CSV file: header, rows with quoted fields (delimiters, doubled quotes, newlines);
/// some rows are longer than the record limit.
fn valid_csv() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((any::<i32>(), 0u8..4, "[a-z]{0,12}|[a-z]{60,120}"), 0..25).prop_map(
        |rows| {
            let mut s = String::from("a,b,c\n");
            for (a, kind, text) in rows {
                let c = match kind {
                    0 => text,
                    1 => format!("\"{text}, \"\"q\"\"\""),
                    2 => format!("\"{text}\nnext line\""),
                    _ => String::new(),
                };
                s.push_str(&format!("{a},{}.5,{c}\n", a % 100));
            }
            s.into_bytes()
        },
    )
}

/// A valid JSON-lines file.
fn valid_jsonl() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((any::<i32>(), "[a-z \"]{0,12}|[a-z]{60,120}"), 0..25).prop_map(|rows| {
        let mut s = String::new();
        for (a, text) in rows {
            let c = serde_json::to_string(&text).unwrap();
            s.push_str(&format!("{{\"a\":{a},\"b\":{}.5,\"c\":{c}}}\n", a % 100));
        }
        s.into_bytes()
    })
}

/// Applies `edits` (position, kind, byte) to `bytes`: insert, delete or replace.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, kind, b) in edits {
        let at = if bytes.is_empty() {
            0
        } else {
            at % (bytes.len() + 1)
        };
        match kind % 3 {
            0 => bytes.insert(at, b),
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ if at < bytes.len() => bytes[at] = b,
            _ => bytes.push(b),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), structural()), 1..8)
}

fn chunk() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(7), Just(64), Just(1 << 16)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn csv_random_bytes(bytes in prop::collection::vec(structural(), 0..400), chunk in chunk()) {
        let dir = tempfile::tempdir().unwrap();
        check(&dir.path().join("r.csv"), &bytes, true, chunk)?;
    }

    #[test]
    fn csv_mutations(file in valid_csv(), edits in edits(), chunk in chunk()) {
        let dir = tempfile::tempdir().unwrap();
        check(&dir.path().join("m.csv"), &mutate(file, &edits), true, chunk)?;
    }

    #[test]
    fn jsonl_random_bytes(bytes in prop::collection::vec(structural(), 0..400), chunk in chunk()) {
        let dir = tempfile::tempdir().unwrap();
        check(&dir.path().join("r.jsonl"), &bytes, false, chunk)?;
    }

    #[test]
    fn jsonl_mutations(file in valid_jsonl(), edits in edits(), chunk in chunk()) {
        let dir = tempfile::tempdir().unwrap();
        check(&dir.path().join("m.jsonl"), &mutate(file, &edits), false, chunk)?;
    }
}

#[test]
fn the_oracle_counts_what_the_docs_say() {
    assert_eq!(records(b"a,b,c\n1,2,x\n\n3,\"q\nq\",y", true), 2);
    assert_eq!(records(b"a,b,c\r1,2,x\r3,4,\"open\r", true), 2);
    assert_eq!(records(b"h\n1,ab\"cd,x\n2,3,4\n", true), 2);
    assert_eq!(records(b"{}\n \n{\"a\":1}\r\n", false), 2);
}
