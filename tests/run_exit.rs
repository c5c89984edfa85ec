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
