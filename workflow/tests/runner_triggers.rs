//! The scheduler's triggers, retries, failure propagation and resume, run in-process on small
//! specs written to a temporary directory. No assertion depends on timing: schedules run under
//! tokio's paused clock, and every check is on what ran, not when.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_workflow::runner::{self, NodeStatus, RunOptions, RunState, RunSummary};
use eddy_workflow::spec::Workflow;

fn write_spec(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("workflow.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn options(dir: &Path, spec: &Path) -> RunOptions {
    let text = std::fs::read_to_string(spec).unwrap();
    RunOptions {
        run_dir: dir.join("run"),
        spec_path: spec.to_path_buf(),
        spec_hash: runner::state::spec_hash(&text),
        on_update: None,
        serve_forever: false,
        program: None,
    }
}

async fn run_spec(dir: &Path, text: &str) -> RunSummary {
    let spec = write_spec(dir, text);
    let wf = Workflow::load(&spec).unwrap();
    runner::run(wf, options(dir, &spec), std::future::pending())
        .await
        .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn retries_with_backoff_then_succeed() {
    let dir = tempfile::tempdir().unwrap();
    // fails on the first two attempts, succeeds on the third
    let s = run_spec(
        dir.path(),
        r#"
[nodes.flaky]
kind = "command"
program = "sh"
args = ["-c", "echo try >> attempts; [ $(wc -l < attempts) -ge 3 ]"]
retries = 3
retry-backoff = "10ms"
"#,
    )
    .await;
    let n = &s.state.nodes["flaky"];
    assert_eq!(n.status, NodeStatus::Succeeded, "{n:?}");
    assert_eq!(n.attempts, 3);
    assert_eq!(n.runs, 1);
    assert_eq!(lines(&dir.path().join("attempts")).len(), 3);
    assert!(s.failed().is_empty());
}

#[tokio::test]
async fn a_failed_node_fails_its_dependents_and_the_rest_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_spec(
        dir.path(),
        r#"
[nodes.broken]
kind = "command"
program = "sh"
args = ["-c", "echo try >> broken-attempts; exit 3"]
retries = 1
retry-backoff = "10ms"

[nodes.downstream]
kind = "command"
program = "touch"
args = ["downstream-ran"]
after = ["broken"]

[nodes.further]
kind = "command"
program = "true"
after = ["downstream"]

[nodes.independent]
kind = "command"
program = "touch"
args = ["independent-ran"]
"#,
    )
    .await;
    let st = &s.state.nodes;
    assert_eq!(st["broken"].status, NodeStatus::Failed);
    assert_eq!(
        lines(&dir.path().join("broken-attempts")).len(),
        2,
        "one retry"
    );
    assert!(
        st["broken"]
            .error
            .as_deref()
            .unwrap()
            .contains("exit status: 3"),
        "{:?}",
        st["broken"]
    );
    for d in ["downstream", "further"] {
        assert_eq!(st[d].status, NodeStatus::Failed, "{d}");
        assert!(
            st[d].error.as_deref().unwrap().contains("upstream node"),
            "{:?}",
            st[d]
        );
    }
    assert!(st["further"]
        .error
        .as_deref()
        .unwrap()
        .contains("`downstream`"));
    assert!(!dir.path().join("downstream-ran").exists());
    assert_eq!(st["independent"].status, NodeStatus::Succeeded);
    assert!(dir.path().join("independent-ran").exists());
    let mut failed = s.failed();
    failed.sort();
    assert_eq!(failed, vec!["broken", "downstream", "further"]);
}

const STREAM: &str = r#"
[sources.live]
kind = "ctr"
rows = 3000
batch-rows = 250

[sources.holdout]
kind = "ctr"
offset = 500000
rows = 1000

[features.f]
label = "label"
numeric = ["f0", "f1", "f2", "f3", "f4"]
categorical = ["c0", "c1", "c2", "c3"]
hash-bits = 12

[nodes.train]
kind = "stream-train"
source = "live"
features = "f"
learner = "ftrl"
publish-rows = 1000
"#;

#[tokio::test]
async fn on_new_version_runs_once_per_published_version() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "{STREAM}
[nodes.record]
kind = \"command\"
on-new-version = \"train\"
program = \"sh\"
args = [\"-c\", \"echo $EDDY_MODEL_VERSION >> seen\"]

[nodes.gate]
kind = \"evaluate\"
model = \"train\"
on-new-version = \"train\"
source = \"holdout\"
min-auc = 0.0

[nodes.deploy]
kind = \"deploy\"
model = \"train\"
after = [\"gate\"]
"
    );
    let s = run_spec(dir.path(), &spec).await;
    let st = &s.state.nodes;
    assert_eq!(st["train"].versions, vec![1, 2, 3], "{:?}", st["train"]);
    assert_eq!(st["train"].rows, 3000);
    let mut seen = lines(&dir.path().join("seen"));
    seen.sort();
    assert_eq!(seen, vec!["1", "2", "3"]);
    assert_eq!(st["record"].runs, 3);
    let mut judged = st["gate"].handled_versions.clone();
    judged.sort();
    assert_eq!(judged, vec![1, 2, 3]);
    assert!(st["gate"].metrics.contains_key("auc"));
    assert_eq!(st["deploy"].runs, 3, "{:?}", st["deploy"]);
    let registry = runner::registry_of(&dir.path().join("run")).unwrap();
    let prod = registry.production("train").unwrap().unwrap();
    assert_eq!(prod.version, 3);
    assert!(s.failed().is_empty(), "{:?}", s.state);
}

#[tokio::test]
async fn a_gate_that_rejects_stops_the_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!(
        "{STREAM}
[nodes.gate]
kind = \"evaluate\"
model = \"train\"
on-new-version = \"train\"
source = \"holdout\"
min-auc = 0.999

[nodes.deploy]
kind = \"deploy\"
model = \"train\"
after = [\"gate\"]
"
    );
    let s = run_spec(dir.path(), &spec).await;
    let st = &s.state.nodes;
    assert_eq!(st["gate"].runs, 3);
    assert!(
        st["gate"].message.as_deref().unwrap().contains("rejected"),
        "{:?}",
        st["gate"]
    );
    assert_eq!(st["deploy"].status, NodeStatus::Skipped);
    assert_eq!(st["deploy"].runs, 0);
    let registry = runner::registry_of(&dir.path().join("run")).unwrap();
    assert!(registry.production("train").unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn every_schedule_runs_until_max_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_spec(
        dir.path(),
        r#"
[nodes.tick]
kind = "command"
every = "1h"
max-runs = 3
program = "sh"
args = ["-c", "echo tick >> ticks"]
"#,
    )
    .await;
    assert_eq!(s.state.nodes["tick"].runs, 3);
    assert_eq!(lines(&dir.path().join("ticks")).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn schedules_stop_when_the_rest_of_the_workflow_finished() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_spec(
        dir.path(),
        r#"
[nodes.work]
kind = "command"
program = "sh"
args = ["-c", "sleep 0.2"]

[nodes.heartbeat]
kind = "command"
every = "10ms"
program = "true"

[nodes.hourly]
kind = "command"
cron = "0 * * * *"
after = ["work"]
program = "true"
"#,
    )
    .await;
    assert_eq!(s.state.nodes["work"].status, NodeStatus::Succeeded);
    assert!(s.state.nodes["heartbeat"].runs >= 1);
    assert!(s.state.finished);
}

#[tokio::test]
async fn an_interrupted_stream_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        &STREAM.replace("rows = 3000", "rows = 3000\nrows-per-second = 1000"),
    );
    // stop (as Ctrl-C would) once the first version is out
    let stop = Arc::new(tokio::sync::Notify::new());
    let first = Arc::new(Mutex::new(false));
    let (s2, f2) = (stop.clone(), first.clone());
    let mut opts = options(dir.path(), &spec);
    opts.on_update = Some(Arc::new(move |st: &RunState| {
        let mut f = f2.lock().unwrap();
        if !*f
            && st
                .nodes
                .get("train")
                .is_some_and(|n| !n.versions.is_empty())
        {
            *f = true;
            s2.notify_one();
        }
    }));
    let wf = Workflow::load(&spec).unwrap();
    let stopped = stop.clone();
    let s = runner::run(wf, opts.clone(), async move { stopped.notified().await })
        .await
        .unwrap();
    assert!(s.interrupted);
    let n = &s.state.nodes["train"];
    assert_eq!(n.status, NodeStatus::Interrupted, "{n:?}");
    // stopped before the end: the stop came after the first version (1,000 rows, ~1 s) and
    // the source needs 3 s for all rows (a slow stop under load may add a version, which the
    // count of versions alone took for a run that was not interrupted)
    assert!(!n.versions.is_empty() && n.rows < 3000, "{n:?}");
    let published = n.versions.len();

    let wf = Workflow::load(&spec).unwrap();
    opts.on_update = None;
    let s = runner::run(wf, opts, std::future::pending()).await.unwrap();
    assert!(!s.interrupted);
    let n = &s.state.nodes["train"];
    assert_eq!(n.status, NodeStatus::Succeeded);
    assert_eq!(n.rows, 3000, "{n:?}");
    assert!(
        n.message
            .as_deref()
            .unwrap()
            .contains("resumed from checkpoint"),
        "{n:?}"
    );
    assert_eq!(s.state.starts, 2);
    let registry = runner::registry_of(&dir.path().join("run")).unwrap();
    let versions = registry.versions("train").unwrap();
    assert_eq!(versions.last().unwrap().training_rows, 3000);
    // the resumed run continues the chain from the version its checkpoint had published (the
    // version published at the stop may hold a few more rows: it is a leaf)
    let parent = versions[published].lineage.parent.expect("a parent");
    assert!(parent <= published as u64, "{versions:?}");
    assert!(
        versions[published].training_rows > versions[parent as usize - 1].training_rows,
        "{versions:?}"
    );
}

#[tokio::test]
async fn completed_nodes_are_not_rerun_and_another_spec_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[nodes.once]
kind = "command"
program = "sh"
args = ["-c", "echo ran >> runs"]
"#;
    run_spec(dir.path(), text).await;
    let s = run_spec(dir.path(), text).await;
    assert_eq!(lines(&dir.path().join("runs")).len(), 1);
    assert_eq!(s.state.starts, 2);
    let spec = write_spec(dir.path(), &text.replace("ran", "again"));
    let wf = Workflow::load(&spec).unwrap();
    let e = runner::run(wf, options(dir.path(), &spec), std::future::pending())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another spec"), "{e}");
}

