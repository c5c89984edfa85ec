//! `eddy savepoint` and `eddy agg --checkpoint-dir/--savepoint-on-stop/--from-savepoint` end
//! to end: a followed aggregation takes a savepoint on request and one on stop; a new run
//! starts from the stop savepoint with the window at another parallelism and finishes the
//! pending windows with the counts the first run gave them.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A child process, killed when the test ends (passing or not).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `eddy ARGS` to completion, failing the test if it runs past 60 s (a hang guard).
fn eddy(args: &[&str]) -> Output {
    let mut child = Running(
        Command::new(EDDY)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "eddy {args:?} hung");
        std::thread::sleep(Duration::from_millis(20));
    }
    let Running(inner) = &mut child;
    let mut out = Output {
        status: inner.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut s) = inner.stdout.take() {
        s.read_to_end(&mut out.stdout).unwrap();
    }
    if let Some(mut s) = inner.stderr.take() {
        s.read_to_end(&mut out.stderr).unwrap();
    }
    out
}

/// The data rows of `--out path`, sorted: with checkpoints the output is a directory of parts
/// (one per committed epoch) named after the file without its extension.
fn lines(path: &Path) -> Vec<String> {
    let parts = path.with_extension("");
    let files = if parts.is_dir() {
        std::fs::read_dir(&parts)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    let mut v: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.lines().skip(1).map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn savepoint_on_request_and_on_stop_then_a_rescaled_start_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("events.csv");
    let mut text = String::from("k,ts\n");
    for i in 0..1000u64 {
        text.push_str(&format!("k{},{}\n", i % 5, 1_700_000_000_000u64 + i * 10));
    }
    std::fs::write(&data, text).unwrap();
    let ckpt = dir.path().join("ckpt");
    let out1 = dir.path().join("out1.csv");
    let common = ["--key", "k", "--time", "ts", "--window", "1s", "--follow"];
    let mut agg = Running(
        Command::new(EDDY)
            .args(["agg", "--data", p(&data)])
            .args(common)
            .args([
                "--checkpoint-dir",
                p(&ckpt),
                "--savepoint-on-stop",
                "on-stop",
            ])
            .args(["--checkpoint-interval", "100ms"])
            .args(["--out", p(&out1)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // wait (bounded) until a checkpoint committed output: the job has read the file
    let deadline = Instant::now() + Duration::from_secs(60);
    let parts = out1.with_extension("");
    while !parts.is_dir() || std::fs::read_dir(&parts).unwrap().next().is_none() {
        assert!(Instant::now() < deadline, "agg committed no output");
        std::thread::sleep(Duration::from_millis(20));
    }

    // a savepoint on request, taken by the running job
    let asked = eddy(&["savepoint", "--checkpoint-dir", p(&ckpt), "manual"]);
    let said = String::from_utf8_lossy(&asked.stdout);
    assert!(
        asked.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&asked.stderr)
    );
    let manual = ckpt.join("savepoints/manual");
    assert_eq!(said.trim(), p(&manual));
    assert!(manual.join("MANIFEST.json").is_file());

    // stop it: it takes the savepoint `on-stop`, then finishes what it read
    let pid = agg.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = agg.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "agg did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    let on_stop = ckpt.join("savepoints/on-stop");
    assert!(on_stop.join("MANIFEST.json").is_file());
    let first = lines(&out1);
    assert!(!first.is_empty());

    // a new run from the stop savepoint, the window at parallelism 2
    let out2 = dir.path().join("out2.csv");
    let ckpt2 = dir.path().join("ckpt2");
    let run = eddy(&[
        "agg",
        "--data",
        p(&data),
        "--key",
        "k",
        "--time",
        "ts",
        "--window",
        "1s",
        "--follow",
        "--stop-when-idle",
        "1s",
        "--checkpoint-dir",
        p(&ckpt2),
        "--from-savepoint",
        p(&on_stop),
        "--window-parallelism",
        "2",
        "--out",
        p(&out2),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // the windows still open at the savepoint fire with the counts of the first run
    let second = lines(&out2);
    assert!(!second.is_empty(), "nothing was pending at the savepoint");
    for row in &second {
        assert!(
            first.contains(row),
            "{row} is not in the first run's output"
        );
    }
    let mut once = second.clone();
    once.dedup();
    assert_eq!(once, second, "a restored window fired twice");
    // the last window of every key was pending: each fires exactly once, with its count
    let last: Vec<&String> = first
        .iter()
        .filter(|r| r.contains(",1700000009000,1700000010000,"))
        .collect();
    assert_eq!(last.len(), 5);
    for row in last {
        assert!(second.contains(row), "{row} missing after the restore");
    }
}

#[test]
fn a_savepoint_request_nobody_takes_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = eddy(&[
        "savepoint",
        "--checkpoint-dir",
        p(dir.path()),
        "--timeout",
        "200ms",
        "lonely",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a job running"), "{err}");
    assert!(!dir.path().join("savepoints/lonely.request").exists());
}

/// `eddy learn --savepoint-on-stop` then `--from-savepoint`: a followed run stopped by SIGTERM
/// leaves a savepoint; a new job started from it on the grown file learns only the new rows
/// and saves the model a resume from the stopped run's own checkpoints saves, byte for byte.
#[test]
fn learn_stops_with_a_savepoint_and_a_new_job_starts_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.csv");
    let out = eddy(&["gen", "ctr", "--rows", "3000", "--out", p(&all)]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let live = dir.path().join("live.csv");
    std::fs::write(&live, lines[..2001].join("\n") + "\n").unwrap();
    let (chk, chk2) = (dir.path().join("chk"), dir.path().join("chk2"));
    let learn = |checkpoints: &Path| {
        vec![
            "learn".to_string(),
            "--data".into(),
            p(&live).into(),
            "--label".into(),
            "label".into(),
            "--hash-bits".into(),
            "12".into(),
            "--checkpoint-every".into(),
            "200ms".into(),
            "--checkpoint-dir".into(),
            p(checkpoints).into(),
        ]
    };
    let mut follow = learn(&chk);
    follow.extend(["--follow", "--savepoint-on-stop", "sp"].map(String::from));
    let mut child = Running(
        Command::new(EDDY)
            .args(&follow)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // wait (bounded) for the first periodic checkpoint: the file's rows are being learned
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&chk).is_ok_and(|d| d.flatten().any(|e| e.path().is_dir())) {
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.0.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.0.kill();
            let mut err = String::new();
            use std::io::Read;
            child
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("SIGTERM did not stop eddy learn: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdout = String::new();
    use std::io::Read;
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["rows"], 2000, "{report}");
    let savepoint = chk.join("savepoints/sp");
    assert!(
        savepoint.join("MANIFEST.json").is_file(),
        "no savepoint on stop"
    );

    std::fs::write(&live, lines.join("\n") + "\n").unwrap();
    let mut from_savepoint = learn(&chk2);
    let model_b = dir.path().join("b.eddy");
    from_savepoint
        .extend(["--from-savepoint", p(&savepoint), "--save", p(&model_b)].map(String::from));
    let b = eddy(
        &from_savepoint
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let report: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_eq!(report["rows"], 3000, "{report}");
    let mut resumed = learn(&chk);
    let model_c = dir.path().join("c.eddy");
    resumed.extend(["--save", p(&model_c)].map(String::from));
    let c = eddy(&resumed.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    assert!(String::from_utf8_lossy(&c.stderr).contains("resuming from checkpoint"));
    assert!(
        std::fs::read(&model_b).unwrap() == std::fs::read(&model_c).unwrap(),
        "the savepoint's learner state differs from the stop checkpoint's"
    );
}
