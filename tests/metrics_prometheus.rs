//! `/metrics` of every long-running command — `eddy run`, `eddy ui`, `eddy serve`,
//! `eddy learn --ui`, `eddy ps serve --ui` — parses with a Prometheus text parser (`prometheus-parse`) and follows
//! the conventions: every family has one `# HELP` and one `# TYPE`, counters (and only they)
//! end in `_total`, every sample line is a sample. The dashboard answers on the same port,
//! and its actions need the printed token.
//!
//! Mutations these tests catch (each tried):
//! - a family rendered without its `# TYPE` (`header` writing only `# HELP` for
//!   `eddy_registry_versions`): its samples parse as untyped and `check_conventions` fails;
//! - a counter named without `_total` (`eddy_node_runs_total` → `eddy_node_runs`): fails;
//! - the token check removed from the actions: the unauthorized promote answers 200, fails;
//! - the label tally's delays exported in ms (`label_delay_mean_ms`) or its counts as gauges:
//!   `check_conventions` fails on the unit or on the missing `_total`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when the test ends, passing or not.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `eddy ARGS`; waits (60 s at most) for its `dashboard at http://ADDR/#token=T` line;
/// returns the process, ADDR and T. The rest of stderr is drained by a thread.
fn start(args: &[&str]) -> (Proc, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("dashboard at http://") {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("`eddy {}` printed no dashboard URL", args.join(" ")));
    let (addr, token) = url.split_once("/#token=").expect("URL with a token");
    (proc, addr.to_string(), token.to_string())
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, dechunk(&body))
}

/// The body of a chunked answer (axum streams some answers), unchanged otherwise.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, tail)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 || tail.len() < n {
            return out;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
}

fn get(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path, "", "")
}

/// Fetches `/metrics` until `ready` holds for its text (60 s at most).
fn metrics_when(addr: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        if ready(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got ready:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Parses `text` with `prometheus-parse` and checks the conventions; returns the samples as
/// `name{labels}` (labels sorted) → value.
fn check_conventions(text: &str) -> BTreeMap<String, f64> {
    use prometheus_parse::{Scrape, Value};
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).expect("the Prometheus parser refuses /metrics");
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut helps = BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(types.insert(name, kind).is_none(), "two # TYPE for {name}");
            assert!(
                helps.contains(name),
                "# TYPE {name} before (or without) its # HELP"
            );
        } else if let Some(rest) = l.strip_prefix("# HELP ") {
            let name = rest.split_once(' ').map_or(rest, |(n, _)| n);
            assert!(helps.insert(name.to_string()), "two # HELP for {name}");
        }
    }
    for (name, kind) in &types {
        assert_eq!(
            name.ends_with("_total"),
            *kind == "counter",
            "{name} is a {kind}"
        );
        let unit = name.trim_end_matches("_total");
        assert!(
            !["_ms", "_millis", "_milliseconds"]
                .iter()
                .any(|u| unit.ends_with(u)),
            "{name} is not in base units (seconds)"
        );
    }
    // the parser folds a histogram's buckets into one sample per label set (`_sum` and
    // `_count` stay samples of their own)
    let mut expected = 0;
    let mut histograms = BTreeSet::new();
    for l in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = l.split(['{', ' ']).next().unwrap_or("");
        let base = name
            .strip_suffix("_bucket")
            .filter(|b| types.get(b) == Some(&"histogram"));
        match base {
            Some(b) => {
                let labels = l
                    .split_once('{')
                    .map_or("", |(_, r)| r.split('}').next().unwrap_or(""));
                let labels: Vec<&str> = labels
                    .split(',')
                    .filter(|p| !p.starts_with("le="))
                    .collect();
                histograms.insert(format!("{b}{labels:?}"));
            }
            None => expected += 1,
        }
    }
    expected += histograms.len();
    assert_eq!(
        scrape.samples.len(),
        expected,
        "lines that are not samples:\n{text}"
    );
    let mut out = BTreeMap::new();
    for s in &scrape.samples {
        let value = match &s.value {
            Value::Counter(v) | Value::Gauge(v) => *v,
            Value::Histogram(h) => h.len() as f64,
            Value::Untyped(v) if histogram_part(&s.metric, &types) => *v,
            Value::Untyped(_) | Value::Summary(_) => {
                panic!("{} has no # TYPE (parsed as {:?})", s.metric, s.value)
            }
        };
        let labels: BTreeMap<_, _> = s.labels.iter().collect();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        out.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    out
}

