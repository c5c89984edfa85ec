//! The dashboard in a real headless browser: Debian's `chromium` driven by Python `selenium`
//! through Debian's `chromedriver` (both installed by `.ci/dashboard.sh`; nothing is
//! downloaded by a tool). The test runs the ctr workflow with `eddy run --serve-forever`, opens
//! the run's dashboard and checks, in the browser (`tests/dashboard_browser.py`):
//! - the DAG shows every node of the spec, each with its final state from `state.json` and a
//!   duration, and the trigger edges;
//! - the training page's plots of metrics per published version and of the training node's
//!   backpressure per operator have points;
//! - the models page's version table matches `eddy models --registry … ctr --json`;
//! - a click on "promote" changes the version the run's serve node serves, and the run's own
//!   serving page shows it (with its requests plotted);
//! - `eddy ui RUN_DIR` on the run after it ended shows every finished node's start and end.
//!
//! On failure the script saves a screenshot and the page under
//! `$CARGO_TARGET_TMPDIR/dashboard_browser/`. Without chromium, chromedriver or the selenium
//! environment the test fails, naming what is missing (it never skips).
//! `EDDY_DASHBOARD_SHOTS=DIR` also saves a screenshot of each page in DIR (how
//! `docs/dashboard-*.png` are made).
//!
//! Mutations caught (each tried): the DAG drawn without node states (`data-state` missing:
//! the states differ); the promote action answering 200 without promoting (the table never
//! shows the version in production: the wait times out, a screenshot is saved); the
//! per-version plot drawn without points (the wait for points times out); the serve node not
//! putting its server on the run's board (the run's serving page never shows the promoted
//! version: the wait times out, a screenshot is saved). Without the
//! selenium environment the test fails at once, naming it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned selenium environment `.ci/dashboard.sh` makes.
const SELENIUM_ENV: &str = ".cache/eddy/selenium-4.27.1";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The selenium environment's python, or a panic naming what is missing.
fn tools() -> PathBuf {
    let python = std::env::var_os("EDDY_SELENIUM_PYTHON").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(SELENIUM_ENV).join("bin/python")
        },
        PathBuf::from,
    );
    let mut missing = Vec::new();
    for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        if !Path::new(bin).exists() {
            missing.push(bin.to_string());
        }
    }
    if !python.exists() {
        missing.push(python.display().to_string());
    }
    assert!(
        missing.is_empty(),
        "the dashboard browser test needs {} — run `bash .ci/dashboard.sh` (Debian chromium + \
         chromium-driver, selenium in {SELENIUM_ENV})",
        missing.join(", ")
    );
    python
}

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The JSON document in an answer body (axum may send it chunked: from the first `{` to the
/// last `}`).
fn json_of(body: &str) -> serde_json::Value {
    let (Some(a), Some(b)) = (body.find('{'), body.rfind('}')) else {
        panic!("no JSON in {body}");
    };
    serde_json::from_str(&body[a..=b]).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn dashboard_in_chromium_shows_the_run_and_promotes() {
    let python = tools();
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let spec = root.join("examples/ctr/workflow.toml");
    let (run, url) = start(&[
        "run",
        spec.to_str().unwrap(),
        "--serve-forever",
        "--run-dir",
        run_dir.to_str().unwrap(),
    ]);
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();

    // the run settles: every node but the server finished, the server serves
    let deadline = Instant::now() + Duration::from_secs(120);
    let state = loop {
        let run = json_of(&get(&addr, "/api/run"));
        if run["state"]["settled"] == true && run["state"]["serving"].is_string() {
            break run;
        }
        assert!(Instant::now() < deadline, "the run never settled: {run}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let serving_url = state["state"]["serving"].as_str().unwrap().to_string();
    let serve_addr = serving_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();

    // requests to the run's serve node, for its serving page
    let row = r#"{"rows":[{"c0":"a","c1":"b","f0":1.5}]}"#;
    for _ in 0..20 {
        post(&serve_addr, "/v1/models/ctr/predict", row);
    }

    // a model server on the run's registry (production policy) and a PS shard, each with
    // its dashboard
    let registry = run_dir.join("registry");
    let (serve, serve_ui) = start(&[
        "serve",
        "--registry",
        registry.to_str().unwrap(),
        "--model",
        "ctr@production",
        "--listen",
        "127.0.0.1:0",
        "--poll",
        "200ms",
    ]);
    let own = serve_ui
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    for _ in 0..20 {
        let row = r#"{"rows":[{"c0":"a","c1":"b","f0":1.5}]}"#;
        post(&own, "/v1/models/ctr/predict", row);
    }
    let ps_dir = dir.path().join("ps");
    let (ps, ps_ui) = start(&[
        "ps",
        "serve",
        "--shard",
        "0/1",
        "--data-dir",
        ps_dir.to_str().unwrap(),
        "--ui",
        "127.0.0.1:0",
    ]);

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard_browser");
    let mut cmd = Command::new(&python);
    cmd.arg(root.join("tests/dashboard_browser.py"))
        .arg(&url)
        .arg(&out)
        .args(["--serve", &serve_ui, "--ps", &ps_ui]);
    if let Some(shots) = std::env::var_os("EDDY_DASHBOARD_SHOTS") {
        cmd.arg("--shots").arg(shots);
    }
    let output = cmd.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser check failed (screenshot and page in {}):\n{stderr}\n{stdout}",
        out.display()
    );
    let seen = json_of(&stdout);

    // the DAG: every node of the spec with its final state, and the trigger edges
    let nodes = state["state"]["nodes"].as_object().unwrap();
    let dag = seen["dag"].as_object().unwrap();
    assert_eq!(dag.len(), nodes.len(), "{seen}");
    for (name, node) in nodes {
        assert_eq!(dag[name], node["status"], "node {name}: {seen}");
        assert!(
            seen["durations"][name].is_u64(),
            "node {name} has no duration: {seen}"
        );
    }
    let operators = seen["operators"].as_array().unwrap();
    assert!(
        !operators.is_empty()
            && operators
                .iter()
                .all(|o| o.as_str().is_some_and(|o| !o.is_empty())),
        "the backpressure plot names no operator: {seen}"
    );
    assert_eq!(
        seen["edges"], 3,
        "warm start, on-new-version, after: {seen}"
    );
    assert!(seen["plot_points"].as_u64().unwrap() > 0, "{seen}");

    // the version table is what `eddy models --json` says (before the click)
    let models = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["models", "--json", "--registry"])
        .arg(run_dir.join("registry"))
        .arg("ctr")
        .output()
        .unwrap();
    assert!(models.status.success());
    let listed = json_of(&String::from_utf8_lossy(&models.stdout));
    let mut expected: Vec<(u64, String)> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["stage"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let promoted = seen["promoted"].as_u64().unwrap();
    // the listing ran after the click: the promoted version is production now, and the one
    // that was production before is archived
    let mut shown: Vec<(u64, String)> = seen["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[0] == "ctr")
        .map(|r| (r[1].as_u64().unwrap(), r[2].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(seen["model"], "ctr", "{seen}");
    for v in &mut shown {
        if v.1 == "production" {
            v.1 = "archived".into();
        }
        if v.0 == promoted {
            v.1 = "production".into();
        }
    }
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected, "{seen}");

    // the click changed the served version (the serve node follows production)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = json_of(&get(&serve_addr, "/v1/models/ctr"));
        if info["version"].as_u64() == Some(promoted) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the served version never became v{promoted}: {info}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(seen["served"].as_u64(), Some(promoted), "{seen}");
    assert!(
        seen["run_served"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == "serve" && r[1] == "ctr" && r[2].as_u64() == Some(promoted)),
        "the run's serving page: {seen}"
    );
    assert_eq!(seen["ps_tables"], 0, "a shard no client configured: {seen}");
    drop((serve, ps, run));

    // the run has ended: `eddy ui` shows each finished node's start and end from its state
    let (_ui, ui_url) = start(&["ui", run_dir.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let ui_addr = ui_url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let ended = json_of(&get(&ui_addr, "/api/run"));
    for (name, node) in ended["state"]["nodes"].as_object().unwrap() {
        if node["status"] != "succeeded" {
            continue;
        }
        let t = &ended["timings"][name];
        let (Some(a), Some(b)) = (t["started_ms"].as_u64(), t["finished_ms"].as_u64()) else {
            panic!("node {name} has no start and end: {ended}");
        };
        assert!(a <= b, "node {name}: {t}");
    }
}

/// Starts `eddy ARGS` and returns it with the dashboard URL it printed (60 s at most).
fn start(args: &[&str]) -> (Proc, String) {
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
            if let Some(url) = line.strip_prefix("dashboard at ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("`eddy {}` printed no dashboard URL", args.join(" ")));
    (proc, url)
}

fn post(addr: &str, path: &str, body: &str) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
}
