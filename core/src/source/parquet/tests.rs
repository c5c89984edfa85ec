use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;

use arrow::array::{Int64Array, StringArray};
use arrow::compute::concat_batches;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::*;
use crate::source::BatchBounds;

fn batch(from: i64, n: i64) -> RecordBatch {
    RecordBatch::try_from_iter([
        (
            "n",
            Arc::new(Int64Array::from_iter_values(from..from + n)) as _,
        ),
        (
            "s",
            Arc::new(StringArray::from_iter(
                (from..from + n).map(|i| (i % 4 != 0).then(|| format!("v{i}"))),
            )) as _,
        ),
    ])
    .unwrap()
}

/// Writes rows `from..from + n` to `path` in row groups of `group` rows.
fn write(path: &Path, from: i64, n: i64, group: usize) {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let b = batch(from, n);
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), b.schema(), Some(props)).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
}

fn ctx(max_rows: usize, subtask: usize, parallelism: usize) -> SourceContext {
    let mut c = SourceContext::standalone("pq");
    c.bounds = BatchBounds {
        max_rows,
        ..BatchBounds::default()
    };
    c.task.subtask = subtask;
    c.task.parallelism = parallelism;
    c
}

/// Polls until the end (or until idle), returning the batches.
fn drain(s: &mut ParquetSource, c: &SourceContext) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    loop {
        match s.poll_next(c).unwrap() {
            SourcePoll::Batch(b) => {
                assert!(b.num_rows() <= c.bounds.max_rows);
                out.push(b);
            }
            SourcePoll::Idle | SourcePoll::End => return out,
            SourcePoll::Watermark(_) => {}
        }
    }
}

fn ns(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            a.values().to_vec()
        })
        .collect()
}

#[test]
fn reads_a_directory_in_name_order_ignoring_hidden_and_tmp() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("b.parquet"), 10, 5, 100);
    write(&dir.path().join("a.parquet"), 0, 10, 3);
    write(&dir.path().join(".c.parquet.tmp"), 100, 5, 100);
    write(&dir.path().join(".d.parquet"), 100, 5, 100);
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    let mut s = ParquetSource::new(ParquetSourceOptions::new(dir.path())).unwrap();
    let c = ctx(4, 0, 1);
    s.open(&c).unwrap();
    assert_eq!(c.progress.total.load(Ordering::Relaxed), 15);
    let got = drain(&mut s, &c);
    assert_eq!(ns(&got), (0..15).collect::<Vec<_>>());
    let all = concat_batches(&s.schema(), &got).unwrap();
    assert_eq!(
        all,
        concat_batches(&s.schema(), &[batch(0, 10), batch(10, 5)]).unwrap()
    );
    assert_eq!(c.progress.done.load(Ordering::Relaxed), 15);
}

#[test]
fn seek_to_every_position_replays_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("1.parquet"), 0, 7, 3);
    write(&dir.path().join("2.parquet"), 7, 9, 4);
    let options = ParquetSourceOptions::new(dir.path());
    let c = ctx(3, 0, 1);
    let mut s = ParquetSource::new(options.clone()).unwrap();
    let mut positions = vec![s.position()];
    let mut seen = Vec::new();
    while let SourcePoll::Batch(b) = s.poll_next(&c).unwrap() {
        seen.extend(ns(&[b]));
        positions.push(s.position());
    }
    assert_eq!(seen, (0..16).collect::<Vec<_>>());
    for p in positions {
        let mut before = ParquetSource::new(options.clone()).unwrap();
        let mut head = Vec::new();
        while before.position() != p {
            match before.poll_next(&c).unwrap() {
                SourcePoll::Batch(b) => head.extend(ns(&[b])),
                _ => panic!("position {p:?} never reached"),
            }
        }
        let mut fresh = ParquetSource::new(options.clone()).unwrap();
        fresh.seek(&p).unwrap();
        fresh.open(&c).unwrap();
        assert_eq!(c.progress.done.load(Ordering::Relaxed), head.len() as u64);
        head.extend(ns(&drain(&mut fresh, &c)));
        assert_eq!(head, (0..16).collect::<Vec<_>>(), "resuming at {p:?}");
    }
}

