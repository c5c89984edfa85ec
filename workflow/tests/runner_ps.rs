//! `stream-train` through a parameter server: remote shards the test starts (the published
//! version must predict what the store predicts), and `parallelism` without `ps` (an implicit
//! local store), each gated on a holdout.

use std::path::Path;

use eddy_algorithms::features::Features;
use eddy_algorithms::learner::GradientModel;
use eddy_algorithms::online::linear::LogisticGradientModel;
use eddy_algorithms::optim::FtrlProximalParams;
use eddy_algorithms::trained::{TrainedModel, TRAINED_MODEL_KIND};
use eddy_core::datagen::ctr::{CtrGenerator, DEFAULT_SEED};
use eddy_ps::train::ftrl_tables;
use eddy_ps::{ParamStore, PsClientConfig, PsServerConfig};
use eddy_workflow::runner::{self, NodeStatus, RunOptions, RunSummary};
use eddy_workflow::spec::Workflow;

async fn run_spec(dir: &Path, text: &str) -> RunSummary {
    let spec = dir.join("workflow.toml");
    std::fs::write(&spec, text).unwrap();
    let wf = Workflow::load(&spec).unwrap();
    let options = RunOptions {
        run_dir: dir.join("run"),
        spec_path: spec.clone(),
        spec_hash: runner::state::spec_hash(text),
        on_update: None,
        serve_forever: false,
        program: None,
    };
    runner::run(wf, options, std::future::pending())
        .await
        .unwrap()
}

/// A live stream of 8000 rows, a holdout after it, and a gate at AUC 0.7; `{ps}` is the
/// training node's parameter-server keys.
fn spec(ps: &str) -> String {
    format!(
        r#"
[sources.live]
kind = "ctr"
rows = 8000
batch-rows = 500

[sources.holdout]
kind = "ctr"
offset = 8000
rows = 2000
batch-rows = 2000

[features.f]
label = "label"
numeric = ["f0", "f1", "f2", "f3", "f4"]
categorical = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]
hash-bits = 10

[nodes.train]
kind = "stream-train"
source = "live"
features = "f"
learner = "ftrl"
params = {{ ftrl = {{ alpha = 0.05, beta = 1.0, l2 = 1.0 }} }}
publish-rows = 3000
{ps}

[nodes.gate]
kind = "evaluate"
model = "train"
on-new-version = "train"
source = "holdout"
min-auc = 0.7
"#
    )
}

