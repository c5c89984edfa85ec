//! `eddy run`'s exit status says whether anything was served (#14 case 20): a gate that rejects
//! every version leaves the serve node nothing to serve, which fails the run; `--json` prints
//! the final state.

use std::path::Path;
use std::process::Command;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_run_whose_gate_rejects_every_version_serves_nothing_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ctr/workflow.toml");
    let text = std::fs::read_to_string(example).unwrap();
    assert!(text.contains("min-auc = 0.7"));
    let spec = dir.path().join("workflow.toml");
    std::fs::write(&spec, text.replace("min-auc = 0.7", "min-auc = 0.999")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "run",
            p(&spec),
            "--run-dir",
            p(&dir.path().join("run")),
            "--json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("served nothing"), "{err}");
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = &state["nodes"];
    assert_eq!(nodes["serve"]["status"], "failed", "{state}");
    assert_eq!(nodes["gate"]["status"], "succeeded", "{state}");
    assert!(nodes["deploy"]["versions"]
        .as_array()
        .is_none_or(|v| v.is_empty()));
}

#[test]
fn piped_events_come_in_order_and_a_successful_retry_clears_the_error() {
    // #14 case 22: a gate's verdict is printed before the deploy it triggers; a node that
    // failed once and then succeeded keeps no stale error
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ctr/workflow.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let flaky = "\n[nodes.flaky]\nkind = \"command\"\nprogram = \"sh\"\n\
                 args = [\"-c\", \"test -f marker || { touch marker; exit 3; }\"]\n\
                 retries = 1\nretry-backoff = \"10ms\"\n";
    let spec = dir.path().join("workflow.toml");
    std::fs::write(&spec, format!("{text}{flaky}")).unwrap();
    let run_dir = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", p(&spec), "--run-dir", p(&run_dir), "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with('[')).collect();
    // every gate verdict precedes the deploy run it triggered
    let gate_done: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("[gate] succeeded"))
        .map(|(i, _)| i)
        .collect();
    let deploy_runs: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("[deploy] running"))
        .map(|(i, _)| i)
        .collect();
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gate_runs = state["nodes"]["gate"]["runs"].as_u64().unwrap() as usize;
    assert_eq!(
        gate_done.len(),
        gate_runs,
        "a gate verdict is missing: {lines:#?}"
    );
    assert!(!deploy_runs.is_empty(), "{lines:#?}");
    for (k, d) in deploy_runs.iter().enumerate() {
        assert!(
            gate_done[k] < *d,
            "deploy ran before its gate's verdict: {lines:#?}"
        );
    }
    let flaky = &state["nodes"]["flaky"];
    assert_eq!(flaky["status"], "succeeded", "{flaky}");
    assert!(flaky["error"].is_null(), "a stale error: {flaky}");
}
