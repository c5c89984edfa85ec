//! The broker restarted mid-stream: tansu with SQLite storage (its data survives) is killed
//! while an exactly-once job reads a topic, and started again on the same port; the job
//! reconnects and finishes with every row exactly once, at parallelism 1 and 2. (librdkafka
//! reconnects by itself: the runs seen took no job restart. Were a fetch to fail, the job
//! would restore its last checkpoint and the source seek back, which `kafka_source.rs` and
//! `kafka_sink.rs` cover.) What it pins down: the topic's data survive the broker restart
//! (SQLite storage) and the source neither skips nor repeats across the reconnection.

mod common;
#[path = "support/kafka.rs"]
mod kafka;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use eddy_core::dataflow::{CheckpointMode, RestartPolicy};
use eddy_core::prelude::*;
use eddy_core::source::kafka::{KafkaSource, KafkaSourceOptions, KafkaUri};
use eddy_core::source::BatchBounds;

use common::txn::{faulty_config, TxSink};
use kafka::Broker;

/// Counts rows and sleeps 1 ms per batch, so that the read is still going when the broker
/// goes away.
#[derive(Clone, Default)]
struct SlowCount(Arc<AtomicUsize>);

impl Operator for SlowCount {
    fn process(&mut self, _input: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        std::thread::sleep(Duration::from_millis(1));
        self.0.fetch_add(batch.num_rows(), Ordering::SeqCst);
        out.emit(batch);
        Ok(())
    }
}

#[test]
fn a_broker_restarted_mid_stream_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start_persistent(dir.path());
    let rows = 4000usize;
    broker.create_topic("clicks", 2);
    let payloads: Vec<Vec<u8>> = (0..rows)
        .map(|i| format!(r#"{{"id":{i},"tag":"t{}"}}"#, i % 5).into_bytes())
        .collect();
    broker.produce("clicks", &payloads, |i| (i % 2) as i32);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("tag", DataType::Utf8, true),
    ]));
    let uri = KafkaUri::parse(&broker.uri("clicks")).unwrap();
    let (factory, _) =
        KafkaSource::factory(KafkaSourceOptions::new(uri).with_schema(schema)).unwrap();
    for p in [1usize, 2] {
        let mut config = faulty_config(
            &dir.path().join(format!("ckpt-{p}")),
            CheckpointMode::Aligned,
            8,
        );
        config.checkpoint.interval = Some(Duration::from_millis(10));
        // while the broker is down, restarts wait in the source's open (metadata, up to 10 s)
        config.failover.restart = RestartPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RestartPolicy::restarts(20)
        };
        config.bounds = BatchBounds {
            max_rows: 5,
            ..BatchBounds::default()
        };
        let sink = TxSink::new();
        let s = sink.clone();
        let seen = SlowCount::default();
        let flow = Dataflow::new(config);
        flow.source_with("kafka", factory.clone())
            .parallelism(p)
            .operator("count", seen.clone())
            .parallelism(p)
            .sink_with("out", Arc::new(move |_| Ok(Box::new(s.clone()))))
            .parallelism(p);
        let handle = flow.start().unwrap();
        common::wait_for("the first rows", || {
            seen.0.load(Ordering::SeqCst) >= rows / 4
        });
        let before = seen.0.load(Ordering::SeqCst);
        broker.stop();
        std::thread::sleep(Duration::from_millis(500));
        broker.restart();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "p {p}: the job did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
        let summary = handle.join().unwrap();
        assert!(before < rows, "p {p}: the broker went away mid-stream");
        let mut ids: Vec<i64> = sink
            .committed()
            .iter()
            .map(|r| r.split(',').next().unwrap().parse().unwrap())
            .collect();
        ids.sort_unstable();
        let dups = ids.windows(2).filter(|w| w[0] == w[1]).count();
        assert_eq!(ids.len(), rows, "p {p}: {dups} duplicates");
        assert!(
            ids.iter().copied().eq(0..rows as i64),
            "p {p}: every row exactly once"
        );
        eprintln!(
            "p {p}: {before} rows read before the broker stopped; {} restarts",
            summary.restarts
        );
    }
}
