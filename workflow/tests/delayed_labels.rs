//! Training on delayed labels (`eddy_workflow::labels`): impressions ⋈ clicks in label mode,
//! ordered by event time, feeding the one training job.
//!
//! - the oracle: labels computed naively in the test (an impression is positive iff a click
//!   with its id falls in `[ts, ts + wait]`), the rows sorted by event time and cut into the
//!   same batches, trained by the same job: the model bytes, the progressive metrics and the
//!   label tally equal those of the labelled source, with the join at parallelism 1 and 2
//!   (the order operator makes the learner's input independent of how the inputs interleave);
//! - exactly-once: random task failures (sources, join, order operator, learner; errors and
//!   panics) over several seeds, at join parallelism 1 and 2, give the uninterrupted model's
//!   bytes and the same tally.
//!
//! - a stream whose clicks match no impression trains on negatives alone (the undefined AUC of
//!   one class is not taken for a diverged model);
//! - a key column missing from one side fails the node with an error naming the key and the
//!   source's columns.
//!
//! The data has clicks exactly at `ts + wait` (the interval is inclusive), clicks after the
//! wait, repeated clicks (in order: the label delay is the first arriving click's), clicks of
//! unknown impressions, and both inputs out of order within the bound.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use eddy_algorithms::learners::{LearnerKind, LearnerSpec};
use eddy_algorithms::pipeline::{Pipeline, StandardPipeline};
use eddy_core::dataflow::{FaultInjection, RestartPolicy};
use eddy_core::source::generator::GeneratorSource;
use eddy_workflow::labels::{
    labelled_stream, DelayedLabels, LabelTally, JOIN_OPERATOR, ORDER_OPERATOR,
};
use eddy_workflow::train::{FailoverMode, TrainConfig, TrainJob, TrainOutcome};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const IMPRESSIONS: usize = 3000;
const BATCH: usize = 100;
const WAIT_MS: i64 = 2000;
const BOUND_MS: u64 = 500;

/// The test's impressions and clicks, in arrival order.
struct Data {
    impressions: RecordBatch,
    clicks: RecordBatch,
}

/// Impressions every 50 ms (unique times), clicked more often for some `c0` values; clicks
/// after a random delay (a tenth exactly at the wait, some after it), a few twice, a few of
/// unknown ids; both streams shuffled locally by less than the out-of-orderness bound.
fn data(seed: u64) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut ids, mut ts, mut f0, mut c0) = (vec![], vec![], vec![], vec![]);
    let mut clicks: Vec<(i64, i64)> = Vec::new();
    for i in 0..IMPRESSIONS as i64 {
        let t = i * 50 + rng.random_range(0..50);
        let c = rng.random_range(0..8u32);
        ids.push(i);
        ts.push(t);
        f0.push(rng.random_range(-1.0..1.0));
        c0.push(format!("v{c}"));
        if rng.random_bool(if c < 2 { 0.6 } else { 0.15 }) {
            let delay = match rng.random_range(0..10) {
                0 => WAIT_MS,
                1 => WAIT_MS + rng.random_range(1..3000),
                _ => rng.random_range(0..WAIT_MS),
            };
            clicks.push((i, t + delay));
            if rng.random_bool(0.1) {
                // a second click, never arriving before the first: which click labels an
                // impression is the first to arrive (see `eddy_workflow::labels`)
                let after = rng.random_range(BOUND_MS as i64..2000);
                clicks.push((i, t + delay + after));
            }
        }
        if rng.random_bool(0.02) {
            clicks.push((IMPRESSIONS as i64 + i, t + 10));
        }
    }
    clicks.sort_by_key(|&(_, t)| t);
    let mut order: Vec<usize> = (0..IMPRESSIONS).collect();
    shuffle_locally(&mut order, &ts, &mut rng);
    let mut click_order: Vec<usize> = (0..clicks.len()).collect();
    let click_ts: Vec<i64> = clicks.iter().map(|c| c.1).collect();
    shuffle_locally(&mut click_order, &click_ts, &mut rng);
    let pick_i = |v: &[i64], o: &[usize]| -> ArrayRef {
        Arc::new(Int64Array::from(
            o.iter().map(|&k| v[k]).collect::<Vec<_>>(),
        ))
    };
    let impressions = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("f0", DataType::Float64, false),
            Field::new("c0", DataType::Utf8, false),
        ])),
        vec![
            pick_i(&ids, &order),
            pick_i(&ts, &order),
            Arc::new(Float64Array::from(
                order.iter().map(|&k| f0[k]).collect::<Vec<f64>>(),
            )),
            Arc::new(StringArray::from(
                order.iter().map(|&k| c0[k].clone()).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let click_ids: Vec<i64> = clicks.iter().map(|c| c.0).collect();
    let clicks = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Int64, false),
        ])),
        vec![
            pick_i(&click_ids, &click_order),
            pick_i(&click_ts, &click_order),
        ],
    )
    .unwrap();
    Data {
        impressions,
        clicks,
    }
}