#[test]
fn a_clone_resumes_where_the_original_is() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.parquet");
    write(&file, 0, 10, 4);
    let c = ctx(3, 0, 1);
    let mut s = ParquetSource::new(ParquetSourceOptions::new(&file)).unwrap();
    assert!(matches!(s.poll_next(&c).unwrap(), SourcePoll::Batch(_)));
    let mut copy = s.clone();
    assert_eq!(ns(&drain(&mut copy, &c)), (3..10).collect::<Vec<_>>());
    assert_eq!(ns(&drain(&mut s, &c)), (3..10).collect::<Vec<_>>());
}

#[test]
fn splits_files_and_row_groups_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        write(&dir.path().join(format!("{i}.parquet")), i * 10, 10, 4);
    }
    let mut union = Vec::new();
    for sub in 0..2 {
        let options = ParquetSourceOptions::new(dir.path());
        let mut s = ParquetSource::new(options)
            .unwrap()
            .for_subtask(sub, 2)
            .unwrap();
        assert_eq!(s.files.len(), if sub == 0 { 3 } else { 2 });
        union.extend(ns(&drain(&mut s, &ctx(100, sub, 2))));
    }
    union.sort();
    assert_eq!(union, (0..50).collect::<Vec<_>>());

    // one file of 3 row groups (4+4+2 rows) over 3 subtasks
    let file = dir.path().join("0.parquet");
    let mut union = Vec::new();
    for sub in 0..3 {
        let f = ParquetSource::factory(ParquetSourceOptions::new(&file));
        let c = ctx(100, sub, 3);
        let mut s = f(&c.task).unwrap();
        s.open(&c).unwrap();
        let want = [4, 4, 2][sub];
        assert_eq!(c.progress.total.load(Ordering::Relaxed), want);
        // row offsets count rows of the selected row groups: seek past one of them
        let mut split = ParquetSource::new(ParquetSourceOptions::new(&file))
            .unwrap()
            .for_subtask(sub, 3)
            .unwrap();
        split
            .seek(&SourcePosition::of(&Position {
                file_index: 0,
                file: Some("0.parquet".into()),
                row: 2,
            }))
            .unwrap();
        let tail = ns(&drain(&mut split, &c));
        while let SourcePoll::Batch(b) = s.poll_next(&c).unwrap() {
            union.extend(ns(&[b]));
        }
        assert_eq!(tail, union[union.len() - want as usize + 2..].to_vec());
    }
    union.sort();
    assert_eq!(union, (0..10).collect::<Vec<_>>());
}

#[test]
fn a_plain_clone_refuses_to_run_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.parquet"), 0, 3, 10);
    let mut s = ParquetSource::new(ParquetSourceOptions::new(dir.path())).unwrap();
    assert!(matches!(s.open(&ctx(10, 1, 2)), Err(Error::Config { .. })));
    assert!(s.clone().for_subtask(2, 2).is_err());
}

#[test]
fn schema_mismatch_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.parquet"), 0, 3, 10);
    let other =
        RecordBatch::try_from_iter([("n", Arc::new(StringArray::from(vec!["x"])) as _)]).unwrap();
    let path = dir.path().join("b.parquet");
    let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), other.schema(), None).unwrap();
    w.write(&other).unwrap();
    w.close().unwrap();
    match ParquetSource::new(ParquetSourceOptions::new(dir.path())) {
        Err(Error::Schema { context, .. }) => assert!(context.contains("b.parquet"), "{context}"),
        other => panic!("expected a schema error, got {other:?}"),
    }
}