/// Checks the run: every node succeeded, 8000 rows, versions each gated and passed.
fn check_run(s: &RunSummary) {
    let st = &s.state.nodes;
    for n in ["train", "gate"] {
        assert_eq!(st[n].status, NodeStatus::Succeeded, "{n}: {:?}", st[n]);
    }
    assert_eq!(st["train"].rows, 8000);
    // versions after 3000 and 6000 rows and the last 2000: one subtask (of 1) publishes
    // exactly there; subtask 0 of several checks the rows all of them learned after each of
    // its own batches, so two marks can fall between two of its checks
    let versions = st["train"].versions.len();
    assert!((2..=3).contains(&versions), "{:?}", st["train"]);
    assert_eq!(st["gate"].runs as usize, versions);
    assert!(st["gate"].metrics["auc"] >= 0.7, "{:?}", st["gate"]);
    assert!(
        st["gate"].message.as_deref().unwrap().contains("validated"),
        "{:?}",
        st["gate"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_shards_train_one_model_and_the_version_predicts_as_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut addrs = Vec::new();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..2 {
        let server = PsServerConfig::new(i, 2).open().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap().to_string());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        })));
    }
    let ps = format!(
        "parallelism = 2\nps = [\"{}\", \"{}\"]\nconsistency = \"sync\"",
        addrs[0], addrs[1]
    );
    let s = run_spec(dir.path(), &spec(&ps)).await;
    check_run(&s);

    // the latest version against the shards' own weights, on the holdout rows
    let registry = runner::registry_of(&dir.path().join("run")).unwrap();
    let last = s.state.nodes["train"].last_version.unwrap();
    let trained: TrainedModel = registry.load("train", last, TRAINED_MODEL_KIND).unwrap();
    let holdout = CtrGenerator::new(DEFAULT_SEED, false)
        .batch(8000, 2000)
        .unwrap();
    let mut published = Vec::new();
    let mut features = Features::Sparse(Default::default());
    trained
        .predict_batch(&holdout, &mut features, &mut published)
        .unwrap();
    let ftrl = FtrlProximalParams {
        alpha: 0.05,
        beta: 1.0,
        l1: 0.0,
        l2: 1.0,
    };
    let client = PsClientConfig::new(addrs.clone(), ftrl_tables(ftrl))
        .connect()
        .await
        .unwrap();
    let grad = LogisticGradientModel::new(trained.pipeline.dim(), true);
    let mut keys = vec![Vec::new()];
    grad.keys(&features, &mut keys);
    let mut rows = vec![Vec::new()];
    client.pull("w", &keys[0], &mut rows[0]).await.unwrap();
    let mut store = Vec::new();
    grad.predict_with(&features, &keys, &rows, &mut store)
        .unwrap();
    assert_eq!(published.len(), 2000);
    assert_eq!(store.len(), published.len());
    for (p, s) in published.iter().zip(&store) {
        assert!((p - s).abs() <= 1e-6, "published {p} vs store {s}");
    }
    assert!(client.row_count("w").await.unwrap() > 500);

    for stop in stops {
        stop.send(()).unwrap();
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_without_ps_trains_through_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_spec(
        dir.path(),
        &spec("parallelism = 3\nconsistency = \"bounded:1\""),
    )
    .await;
    check_run(&s);
    let msg = s.state.nodes["train"].message.clone().unwrap();
    assert!(
        msg.contains("3 worker(s) through a parameter server"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_without_a_store_shares_the_ftrl_weights() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_spec(dir.path(), &spec("parallelism = 2")).await;
    check_run(&s);
    let msg = s.state.nodes["train"].message.clone().unwrap();
    assert!(msg.contains("2 worker(s) sharing its weights"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_shards_train_and_stop_with_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_spec(
        dir.path(),
        &spec("parallelism = 2\nps = { shards = 2 }\nconsistency = \"sync\""),
    )
    .await;
    check_run(&s);
    let msg = s.state.nodes["train"].message.clone().unwrap();
    assert!(msg.contains("2 worker(s)"), "{msg}");
}

/// The spec's `ps` values, checked: implicit local, the list, the spawn form.
#[test]
fn ps_keys_are_checked_into_the_spec() {
    use eddy_workflow::spec::{Consistency, NodeKind, PsSpec};
    let node = |ps: &str| {
        let wf = Workflow::parse(&spec(ps)).unwrap();
        let n = wf.nodes.iter().find(|n| n.name == "train").unwrap().clone();
        match n.kind {
            NodeKind::StreamTrain(t) => (t.parallelism, t.ps, t.consistency),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(node(""), (1, None, Consistency::Async));
    assert_eq!(node("parallelism = 4"), (4, None, Consistency::Async));
    assert_eq!(
        node("parallelism = 4\nconsistency = \"sync\""),
        (4, Some(PsSpec::Local), Consistency::Sync)
    );
    assert_eq!(
        node("ps = [\"a:1\", \"http://b:2\"]\nconsistency = \"bounded:2\""),
        (
            1,
            Some(PsSpec::Remote(vec!["a:1".into(), "http://b:2".into()])),
            Consistency::Bounded(2)
        )
    );
    assert_eq!(
        node("ps = { shards = 3 }\nconsistency = \"sync\""),
        (1, Some(PsSpec::Spawn(3)), Consistency::Sync)
    );
}

/// Batches of very different sizes (a 1400-row history, then 100-row live batches) under
/// `sync`: the rebalance edge deals each batch to the subtask sent the fewest rows, so the
/// subtask holding the big batch never waits on a peer starved of input while the source
/// waits on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uneven_batches_under_sync_do_not_stall() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[sources.history]
kind = "ctr"
rows = 1400
batch-rows = 1400

[sources.live]
kind = "ctr"
offset = 1400
rows = 4000
batch-rows = 100

[sources.all]
kind = "hybrid"
history = "history"
live = "live"

[features.f]
label = "label"
categorical = ["c0", "c1", "c2", "c3"]
hash-bits = 10

[nodes.train]
kind = "stream-train"
source = "all"
features = "f"
learner = "ftrl"
parallelism = 2
consistency = "sync"
publish-rows = 1000
"#;
    let s = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        run_spec(dir.path(), text),
    )
    .await
    .expect("the node finished");
    let n = &s.state.nodes["train"];
    assert_eq!(n.status, NodeStatus::Succeeded, "{n:?}");
    assert_eq!(n.rows, 5400);
    // subtask 0 publishes when the rows all subtasks learned pass a 1000-row mark, so
    // the marks land within a batch of 1400, 2400, 3400, 4400 and 5400 (and the last
    // periodic version may fall short of the end, adding a final one)
    assert!((5..=6).contains(&n.versions.len()), "{n:?}");
}

/// #16: running shards know the node's job by the id in its run directory: a new run
/// directory is another job, refused until `ps-existing` says to resume the tables or start
/// fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_run_against_an_earlier_runs_shards_needs_ps_existing() {
    let dir = tempfile::tempdir().unwrap();
    let server = PsServerConfig::new(0, 1).open().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    let keys = |extra: &str| format!("ps = [\"{addr}\"]\nretries = 0\n{extra}");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    check_run(&run_spec(&first, &spec(&keys(""))).await);
    let job = std::fs::read_to_string(first.join("run/ps-jobs/train")).unwrap();
    assert!(job.starts_with("job-"), "{job}");

    let refused = run_spec(&second, &spec(&keys(""))).await;
    let train = &refused.state.nodes["train"];
    assert_eq!(train.status, NodeStatus::Failed, "{train:?}");
    let message = train.error.as_deref().unwrap_or_default();
    assert!(
        message.contains("holds the tables of job") && message.contains(job.trim()),
        "{message}"
    );
    for policy in ["resume", "fresh"] {
        let run = dir.path().join(policy);
        std::fs::create_dir_all(&run).unwrap();
        let extra = format!("ps-existing = \"{policy}\"");
        check_run(&run_spec(&run, &spec(&keys(&extra))).await);
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
