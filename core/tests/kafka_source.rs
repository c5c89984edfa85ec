//! The Kafka source against a real broker (tansu on 127.0.0.1, started per test): bounded reads
//! split over subtasks get every row exactly once, malformed messages are dead letters naming
//! topic/partition/offset, and exactly-once restarts from checkpoints neither lose nor repeat
//! a row.
//!
//! Mutations seen caught: `seek` made a no-op (restores read from the start again:
//! `exactly_once_restarts_*` fail with duplicates); partition split `p % parallelism`
//! replaced by "every subtask reads every partition" (`bounded_read_*` fails with duplicates);
//! rejected messages not advancing the position (not caught here: the offset is advanced
//! before the next poll either way); the runtime not calling `on_checkpoint_complete`, or the
//! Kafka source ignoring it (`group_offsets_follow_completed_checkpoints`: the group runs
//! ahead of the checkpoint, 600 instead of 400).

mod common;
#[path = "support/kafka.rs"]
mod kafka;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use eddy_core::dataflow::{CheckpointMode, FaultInjection};
use eddy_core::prelude::*;
use eddy_core::source::kafka::{KafkaSource, KafkaSourceOptions, KafkaUri};
use eddy_core::source::BatchBounds;
use rand::{Rng, SeedableRng};

use common::txn::{faulty_config, TxSink};
use kafka::Broker;

const PARTITIONS: i32 = 4;

/// `rows` JSON rows `{"id":i,"x":i*0.5,"tag":"t{i%7}"}`, row i to partition i % 4, plus every
/// `bad_every`-th message (when set) a malformed one. Returns the number of bad messages.
fn produce_rows(broker: &Broker, topic: &str, rows: usize, bad_every: Option<usize>) -> usize {
    broker.create_topic(topic, PARTITIONS);
    let mut payloads = Vec::new();
    let mut bad = 0;
    for i in 0..rows {
        payloads.push(
            format!(r#"{{"id":{i},"x":{},"tag":"t{}"}}"#, i as f64 * 0.5, i % 7).into_bytes(),
        );
        if bad_every.is_some_and(|n| i % n == n - 1) {
            payloads.push(if bad % 2 == 0 {
                br#"{"id": "not a number"}"#.to_vec()
            } else {
                b"{truncated".to_vec()
            });
            bad += 1;
        }
    }
    broker.produce(topic, &payloads, |i| (i % PARTITIONS as usize) as i32);
    bad
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("tag", DataType::Utf8, true),
    ]))
}

fn ids(batches: &[arrow::record_batch::RecordBatch]) -> Vec<i64> {
    let mut ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    ids.sort_unstable();
    ids
}

fn small_batches() -> DataflowConfig {
    DataflowConfig {
        bounds: BatchBounds {
            max_rows: 64,
            ..BatchBounds::default()
        },
        idle_poll: Duration::from_millis(1),
        ..DataflowConfig::default()
    }
}

