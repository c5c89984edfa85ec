//! Tests of [`FileSource`] as a whole: positions, splits, linger, follow.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use proptest::prelude::*;

use super::{CsvOptions, CsvSource, FileSource, JsonLinesOptions};
use crate::operator::TaskInfo;
use crate::source::{Source, SourceContext, SourcePoll, SourcePosition};

fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns())
                .map(|c| array_value_to_string(b.column(c), r).unwrap_or_default())
                .collect();
            out.push(cells.join("|"));
        }
    }
    out
}

fn ctx(max_rows: usize) -> SourceContext {
    let mut ctx = SourceContext::standalone("test");
    ctx.bounds.max_rows = max_rows;
    ctx
}

/// Polls a bounded source to its end: (batch, position after it) pairs.
fn drain(src: &mut dyn Source, ctx: &SourceContext) -> Vec<(RecordBatch, SourcePosition)> {
    src.open(ctx).unwrap();
    let mut out = Vec::new();
    loop {
        match src.poll_next(ctx).unwrap() {
            SourcePoll::Batch(b) => out.push((b, src.position())),
            SourcePoll::End => return out,
            other => panic!("bounded source returned {other:?}"),
        }
    }
}

fn batches(v: &[(RecordBatch, SourcePosition)]) -> Vec<RecordBatch> {
    v.iter().map(|(b, _)| b.clone()).collect()
}

#[test]
fn file_sources_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<CsvSource>();
    check::<super::JsonLinesSource>();
    check::<FileSource>();
}

fn seek_round_trip(path: &Path, max_rows: usize) {
    let ctx = ctx(max_rows);
    let source = CsvSource::new(CsvOptions::new(path)).unwrap();
    let all = drain(&mut source.clone(), &ctx);
    let all_rows = rows(&batches(&all));
    assert!(all.len() > 3);
    let mut before = 0;
    for (batch, pos) in &all {
        before += batch.num_rows();
        let mut resumed = source.clone();
        resumed.seek(pos).unwrap(); // seek before open
        let rest = rows(&batches(&drain(&mut resumed, &ctx)));
        assert_eq!(rest, all_rows[before..], "after {before} rows at {pos:?}");
        // and seek after open, on a source that has read a while
        let mut moved = source.clone();
        moved.open(&ctx).unwrap();
        let _ = moved.poll_next(&ctx).unwrap();
        moved.seek(pos).unwrap();
        let mut rest = Vec::new();
        while let SourcePoll::Batch(b) = moved.poll_next(&ctx).unwrap() {
            rest.push(b);
        }
        assert_eq!(rows(&rest), all_rows[before..]);
    }
}

#[test]
fn seek_to_every_batch_position_replays_exactly_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from("n,s\n");
    for i in 0..40 {
        match i {
            5 => body.push_str("bad,row,here\n"),
            9 => body.push_str("9,\"quoted, with\nnewline\"\n"),
            _ => body.push_str(&format!("{i},v{i}\n")),
        }
    }
    let file = dir.path().join("one.csv");
    std::fs::write(&file, &body).unwrap();
    seek_round_trip(&file, 7);
    let sub = dir.path().join("dir");
    std::fs::create_dir(&sub).unwrap();
    for (k, chunk) in [
        "n,s\n1,a\n2,b\n3,c\n",
        "n,s\n4,d\n",
        "n,s\n",
        "n,s\n5,e\n6,f\n7,g",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(sub.join(format!("{k:03}.csv")), chunk).unwrap();
    }
    seek_round_trip(&sub, 2);
}

#[test]
fn rejects_carry_file_line_and_column_and_the_batch_still_goes_out() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.jsonl");
    std::fs::write(&p, "{\"a\":1}\n{\"a\":\"no\"}\n\n{\"a\":3\n{\"a\":4}\n").unwrap();
    let ctx = ctx(100);
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("a", arrow::datatypes::DataType::Int64, true),
    ]));
    let mut src = FileSource::new(JsonLinesOptions::new(&p).with_schema(schema)).unwrap();
    let out = drain(&mut src, &ctx);
    assert_eq!(rows(&batches(&out)), ["1", "4"]);
    let bad: Vec<_> = ctx
        .dead_letters
        .records()
        .into_iter()
        .map(|r| (r.line, r.column))
        .collect();
    assert_eq!(bad, [(2, 1), (4, 0)]);
    assert!(ctx.dead_letters.records()[0].source.ends_with("x.jsonl"));
}

