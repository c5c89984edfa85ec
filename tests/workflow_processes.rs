//! #16: a workflow `stream-train` node with `processes = 2`. `eddy run` trains a 4-partition
//! topic of generated CTR rows (a tansu broker on 127.0.0.1) in two `eddy node-worker`
//! processes through two shard processes the node starts; worker 0 publishes versions while it
//! trains (`publish-rows`), and the node the job's version at the end (worker 0's pipeline with
//! the shards' tables); an `evaluate` gate scores each on a holdout of the same generator. A fault-free run and runs where one worker is `kill -9`ed at a random moment
//! after its first checkpoint (two seeds) must all end with:
//! - the run succeeded, the gate passed (the published model is the trained one: AUC > 0.7 on
//!   rows it never saw);
//! - worker 0's versions counting its own rows, then the job's version, trained on every row
//!   of the topic and scored by the gate; each worker exactly its own partitions' rows (from the supervisor's status the node leaves in its checkpoint directory), the
//!   accounting identity (rows trained by all of a worker's processes = its rows + replayed);
//! - after a kill: worker 1 restarted once from its checkpoint, worker 0 never; the merged
//!   progressive log loss within 1% of the fault-free run's.
//!
//! Mutations tried (each by hand, then restored):
//! - the node-worker reading every partition (`kafka_source` ignoring the member): caught, the
//!   fault-free run's worker 0 publishes a version counting 30,720 rows, more than its
//!   partitions' 24,000;
//! - the node publishing worker 0's saved model as it is instead of the shards' tables read
//!   back after every worker finished: not caught here (both hold every row once worker 0
//!   finished last, which a test cannot force); `tests/worker_failover.rs` catches a model that
//!   is not read back from the shards at all.

#[path = "support/checkpoints.rs"]
mod checkpoints;
#[path = "support/clicks.rs"]
mod clicks;
#[path = "../core/tests/support/kafka.rs"]
mod kafka;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use checkpoints::checkpoint_holds_rows;
use clicks::{clicks, LAYOUT, ROWS, WORKER_ROWS};
use eddy_workflow::registry::Registry;
use eddy_workflow::runner::{NodeStatus, RunState};
use eddy_workflow::train::supervise::{ShardProcesses, SupervisorStatus};
use kafka::Broker;
use rand::{Rng, SeedableRng};

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
/// How long one run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// How long the gate may take to score the versions external workers published.
const GATE_LIMIT: Duration = Duration::from_secs(120);

/// The workflow: the topic in two worker processes, a gate on a holdout of the same
/// generator (rows past the topic's).
fn workflow(topic_uri: &str) -> String {
    format!(
        r#"[workflow]
name = "processes"

[sources.live]
kind = "kafka"
address = "{topic_uri}"
follow = false
batch-rows = 256

[sources.holdout]
kind = "ctr"
seed = 7
offset = 1000000
rows = 4000

[features.clicks]
label = "label"
numeric = ["f0", "f1", "f2", "f3", "f4"]
categorical = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]

[nodes.train]
kind = "stream-train"
source = "live"
features = "clicks"
learner = "ftrl"
processes = 2
checkpoint-every = "100ms"
publish-rows = 10000

[nodes.gate]
kind = "evaluate"
model = "train"
on-new-version = "train"
source = "holdout"
min-auc = 0.7
"#
    )
}

/// A running `eddy run`, killed (with what it started) if the test fails before it exits.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SIGTERM first: the run stops its workers and shards before it exits
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(2));
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The supervisor's status the node keeps in its checkpoint directory.
fn status(run_dir: &Path) -> Option<SupervisorStatus> {
    let path = run_dir.join("checkpoints/train/supervisor.json");
    SupervisorStatus::read(&path).ok().flatten()
}

