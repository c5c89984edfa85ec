//! End-to-end tests of `eddy validate`, `eddy run` and `eddy status` on the example workflows
//! (`examples/ctr`, `examples/clustering`, `examples/ps`, `examples/delayed-labels`), through
//! the binary.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{eddy, ok};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .join("workflow.toml")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn state(run_dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(run_dir.join("state.json")).unwrap()).unwrap()
}

#[test]
fn examples_validate() {
    for name in ["ctr", "clustering", "ps", "delayed-labels"] {
        let out = ok(&["validate", p(&example(name))]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("is valid"), "{text}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[nodes.a]\nkind = \"comand\"\n").unwrap();
    let out = eddy(&["validate", p(&bad)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2:8"), "{err}");
    assert!(err.contains("did you mean `command`?"), "{err}");
}

#[test]
fn ctr_example_runs_gates_deploys_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let out = ok(&["run", p(&example("ctr")), "--run-dir", p(&run_dir)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("finished `ctr`"), "{err}");
    assert!(err.contains("served at http://127.0.0.1:"), "{err}");
    assert!(err.contains("curl -s -X POST"), "{err}");

    let st = state(&run_dir);
    assert_eq!(st["finished"], true);
    let nodes = &st["nodes"];
    for n in ["history-model", "ctr", "gate", "deploy", "serve"] {
        assert_eq!(nodes[n]["status"], "succeeded", "{n}: {}", nodes[n]);
    }
    let versions = nodes["ctr"]["versions"].as_array().unwrap();
    assert!(versions.len() >= 3, "several versions: {versions:?}");
    assert_eq!(nodes["ctr"]["rows"], 24000);
    // the gate judged every version, and what it passed has the AUC it demands
    assert_eq!(
        nodes["gate"]["handled-versions"].as_array().unwrap().len(),
        versions.len()
    );
    let auc = nodes["gate"]["metrics"]["auc"].as_f64().unwrap();
    assert!(auc >= 0.7, "gate auc {auc}");
    let deployed = nodes["deploy"]["last-version"]
        .as_u64()
        .expect("a version was deployed");
    // the gate's holdout metrics are recorded with the version, beside its training metrics
    let meta = std::fs::read(run_dir.join(format!("registry/ctr/v{deployed}/meta.json"))).unwrap();
    let meta: Value = serde_json::from_slice(&meta).unwrap();
    let gate_auc = meta["metrics"]["gate.auc"].as_f64().unwrap();
    assert!(gate_auc >= 0.7, "{meta}");
    assert!(meta["metrics"]["auc"].is_f64(), "{meta}");

    let status = ok(&["status", p(&run_dir)]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("model `ctr`"), "{text}");
    assert!(
        text.contains(&format!("v{deployed:<4} production")),
        "{text}"
    );
    assert!(text.contains("history-model"), "{text}");

    // a second run of the same directory has nothing left to do
    let again = ok(&["run", p(&example("ctr")), "--run-dir", p(&run_dir)]);
    let after = state(&run_dir);
    assert_eq!(
        after["starts"],
        2,
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        after["nodes"]["ctr"]["versions"],
        st["nodes"]["ctr"]["versions"]
    );
}

#[test]
fn delayed_labels_example_runs_from_the_readme_command() {
    // as the README runs it: `eddy run examples/delayed-labels/workflow.toml`, default run dir
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", p(&example("delayed-labels"))])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("served at http://127.0.0.1:"), "{err}");
    let run_dir = dir.path().join("eddy-runs/delayed-labels");
    let st = state(&run_dir);
    let nodes = &st["nodes"];
    for n in ["ctr", "gate", "deploy", "serve"] {
        assert_eq!(nodes[n]["status"], "succeeded", "{n}: {}", nodes[n]);
    }
    // every impression once, labelled by the clicks within 60 s (counted by the example's
    // make_data.py: 216 clicks, of which 13 come after the wait)
    let ctr = &nodes["ctr"];
    assert_eq!(ctr["rows"], 1500, "{ctr}");
    let m = |k: &str| {
        ctr["metrics"][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {ctr}"))
    };
    assert_eq!(m("labels_positive") + m("labels_negative"), 1500.0, "{ctr}");
    assert_eq!(m("labels_positive"), POSITIVES, "{ctr}");
    assert_eq!(m("late_impressions") + m("late_clicks"), 0.0, "{ctr}");
    assert!(m("label_delay_max_ms") <= 60_000.0, "{ctr}");
    assert!(m("label_delay_mean_ms") > 0.0, "{ctr}");
    assert!(nodes["deploy"]["last-version"].as_u64().is_some(), "{st}");
    let status = ok(&["status", p(&run_dir)]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&format!("labels +{POSITIVES}")), "{text}");
}

/// Impressions of `examples/delayed-labels` clicked within the 60 s wait.
const POSITIVES: f64 = 203.0;

#[test]
fn clustering_example_runs() {
    // as the README runs it: the default run directory, relative to where `eddy run` starts,
    // while the example's command node runs in the spec's directory
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", p(&example("clustering"))])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_dir = dir.path().join("eddy-runs/clustering");
    let st = state(&run_dir);
    let nodes = &st["nodes"];
    assert_eq!(nodes["kmeans"]["versions"].as_array().unwrap().len(), 1);
    assert_eq!(nodes["streaming"]["versions"].as_array().unwrap().len(), 3);
    assert_eq!(nodes["list-versions"]["status"], "succeeded");
    let log = std::fs::read_to_string(run_dir.join("logs/list-versions.log")).unwrap();
    assert!(log.contains("v1") && log.contains("v3"), "{log}");
}

#[test]
fn ps_example_trains_through_grpc_shards_and_passes_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let out = ok(&["run", p(&example("ps")), "--run-dir", p(&run_dir)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("finished `ps`"), "{err}");
    let st = state(&run_dir);
    let nodes = &st["nodes"];
    for n in ["ctr", "gate", "deploy"] {
        assert_eq!(nodes[n]["status"], "succeeded", "{n}: {}", nodes[n]);
    }
    assert_eq!(nodes["ctr"]["rows"], 24000);
    let message = nodes["ctr"]["message"].as_str().unwrap();
    assert!(
        message.contains("2 worker(s) through a parameter server"),
        "{message}"
    );
    let versions = nodes["ctr"]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3, "a version every 8000 rows: {versions:?}");
    assert_eq!(
        nodes["gate"]["handled-versions"].as_array().unwrap().len(),
        3
    );
    let auc = nodes["gate"]["metrics"]["auc"].as_f64().unwrap();
    assert!(auc >= 0.7, "gate auc {auc}");
    let deployed = nodes["deploy"]["last-version"].as_u64().unwrap();
    let status = ok(&["status", p(&run_dir)]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("v{deployed:<4} production")),
        "{text}"
    );
}

/// Sends one HTTP/1.1 request and returns the body.
fn http_post(url: &str, body: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{out}");
    body.to_string()
}

#[test]
fn served_predictions_match_eddy_predict_for_the_deployed_version() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "run",
            p(&example("ctr")),
            "--run-dir",
            p(&run_dir),
            "--serve-forever",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let st = loop {
        if let Ok(bytes) = std::fs::read(run_dir.join("state.json")) {
            if let Ok(st) = serde_json::from_slice::<Value>(&bytes) {
                if st["settled"] == true && st["serving"].is_string() {
                    break st;
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("eddy run exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the run never settled"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let url = st["serving"].as_str().unwrap().to_string();
    let deployed = st["nodes"]["deploy"]["last-version"].as_u64().unwrap();

    let rows = dir.path().join("rows.csv");
    ok(&[
        "gen",
        "ctr",
        "--rows",
        "25",
        "--seed",
        "99",
        "--out",
        p(&rows),
    ]);
    let text = std::fs::read_to_string(&rows).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let json_rows: Vec<Value> = lines
        .map(|l| {
            let mut obj = serde_json::Map::new();
            for (k, v) in header.iter().zip(l.split(',')) {
                let value = match k.as_bytes()[0] {
                    b'f' => Value::from(v.parse::<f64>().unwrap()),
                    b'c' => Value::from(v),
                    _ => continue,
                };
                obj.insert(k.to_string(), value);
            }
            Value::Object(obj)
        })
        .collect();
    // the server swaps versions in by polling; wait until it serves the deployed one
    let body = serde_json::json!({ "rows": json_rows }).to_string();
    let answer = loop {
        let answer: Value = serde_json::from_str(&http_post(&url, &body)).unwrap();
        if answer["version"].as_u64() == Some(deployed) {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "never served v{deployed}: {answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let served: Vec<f64> = answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();

    let model = run_dir.join(format!("registry/ctr/v{deployed}/model.eddy"));
    let scored = dir.path().join("scored.csv");
    ok(&[
        "predict",
        "--model",
        p(&model),
        "--data",
        p(&rows),
        "--out",
        p(&scored),
    ]);
    let scored = std::fs::read_to_string(&scored).unwrap();
    let mut lines = scored.lines();
    let col = lines
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "prediction")
        .unwrap();
    let offline: Vec<f64> = lines
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    assert_eq!(served.len(), 25);
    assert_eq!(offline.len(), 25);
    for (a, b) in served.iter().zip(&offline) {
        assert!((a - b).abs() < 1e-5, "served {a} vs eddy predict {b}");
    }

    // Ctrl-C stops the server cleanly
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("served at"), "{err}");
}

#[test]
fn a_killed_run_resumes_without_rerunning_completed_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("workflow.toml");
    std::fs::write(
        &spec,
        r#"
[nodes.first]
kind = "command"
program = "sh"
args = ["-c", "echo ran >> first.log"]

[nodes.second]
kind = "command"
after = ["first"]
program = "sh"
args = ["-c", "if [ -f marker ]; then exit 0; fi; touch marker; sleep 20"]
"#,
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", p(&spec), "--run-dir", p(&run_dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !dir.path().join("marker").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "second never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let st = state(&run_dir);
    assert_eq!(st["nodes"]["first"]["status"], "succeeded");
    assert_eq!(st["nodes"]["second"]["status"], "running");

    ok(&["run", p(&spec), "--run-dir", p(&run_dir)]);
    let st = state(&run_dir);
    assert_eq!(st["nodes"]["second"]["status"], "succeeded");
    assert_eq!(st["starts"], 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("first.log")).unwrap(),
        "ran\n"
    );
}
