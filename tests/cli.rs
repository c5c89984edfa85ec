//! End-to-end tests of the `eddy` binary: generation, aggregation, dead letters, errors.

use std::path::Path;

mod common;
use common::{eddy, ok, ok_stdout};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn gen_ctr_is_deterministic_and_formats_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    ok(&["gen", "ctr", "--rows", "3000", "--out", p(&a)]);
    ok(&["gen", "ctr", "--rows", "3000", "--out", p(&b)]);
    let text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(text, std::fs::read_to_string(&b).unwrap());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3001);
    assert_eq!(
        lines[0],
        "label,f0,f1,f2,f3,f4,c0,c1,c2,c3,c4,c5,c6,c7,c8,c9"
    );
    // a prefix of a longer stream
    let longer = dir.path().join("longer.csv");
    ok(&["gen", "ctr", "--rows", "4000", "--out", p(&longer)]);
    assert!(std::fs::read_to_string(&longer).unwrap().starts_with(&text));
    // JSON lines carry the same values
    let jl = dir.path().join("a.jsonl");
    ok(&["gen", "ctr", "--rows", "3000", "--out", p(&jl)]);
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&jl)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let csv_first: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(first["label"].to_string(), csv_first[0]);
    assert_eq!(first["c9"], csv_first[15]);
    assert_eq!(
        first["f1"].as_f64().unwrap(),
        csv_first[2].parse::<f64>().unwrap()
    );
    // parquet writes, and the oracle prints its metrics
    let pq = dir.path().join("a.parquet");
    let out = ok(&["gen", "ctr", "--rows", "3000", "--out", p(&pq), "--oracle"]);
    let oracle: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let auc = oracle["oracle_auc"].as_f64().unwrap();
    assert!((0.8..0.95).contains(&auc), "{oracle}");
    assert!(std::fs::metadata(&pq).unwrap().len() > 0);
}

#[test]
fn agg_counts_per_key_and_window_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("clicks.csv");
    ok(&[
        "gen",
        "ctr",
        "--rows",
        "20000",
        "--event-time",
        "--out",
        p(&data),
    ]);
    let mut totals = Vec::new();
    for (input, parallelism) in [(data.clone(), "1"), (data.clone(), "2")] {
        let out = dir.path().join(format!("counts_{parallelism}.csv"));
        ok(&[
            "agg",
            "--data",
            p(&input),
            "--key",
            "c0",
            "--time",
            "ts",
            "--window",
            "5s",
            "--agg",
            "count",
            "--parallelism",
            parallelism,
            "--out",
            p(&out),
        ]);
        let text = std::fs::read_to_string(&out).unwrap();
        let mut rows: Vec<String> = text.lines().skip(1).map(String::from).collect();
        rows.sort();
        let total: i64 = rows
            .iter()
            .map(|r| r.rsplit(',').next().unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(total, 20_000, "every row is counted once");
        totals.push(rows);
    }
    assert_eq!(
        totals[0], totals[1],
        "parallelism does not change the result"
    );
}

#[test]
fn malformed_rows_go_to_the_dead_letter_file_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.csv");
    std::fs::write(
        &data,
        b"user,ts,amount\n\
          a,1000,5\n\
          b,1500\n\
          a,2000,oops\n\
          b,2500,7\n\
          c,3000,\xff\xfe\n\
          a,12000,1\n",
    )
    .unwrap();
    let dead = dir.path().join("dead.jsonl");
    let out = dir.path().join("out.csv");
    let run = ok(&[
        "agg",
        "--data",
        p(&data),
        "--schema",
        "user:utf8,ts:int64,amount:int64",
        "--key",
        "user",
        "--time",
        "ts",
        "--window",
        "10s",
        "--agg",
        "sum:amount",
        "--out",
        p(&out),
        "--dead-letter",
        p(&dead),
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("malformed records: 3"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["dead_letters"], 3);
    let dead: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<u64> = dead.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![3, 4, 6]);
    assert_eq!(dead[1]["raw"], "a,2000,oops");
    let text = std::fs::read_to_string(&out).unwrap();
    // a: 5 in [0,10s) and 1 in [10s,20s); b: 7
    assert!(text.contains("a,0,10000,5"), "{text}");
    assert!(text.contains("b,0,10000,7"), "{text}");
    assert!(text.contains("a,10000,20000,1"), "{text}");

    let failed = eddy(&[
        "agg",
        "--data",
        p(&data),
        "--schema",
        "user:utf8,ts:int64,amount:int64",
        "--key",
        "user",
        "--time",
        "ts",
        "--window",
        "10s",
        "--on-error",
        "fail",
        "--out",
        p(&out),
    ]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("bad.csv:3:"), "{err}");
}