/// Whether `metric` is the `_sum` or `_count` of a histogram family.
fn histogram_part(metric: &str, types: &BTreeMap<&str, &str>) -> bool {
    ["_sum", "_count"]
        .iter()
        .filter_map(|suffix| metric.strip_suffix(suffix))
        .any(|b| types.get(b) == Some(&"histogram"))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Starts `eddy run examples/EXAMPLE/workflow.toml --serve-forever` with its run dir in `dir`;
/// returns the process, the dashboard's address and the run dir.
fn run_example(dir: &Path, example: &str) -> (Proc, String, std::path::PathBuf) {
    let run_dir = dir.join("run");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(example)
        .join("workflow.toml");
    let (run, addr, _) = start(&[
        "run",
        spec.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--serve-forever",
    ]);
    (run, addr, run_dir)
}

#[test]
fn run_and_serve_metrics_parse_and_actions_need_the_token() {
    let dir = tmp();
    let (run, addr, run_dir) = run_example(dir.path(), "ctr");
    let text = metrics_when(&addr, |t| {
        t.contains("eddy_node_state{node=\"deploy\",state=\"succeeded\"} 1")
            && t.contains("eddy_node_state{node=\"ctr\",state=\"succeeded\"} 1")
            && t.contains("eddy_node_rows{node=\"ctr\"} 24000\n")
    });
    let samples = check_conventions(&text);
    for key in [
        "eddy_job_restarts_total{job=\"ctr\"}",
        "eddy_job_checkpoints_total{job=\"ctr\"}",
        "eddy_node_rows{node=\"ctr\"}",
        "eddy_registry_versions{model=\"ctr\"}",
    ] {
        assert!(samples.contains_key(key), "no {key} in\n{text}");
    }
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("eddy_operator_backpressure_seconds_total{job=\"ctr\",")),
        "the training node's operators:\n{text}"
    );
    let (status, page) = get(&addr, "/");
    assert_eq!(status, 200);
    assert!(page.contains("eddy dashboard"), "{page}");

    // the serve node's figures, labelled with the node
    let (_, run_json) = get(&addr, "/api/run");
    let run_json: serde_json::Value = serde_json::from_str(&run_json).unwrap();
    let predict = run_json["state"]["serving"].as_str().unwrap().to_string();
    let (serve_addr, path) = predict
        .trim_start_matches("http://")
        .split_once('/')
        .unwrap();
    let row = r#"{"rows":[{"c0":"a","c1":"b","f0":1.5}]}"#;
    let (status, answer) = http(serve_addr, "POST", &format!("/{path}"), "", row);
    assert!(status == 200 || status == 422, "{status} {answer}");
    let text = metrics_when(&addr, |t| {
        t.contains("eddy_serving_requests_total{node=\"serve\",protocol=\"http\"} 1\n")
    });
    let samples = check_conventions(&text);
    assert!(
        samples.contains_key("eddy_serving_model_version{model=\"ctr\",node=\"serve\"}"),
        "{text}"
    );
    drop(run);

    // `eddy ui` on the ended run
    let (ui, addr, _) = start(&["ui", run_dir.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let text = metrics_when(&addr, |t| {
        t.contains("eddy_registry_versions{model=\"ctr\"}")
    });
    let samples = check_conventions(&text);
    assert_eq!(
        samples["eddy_node_state{node=\"deploy\",state=\"succeeded\"}"],
        1.0
    );
    drop(ui);

    let registry = run_dir.join("registry");
    let (_serve, addr, token) = start(&[
        "serve",
        "--registry",
        registry.to_str().unwrap(),
        "--model",
        "ctr@production",
        "--listen",
        "127.0.0.1:0",
    ]);
    let row = r#"{"rows":[{"c0":"a","c1":"b","f0":1.5}]}"#;
    let (status, answer) = http(&addr, "POST", "/v1/models/ctr/predict", "", row);
    assert!(status == 200 || status == 422, "{status} {answer}");
    let text = metrics_when(&addr, |t| {
        t.contains("eddy_serving_model_version{model=\"ctr\"}")
    });
    let samples = check_conventions(&text);
    assert_eq!(
        samples["eddy_serving_requests_total{protocol=\"http\"}"],
        1.0
    );
    let served = samples["eddy_serving_model_version{model=\"ctr\"}"];
    let first = 1.0;
    assert_ne!(served, first, "production is a later version than v1");

    let promote = r#"{"version":1}"#;
    let (status, _) = http(&addr, "POST", "/api/models/ctr/promote", "", promote);
    assert_eq!(status, 401, "a promote without the token");
    let wrong = "Authorization: Bearer 00\r\n";
    let (status, _) = http(&addr, "POST", "/api/models/ctr/promote", wrong, promote);
    assert_eq!(status, 401, "a promote with a wrong token");
    let auth = format!("Authorization: Bearer {token}\r\n");
    let (status, body) = http(&addr, "POST", "/api/models/ctr/promote", &auth, promote);
    assert_eq!(status, 200, "{body}");
    let (_, info) = get(&addr, "/v1/models/ctr");
    assert!(
        info.contains("\"version\":1,"),
        "promoted v1 is served at once: {info}"
    );
    let (status, _) = http(
        &addr,
        "POST",
        "/api/models/ctr/promote",
        &auth,
        r#"{"version":99}"#,
    );
    assert_eq!(status, 404, "an unknown version");
}

#[test]
fn a_delayed_label_jobs_tally_is_counters_and_seconds() {
    let dir = tmp();
    let (_run, addr, _) = run_example(dir.path(), "delayed-labels");
    let text = metrics_when(&addr, |t| {
        t.contains("eddy_node_state{node=\"deploy\",state=\"succeeded\"} 1")
    });
    let samples = check_conventions(&text);
    let sample = |name: &str| samples[&format!("{name}{{job=\"ctr\"}}")];
    let labelled =
        sample("eddy_job_labels_positive_total") + sample("eddy_job_labels_negative_total");
    assert!(labelled > 0.0, "{text}");
    let (mean, max) = (
        sample("eddy_job_label_delay_mean_seconds"),
        sample("eddy_job_label_delay_max_seconds"),
    );
    assert!(
        0.0 < mean && mean <= max && max <= 60.0,
        "the wait is 60 s: {text}"
    );
    assert_eq!(sample("eddy_job_late_impressions_total"), 0.0);
}

#[test]
fn learn_ui_metrics_parse() {
    let dir = tmp();
    let data = dir.path().join("train.csv");
    let mut text = String::from("label,f,c\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "{},{},v{}\n",
            u8::from(i % 4 == 1),
            0.5 * (i % 7) as f64,
            i % 4
        ));
    }
    std::fs::write(&data, text).unwrap();
    let (_learn, addr, _) = start(&[
        "learn",
        "--data",
        data.to_str().unwrap(),
        "--label",
        "label",
        "--follow",
        "--checkpoint-dir",
        dir.path().join("ckpt").to_str().unwrap(),
        "--ui",
        "127.0.0.1:0",
    ]);
    let text = metrics_when(&addr, |t| {
        t.contains("eddy_train_rows_total{job=\"learn\"} 20000\n")
    });
    let samples = check_conventions(&text);
    assert_eq!(samples["eddy_train_rows_total{job=\"learn\"}"], 20_000.0);
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("eddy_operator_backpressure_seconds_total{")),
        "{text}"
    );
    assert!(
        samples.contains_key("eddy_job_restarts_total{job=\"learn\"}"),
        "{text}"
    );
}

#[test]
fn ps_serve_ui_metrics_parse() {
    let dir = tmp();
    let (_ps, addr, _) = start(&[
        "ps",
        "serve",
        "--shard",
        "0/1",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--ui",
        "127.0.0.1:0",
    ]);
    let text = metrics_when(&addr, |t| t.contains("eddy_ps_pull_requests_total"));
    let samples = check_conventions(&text);
    assert_eq!(samples["eddy_ps_push_requests_total{shard=\"0\"}"], 0.0);
    let (status, shard) = get(&addr, "/api/ps");
    assert_eq!(status, 200);
    assert!(shard.contains("\"shards\":1"), "{shard}");
}
