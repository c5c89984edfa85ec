//! `eddy run` on a followed file: a `stream-train` node keeps training while rows are appended,
//! publishing versions that a `serve` node answers with; Ctrl-C stops it with a last
//! checkpoint, and a second `eddy run` resumes from that checkpoint instead of starting over.
//! Every wait is bounded (20 s) and every server binds 127.0.0.1.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

const SPEC: &str = r#"
[workflow]
name = "follow"

[sources.live]
kind = "file"
path = "live.csv"
follow = true
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
publish-rows = 500
checkpoint-every = "200ms"

[nodes.serve]
kind = "serve"
model = "learn"
stage = "candidate"
"#;

fn state(run_dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(run_dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Waits (at most 20 s) until `check` holds of the run state.
fn wait_for(
    run_dir: &Path,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
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

fn start(spec: &Path, run_dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["run", p(spec), "--run-dir", p(run_dir)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Ctrl-C, then the exit status and stderr (bounded wait).
fn interrupt(mut child: Child) -> (bool, String) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (ok, _, err) = wait_output(&mut child);
    (ok, err)
}

fn append(path: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn rows(st: &serde_json::Value) -> u64 {
    st["nodes"]["learn"]["rows"].as_u64().unwrap_or(0)
}

fn versions(st: &serde_json::Value) -> usize {
    st["nodes"]["learn"]["versions"]
        .as_array()
        .map_or(0, |v| v.len())
}

/// One prediction from the served model; the version that answered.
fn predict(url: &str, row: &str) -> u64 {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let body = format!("{{\"rows\":[{row}]}}");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let json = response.split("\r\n\r\n").nth(1).unwrap();
    let answer: serde_json::Value = serde_json::from_str(json).unwrap();
    answer["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("{response}"))
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

/// The value of the sample `name` in Prometheus text.
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// A data row of `line` as a JSON object for the predict request.
fn json_row(header: &str, line: &str) -> String {
    let fields: Vec<String> = header
        .split(',')
        .zip(line.split(','))
        .filter(|(k, _)| *k != "label")
        .map(|(k, v)| match v.parse::<f64>() {
            Ok(x) if k.starts_with('f') => format!("\"{k}\":{x}"),
            _ => format!("\"{k}\":\"{v}\""),
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

#[test]
fn a_followed_file_trains_publishes_and_serves_until_stopped_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.csv");
    common_gen(&all);
    let text = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (header, data) = (lines[0], &lines[1..]);
    assert_eq!(data.len(), 3000);
    let live: PathBuf = dir.path().join("live.csv");
    append(&live, &[header]);
    append(&live, &data[..1000]);
    let spec = dir.path().join("workflow.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let run_dir = dir.path().join("run");

    let child = start(&spec, &run_dir);
    let st = wait_for(&run_dir, "1000 rows and a served version", |st| {
        rows(st) == 1000 && versions(st) >= 2 && st["serving"].is_string()
    });
    let url = st["serving"].as_str().unwrap().to_string();
    let first = predict(&url, &json_row(header, data[0]));
    // rows appended while it runs are learned, published and served
    append(&live, &data[1000..2000]);
    let st = wait_for(&run_dir, "2000 rows", |st| {
        rows(st) == 2000 && versions(st) >= 4
    });
    let newest = st["nodes"]["learn"]["versions"]
        .as_array()
        .and_then(|v| v.last())
        .and_then(|v| v.as_u64())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while predict(&url, &json_row(header, data[0])) < newest {
        assert!(Instant::now() < deadline, "the new version was not served");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(newest > first);
    // the training job's counters are on the server's /metrics, under the node's name
    // (checkpoints are taken every 200ms: wait for the first)
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = metrics(&url);
        let checkpoints = sample(&text, "eddy_job_checkpoints_total{job=\"learn\"}");
        if checkpoints.is_some_and(|n| n >= 1) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint on /metrics: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        sample(&text, "eddy_job_records_lost_total{job=\"learn\"}"),
        Some(0)
    );
    let (ok, err) = interrupt(child);
    assert!(ok, "Ctrl-C must stop eddy run cleanly: {err}");
    let st = state(&run_dir);
    assert_eq!(st["nodes"]["learn"]["status"], "interrupted", "{st}");
    let registry = eddy::workflow::runner::registry_of(&run_dir).unwrap();
    let first_run = registry.versions("learn").unwrap().len();

    // a restarted run resumes from the checkpoint the stop took, and goes on with new rows
    append(&live, &data[2000..]);
    let child = start(&spec, &run_dir);
    wait_for(&run_dir, "all 3000 rows after the restart", |st| {
        rows(st) == 3000
    });
    let (ok, err) = interrupt(child);
    assert!(ok, "{err}");
    assert!(
        run_dir.join("checkpoints/learn").is_dir(),
        "a stopped job keeps its checkpoints"
    );
    let versions = registry.versions("learn").unwrap();
    assert_eq!(versions.last().unwrap().training_rows, 3000, "{versions:?}");
    // resumed, not started over: the second run published nothing for the rows it had learned
    let second: Vec<_> = versions[first_run..].iter().collect();
    assert!(!second.is_empty(), "{versions:?}");
    for v in &second {
        assert!(v.training_rows > 2000, "started over: {versions:?}");
    }
    assert!(
        second[0]
            .lineage
            .parent
            .is_some_and(|p| p <= first_run as u64),
        "{versions:?}"
    );
}

fn common_gen(out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["gen", "ctr", "--rows", "3000", "--out", p(out)])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn learn_follow_stops_on_sigterm_with_a_checkpoint_and_a_rerun_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.csv");
    common_gen(&all);
    let text = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let live = dir.path().join("live.csv");
    append(&live, &lines[..2001]);
    let chk = dir.path().join("chk");
    let args = [
        "learn",
        "--data",
        p(&live),
        "--label",
        "label",
        "--hash-bits",
        "12",
        "--checkpoint-dir",
        p(&chk),
        "--checkpoint-every",
        "200ms",
    ];
    let mut follow: Vec<&str> = args.to_vec();
    follow.push("--follow");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(&follow)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait (bounded) for the first periodic checkpoint of the followed file
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_dir(&chk).is_ok_and(|mut d| d.next().is_some()) {
        assert!(Instant::now() < deadline, "no checkpoint directory");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = wait_output(&mut child);
    assert!(
        out.0,
        "SIGTERM must stop eddy learn --follow cleanly: {}",
        out.2
    );
    let report: serde_json::Value = serde_json::from_str(out.1.trim()).unwrap();
    assert_eq!(report["rows"], 2000, "{report}");
    assert!(chk.is_dir(), "a stopped run keeps its checkpoints");
    // the rerun (bounded, on the grown file) resumes: it learns only the new rows
    append(&live, &lines[2001..]);
    let rerun = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{err}");
    assert!(err.contains("resuming from checkpoint"), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    assert_eq!(report["rows"], 3000, "{report}");
    assert!(
        !chk.exists(),
        "a run that read its whole input clears its checkpoints"
    );
}

/// Waits (at most 20 s) for `child`: success, stdout, stderr.
fn wait_output(child: &mut Child) -> (bool, String, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not stop within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).unwrap();
    }
    (status.success(), out, err)
}
