//! The training job's fault tolerance, on the job itself: a clicks stream from eddy-core's
//! generator (slowed to about 1 ms a batch so that checkpoints, every 3 ms, land between
//! batches) → the standard pipeline → FTRL.
//!
//! - exactly-once, in one job: random task failures (learner and source, error and panic)
//!   over several seeds; the final model's bytes equal an uninterrupted run's.
//! - exactly-once, across jobs: a job fails for good at a random batch, a second job on the
//!   same checkpoint directory resumes; it must re-read only what the restored checkpoint did
//!   not hold, and its final model's bytes equal an uninterrupted run's.
//! - approximate: the learner fails alone and restarts from its snapshot while the source
//!   keeps going; the rows it missed are counted in `records_lost`.
//! - replayed publications: versions published after the restored checkpoint are recognized,
//!   not published twice.
//! - through a parameter server, one subtask, exactly-once: the store's tables are restored
//!   with the learner, so random failures give the uninterrupted model's bytes.
//! - data-parallel (2 subtasks through the in-process store), approximate: a subtask fails
//!   alone and restarts from its snapshot while its peer keeps training the store.

mod support {
    pub mod train;
}

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eddy_core::dataflow::{FaultInjection, RestartPolicy};
use eddy_core::datagen::ctr::CtrGenerator;
use eddy_core::source::generator::GeneratorSource;
use eddy_workflow::model_stream::PublishEvery;
use eddy_workflow::registry::{NewVersion, Registry};
use eddy_workflow::train::{
    FailoverMode, PsConfig, PsSpec, PublishTo, TrainConfig, TrainJob, TrainOutcome,
};
use rand::{Rng, SeedableRng};

use support::train::{config, model_bytes, pipeline, records_in, BATCH};

const ROWS: u64 = 20_000;
const BATCHES: u64 = ROWS / BATCH as u64;
const SOURCE: &str = "clicks";

fn generator() -> Arc<CtrGenerator> {
    Arc::new(CtrGenerator::new(7, false))
}

/// The clicks, about 1 ms a batch.
fn source(g: &Arc<CtrGenerator>) -> GeneratorSource {
    let g = g.clone();
    GeneratorSource::new(
        g.schema(),
        Some(ROWS),
        Arc::new(move |start, len| {
            std::thread::sleep(Duration::from_millis(1));
            g.batch(start, len)
        }),
    )
}

fn run(config: TrainConfig) -> eddy_workflow::Result<TrainOutcome> {
    let g = generator();
    let job = TrainJob::new(config)?;
    let input = job.flow().source(SOURCE, source(&g));
    job.start(input, pipeline(&g.schema()), None)?.join()
}

/// Random faults: 1–3 of them, in the learner or the source, errors or panics.
fn faults(rng: &mut impl Rng) -> Vec<FaultInjection> {
    (0..rng.random_range(1..=3))
        .map(|_| {
            let op = if rng.random_bool(0.7) {
                "learn"
            } else {
                SOURCE
            };
            let after = rng.random_range(5..BATCHES - 5);
            if rng.random_bool(0.5) {
                FaultInjection::error(op, 0, after)
            } else {
                FaultInjection::panic(op, 0, after)
            }
        })
        .collect()
}

#[test]
fn exactly_once_restarts_give_the_uninterrupted_model_bytes() {
    let clean = run(config(None, FailoverMode::ExactlyOnce, vec![])).unwrap();
    assert_eq!(clean.report.rows, ROWS);
    for seed in 0..4u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let faults = faults(&mut rng);
        let o = run(config(
            Some(dir.path()),
            FailoverMode::ExactlyOnce,
            faults.clone(),
        ))
        .unwrap();
        assert!(
            o.summary.restarts >= 1,
            "seed {seed}: {faults:?} did not fire"
        );
        assert_eq!(o.summary.records_lost, 0, "seed {seed}");
        assert_eq!(o.report.rows, ROWS, "seed {seed}");
        assert!(
            model_bytes(&o) == model_bytes(&clean),
            "seed {seed}: {faults:?}: the model differs from the uninterrupted run"
        );
        assert_eq!(
            o.report.metrics, clean.report.metrics,
            "seed {seed}: progressive metrics differ"
        );
    }
}

