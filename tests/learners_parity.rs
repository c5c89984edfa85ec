//! Every learner of the registry works from `eddy learn` and from a workflow's TOML, and both
//! ways give the same metrics on the same data: one learner registry, one training engine.

mod common;

use std::path::Path;
use std::process::Command;

use common::ok;
use eddy::algorithms::learners::LearnerKind;

const NUMERIC: &str = r#"["f0", "f1", "f2", "f3", "f4"]"#;
const CATEGORICAL: &str = r#"["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]"#;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The `[features]` section that matches what `eddy learn` builds for `kind` on the ctr columns.
fn features(kind: LearnerKind) -> String {
    let (numeric, categorical, dense) = match kind {
        k if k.needs_dense() => (NUMERIC, "[]", true),
        // multinomial naive Bayes counts the hashed categories only
        LearnerKind::Nb => ("[]", CATEGORICAL, false),
        _ => (NUMERIC, CATEGORICAL, false),
    };
    format!(
        "[features.f]\nlabel = \"label\"\nnumeric = {numeric}\ncategorical = {categorical}\n\
         dense = {dense}\nhash-bits = 6\n"
    )
}

fn spec(kind: LearnerKind, data: &Path) -> String {
    let node = if kind.is_online() {
        "stream-train"
    } else {
        "batch-train"
    };
    format!(
        "[workflow]\nname = \"parity\"\n\n[sources.data]\nkind = \"file\"\npath = \"{}\"\n\
         batch-rows = 8192\n\n{}\n[nodes.m]\nkind = \"{node}\"\nsource = \"data\"\n\
         features = \"f\"\nlearner = \"{}\"\n",
        p(data),
        features(kind),
        kind.name()
    )
}

fn cli_metrics(
    kind: LearnerKind,
    data: &Path,
    dir: &Path,
) -> serde_json::Map<String, serde_json::Value> {
    let out = ok(&[
        "learn",
        "--data",
        p(data),
        "--label",
        "label",
        "--model",
        kind.name(),
        "--hash-bits",
        "6",
        "--checkpoint-dir",
        p(&dir.join("chk")),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut map = report.as_object().unwrap().clone();
    for k in ["seconds", "rows_per_s"] {
        map.remove(k);
    }
    map
}

fn toml_metrics(kind: LearnerKind, data: &Path, dir: &Path) -> serde_json::Value {
    let spec_path = dir.join("workflow.toml");
    std::fs::write(&spec_path, spec(kind, data)).unwrap();
    let run_dir = dir.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", p(&spec_path), "--run-dir", p(&run_dir)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("state.json")).unwrap())
            .unwrap();
    let node = &state["nodes"]["m"];
    let mut metrics = node["metrics"].clone();
    metrics["rows"] = node["rows"].clone();
    metrics
}

#[test]
fn every_learner_gives_the_same_metrics_from_the_cli_and_from_toml() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("clicks.csv");
    ok(&["gen", "ctr", "--rows", "3000", "--out", p(&data)]);
    for kind in LearnerKind::ALL {
        let sub = dir.path().join(kind.name());
        std::fs::create_dir_all(&sub).unwrap();
        let cli = cli_metrics(kind, &data, &sub);
        let toml = toml_metrics(kind, &data, &sub);
        assert_eq!(cli["rows"], 3000, "{kind}");
        // clustering has no supervised metrics; every other learner reports some
        assert!(
            kind.is_clustering() || cli.len() > 1,
            "{kind}: no metrics from eddy learn"
        );
        for (name, value) in &cli {
            let a = value.as_f64().unwrap();
            let b = toml[name]
                .as_f64()
                .unwrap_or_else(|| panic!("{kind}: `{name}` missing from the workflow: {toml}"));
            // the CLI rounds its JSON line to 6 significant digits
            assert!(
                (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                "{kind}: {name}: eddy learn {a}, workflow {b}"
            );
        }
    }
}