#[test]
fn bad_arguments_are_named() {
    let out = eddy(&[
        "agg",
        "--data",
        "nope.csv",
        "--key",
        "k",
        "--time",
        "ts",
        "--window",
        "10 parsecs",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parsecs"));
    let out = eddy(&[
        "agg",
        "--data",
        "/definitely/missing.csv",
        "--key",
        "k",
        "--time",
        "ts",
        "--window",
        "1s",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/definitely/missing.csv"));
}

#[test]
fn learn_saves_a_model_that_predict_applies_like_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("clicks.csv");
    ok(&["gen", "ctr", "--rows", "20000", "--out", p(&data)]);
    let model = dir.path().join("model.eddy");
    let learned = ok(&[
        "learn",
        "--data",
        p(&data),
        "--label",
        "label",
        "--hash-bits",
        "18",
        "--cross",
        "c0,c1",
        "--save",
        p(&model),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&learned.stdout).unwrap();
    assert_eq!(report["rows"], 20000);
    assert!(report["auc"].as_f64().unwrap() > 0.7, "{report}");
    assert!(report["logloss"].as_f64().unwrap() < 0.42, "{report}");

    let scored = dir.path().join("scored.csv");
    ok(&[
        "predict",
        "--model",
        p(&model),
        "--data",
        p(&data),
        "--out",
        p(&scored),
    ]);
    let text = std::fs::read_to_string(&scored).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "prediction").unwrap();
    let cli: Vec<f32> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    assert_eq!(cli.len(), 20000);

    // the library, on the same rows, gives the same numbers
    use eddy::algorithms::features::Features;
    use eddy::algorithms::trained::TrainedModel;
    use eddy::core::prelude::*;
    use eddy::core::source::file::{CsvOptions, CsvSource};
    let trained = TrainedModel::load(&model).unwrap();
    let mut source = CsvSource::new(CsvOptions::new(&data)).unwrap();
    let ctx = SourceContext::standalone("check");
    source.open(&ctx).unwrap();
    let (mut features, mut out, mut lib) =
        (Features::Sparse(Default::default()), Vec::new(), Vec::new());
    while let SourcePoll::Batch(b) = source.poll_next(&ctx).unwrap() {
        trained.predict_batch(&b, &mut features, &mut out).unwrap();
        lib.extend_from_slice(&out);
    }
    assert_eq!(lib.len(), cli.len());
    for (a, b) in lib.iter().zip(&cli) {
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} vs {b}");
    }

    // a damaged model file is refused, naming it
    let mut bytes = std::fs::read(&model).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 10);
    std::fs::write(&model, &bytes).unwrap();
    let failed = eddy(&["predict", "--model", p(&model), "--data", p(&data)]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("model.eddy"));
}

#[test]
fn predict_scores_the_same_rows_in_the_same_order_on_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = (dir.path().join("d.csv"), dir.path().join("m.eddy"));
    ok(&["gen", "ctr", "--rows", "30000", "--out", p(&data)]);
    ok(&[
        "learn",
        "--data",
        p(&data),
        "--label",
        "label",
        "--model",
        "softmax",
        "--hash-bits",
        "16",
        "--checkpoint-every",
        "off",
        "--save",
        p(&model),
    ]);
    let scored = |threads: &str| {
        let out = dir.path().join(format!("scored-{threads}.csv"));
        ok(&[
            "predict",
            "--model",
            p(&model),
            "--data",
            p(&data),
            "--out",
            p(&out),
            "--threads",
            threads,
        ]);
        std::fs::read(&out).unwrap()
    };
    let one = scored("1");
    assert_eq!(one.iter().filter(|&&b| b == b'\n').count(), 30001);
    // batches of 8192 rows are cut into 3 ranges: a short last range, order kept
    assert!(scored("3") == one, "3 threads scored differently from 1");
}