#[test]
fn bounded_read_gets_every_row_once_at_parallelism_1_and_2_with_dead_letters() {
    let broker = Broker::start();
    let rows = 2000;
    let bad = produce_rows(&broker, "clicks", rows, Some(97));
    assert!(bad > 10);
    let uri = KafkaUri::parse(&broker.uri("clicks")).unwrap();
    // inferred from the first messages: the outliers do not re-type `id`
    let probe = KafkaSource::new(KafkaSourceOptions::new(uri.clone())).unwrap();
    assert_eq!(probe.schema(), schema());
    for p in [1, 2] {
        let (factory, _) = KafkaSource::factory(KafkaSourceOptions::new(uri.clone())).unwrap();
        let out = MemorySink::new();
        let flow = Dataflow::new(small_batches());
        flow.source_with("kafka", factory)
            .parallelism(p)
            .sink("out", out.clone());
        let handle = flow.start().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "p {p}: bounded read did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        let letters = handle.dead_letters().records();
        let summary = handle.join().unwrap();
        assert_eq!(
            ids(&out.batches()),
            (0..rows as i64).collect::<Vec<_>>(),
            "p {p}"
        );
        assert_eq!(summary.dead_letters as usize, bad, "p {p}");
        assert_eq!(
            out.num_rows() + letters.len(),
            rows + bad,
            "p {p}: the counts add up"
        );
        for letter in &letters {
            assert!(
                letter.source.starts_with("kafka clicks partition ")
                    && letter.source.contains(" offset "),
                "{letter:?}"
            );
            let offset: u64 = letter.source.rsplit(' ').next().unwrap().parse().unwrap();
            assert_eq!(letter.line, offset + 1);
            assert!(letter.raw == r#"{"id": "not a number"}"# || letter.raw == "{truncated");
        }
    }
}

#[test]
fn csv_payloads_and_message_timestamps() {
    let broker = Broker::start();
    broker.create_topic("csv", 1);
    let payloads: Vec<Vec<u8>> = vec![
        b"1,a,0.5".to_vec(),
        b"2,\"b,c\",1.5".to_vec(),
        b"3,d".to_vec(), // one field short: a dead letter
    ];
    broker.produce("csv", &payloads, |_| 0);
    let uri = KafkaUri::parse(&format!("{}?format=csv", broker.uri("csv"))).unwrap();
    let options = KafkaSourceOptions::new(uri).with_timestamp_column("ts");
    let mut source = KafkaSource::new(options).unwrap();
    let names: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["column_1", "column_2", "column_3", "ts"]);
    let ctx = SourceContext::standalone("csv");
    source.open(&ctx).unwrap();
    let mut rows = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no end");
        match source.poll_next(&ctx).unwrap() {
            SourcePoll::Batch(b) => rows.push(b),
            SourcePoll::End => break,
            _ => {}
        }
    }
    let batch = arrow::compute::concat_batches(&source.schema(), &rows).unwrap();
    assert_eq!(batch.num_rows(), 2);
    assert_eq!(batch.column(1).as_string::<i32>().value(1), "b,c");
    let ts = batch
        .column(3)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert!(ts.iter().all(|t| t.is_some_and(|t| t > 1_600_000_000_000)));
    let letters = ctx.dead_letters.records();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].source, "kafka csv partition 0 offset 2");
    assert!(
        letters[0].reason.contains("expected 3 fields"),
        "{letters:?}"
    );
}

/// Passes batches on after 1 ms, so that checkpoints (every 2 ms) complete between batches.
#[derive(Clone)]
struct Slow;

impl Operator for Slow {
    fn process(
        &mut self,
        _input: usize,
        batch: arrow::record_batch::RecordBatch,
        out: &mut Collector,
    ) -> Result<()> {
        std::thread::sleep(Duration::from_millis(1));
        out.emit(batch);
        Ok(())
    }
}

/// Exactly-once: checkpoints every 2 ms, one injected fault in a random source subtask after a
/// random number of batches (seeds 1..=3, parallelism 1 and 2); the rows committed by the
/// transactional sink are every row exactly once.
#[test]
fn exactly_once_restarts_from_checkpointed_offsets_lose_and_repeat_nothing() {
    let broker = Broker::start();
    let rows = 3000;
    produce_rows(&broker, "events", rows, None);
    let uri = KafkaUri::parse(&broker.uri("events")).unwrap();
    let (factory, _) =
        KafkaSource::factory(KafkaSourceOptions::new(uri).with_schema(schema())).unwrap();
    let want: Vec<i64> = (0..rows as i64).collect();
    let tmp = tempfile::tempdir().unwrap();
    for p in [1usize, 2] {
        for seed in 1..=3u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let fault =
                FaultInjection::error("kafka", rng.random_range(0..p), rng.random_range(30..120)); // batches of 5 rows: past several checkpoints
            let dir = tmp.path().join(format!("p{p}-s{seed}"));
            let sink = TxSink::new();
            let mut config = faulty_config(&dir, CheckpointMode::Aligned, 8);
            config.faults = vec![fault.clone()];
            config.bounds = BatchBounds {
                max_rows: 5,
                ..BatchBounds::default()
            };
            let flow = Dataflow::new(config);
            let s = sink.clone();
            flow.source_with("kafka", factory.clone())
                .parallelism(p)
                .operator("slow", Slow)
                .parallelism(p)
                .sink_with("out", Arc::new(move |_| Ok(Box::new(s.clone()))))
                .parallelism(p);
            let handle = flow.start().unwrap();
            let deadline = Instant::now() + Duration::from_secs(90);
            while !handle.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "p {p} seed {seed}: hung; committed {} rows, {} prepared, {} checkpoints",
                    sink.committed().len(),
                    sink.prepared(),
                    handle.completed_checkpoints().len()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let summary = handle.join().unwrap();
            assert_eq!(
                summary.restarts, 1,
                "p {p} seed {seed}: the fault {fault:?} fired"
            );
            let mut got: Vec<i64> = sink
                .committed()
                .iter()
                .map(|r| r.split(',').next().unwrap().parse().unwrap())
                .collect();
            got.sort_unstable();
            let dups = got.windows(2).filter(|w| w[0] == w[1]).count();
            assert_eq!(got.len(), rows, "p {p} seed {seed}: {dups} duplicates");
            assert_eq!(got, want, "p {p} seed {seed}");
        }
    }
}