#[test]
fn a_killed_job_resumes_from_its_checkpoint_in_a_new_job() {
    let clean = run(config(None, FailoverMode::ExactlyOnce, vec![])).unwrap();
    for seed in 0..3u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(100 + seed);
        let dir = tempfile::tempdir().unwrap();
        let kill_at = rng.random_range(20..BATCHES - 5);
        // the first job dies at `kill_at` and may not restart
        let mut first = config(
            Some(dir.path()),
            FailoverMode::ExactlyOnce,
            vec![FaultInjection::error("learn", 0, kill_at)],
        );
        first.failover.restart = RestartPolicy::default();
        assert!(run(first).is_err(), "seed {seed}: the first job must fail");
        // the second job on the same directory resumes
        let second = run(config(Some(dir.path()), FailoverMode::ExactlyOnce, vec![])).unwrap();
        let restored = second.restored.expect("resumed from a checkpoint");
        let learned_now = records_in(&second, "learn");
        assert!(
            learned_now < ROWS && learned_now > 0,
            "seed {seed}: the second job learned {learned_now} rows after restoring {restored}: \
             it must read only what the checkpoint did not hold"
        );
        assert_eq!(second.report.rows, ROWS, "seed {seed}");
        assert!(
            model_bytes(&second) == model_bytes(&clean),
            "seed {seed}: kill at batch {kill_at}: the resumed model differs"
        );
        // a job that read its whole input clears its checkpoints
        assert!(!dir.path().join("checkpoints").exists(), "seed {seed}");
    }
}

#[test]
fn approximate_failover_restarts_the_learner_alone_and_counts_the_loss() {
    for seed in 0..3u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(200 + seed);
        let dir = tempfile::tempdir().unwrap();
        let at = rng.random_range(30..BATCHES - 10);
        let o = run(config(
            Some(dir.path()),
            FailoverMode::Approximate,
            vec![FaultInjection::error("learn", 0, at)],
        ))
        .unwrap();
        assert_eq!(o.summary.restarts, 1, "seed {seed}");
        // the source never stopped: it produced every row once
        let produced = o.summary.operator(SOURCE).map_or(0, |s| s.records_out);
        assert_eq!(produced, ROWS, "seed {seed}: the source restarted");
        assert!(
            o.summary.records_lost > 0,
            "seed {seed}: nothing counted as lost"
        );
        assert!(
            o.report.rows < ROWS,
            "seed {seed}: the learner saw every row"
        );
        // the restarted learner went on from its snapshot (rows learned before the failure
        // count), not from nothing: a fresh learner would have learned at most the rows after
        // the failing batch, `ROWS - at * BATCH - records_lost`
        assert!(
            o.report.rows + o.summary.records_lost > ROWS - at * BATCH as u64,
            "seed {seed}: the learner restarted without its snapshot ({} rows, {} lost)",
            o.report.rows,
            o.summary.records_lost
        );
    }
}

#[test]
fn versions_published_after_the_restored_checkpoint_are_not_published_twice() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("registry")).unwrap();
    let publish = PublishTo {
        registry: registry.clone(),
        name: "ctr".into(),
        every: PublishEvery::rows(1_000),
        template: NewVersion {
            producer: "test".into(),
            ..NewVersion::default()
        },
    };
    let mut faulty = config(
        Some(dir.path()),
        FailoverMode::ExactlyOnce,
        vec![FaultInjection::error("learn", 0, 60)],
    );
    // checkpoints about every 30 batches, a version every 4: the failure comes after
    // versions the restored checkpoint does not know of, which the replay publishes again
    faulty.checkpoint.interval = Some(Duration::from_millis(30));
    faulty.publish = Some(publish);
    let o = run(faulty).unwrap();
    assert_eq!(o.summary.restarts, 1);
    let versions = registry.versions("ctr").unwrap();
    let rows: Vec<u64> = versions.iter().map(|v| v.training_rows).collect();
    let expected: Vec<u64> = (1..=ROWS / 1_000).map(|i| i * 1_000).collect();
    assert_eq!(rows, expected, "one version per 1,000 rows, none twice");
    for pair in versions.windows(2) {
        assert_eq!(pair[1].lineage.parent, Some(pair[0].version));
    }
    assert_eq!(o.version.unwrap().version, versions.last().unwrap().version);
}

