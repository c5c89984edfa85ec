//! The training job reading Kafka under faults: the one training engine ([`TrainJob`], what
//! `eddy learn --data kafka://…` and a workflow `stream-train` node run) on generated CTR rows
//! in a topic of a real broker (tansu on 127.0.0.1: eddy-core's harness
//! `core/tests/support/kafka.rs`), with faults injected at random points. Each read is paced
//! (`Pace`, a few ms a batch, chained to the source; the subtasks start reading together) so
//! that checkpoints, every 3 ms (20 ms at parallelism 2), land between batches; every row
//! carries its number, which `Pace` records and the features leave out. Helpers shared with
//! `workflow/tests/train_job.rs` (its file-based twin) are in `workflow/tests/support/train.rs`.
//!
//! - exactly-once, one partition, source and learner at parallelism 1: 1–3 faults (learner or
//!   source, error or panic, before a batch; the learner's snapshot; the job sink's
//!   pre-commit) over several seeds; the model's bytes and the progressive metrics equal an
//!   uninterrupted run's.
//! - exactly-once, four partitions read by two source subtasks into the learner: the rows of
//!   the two subtasks interleave in arrival order, so neither the model bytes nor the
//!   progressive metrics repeat from run to run even without a fault (the learner is
//!   order-sensitive); what is deterministic is compared: every row learned once (rows =
//!   the topic's, nothing lost, nothing replayed).
//! - exactly-once across jobs: a job killed for good at a random batch, a second one on the
//!   same checkpoint directory re-reads only what the restored offsets did not cover and ends
//!   with the uninterrupted model's bytes.
//! - approximate at parallelism 1: a failed learner or source restarts alone; rows trained +
//!   `records_lost` − `records_replayed` = rows in the topic, exactly.
//! - approximate at parallelism 2 over four partitions (each source subtask chained to its
//!   learner subtask): subtask 1 fails alone, subtask 0 keeps training while it is down, the
//!   restarted subtask resumes from its own partitions' checkpointed offsets (it re-reads less
//!   than it had read; each subtask learned exactly the rows of its own partitions), and the
//!   identity holds.
//!
//! Mutations tried (each run by hand, then restored):
//! - the Kafka source ignoring the restored offsets (`KafkaSource::apply` keeping those of
//!   `open`): all five tests fail (model bytes; rows above the topic's; the second job
//!   re-reading all 20,000 rows; the identity at p1, 28,000 + 0 − 4,250 ≠ 20,000, and at p2).
//! - restore disabled in the training operator (`LearnOperator::restore` returning at once):
//!   all five fail (at p1, 1,000 trained + 9,000 lost ≠ 20,000).
//! - a restored source subtask reading its neighbour's partitions (`apply` mapping each
//!   partition `p` to `p ^ 1`, at its own offsets): caught by the p2 approximate test (subtask
//!   1 learned 16,000 rows of subtask 0's partitions; the row counts alone stay right, since
//!   the partitions are the same size) and the two-source exactly-once test; at parallelism 1
//!   the one-partition tests then hang on a partition that does not exist.

#[path = "../core/tests/support/kafka.rs"]
mod kafka;
#[path = "support/clicks.rs"]
mod support_clicks;
#[path = "../workflow/tests/support/train.rs"]
mod train;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::Int64Array;
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use eddy_core::dataflow::{FaultInjection, FaultPoint, RestartPolicy};
use eddy_core::prelude::{Collector, Operator, TaskInfo};
use eddy_core::source::kafka::{KafkaSource, KafkaSourceOptions, KafkaUri};
use eddy_workflow::train::{
    FailoverMode, TrainConfig, TrainHandle, TrainJob, TrainOutcome, LEARN_OPERATOR,
};
use rand::{Rng, SeedableRng};

use kafka::Broker;
use train::{config, model_bytes, pipeline, records_in, BATCH};

