//! Consumer lag of the Kafka source against a real broker (tansu on 127.0.0.1, started per
//! test): the gauge equals the messages left after a partial read, grows when messages are
//! produced while following, returns to 0 once they are read; and a running job shows it on
//! its metrics and as `eddy_job_source_lag` through a `JobBoard`.
//!
//! Mutations seen caught (each run, then restored):
//! - the watch thread reading the log ends once and never again (`follow` returning after its
//!   first refresh): both tests time out, on "lag 150 after producing more" and "the lag grown
//!   by 300";
//! - the raw high watermark taken as the log end (`log_end` skipped in `refresh`; tansu's high
//!   watermark is the last batch's base offset + 1): "lag 250 after reading 150" and "a
//!   measured lag" (> 500 while held back) are never reached;
//! - the read path not handing its offsets to the watch (`report_lag` a no-op): "lag 250 after
//!   reading 150" and the job's "lag 0" once caught up are never reached;
//! - `JobBoard` not writing the lag family: the job test finds no `eddy_job_source_lag` line.

#[path = "support/kafka.rs"]
mod kafka;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use eddy_core::metrics::JobBoard;
use eddy_core::prelude::*;
use eddy_core::source::kafka::{KafkaSource, KafkaSourceOptions, KafkaUri};
use eddy_core::source::BatchBounds;

use kafka::Broker;

const PARTITIONS: i32 = 4;
const REFRESH: Duration = Duration::from_millis(100);

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
    ]))
}

/// Produces rows `from..to` as JSON, row i to partition i % 4.
fn produce(broker: &Broker, topic: &str, from: usize, to: usize) {
    let payloads: Vec<Vec<u8>> = (from..to)
        .map(|i| format!(r#"{{"id":{i},"x":{}}}"#, i as f64 * 0.5).into_bytes())
        .collect();
    broker.produce(topic, &payloads, |i| {
        ((from + i) % PARTITIONS as usize) as i32
    });
}

fn followed(broker: &Broker, topic: &str) -> KafkaSourceOptions {
    let uri = KafkaUri::parse(&format!("{}?follow=true", broker.uri(topic))).unwrap();
    KafkaSourceOptions::new(uri)
        .with_schema(schema())
        .with_lag_interval(REFRESH)
}

/// Waits up to 30 s for `done`.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `source` until it has returned at least `rows` rows in all (bounded by 30 s).
fn read(source: &mut KafkaSource, ctx: &SourceContext, rows: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    while got < rows {
        assert!(Instant::now() < deadline, "read {got} of {rows} rows");
        match source.poll_next(ctx).unwrap() {
            SourcePoll::Batch(b) => got += b.num_rows(),
            SourcePoll::Idle | SourcePoll::Watermark(_) => {}
            SourcePoll::End => panic!("a followed topic ended"),
        }
    }
    got
}

/// One subtask owning every partition: after a partial read the lag is exactly what is left
/// (the source is not polled meanwhile: the watch thread keeps the gauge current), it grows by
/// what is produced while following, and it is 0 once everything is read.
#[test]
fn lag_is_what_is_left_and_follows_new_messages() {
    let broker = Broker::start();
    broker.create_topic("lag", PARTITIONS);
    produce(&broker, "lag", 0, 400);
    let mut ctx = SourceContext::standalone("clicks");
    ctx.bounds = BatchBounds {
        max_rows: 50,
        ..BatchBounds::default()
    };
    let mut source = KafkaSource::new(followed(&broker, "lag")).unwrap();
    source.open(&ctx).unwrap();
    let lag = || ctx.progress.lag();
    let first = read(&mut source, &ctx, 150);
    assert!(first < 400, "one batch at most 50 rows: {first}");
    wait_for(
        &format!("lag {} after reading {first}", 400 - first),
        || lag() == Some(400 - first as u64),
    );
    let rest = read(&mut source, &ctx, 400 - first);
    assert_eq!(first + rest, 400);
    wait_for("lag 0 after reading everything", || lag() == Some(0));
    produce(&broker, "lag", 400, 550);
    wait_for("lag 150 after producing more", || lag() == Some(150));
    read(&mut source, &ctx, 150);
    wait_for("lag 0 after reading the new messages", || lag() == Some(0));
}

/// Holds every batch while `closed`, so the source stops at a full channel (backpressure).
#[derive(Clone, Default)]
struct Gate {
    closed: Arc<AtomicBool>,
    rows: Arc<AtomicUsize>,
}

impl Operator for Gate {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.closed.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.rows.fetch_add(batch.num_rows(), Ordering::SeqCst);
        out.emit(batch);
        Ok(())
    }
}

/// A running job at parallelism 1 and 2: the lag (summed over the source's subtasks) is
/// measured while the job is held back, grows by the messages produced meanwhile, shows on a
/// `JobBoard` as `eddy_job_source_lag{job,source}`, and returns to 0 once the job caught up.
#[test]
fn a_running_job_shows_its_lag_on_the_board_and_catches_up() {
    let broker = Broker::start();
    for parallelism in [1, 2] {
        let topic = format!("job-lag-{parallelism}");
        broker.create_topic(&topic, PARTITIONS);
        produce(&broker, &topic, 0, 1000);
        let (factory, _) = KafkaSource::factory(followed(&broker, &topic)).unwrap();
        let flow = Dataflow::new(DataflowConfig {
            bounds: BatchBounds {
                max_rows: 16,
                ..BatchBounds::default()
            },
            channel_capacity: 2,
            idle_poll: Duration::from_millis(1),
            ..DataflowConfig::default()
        });
        let gate = Gate::default();
        gate.closed.store(true, Ordering::SeqCst);
        flow.source_with("clicks", factory)
            .parallelism(parallelism)
            .operator("gate", gate.clone())
            .parallelism(parallelism)
            .sink_with("out", Arc::new(|_| Ok(Box::new(DiscardSink))))
            .parallelism(parallelism);
        let handle = flow.start().unwrap();
        let board = JobBoard::default();
        board.watch("train", handle.metrics());
        let lag = || handle.metrics().lag();
        // held back: most of the topic is still ahead of the source
        wait_for("a measured lag", || lag().is_some_and(|l| l > 500));
        let held = lag().unwrap();
        produce(&broker, &topic, 1000, 1300);
        wait_for("the lag grown by 300", || {
            lag().is_some_and(|l| l >= held + 300)
        });
        let mut text = String::new();
        board.render_prometheus(&mut text);
        let line = text
            .lines()
            .find(|l| l.starts_with("eddy_job_source_lag{job=\"train\",source=\"clicks\"} "))
            .unwrap_or_else(|| panic!("no lag sample:\n{text}"));
        let shown: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(shown >= held + 300, "{line}");
        assert_eq!(handle.metrics().source_lags().len(), 1, "one source");
        gate.closed.store(false, Ordering::SeqCst);
        wait_for("all 1300 rows", || gate.rows.load(Ordering::SeqCst) == 1300);
        wait_for("lag 0", || lag() == Some(0));
        let mut text = String::new();
        board.render_prometheus(&mut text);
        assert!(
            text.contains("eddy_job_source_lag{job=\"train\",source=\"clicks\"} 0\n"),
            "{text}"
        );
        handle.stop();
        handle.join().unwrap();
    }
}

/// A sink that keeps nothing.
struct DiscardSink;

impl Sink for DiscardSink {
    fn write(&mut self, _batch: &RecordBatch) -> Result<()> {
        Ok(())
    }
}