/// Runs the workflow in `run_dir`; with `kill`, worker 1 is `kill -9`ed at a random moment
/// (from the seed) once both workers checkpointed. Returns the final supervisor status.
fn run(spec: &Path, run_dir: &Path, kill: Option<u64>) -> SupervisorStatus {
    let mut guard = Guard(
        Command::new(EDDY)
            .arg("run")
            .arg(spec)
            .arg("--run-dir")
            .arg(run_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let started = Instant::now();
    if let Some(seed) = kill {
        // both workers trained rows, then each took a checkpoint since: it holds rows
        let pid = loop {
            assert!(started.elapsed() < RUN_LIMIT, "the workers never trained");
            let s = status(run_dir);
            let training = s
                .as_ref()
                .is_some_and(|s| s.workers.iter().all(|w| w.rows_trained > 0));
            match s.and_then(|s| s.workers.get(1).and_then(|w| w.pid)) {
                Some(pid) if training => break pid,
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        for w in 0..2 {
            let own = run_dir.join(format!("checkpoints/train/worker-{w}"));
            while !checkpoint_holds_rows(&own) {
                assert!(
                    started.elapsed() < RUN_LIMIT,
                    "worker {w} never checkpointed"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..500)));
        let s = status(run_dir).expect("the status is there");
        assert!(
            s.workers
                .iter()
                .all(|w| w.rows_trained < WORKER_ROWS[w.worker]),
            "a worker trained all its rows before the kill; make the topic larger: {:?}",
            s.workers
        );
        eprintln!(
            "killing worker 1 (pid {pid}) at rows {:?}",
            s.workers.iter().map(|w| w.rows_trained).collect::<Vec<_>>()
        );
        let killed = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -9 {pid}");
    }
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("eddy run ran past {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "eddy run failed: {exit}");
    status(run_dir).expect("the node leaves its supervisor's status")
}

/// The published version's metrics; checks what every run must show.
fn check(
    run_dir: &Path,
    s: &SupervisorStatus,
    what: &str,
) -> std::collections::BTreeMap<String, f64> {
    let state = RunState::load(run_dir).unwrap().expect("a run state");
    for node in ["train", "gate"] {
        let n = &state.nodes[node];
        assert_eq!(
            n.status,
            NodeStatus::Succeeded,
            "{what}: node {node}: {n:?}"
        );
    }
    let gate = &state.nodes["gate"];
    assert!(
        gate.metrics.get("auc").is_some_and(|auc| *auc > 0.7),
        "{what}: the gate scored the published model: {gate:?}"
    );
    let registry = Registry::open(run_dir.join("registry")).unwrap();
    let versions = registry.versions("train").unwrap();
    // worker 0's while it trained (its own rows), then the job's
    let (v, early) = versions.split_last().expect("versions");
    assert!(
        !early.is_empty(),
        "{what}: worker 0 published while training: {versions:?}"
    );
    for e in early {
        assert!(
            e.training_rows > 0 && e.training_rows <= WORKER_ROWS[0],
            "{what}: worker 0's version counts its own rows: {e:?}"
        );
    }
    assert_eq!(v.training_rows, ROWS, "{what}: {v:?}");
    assert!(
        state.nodes["gate"].handled_versions.contains(&v.version),
        "{what}: the gate scored the job's version {}: {:?}",
        v.version,
        state.nodes["gate"]
    );
    assert_eq!(v.metrics["processes"], 2.0, "{what}");
    assert_eq!(v.metrics["records_lost"], 0.0, "{what}");
    for w in &s.workers {
        assert_eq!(
            w.rows, WORKER_ROWS[w.worker],
            "{what}: worker {}'s rows: {w:?}",
            w.worker
        );
        assert_eq!(
            w.rows_trained,
            w.rows - w.started_from + w.records_replayed,
            "{what}: worker {}: rows trained by all its processes = rows + replayed: {w:?}",
            w.worker
        );
    }
    v.metrics.clone()
}

#[test]
fn a_stream_train_node_in_worker_processes_survives_a_killed_worker_and_publishes_the_model() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    broker.create_topic("clicks", 4);
    broker.produce("clicks", &clicks(ROWS), |i| LAYOUT[i % LAYOUT.len()]);
    let spec = tmp.path().join("processes.toml");
    std::fs::write(&spec, workflow(&broker.uri("clicks"))).unwrap();

    let clean_dir = tmp.path().join("clean");
    let clean = run(&spec, &clean_dir, None);
    let clean_metrics = check(&clean_dir, &clean, "fault-free");
    assert_eq!(clean_metrics["restarts"], 0.0);
    let clean_loss = clean_metrics["logloss"];

    for seed in 0..2u64 {
        let what = format!("seed {seed}");
        let dir = tmp.path().join(format!("kill-{seed}"));
        let s = run(&spec, &dir, Some(seed));
        let metrics = check(&dir, &s, &what);
        assert_eq!(metrics["restarts"], 1.0, "{what}: {metrics:?}");
        assert_eq!(s.workers[0].restarts, 0, "{what}: worker 0 restarted");
        assert_eq!(s.workers[1].restarts, 1, "{what}: {:?}", s.workers[1]);
        let resumed = s.workers[1].resumed_rows.first().copied().unwrap_or(0);
        assert!(
            resumed > 0,
            "{what}: worker 1 resumed from no checkpoint: {:?}",
            s.workers[1]
        );
        let loss = metrics["logloss"];
        eprintln!(
            "{what}: worker 1 resumed at row {resumed}, replayed {}, recovery {:?} ms, peer \
             rows/s during/before {:?}, logloss {loss:.5} (fault-free {clean_loss:.5})",
            s.workers[1].records_replayed, s.workers[1].recovery_ms, s.workers[1].peer_ratio
        );
        assert!(
            (loss - clean_loss).abs() <= 0.01 * clean_loss,
            "{what}: logloss {loss} is not within 1% of the fault-free {clean_loss}"
        );
    }
}

/// `supervision = "external"`: someone else — here the test, as a Kubernetes StatefulSet would
/// — runs the node's workers (`eddy node-worker`) against running shards. Worker 0 publishes to
/// the run's registry while it trains, and the node, which starts nothing, passes each version
/// on to the run: the gate scores every one. SIGTERM then stops the run (exit 0), the node
/// interrupted. Mutation tried: the node not relaying (`Relay::poll_now` reporting nothing):
/// caught, the gate never runs ("the gate never scored version 3" after [`GATE_LIMIT`]).
#[test]
fn external_workers_publish_through_worker_0_and_the_node_passes_their_versions_on() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    broker.create_topic("clicks", 4);
    broker.produce("clicks", &clicks(ROWS), |i| LAYOUT[i % LAYOUT.len()]);
    let shards = ShardProcesses::start(Path::new(EDDY), 2, &tmp.path().join("ps")).expect("shards");
    let addrs: Vec<String> = shards.addrs().iter().map(|a| format!("\"{a}\"")).collect();
    let spec = tmp.path().join("external.toml");
    let text = workflow(&broker.uri("clicks")).replace(
        "processes = 2\n",
        &format!(
            "processes = 2\nsupervision = \"external\"\nps = [{}]\n",
            addrs.join(", ")
        ),
    );
    std::fs::write(&spec, text).unwrap();
    let run_dir = tmp.path().join("run");
    let mut guard = Guard(
        Command::new(EDDY)
            .arg("run")
            .arg(&spec)
            .arg("--run-dir")
            .arg(&run_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let run = &mut guard.0;
    let workers: Vec<_> = (0..2)
        .map(|i| {
            Command::new(EDDY)
                .args(["node-worker", "--workflow"])
                .arg(&spec)
                .args(["--node", "train", "--worker-index", &i.to_string()])
                .args([
                    "--workers",
                    "2",
                    "--ps",
                    &shards.uri(),
                    "--ps-job",
                    "external",
                ])
                .arg("--checkpoint-dir")
                .arg(tmp.path().join(format!("worker-{i}")))
                .arg("--registry")
                .arg(run_dir.join("registry"))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, mut w) in workers.into_iter().enumerate() {
        let exit = w.wait().unwrap();
        assert!(exit.success(), "node-worker {i}: {exit}");
    }
    // worker 0's versions: every 10,000 of its rows and once at its end
    let registry = Registry::open(run_dir.join("registry")).unwrap();
    let versions = registry.versions("train").unwrap();
    assert_eq!(versions.len(), 3, "worker 0's versions: {versions:?}");
    let last = versions.last().unwrap().version;
    let started = Instant::now();
    loop {
        let state = RunState::load(&run_dir).unwrap();
        let gate = state.as_ref().map(|s| &s.nodes["gate"]);
        if gate
            .is_some_and(|g| g.handled_versions.contains(&last) && g.status != NodeStatus::Running)
        {
            break;
        }
        assert!(
            started.elapsed() < GATE_LIMIT,
            "the gate never scored version {last}: {gate:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = run.wait().unwrap();
    assert!(exit.success(), "eddy run stopped by SIGTERM: {exit}");
    let state = RunState::load(&run_dir).unwrap().unwrap();
    assert_eq!(state.nodes["train"].status, NodeStatus::Interrupted);
    let gate = &state.nodes["gate"];
    for v in &versions {
        assert!(
            gate.handled_versions.contains(&v.version),
            "the gate scored version {}: {gate:?}",
            v.version
        );
    }
}