/// The source's name in the job (fault injection, metrics).
const SOURCE: &str = "clicks";
/// The job's sink (the learner emits no rows; its pre-commit is a fault point).
const JOB_SINK: &str = "learned";
/// The column holding a row's number in the topic (read by `Pace`, left out of the features).
const ROW: &str = "row";
/// Rows in the exactly-once topics.
const ROWS: u64 = 20_000;
const BATCHES: u64 = ROWS / BATCH as u64;

/// Generated CTR rows `0..rows` (seed 7), one JSON object each: the rows `eddy gen ctr` makes
/// ([`support_clicks::clicks`]), plus their number in the column [`ROW`].
fn clicks(rows: u64) -> Vec<Vec<u8>> {
    // each object gets the row's number first, `{"row":i,…}`: not a feature (see `features`)
    support_clicks::clicks(rows)
        .into_iter()
        .enumerate()
        .map(|(i, l)| [format!("{{\"{ROW}\":{i},").as_bytes(), &l[1..]].concat())
        .collect()
}

/// A topic of `partitions` partitions holding `clicks(rows)`, row `i` in partition
/// `i % partitions`.
fn topic(broker: &Broker, name: &str, partitions: i32, rows: u64) {
    broker.create_topic(name, partitions);
    broker.produce(name, &clicks(rows), |i| i as i32 % partitions);
}

/// Sleeps `wait` per batch and counts the attempts of each subtask (chained to the source).
/// The first batch of each subtask waits (bounded: 30 s) until every subtask has one, so that
/// the subtasks start reading together: a checkpoint completes only once all of them run, and
/// a fault counted in batches then comes after the first completed checkpoints.
#[derive(Clone)]
struct Pace {
    wait: Duration,
    subtask: usize,
    subtasks: usize,
    starts: Arc<Vec<AtomicU64>>,
    batches: Arc<Vec<AtomicU64>>,
    /// The [`ROW`]s each subtask passed on, over its attempts.
    rows: Arc<Vec<Mutex<Vec<i64>>>>,
}

impl Pace {
    fn new(wait: Duration) -> Self {
        let counters = || Arc::new((0..4).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
        Pace {
            wait,
            subtask: 0,
            subtasks: 1,
            starts: counters(),
            batches: counters(),
            rows: Arc::new((0..4).map(|_| Mutex::new(Vec::new())).collect()),
        }
    }

    fn starts(&self, subtask: usize) -> u64 {
        self.starts[subtask].load(Ordering::SeqCst)
    }

    /// The distinct [`ROW`]s `subtask` passed on to its learner.
    fn rows(&self, subtask: usize) -> BTreeSet<i64> {
        self.rows[subtask].lock().unwrap().iter().copied().collect()
    }
}

impl Operator for Pace {
    fn on_start(&mut self, task: &TaskInfo) -> eddy_core::Result<()> {
        self.subtask = task.subtask;
        self.subtasks = task.parallelism;
        self.starts[task.subtask].fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Collector,
    ) -> eddy_core::Result<()> {
        let n = self.subtasks;
        if self.batches[self.subtask].fetch_add(1, Ordering::SeqCst) == 0 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.batches[..n]
                .iter()
                .any(|b| b.load(Ordering::SeqCst) == 0)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if let Some(rows) = batch.column_by_name(ROW) {
            let rows = rows.as_any().downcast_ref::<Int64Array>().unwrap();
            self.rows[self.subtask]
                .lock()
                .unwrap()
                .extend(rows.values());
        }
        std::thread::sleep(self.wait);
        out.emit(batch);
        Ok(())
    }
}

/// Starts `config`'s job on `topic` read by `sources` source subtasks, paced by `pace`.
fn start(
    broker: &Broker,
    topic: &str,
    sources: usize,
    config: TrainConfig,
    pace: &Pace,
) -> TrainHandle {
    let uri = KafkaUri::parse(&broker.uri(topic)).unwrap();
    let (factory, schema) = KafkaSource::factory(KafkaSourceOptions::new(uri)).unwrap();
    let job = TrainJob::new(config).unwrap();
    let input = job
        .flow()
        .source_with(SOURCE, factory)
        .parallelism(sources)
        .operator("pace", pace.clone())
        .parallelism(sources);
    let features: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != ROW)
        .cloned()
        .collect();
    let pipeline = pipeline(&Schema::new(features));
    job.start(input, pipeline, None).unwrap()
}

