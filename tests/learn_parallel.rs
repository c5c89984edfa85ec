//! `eddy learn --parallelism N` and `--ps`: data-parallel training through the one training job
//! — FTRL on weights shared in memory, FM and `--ps local` through the in-process parameter
//! server — gives the single-subtask metrics within a small margin, saves a model `eddy
//! predict` loads, and refuses exactly-once.

mod common;

use std::path::Path;

use common::{eddy, ok};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The JSON line of `eddy learn` with `extra` flags on `data`.
fn learn(data: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["learn", "--data", p(data), "--label", "label"];
    args.extend_from_slice(extra);
    let out = ok(&args);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn logloss(report: &serde_json::Value) -> f64 {
    report["logloss"].as_f64().unwrap()
}

#[test]
fn parallel_training_matches_one_subtask_and_saves_a_servable_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("clicks.csv");
    ok(&["gen", "ctr", "--rows", "40000", "--out", p(&data)]);
    let cases: [(&str, &[&str]); 3] = [
        ("ftrl", &["--parallelism", "2"]),
        ("ftrl", &["--ps", "local"]),
        ("fm", &["--parallelism", "2", "--factors", "4"]),
    ];
    for (model, flags) in cases {
        let single: &[&str] = match model {
            "fm" => &["--model", "fm", "--factors", "4"],
            _ => &["--model", model],
        };
        let single = learn(&data, single);
        let saved = dir.path().join(format!("{model}-{}.eddy", flags.join("")));
        let mut args = vec!["--model", model, "--save", p(&saved)];
        args.extend_from_slice(flags);
        let parallel = learn(&data, &args);
        assert_eq!(parallel["rows"], 40000, "{model} {flags:?}: {parallel}");
        let (a, b) = (logloss(&single), logloss(&parallel));
        assert!(
            (b - a).abs() / a < 0.02,
            "{model} {flags:?}: logloss {b} vs {a} on one subtask"
        );
        let scored = ok(&["predict", "--model", p(&saved), "--data", p(&data)]);
        let rows = String::from_utf8_lossy(&scored.stdout).lines().count();
        assert_eq!(
            rows, 40001,
            "{model} {flags:?}: header and every row scored"
        );
    }
}

#[test]
fn parallel_training_refuses_exactly_once_and_learners_without_a_gradient_form() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("clicks.csv");
    ok(&["gen", "ctr", "--rows", "1000", "--out", p(&data)]);
    let base = [
        "learn",
        "--data",
        p(&data),
        "--label",
        "label",
        "--parallelism",
        "2",
    ];
    let refused = |extra: &[&str], says: &str| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = eddy(&args);
        assert!(!out.status.success(), "{extra:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{extra:?}: {err}");
    };
    refused(&["--failover", "exactly-once"], "approximate failover");
    refused(&["--model", "pa"], "ftrl or fm");
    refused(&["--model", "logistic"], "batch learner");
}