#[test]
fn a_diverged_model_fails_the_job_and_is_not_published() {
    // #14 case 6: unscaled 1e300 values drive the learners to NaN
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("huge.csv");
    let mut text = String::from("label,x,c\n");
    for i in 0..400 {
        let sign = if i % 3 == 0 { "-" } else { "" };
        text.push_str(&format!("{},{sign}1e300,k{}\n", i % 2, i % 7));
    }
    std::fs::write(&data, text).unwrap();
    let registry = dir.path().join("registry");
    for model in ["ftrl", "sgd", "sgd-regression"] {
        let out = eddy(&[
            "learn",
            "--data",
            p(&data),
            "--label",
            "label",
            "--model",
            model,
            "--no-scale",
            "--checkpoint-every",
            "off",
            "--registry",
            p(&registry),
            "--name",
            model,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{model}: a NaN model was accepted");
        assert!(err.contains("diverged"), "{model}: {err}");
        assert!(
            !registry.join(model).join("v1").exists(),
            "{model}: a diverged model was published"
        );
    }
}

#[test]
fn rows_with_a_bad_label_are_dead_letters_and_the_counts_add_up() {
    // #14 case 7: empty, NaN, infinite and out-of-range labels never stop the job
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("labels.csv");
    let mut text = String::from("label,x,c\n");
    let bad = [(1500, ""), (2600, "NaN"), (9000, "inf"), (15001, "7")];
    for i in 0..20_000 {
        let label = bad
            .iter()
            .find(|(at, _)| *at == i)
            .map_or((i % 2).to_string(), |(_, l)| l.to_string());
        text.push_str(&format!("{label},{}.5,k{}\n", i % 13, i % 5));
    }
    std::fs::write(&data, text).unwrap();
    let letters = dir.path().join("bad.jsonl");
    let out = ok(&[
        "learn",
        "--data",
        p(&data),
        "--label",
        "label",
        "--model",
        "softmax",
        "--schema",
        "label:float64,x:float64,c:utf8",
        "--checkpoint-every",
        "off",
        "--dead-letter",
        p(&letters),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dead = std::fs::read_to_string(&letters).unwrap();
    let dead: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 4, "{dead:?}");
    assert_eq!(report["rows"].as_u64().unwrap() + dead.len() as u64, 20_000);
    // each names its record of the input (the data row, header not counted) and the label
    let records: Vec<u64> = dead.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert_eq!(records, vec![1501, 2601, 9001, 15002]);
    assert!(
        dead[3]["reason"].as_str().unwrap().contains("class index"),
        "{dead:?}"
    );
    // --on-error fail stops at the first, naming it
    let failed = eddy(&[
        "learn",
        "--data",
        p(&data),
        "--label",
        "label",
        "--schema",
        "label:float64,x:float64,c:utf8",
        "--checkpoint-every",
        "off",
        "--on-error",
        "fail",
    ]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("1501") && err.contains("missing"), "{err}");
}

#[test]
fn bench_nexmark_reports_each_query_and_parallelism_with_the_same_results() {
    let out = ok_stdout(&[
        "bench",
        "nexmark",
        "--events",
        "20000",
        "--repeat",
        "1",
        "--queries",
        "q2,q3",
    ]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{out}");
    for pair in lines.chunks(2) {
        assert_eq!(pair[0]["query"], pair[1]["query"]);
        assert_eq!(
            (
                pair[0]["parallelism"].as_u64(),
                pair[1]["parallelism"].as_u64()
            ),
            (Some(1), Some(2))
        );
        assert_eq!(pair[0]["output_rows"], pair[1]["output_rows"], "{out}");
        assert!(pair[0]["output_rows"].as_u64().unwrap() > 0, "{out}");
        assert!(pair[0]["events_per_s"].as_f64().unwrap() > 0.0);
    }
    let e = eddy(&["bench", "nexmark", "--queries", "q99"]);
    assert!(!e.status.success());
    assert!(String::from_utf8_lossy(&e.stderr).contains("q0, q1, q2, q3, q4, q5, q7, q8, q9, q11"));
}

/// A file with a header and no rows trains nothing and says so: 0 rows, metrics null, exit 0
/// (not "the model diverged": metrics over no rows are undefined).
#[test]
fn learning_from_a_file_without_rows_reports_zero_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("empty.csv");
    std::fs::write(&data, "label,f0\n").unwrap();
    let out = ok(&["learn", "--data", p(&data), "--label", "label"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["rows"], 0, "{stdout}");
    assert!(report["logloss"].is_null(), "{stdout}");
}