/// The reference: the exactly-once job on `topic` from one source subtask, without faults.
fn uninterrupted(broker: &Broker, topic: &str) -> TrainOutcome {
    run(
        broker,
        topic,
        1,
        config(None, FailoverMode::ExactlyOnce, vec![]),
    )
    .unwrap()
}

/// Runs `config`'s job on `topic` to its end.
fn run(
    broker: &Broker,
    topic: &str,
    sources: usize,
    config: TrainConfig,
) -> eddy_workflow::Result<TrainOutcome> {
    start(
        broker,
        topic,
        sources,
        config,
        &Pace::new(Duration::from_millis(1)),
    )
    .join()
}

/// 1–3 random faults: before a batch of the learner or of a source subtask (error or panic),
/// in the learner's snapshot, or in the job sink's pre-commit.
fn faults(rng: &mut impl Rng, sources: usize) -> Vec<FaultInjection> {
    let source_batches = BATCHES / sources as u64;
    (0..rng.random_range(1..=3))
        .map(|_| {
            let (op, subtask, after) = match rng.random_range(0..10) {
                0..=4 => (LEARN_OPERATOR, 0, rng.random_range(5..BATCHES - 5)),
                5..=7 => (
                    SOURCE,
                    rng.random_range(0..sources),
                    rng.random_range(3..source_batches - 3),
                ),
                8 => {
                    let after = rng.random_range(1..8);
                    return FaultInjection::error(LEARN_OPERATOR, 0, 0)
                        .at(FaultPoint::Snapshot, after);
                }
                _ => {
                    let after = rng.random_range(1..8);
                    return FaultInjection::error(JOB_SINK, 0, 0).at(FaultPoint::PreCommit, after);
                }
            };
            if rng.random_bool(0.5) {
                FaultInjection::error(op, subtask, after)
            } else {
                FaultInjection::panic(op, subtask, after)
            }
        })
        .collect()
}

#[test]
fn exactly_once_restarts_from_a_topic_give_the_uninterrupted_model_bytes() {
    let broker = Broker::start();
    topic(&broker, "clicks1", 1, ROWS);
    let clean = uninterrupted(&broker, "clicks1");
    assert_eq!(clean.report.rows, ROWS);
    for seed in 0..4u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let faults = faults(&mut rng, 1);
        let c = config(Some(dir.path()), FailoverMode::ExactlyOnce, faults.clone());
        let o = run(&broker, "clicks1", 1, c).unwrap();
        assert!(
            o.summary.restarts >= 1,
            "seed {seed}: {faults:?} did not fire"
        );
        assert_eq!(o.summary.records_lost, 0, "seed {seed}");
        assert_eq!(o.report.rows, ROWS, "seed {seed}: {faults:?}");
        assert!(
            model_bytes(&o) == model_bytes(&clean),
            "seed {seed}: {faults:?}: the model differs from the uninterrupted run's"
        );
        assert_eq!(
            o.report.metrics, clean.report.metrics,
            "seed {seed}: {faults:?}: progressive metrics differ"
        );
    }
}