/// Swaps neighbours (in time order `ts`) whose times are less than half the bound apart, so
/// each stream is out of order but never late.
fn shuffle_locally(order: &mut [usize], ts: &[i64], rng: &mut impl Rng) {
    let mut k = 1;
    while k < order.len() {
        let (a, b) = (order[k - 1], order[k]);
        if (ts[b] - ts[a]).unsigned_abs() < BOUND_MS / 2 && rng.random_bool(0.3) {
            order.swap(k - 1, k);
            k += 1; // each row moves one place at most
        }
        k += 1;
    }
}

/// The naive oracle: every impression with its label and delay, sorted by event time, and the
/// tally of those labels.
fn oracle(d: &Data) -> (RecordBatch, LabelTally) {
    let col = |b: &RecordBatch, i: usize| {
        b.column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    };
    let (ids, ts) = (col(&d.impressions, 0), col(&d.impressions, 1));
    let (click_ids, click_ts) = (col(&d.clicks, 0), col(&d.clicks, 1));
    let mut tally = LabelTally::default();
    let (mut labels, mut delays) = (Vec::new(), Vec::new());
    for (id, t) in ids.iter().zip(&ts) {
        let first = click_ids
            .iter()
            .zip(&click_ts)
            .filter(|(c, ct)| *c == id && **ct >= *t && **ct <= *t + WAIT_MS)
            .map(|(_, ct)| ct - t)
            .min();
        match first {
            Some(delay) => {
                tally.positive += 1;
                tally.delay_sum_ms += delay as u64;
                tally.delay_max_ms = tally.delay_max_ms.max(delay as u64);
                labels.push(1);
                delays.push(delay);
            }
            None => {
                tally.negative += 1;
                labels.push(0);
                delays.push(WAIT_MS);
            }
        }
    }
    let mut columns = d.impressions.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(labels)));
    columns.push(Arc::new(Int64Array::from(delays)));
    let mut fields: Vec<Field> = d
        .impressions
        .schema()
        .fields()
        .iter()
        .map(|f| (**f).clone())
        .collect();
    fields.push(Field::new("label", DataType::Int64, false));
    fields.push(Field::new("label_delay_ms", DataType::Int64, false));
    let all = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let order = arrow::compute::sort_to_indices(all.column(1), None, None).unwrap();
    (
        arrow::compute::take_record_batch(&all, &order).unwrap(),
        tally,
    )
}

fn pipeline() -> Pipeline {
    StandardPipeline {
        label: "label".into(),
        numeric: vec!["f0".into()],
        categorical: vec!["c0".into()],
        crosses: vec![],
        scale: true,
        dense: false,
        hash_bits: 12,
    }
    .build()
    .unwrap()
}

fn config(dir: Option<&Path>, faults: Vec<FaultInjection>) -> TrainConfig {
    let mut config = TrainConfig::new("labels", LearnerSpec::new(LearnerKind::Ftrl));
    config.batch_rows = Some(BATCH);
    config.checkpoint.dir = dir.map(|d| d.join("checkpoints"));
    config.checkpoint.interval = Some(Duration::from_millis(3));
    config.failover.mode = FailoverMode::ExactlyOnce;
    config.failover.restart = RestartPolicy {
        initial_backoff: Duration::from_millis(1),
        ..RestartPolicy::restarts(10)
    };
    config.faults = faults;
    config
}