#[test]
fn follows_a_directory_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ParquetSourceOptions::new(dir.path());
    options.follow = true;
    // an empty directory needs the schema
    assert!(matches!(
        ParquetSource::new(options.clone()),
        Err(Error::Config { .. })
    ));
    options.schema = Some(batch(0, 1).schema());
    let mut s = ParquetSource::new(options).unwrap();
    let c = ctx(100, 0, 1);
    s.open(&c).unwrap();
    assert!(matches!(s.poll_next(&c).unwrap(), SourcePoll::Idle));
    write(&dir.path().join("001.parquet"), 0, 5, 10);
    assert_eq!(ns(&drain(&mut s, &c)), (0..5).collect::<Vec<_>>());
    let at = s.position();
    write(&dir.path().join("000.parquet"), 100, 5, 10); // sorts before: skipped
    write(&dir.path().join("002.parquet"), 5, 5, 10);
    assert_eq!(ns(&drain(&mut s, &c)), (5..10).collect::<Vec<_>>());
    assert_eq!(c.progress.total.load(Ordering::Relaxed), 10);
    // a file published before stop is still read, then the source ends
    write(&dir.path().join("003.parquet"), 10, 5, 10);
    s.stop_following();
    assert!(matches!(s.poll_next(&c).unwrap(), SourcePoll::Batch(_)));
    assert!(matches!(s.poll_next(&c).unwrap(), SourcePoll::End));
    // resuming after 001 from a fresh listing reads 002 and 003 (000 sorts before: done)
    let mut options = ParquetSourceOptions::new(dir.path());
    options.follow = true;
    let mut fresh = ParquetSource::new(options).unwrap();
    fresh.seek(&at).unwrap();
    fresh.stop_following();
    assert_eq!(ns(&drain(&mut fresh, &c)), (5..15).collect::<Vec<_>>());
}

#[test]
fn an_unreadable_visible_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ParquetSourceOptions::new(dir.path());
    options.follow = true;
    options.schema = Some(batch(0, 1).schema());
    let mut s = ParquetSource::new(options).unwrap();
    let c = ctx(100, 0, 1);
    assert!(matches!(s.poll_next(&c).unwrap(), SourcePoll::Idle));
    let bad = dir.path().join("x.parquet");
    std::fs::write(&bad, b"PAR1 half a file").unwrap();
    match s.poll_next(&c) {
        Err(Error::Io { path, .. }) => assert_eq!(path, bad),
        other => panic!("expected an error naming the file, got {other:?}"),
    }
}

#[test]
fn bad_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.parquet");
    write(&file, 0, 3, 10);
    let mut options = ParquetSourceOptions::new(&file);
    options.follow = true;
    assert!(matches!(
        ParquetSource::new(options),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        ParquetSource::new(ParquetSourceOptions::new(dir.path().join("missing"))),
        Err(Error::Io { .. })
    ));
    let mut s = ParquetSource::new(ParquetSourceOptions::new(&file)).unwrap();
    let past = SourcePosition::of(&Position {
        file_index: 0,
        file: Some("a.parquet".into()),
        row: 4,
    });
    assert!(s.seek(&past).is_err());
    let gone = SourcePosition::of(&Position {
        file_index: 0,
        file: Some("zzz.parquet".into()),
        row: 0,
    });
    assert!(s.seek(&gone).is_err());
}

#[test]
fn is_send_sync_clone() {
    fn check<T: Source + Clone + Sync>() {}
    check::<ParquetSource>();
}

#[test]
fn row_offset_counts_rows_of_the_selected_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.parquet");
    write(&file, 0, 10, 4); // row groups: 0..4, 4..8, 8..10
    let c = ctx(100, 0, 2);
    let mut s = ParquetSource::new(ParquetSourceOptions::new(&file))
        .unwrap()
        .for_subtask(0, 2)
        .unwrap(); // row groups 0 and 2
    assert_eq!(s.total_rows(), 6);
    s.seek(&SourcePosition::of(&Position {
        file_index: 0,
        file: Some("x.parquet".into()),
        row: 5,
    }))
    .unwrap();
    assert_eq!(ns(&drain(&mut s, &c)), vec![9]);
}