#[test]
fn exactly_once_restarts_learn_every_row_once_from_two_source_subtasks() {
    let broker = Broker::start();
    topic(&broker, "clicks4", 4, ROWS);
    for seed in 0..3u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(50 + seed);
        let dir = tempfile::tempdir().unwrap();
        let faults = faults(&mut rng, 2);
        let c = config(Some(dir.path()), FailoverMode::ExactlyOnce, faults.clone());
        let o = run(&broker, "clicks4", 2, c).unwrap();
        assert!(
            o.summary.restarts >= 1,
            "seed {seed}: {faults:?} did not fire"
        );
        assert_eq!(o.summary.records_lost, 0, "seed {seed}");
        assert_eq!(o.summary.records_replayed, 0, "seed {seed}");
        assert_eq!(
            o.report.rows, ROWS,
            "seed {seed}: {faults:?}: every row of the topic learned once"
        );
    }
}

#[test]
fn a_killed_job_resumes_from_its_checkpointed_offsets_in_a_new_job() {
    let broker = Broker::start();
    topic(&broker, "clicks1", 1, ROWS);
    let clean = uninterrupted(&broker, "clicks1");
    for seed in 0..3u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(100 + seed);
        let dir = tempfile::tempdir().unwrap();
        let kill_at = rng.random_range(20..BATCHES - 5);
        // the first job dies at `kill_at` and may not restart
        let mut first = config(
            Some(dir.path()),
            FailoverMode::ExactlyOnce,
            vec![FaultInjection::error(LEARN_OPERATOR, 0, kill_at)],
        );
        first.failover.restart = RestartPolicy::default();
        assert!(
            run(&broker, "clicks1", 1, first).is_err(),
            "seed {seed}: the first job must fail"
        );
        let second = config(Some(dir.path()), FailoverMode::ExactlyOnce, vec![]);
        let second = run(&broker, "clicks1", 1, second).unwrap();
        let restored = second.restored.expect("resumed from a checkpoint");
        let read_again = records_in(&second, LEARN_OPERATOR);
        assert!(
            read_again < ROWS && read_again > 0,
            "seed {seed}: the second job learned {read_again} rows after restoring {restored}: \
             it must read only what followed the checkpointed offsets"
        );
        assert_eq!(second.report.rows, ROWS, "seed {seed}");
        assert!(
            model_bytes(&second) == model_bytes(&clean),
            "seed {seed}: killed at batch {kill_at}: the resumed model differs"
        );
    }
}

/// Rows trained + lost − replayed = rows in the topic.
fn assert_identity(o: &TrainOutcome, rows: u64, what: &str) {
    let (lost, replayed) = (o.summary.records_lost, o.summary.records_replayed);
    assert_eq!(
        o.report.rows + lost - replayed,
        rows,
        "{what}: {} rows trained, {lost} lost, {replayed} replayed: not the topic's {rows}",
        o.report.rows
    );
}

#[test]
fn approximate_failover_from_a_topic_at_parallelism_1_accounts_for_every_row() {
    let broker = Broker::start();
    topic(&broker, "clicks1", 1, ROWS);
    for seed in 0..4u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(200 + seed);
        let dir = tempfile::tempdir().unwrap();
        let at = rng.random_range(20..BATCHES - 10);
        let (op, learner) = match seed % 2 {
            0 => (LEARN_OPERATOR, true),
            _ => (SOURCE, false),
        };
        let fault = if rng.random_bool(0.5) {
            FaultInjection::error(op, 0, at)
        } else {
            FaultInjection::panic(op, 0, at)
        };
        let c = config(
            Some(dir.path()),
            FailoverMode::Approximate,
            vec![fault.clone()],
        );
        let o = run(&broker, "clicks1", 1, c).unwrap();
        let what = format!("seed {seed}: {fault:?}");
        assert_eq!(o.summary.restarts, 1, "{what}");
        assert_identity(&o, ROWS, &what);
        if learner {
            // the source never stopped; the learner lost what reached it while it was down
            // and what it had learned since its snapshot
            let produced = o.summary.operator(SOURCE).map_or(0, |s| s.records_out);
            assert_eq!(produced, ROWS, "{what}: the source restarted");
            assert!(
                o.summary.records_lost > 0,
                "{what}: nothing counted as lost"
            );
        } else {
            // the learner never stopped: it learned again what the source re-sent
            assert_eq!(o.summary.records_lost, 0, "{what}");
        }
    }
}

