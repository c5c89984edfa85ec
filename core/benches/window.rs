//! Tumbling-window count over 1 M generated rows with 10 k string keys: the operator alone, and
//! behind `assign_timestamps` (the benchmark path CSV → key_by → tumbling count → sink, minus
//! the CSV parsing and the channels).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::record_batch::RecordBatch;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eddy_core::message::MAX_WATERMARK;
use eddy_core::operator::{Collector, Operator, Output};
use eddy_core::prelude::{Dataflow, DataflowConfig, MemorySink, MemorySource};
use eddy_core::window::{Agg, AssignTimestampsOperator, EventWindowOperator, WindowSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ROWS: usize = 1_000_000;
const KEYS: usize = 10_000;
const BATCH: usize = 8192;

/// 1 M rows, 10 k keys, one row per 0.1 ms of event time, a little out of order.
fn batches() -> Vec<RecordBatch> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let names: Vec<String> = (0..KEYS).map(|k| format!("key-{k:05}")).collect();
    (0..ROWS)
        .step_by(BATCH)
        .map(|start| {
            let n = BATCH.min(ROWS - start);
            let keys: StringArray = (0..n)
                .map(|_| Some(names[rng.random_range(0..KEYS)].as_str()))
                .collect();
            let ts: Int64Array = (start..start + n)
                .map(|i| Some(i as i64 / 10 - rng.random_range(0..50)))
                .collect();
            RecordBatch::try_from_iter([
                ("c3", Arc::new(keys) as ArrayRef),
                ("ts", Arc::new(ts) as ArrayRef),
            ])
            .expect("valid batch")
        })
        .collect()
}

fn window() -> EventWindowOperator {
    let spec = WindowSpec::tumbling(Duration::from_secs(1)).time_column("ts");
    EventWindowOperator::new("count", &["c3".to_string()], &spec, vec![Agg::count("n")])
        .expect("valid window")
}

/// Feeds what `from` emitted into `to`; returns the rows `to` emitted.
fn pass(from: &mut Collector, to: &mut dyn Operator, out: &mut Collector) -> usize {
    for o in from.drain() {
        match o {
            Output::Data(b) => to.process(0, b, out).expect("process"),
            Output::Watermark(w) => to.on_watermark(w, out).expect("watermark"),
            Output::Side(..) => {}
        }
    }
    out.drain()
        .map(|o| {
            if let Output::Data(b) = o {
                b.num_rows()
            } else {
                0
            }
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let input = batches();
    let mut group = c.benchmark_group("tumbling count, 1M rows, 10k keys");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(10);
    group.bench_function("window operator", |b| {
        b.iter(|| {
            let mut op = window();
            let mut out = Collector::default();
            let mut rows = 0;
            for (i, batch) in input.iter().enumerate() {
                op.process(0, batch.clone(), &mut out).expect("process");
                op.on_watermark(((i * BATCH) / 10) as i64 - 60, &mut out)
                    .expect("watermark");
                rows += out
                    .drain()
                    .map(|o| {
                        if let Output::Data(b) = o {
                            b.num_rows()
                        } else {
                            0
                        }
                    })
                    .sum::<usize>();
            }
            op.on_watermark(MAX_WATERMARK, &mut out).expect("watermark");
            black_box(rows)
        })
    });
    group.bench_function("assign_timestamps + window operator", |b| {
        b.iter(|| {
            let mut ts = AssignTimestampsOperator::new("time", "ts", Duration::from_millis(50));
            let mut op = window();
            let (mut mid, mut out) = (Collector::default(), Collector::default());
            let mut rows = 0;
            for batch in &input {
                ts.process(0, batch.clone(), &mut mid).expect("process");
                rows += pass(&mut mid, &mut op, &mut out);
            }
            ts.on_watermark(MAX_WATERMARK, &mut mid).expect("watermark");
            rows += pass(&mut mid, &mut op, &mut out);
            black_box(rows)
        })
    });
    group.bench_function(
        "dataflow: memory source -> assign_timestamps -> key_by -> window -> sink",
        |b| {
            b.iter(|| {
                let out = MemorySink::new();
                let flow = Dataflow::new(DataflowConfig::default());
                flow.source(
                    "rows",
                    MemorySource::from_batches(input.clone()).expect("source"),
                )
                .assign_timestamps("time", "ts", Duration::from_millis(50))
                .key_by(["c3"])
                .window(
                    "count",
                    WindowSpec::tumbling(Duration::from_secs(1)),
                    vec![Agg::count("n")],
                )
                .sink("out", out.clone());
                flow.run().expect("run");
                black_box(out.num_rows())
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
