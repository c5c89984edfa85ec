//! `eddy run` with a `stream-train` node on a followed Kafka topic (tansu on 127.0.0.1, started
//! per test): the node's consumer lag reaches the run state live (`eddy status` shows `lag N`)
//! and the serve node's `/metrics` shows it as `eddy_job_source_lag{job,source}`; rows produced
//! while it runs are read and the lag returns to 0. Every wait is bounded (30 s).
//!
//! Mutations seen caught (each run, then restored): the stream-train node not reporting the
//! lag (`LiveCounters::report` ignoring `metrics.lag()`): "the lag in the run state" times
//! out; a published version dropping it from the node's metrics (`source_lag` taken out of
//! `FAILOVER_METRICS`): the run state loses it at the next version, "lag 0 after 6000 rows"
//! times out.

mod common;
#[path = "../core/tests/support/kafka.rs"]
mod kafka;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, ok_stdout};
use kafka::Broker;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn spec(address: &str) -> String {
    format!(
        r#"
[workflow]
name = "lag"

[sources.live]
kind = "kafka"
address = "{address}"
batch-rows = 250

[features.clicks]
label = "label"
numeric = ["f0", "f1", "f2", "f3", "f4"]
categorical = ["c0", "c1", "c2", "c3"]
hash-bits = 12

[nodes.learn]
kind = "stream-train"
source = "live"
features = "clicks"
learner = "ftrl"
publish-rows = 1000
checkpoint-every = "500ms"

[nodes.serve]
kind = "serve"
model = "learn"
stage = "candidate"
"#
    )
}

fn state(run_dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(run_dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Waits (at most 30 s) until `check` holds of the run state.
fn wait_for(
    run_dir: &Path,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = state(run_dir);
        if check(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rows(st: &serde_json::Value) -> u64 {
    st["nodes"]["learn"]["rows"].as_u64().unwrap_or(0)
}

fn lag(st: &serde_json::Value) -> Option<f64> {
    st["nodes"]["learn"]["metrics"]["source_lag"].as_f64()
}

/// The server's `/metrics` text.
fn metrics(url: &str) -> String {
    let addr = url
        .strip_prefix("http://")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

/// Ctrl-C, then whether it exited cleanly (bounded wait).
fn interrupt(mut child: Child) -> bool {
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("eddy run did not stop within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_kafka_stream_train_node_shows_its_lag_in_status_and_on_metrics() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("{}?partitions=2", broker.uri("live"));
    ok(&["gen", "ctr", "--rows", "4000", "--out", &topic]);
    let spec_path = dir.path().join("workflow.toml");
    std::fs::write(&spec_path, spec(&broker.uri("live"))).unwrap();
    let run_dir = dir.path().join("run");
    let log = std::fs::File::create(dir.path().join("run.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", p(&spec_path), "--run-dir", p(&run_dir)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let st = wait_for(&run_dir, "the lag in the run state", |st| {
        rows(st) == 4000 && lag(st) == Some(0.0) && st["serving"].is_string()
    });
    let url = st["serving"].as_str().unwrap().to_string();
    let status = ok_stdout(&["status", p(&run_dir)]);
    let line = status
        .lines()
        .find(|l| l.trim_start().starts_with("learn "))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(line.contains("lag 0;"), "{status}");
    // rows produced while it runs: read, and the lag back at 0
    ok(&[
        "gen", "ctr", "--rows", "2000", "--seed", "7", "--out", &topic,
    ]);
    wait_for(&run_dir, "lag 0 after 6000 rows", |st| {
        rows(st) == 6000 && lag(st) == Some(0.0)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics(&url);
        if text.contains("eddy_job_source_lag{job=\"learn\",source=\"live\"} 0\n") {
            assert!(
                text.contains("# TYPE eddy_job_source_lag gauge\n"),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no lag on /metrics: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = dir.path().join("run.log");
    assert!(
        interrupt(child),
        "Ctrl-C must stop eddy run cleanly: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