/// Waits (bounded: 30 s) until `done`.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn approximate_failover_from_a_topic_at_parallelism_2_restarts_one_subtask_from_its_offsets() {
    const ROWS2: u64 = 40_000;
    let broker = Broker::start();
    topic(&broker, "clicks4", 4, ROWS2);
    // subtask 1 reads partitions 1 and 3: rows i with i % 4 in {1, 3}
    let mine = ROWS2 / 2;
    let per_subtask = mine / BATCH as u64;
    for seed in 0..3u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(300 + seed);
        let dir = tempfile::tempdir().unwrap();
        let at = rng.random_range(10..per_subtask / 3);
        let op = if seed % 2 == 0 {
            LEARN_OPERATOR
        } else {
            SOURCE
        };
        let fault = FaultInjection::error(op, 1, at);
        let mut c = config(
            Some(dir.path()),
            FailoverMode::Approximate,
            vec![fault.clone()],
        );
        c.parallelism = 2;
        // down for 150-300 ms (a jittered backoff), while subtask 0 has at least 2/3 of its
        // batches, 4 ms each, to go
        c.failover.restart.initial_backoff = Duration::from_millis(300);
        c.checkpoint.interval = Some(Duration::from_millis(20));
        let pace = Pace::new(Duration::from_millis(4));
        let handle = start(&broker, "clicks4", 2, c, &pace);
        let what = format!("seed {seed}: {fault:?}");
        let metrics = handle.job().metrics();
        let learned = |subtask| {
            metrics
                .subtask(LEARN_OPERATOR, subtask)
                .map_or(0, |m| m.records_in.load(Ordering::SeqCst))
        };
        wait_for("the failure", || {
            metrics.job().restarts.load(Ordering::SeqCst) == 1
        });
        assert!(
            !handle.job().completed_checkpoints().is_empty(),
            "{what}: no checkpoint had completed before the failure: nothing to resume from"
        );
        let (peer_before, read_before) = (learned(0), learned(1));
        wait_for("the peer to progress", || learned(0) > peer_before);
        assert_eq!(
            pace.starts(1),
            1,
            "{what}: subtask 0 progressed only after subtask 1 was back"
        );
        assert_eq!(
            learned(1),
            read_before,
            "{what}: subtask 1 learned while down"
        );
        wait_for("the end of the job", || handle.is_finished());
        let read = learned(1);
        let o = handle.join().unwrap();
        assert_eq!(pace.starts(1), 2, "{what}: subtask 1 restarted once");
        assert_eq!(pace.starts(0), 1, "{what}: subtask 0 never stopped");
        assert_identity(&o, ROWS2, &what);
        // the restarted subtask read its own partitions again from its checkpointed offsets:
        // all of their rows, and, again, less than it had read before failing (it did not
        // start over)
        assert!(
            read >= mine,
            "{what}: subtask 1 learned {read} of its {mine} rows"
        );
        // ... and no other partition: each subtask learned exactly the rows of its own
        // partitions (`i % 4 % 2 == subtask`)
        for subtask in 0..2 {
            let seen = pace.rows(subtask);
            let foreign = seen
                .iter()
                .filter(|&&i| (i % 2) as usize != subtask)
                .count();
            assert!(
                foreign == 0 && seen.len() as u64 == mine,
                "{what}: subtask {subtask} learned {} distinct rows of its {mine}, and {foreign} \
                 rows of the other subtask's partitions",
                seen.len() - foreign
            );
        }
        assert!(
            read - mine < read_before,
            "{what}: subtask 1 read {} rows twice, having read {read_before} before failing: \
             it did not resume from its checkpointed offsets",
            read - mine
        );
    }
}