#[test]
fn through_a_store_exactly_once_restores_the_tables_with_the_learner() {
    let with_store = |dir: Option<&Path>, faults| {
        let mut c = config(dir, FailoverMode::ExactlyOnce, faults);
        c.ps = Some(PsConfig::new(PsSpec::Local));
        c
    };
    let clean = run(with_store(None, vec![])).unwrap();
    assert_eq!(clean.report.rows, ROWS);
    for seed in 0..3u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(300 + seed);
        let dir = tempfile::tempdir().unwrap();
        let faults = faults(&mut rng);
        let o = run(with_store(Some(dir.path()), faults.clone())).unwrap();
        assert!(
            o.summary.restarts >= 1,
            "seed {seed}: {faults:?} did not fire"
        );
        assert_eq!(o.report.rows, ROWS, "seed {seed}");
        assert!(
            model_bytes(&o) == model_bytes(&clean),
            "seed {seed}: {faults:?}: the model read back from the store differs from the \
             uninterrupted run's"
        );
        assert_eq!(o.report.metrics, clean.report.metrics, "seed {seed}");
    }
}

/// Two subtasks sharing FTRL weights in memory, or training them through the in-process
/// parameter server.
#[test]
fn a_parallel_subtask_fails_alone_while_its_peer_keeps_training() {
    a_subtask_fails_alone(None);
    a_subtask_fails_alone(Some(PsConfig::new(PsSpec::Local)));
}

fn a_subtask_fails_alone(ps: Option<PsConfig>) {
    let parallel = |dir: Option<&Path>, faults| {
        let mut c = config(dir, FailoverMode::Approximate, faults);
        c.parallelism = 2;
        c.ps = ps.clone();
        c
    };
    let clean = run(parallel(None, vec![])).unwrap();
    assert_eq!(clean.report.rows, ROWS, "both subtasks' rows are merged");
    let logloss = |o: &TrainOutcome| o.report.metrics.get("logloss").unwrap();
    for seed in 0..3u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(400 + seed);
        let dir = tempfile::tempdir().unwrap();
        // subtask 1 gets every other batch: it fails after `at` of its own
        let at = rng.random_range(15..BATCHES / 2 - 5);
        let o = run(parallel(
            Some(dir.path()),
            vec![FaultInjection::error("learn", 1, at)],
        ))
        .unwrap();
        assert_eq!(o.summary.restarts, 1, "seed {seed}");
        let produced = o.summary.operator(SOURCE).map_or(0, |s| s.records_out);
        assert_eq!(produced, ROWS, "seed {seed}: the source restarted");
        let lost = o.summary.records_lost;
        assert!(lost > 0, "seed {seed}: nothing counted as lost");
        assert!(o.report.rows < ROWS, "seed {seed}: every row was learned");
        // the peer learned its whole half; the failed subtask went on from its snapshot, so it
        // lost at most a few batches besides `lost`: a fresh restart would have forgotten the
        // `at` batches it had learned
        assert!(
            o.report.rows + lost > ROWS - at * BATCH as u64,
            "seed {seed}: subtask 1 restarted without its snapshot ({} rows, {lost} lost)",
            o.report.rows
        );
        assert!(
            (logloss(&o) - logloss(&clean)).abs() / logloss(&clean) < 0.02,
            "seed {seed}: logloss {} vs {} without the failure",
            logloss(&o),
            logloss(&clean)
        );
    }
}

#[test]
fn parallel_training_refuses_exactly_once() {
    let mut c = config(None, FailoverMode::ExactlyOnce, vec![]);
    c.parallelism = 2;
    let e = TrainJob::new(c).err().expect("refused").to_string();
    assert!(e.contains("approximate failover"), "{e}");
}