#[tokio::test]
async fn serve_forever_serves_again_on_a_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        &format!(
            "{STREAM}\n[nodes.api]\nkind = \"serve\"\nmodel = \"train\"\nstage = \"candidate\"\nafter = [\"train\"]\n"
        ),
    );
    let first = runner::run(
        Workflow::load(&spec).unwrap(),
        options(dir.path(), &spec),
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(first.state.nodes["api"].runs, 1);
    // the server went with the first start; --serve-forever on the finished run serves again
    // (until Ctrl-C: here, once it is up)
    let up = Arc::new(tokio::sync::Notify::new());
    let mut opts = options(dir.path(), &spec);
    opts.serve_forever = true;
    let signal = up.clone();
    opts.on_update = Some(Arc::new(move |st: &RunState| {
        let serving = st.nodes.get("api").is_some_and(|n| {
            n.status == NodeStatus::Running
                && n.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("serving at"))
        });
        if serving {
            signal.notify_one();
        }
    }));
    let run = runner::run(Workflow::load(&spec).unwrap(), opts, async move {
        up.notified().await
    });
    let again = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("hang guard: the server never came up")
        .unwrap();
    assert_eq!(
        again.state.nodes["api"].runs, 2,
        "served again (and stopped by the signal)"
    );
    assert_eq!(
        again.state.nodes["train"].runs, first.state.nodes["train"].runs,
        "nothing else ran again"
    );
}