#[test]
fn linger_cuts_a_partial_batch_only_when_the_input_is_idle() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.csv");
    std::fs::write(&p, "n\n1\n2\n3").unwrap();
    let mut ctx = ctx(100);
    ctx.bounds.linger = Duration::from_secs(3600);
    let mut src = CsvSource::new(CsvOptions::new(&p).with_follow(true)).unwrap();
    src.open(&ctx).unwrap();
    assert!(matches!(src.poll_next(&ctx).unwrap(), SourcePoll::Idle));
    ctx.bounds.linger = Duration::ZERO;
    let SourcePoll::Batch(b) = src.poll_next(&ctx).unwrap() else {
        panic!("expected the lingering batch")
    };
    assert_eq!(rows(&[b]), ["1", "2"], "the unterminated `3` is held back");
    assert!(matches!(src.poll_next(&ctx).unwrap(), SourcePoll::Idle));
    src.stop_following();
    let SourcePoll::Batch(b) = src.poll_next(&ctx).unwrap() else {
        panic!("expected the final line")
    };
    assert_eq!(rows(&[b]), ["3"]);
    assert!(matches!(src.poll_next(&ctx).unwrap(), SourcePoll::End));
}

fn task(subtask: usize, parallelism: usize) -> TaskInfo {
    TaskInfo {
        operator: Arc::from("split"),
        subtask,
        parallelism,
        key_groups: crate::keys::DEFAULT_KEY_GROUPS,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every line is read by exactly one split, with its true line number, for p = 1..=5.
    #[test]
    fn splits_cover_every_line_exactly_once(
        lens in proptest::collection::vec(0usize..30, 0..60),
        final_newline in any::<bool>(),
        chunk in prop_oneof![Just(5usize), Just(64), Just(1 << 20)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.csv");
        let mut body = String::from("line,text\n");
        for (i, len) in lens.iter().enumerate() {
            body.push_str(&format!("{},{}\n", i + 2, "x".repeat(*len)));
        }
        if !final_newline && body.ends_with('\n') && !lens.is_empty() {
            body.pop();
        }
        std::fs::write(&p, &body).unwrap();
        // `text` is an integer column: every non-empty text is rejected with its line number,
        // so both the rows and the dead letters show where each line was read.
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("line", arrow::datatypes::DataType::Int64, true),
            arrow::datatypes::Field::new("text", arrow::datatypes::DataType::Int64, true),
        ]));
        let mut opts = CsvOptions::new(&p).with_schema(schema);
        opts.chunk_size = chunk;
        for par in 1..=5 {
            let ctx = ctx(4);
            let factory = FileSource::factory(opts.clone());
            let mut got = Vec::new();
            for i in 0..par {
                let mut src = factory(&task(i, par)).unwrap();
                src.open(&ctx).unwrap();
                while let SourcePoll::Batch(b) = src.poll_next(&ctx).unwrap() {
                    got.extend(rows(&[b]).into_iter().map(|r| r.replace('|', ",")));
                }
            }
            for r in ctx.dead_letters.records() {
                let n: u64 = r.raw.split(',').next().unwrap().parse().unwrap();
                prop_assert_eq!(r.line, n, "line number of {}", r.raw);
                prop_assert_eq!(r.column, 2);
                got.push(r.raw);
            }
            got.sort_by_key(|r| r.split(',').next().and_then(|n| n.parse::<u64>().ok()));
            let want: Vec<String> = lens
                .iter()
                .enumerate()
                .map(|(i, len)| format!("{},{}", i + 2, "x".repeat(*len)))
                .collect();
            prop_assert_eq!(&got, &want, "parallelism {}", par);
        }
    }
}

/// Parse throughput on `eddy gen ctr`-shaped data (1 M rows, ~88 bytes each). Run with
/// `cargo test --release -p eddy-core --lib csv_parse_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "throughput measurement; run in release"]
fn csv_parse_throughput() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctr.csv");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut body = String::from("label,f0,f1,f2,f3,f4,c0,c1,c2,c3,c4,c5,c6,c7,c8,c9\n");
    let rows = 1_000_000;
    for _ in 0..rows {
        body.push_str(if rng.random_bool(0.2) { "1" } else { "0" });
        for _ in 0..5 {
            body.push_str(&format!(",{:.5}", rng.random_range(-3.0f64..3.0)));
        }
        for _ in 0..10 {
            body.push_str(&format!(",v{}", rng.random_range(0..1000)));
        }
        body.push('\n');
    }
    std::fs::write(&path, &body).unwrap();
    let ctx = ctx(8192);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut src = CsvSource::new(CsvOptions::new(&path)).unwrap();
        let t = std::time::Instant::now();
        let n: usize = drain(&mut src, &ctx)
            .iter()
            .map(|(b, _)| b.num_rows())
            .sum();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(n, rows);
    }
    println!(
        "csv parse: {rows} rows, {:.1} MB in {best:.3}s: {:.2} M rows/s, {:.0} MB/s",
        body.len() as f64 / 1e6,
        rows as f64 / best / 1e6,
        body.len() as f64 / best / 1e6
    );
}