/// The offsets the group `group` has committed for `topic`'s partitions, summed (a partition
/// without a commit counts 0).
fn group_offsets(broker: &Broker, topic: &str, group: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::TopicPartitionList;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut ask = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        ask.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(ask, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// Waits up to 20 s for `done`.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With a consumer group, a followed topic's group offsets are those of the last completed
/// checkpoint: rows read after it are not committed until the next one completes.
/// Catches: `on_checkpoint_complete` not called (consumed offsets are committed once a second
/// instead, so the group runs ahead of the checkpoint).
#[test]
fn group_offsets_follow_completed_checkpoints() {
    let broker = Broker::start();
    produce_rows(&broker, "lag", 400, None);
    let uri =
        KafkaUri::parse(&format!("{}?group=eddy-lag&follow=true", broker.uri("lag"))).unwrap();
    let (factory, _) =
        KafkaSource::factory(KafkaSourceOptions::new(uri).with_schema(schema())).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut config = faulty_config(tmp.path(), CheckpointMode::Aligned, 8);
    config.checkpoint.interval = None; // checkpoints on demand only
    let flow = Dataflow::new(config);
    let sink = TxSink::new();
    let s = sink.clone();
    let read = Counted::default();
    flow.source_with("kafka", factory)
        .parallelism(2)
        .operator("count", read.clone())
        .parallelism(2)
        .sink_with("out", Arc::new(move |_| Ok(Box::new(s.clone()))))
        .parallelism(2);
    let handle = flow.start().unwrap();
    wait_for("400 rows", || read.rows() >= 400);
    let first = handle.trigger_checkpoint();
    wait_for("the first checkpoint", || {
        handle.completed_checkpoints().contains(&first)
    });
    wait_for("the first checkpoint's offsets", || {
        group_offsets(&broker, "lag", "eddy-lag") == 400
    });
    // more rows, read but not yet checkpointed: the group stays at the checkpoint
    let more: Vec<Vec<u8>> = (400..600)
        .map(|i| format!(r#"{{"id":{i},"x":0.5,"tag":"t"}}"#).into_bytes())
        .collect();
    broker.produce("lag", &more, |i| (i % PARTITIONS as usize) as i32);
    wait_for("600 rows", || read.rows() >= 600);
    std::thread::sleep(Duration::from_millis(2500)); // > the time-based commit interval
    assert_eq!(group_offsets(&broker, "lag", "eddy-lag"), 400);
    let second = handle.trigger_checkpoint();
    wait_for("the second checkpoint", || {
        handle.completed_checkpoints().contains(&second)
    });
    wait_for("the second checkpoint's offsets", || {
        group_offsets(&broker, "lag", "eddy-lag") == 600
    });
    handle.stop();
    handle.join().unwrap();
    assert_eq!(sink.committed().len(), 600);
}

/// Counts the rows passing through.
#[derive(Clone, Default)]
struct Counted(Arc<std::sync::atomic::AtomicUsize>);

impl Counted {
    fn rows(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Operator for Counted {
    fn process(
        &mut self,
        _input: usize,
        batch: arrow::record_batch::RecordBatch,
        out: &mut Collector,
    ) -> Result<()> {
        self.0
            .fetch_add(batch.num_rows(), std::sync::atomic::Ordering::SeqCst);
        out.emit(batch);
        Ok(())
    }
}