/// A source of `batch`'s rows in order; `slow`: about 1 ms a batch (checkpoints land between).
fn rows(batch: &RecordBatch, slow: bool) -> GeneratorSource {
    let all = batch.clone();
    GeneratorSource::new(
        batch.schema(),
        Some(batch.num_rows() as u64),
        Arc::new(move |start, len| {
            if slow {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(all.slice(start as usize, len))
        }),
    )
}

/// Trains on the labelled source (join at `parallelism`).
fn labelled(d: &Data, parallelism: usize, config: TrainConfig) -> (TrainOutcome, LabelTally) {
    let job = TrainJob::new(config).unwrap();
    let slow = job.config().checkpoint.dir.is_some();
    let left = job.flow().source("impressions", rows(&d.impressions, slow));
    let right = job.flow().source("clicks", rows(&d.clicks, slow));
    let spec = DelayedLabels {
        key: vec!["id".into()],
        time: "ts".into(),
        wait: Duration::from_millis(WAIT_MS as u64),
        out_of_orderness: Duration::from_millis(BOUND_MS),
        parallelism,
        batch_rows: BATCH,
    };
    let (input, counters) = labelled_stream(&left, &right, &spec).unwrap();
    let outcome = job.start(input, pipeline(), None).unwrap().join();
    let outcome = outcome.unwrap_or_else(|e| panic!("p{parallelism}: the job failed: {e}"));
    (outcome, counters.tally())
}

/// Trains on the oracle's rows, cut into the same batches.
fn on_oracle(rows_in_order: &RecordBatch) -> TrainOutcome {
    let job = TrainJob::new(config(None, vec![])).unwrap();
    let input = job.flow().source("oracle", rows(rows_in_order, false));
    job.start(input, pipeline(), None).unwrap().join().unwrap()
}

fn bytes(o: &TrainOutcome) -> Vec<u8> {
    o.trained.to_bytes().unwrap()
}

#[test]
fn the_labelled_source_trains_the_model_the_oracle_labels_train() {
    let d = data(1);
    let (expected_rows, expected_tally) = oracle(&d);
    assert!(expected_tally.positive > 300 && expected_tally.negative > 1000);
    let reference = on_oracle(&expected_rows);
    for parallelism in [1, 2] {
        let (o, tally) = labelled(&d, parallelism, config(None, vec![]));
        assert_eq!(tally, expected_tally, "p{parallelism}: the label tally");
        assert_eq!(o.report.rows, IMPRESSIONS as u64, "p{parallelism}");
        assert_eq!(
            o.report.metrics, reference.report.metrics,
            "p{parallelism}: progressive metrics differ from the oracle's"
        );
        assert!(
            bytes(&o) == bytes(&reference),
            "p{parallelism}: the model differs from the one trained on the oracle's rows"
        );
    }
}

/// Random faults: 1–3, in any task of the job, errors or panics.
fn faults(rng: &mut impl Rng, parallelism: usize) -> Vec<FaultInjection> {
    (0..rng.random_range(1..=3))
        .map(|_| {
            let (op, subtask, last) = match rng.random_range(0..5) {
                0 => ("learn", 0, 25),
                1 => ("impressions", 0, 25),
                2 => ("clicks", 0, 5),
                3 => (JOIN_OPERATOR, rng.random_range(0..parallelism), 25),
                _ => (ORDER_OPERATOR, 0, 25),
            };
            let after = rng.random_range(2..last);
            if rng.random_bool(0.5) {
                FaultInjection::error(op, subtask, after)
            } else {
                FaultInjection::panic(op, subtask, after)
            }
        })
        .collect()
}

#[test]
fn exactly_once_failures_give_the_uninterrupted_model_bytes() {
    let d = data(2);
    let (expected_rows, expected_tally) = oracle(&d);
    let reference = on_oracle(&expected_rows);
    for parallelism in [1, 2] {
        for seed in 0..3u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(10 * parallelism as u64 + seed);
            let faults = faults(&mut rng, parallelism);
            let dir = tempfile::tempdir().unwrap();
            let (o, tally) = labelled(&d, parallelism, config(Some(dir.path()), faults.clone()));
            let at = format!("p{parallelism} seed {seed} {faults:?}");
            assert!(o.summary.restarts >= 1, "{at}: no fault fired");
            assert_eq!(o.summary.records_lost, 0, "{at}");
            assert_eq!(tally, expected_tally, "{at}: the label tally");
            assert_eq!(o.report.rows, IMPRESSIONS as u64, "{at}");
            assert_eq!(o.report.metrics, reference.report.metrics, "{at}");
            assert!(
                bytes(&o) == bytes(&reference),
                "{at}: the model differs from the uninterrupted one"
            );
        }
    }
}

#[tokio::test]
async fn a_key_column_missing_from_one_side_fails_the_node_naming_the_key() {
    use eddy_workflow::runner::{self, state::NodeStatus, RunOptions};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("impressions.csv"),
        "id,ts,c0\n1,0,a\n2,5,b\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("clicks.csv"), "uid,ts\n1,3\n").unwrap();
    let text = r#"
[sources.impressions]
kind = "file"
path = "impressions.csv"
[sources.clicks]
kind = "file"
path = "clicks.csv"
[sources.examples]
kind = "delayed-labels"
impressions = "impressions"
clicks = "clicks"
key = ["id"]
time = "ts"
wait = "10ms"
[features.f]
label = "label"
categorical = ["c0"]
[nodes.train]
kind = "stream-train"
source = "examples"
features = "f"
learner = "ftrl"
"#;
    let spec = dir.path().join("workflow.toml");
    std::fs::write(&spec, text).unwrap();
    let wf = eddy_workflow::spec::Workflow::load(&spec).unwrap();
    let opts = RunOptions {
        run_dir: dir.path().join("run"),
        spec_path: spec.clone(),
        spec_hash: runner::state::spec_hash(text),
        on_update: None,
        serve_forever: false,
        program: None,
    };
    let s = runner::run(wf, opts, std::future::pending()).await.unwrap();
    let n = &s.state.nodes["train"];
    assert_eq!(n.status, NodeStatus::Failed, "{n:?}");
    let error = n.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("sources.examples.key") && error.contains("`id` is not in source `clicks`"),
        "{error}"
    );
    assert!(error.contains("uid, ts"), "{error}");
}

#[test]
fn clicks_that_match_nothing_train_on_negatives_alone() {
    let d = data(3);
    let ids = d
        .clicks
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    let strangers: Int64Array = ids.iter().map(|id| id.map(|id| id + 1_000_000)).collect();
    let clicks = RecordBatch::try_new(
        d.clicks.schema(),
        vec![Arc::new(strangers), d.clicks.column(1).clone()],
    )
    .unwrap();
    let d = Data {
        impressions: d.impressions,
        clicks,
    };
    let (o, tally) = labelled(&d, 1, config(None, vec![]));
    assert_eq!((tally.positive, tally.negative), (0, IMPRESSIONS as u64));
    assert_eq!(o.report.rows, IMPRESSIONS as u64);
}