mod reader {
    use super::super::reader::*;
    use std::path::Path;

    fn cfg(root: &Path, follow: bool) -> ReaderConfig {
        ReaderConfig {
            root: Root::new(root),
            follow,
            csv: Some((b'"', b',')),
            chunk_size: 7, // tiny: records cross buffer refills
            max_record: 1 << 20,
            assign: None,
        }
    }

    fn drain(r: &mut LineReader) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        while let Next::Record(rec) = r.next().unwrap() {
            out.push((String::from_utf8_lossy(rec.bytes).into_owned(), rec.line));
        }
        out
    }

    #[test]
    fn quoted_newlines_crlf_bom_and_final_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, b"\xef\xbb\xbfh\r\n\"x\ny\",1\r\nlast").unwrap();
        let mut r = LineReader::new(cfg(&p, false), ReadPos::default(), None);
        let got = drain(&mut r);
        let want = [("h", 1), ("\"x\ny\",1", 2), ("last", 4)];
        let want: Vec<_> = want.iter().map(|(s, l)| (s.to_string(), *l)).collect();
        assert_eq!(got, want);
        assert!(matches!(r.next().unwrap(), Next::End));
    }

    #[test]
    fn follow_holds_back_a_partial_line_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"one\ntw").unwrap();
        let mut r = LineReader::new(cfg(&p, true), ReadPos::default(), None);
        assert_eq!(drain(&mut r), vec![("one".to_string(), 1)]);
        assert!(matches!(r.next().unwrap(), Next::Idle));
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, b"o\nthr").unwrap();
        assert_eq!(drain(&mut r), vec![("two".to_string(), 2)]);
        r.stop_following();
        assert_eq!(drain(&mut r), vec![("thr".to_string(), 3)]);
        assert!(matches!(r.next().unwrap(), Next::End));
    }

    #[test]
    fn directory_in_name_order_skips_hidden_and_tmp_and_honours_stop() {
        let dir = tempfile::tempdir().unwrap();
        for (n, body) in [
            ("b", "b1\nb2\n"),
            ("a", "a1\n"),
            (".h", "x\n"),
            ("c.tmp", "y\n"),
        ] {
            std::fs::write(dir.path().join(n), body).unwrap();
        }
        let mut r = LineReader::new(cfg(dir.path(), false), ReadPos::default(), None);
        let got: Vec<_> = drain(&mut r).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, ["a1", "b1", "b2"]);
        let stop = StopAt {
            file: "b".into(),
            offset: 3,
        };
        let mut r = LineReader::new(cfg(dir.path(), false), ReadPos::default(), Some(stop));
        let got: Vec<_> = drain(&mut r).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, ["a1", "b1"]);
    }
}

mod decode {
    use super::super::decode::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, false),
        ]))
    }

    #[test]
    fn rollback_drops_a_half_row_and_empty_is_null() {
        let mut b = BatchBuilder::new(schema(), 4).unwrap();
        b.column(0).push_text(b"1").unwrap();
        b.column(1).push_text(b"x").unwrap();
        b.column(2).push_text(b"TRUE").unwrap();
        b.commit_row().unwrap();
        b.column(0).push_text(b"").unwrap();
        b.column(1).push_text(b"yy").unwrap();
        assert!(b.column(2).push_text(b"maybe").is_err());
        b.rollback();
        b.column(0).push_text(b"").unwrap();
        b.column(1).push_text(b"").unwrap();
        assert!(b.column(2).push_null().is_err(), "non-nullable");
        b.column(2).push_text(b"false").unwrap();
        b.commit_row().unwrap();
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let a = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![Some(1), None]);
        let s = batch.column(1).as_string::<i32>();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![Some("x"), None]);
        assert_eq!(b.rows(), 0);
    }

    #[test]
    fn invalid_utf8_and_unsupported_types_are_errors() {
        let mut b = BatchBuilder::new(schema(), 4).unwrap();
        assert!(b.column(1).push_text(b"\xff\xfe").is_err());
        let bad = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        assert!(BatchBuilder::new(bad, 4).is_err());
    }
}
