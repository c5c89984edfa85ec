//! The parameter server end to end, as processes: `eddy ps serve` shards on 127.0.0.1 port 0
//! and `eddy learn --ps grpc://…` workers against them, on `eddy gen ctr` data.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");

/// A running `eddy ps serve`, killed when dropped.
struct Shard {
    child: Child,
    addr: String,
}

impl Drop for Shard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts shard `i` of `n` on `listen` with its snapshots in `dir`, and reads the bound
/// address it prints.
fn shard(i: u32, n: u32, listen: &str, dir: &Path) -> Shard {
    let mut child = Command::new(EDDY)
        .args([
            "ps",
            "serve",
            "--shard",
            &format!("{i}/{n}"),
            "--listen",
            listen,
        ])
        .args(["--snapshot-interval", "200ms", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Shard { child, addr }
}

fn gen(dir: &Path, rows: u64) -> PathBuf {
    let data = dir.join("ctr.csv");
    let out = Command::new(EDDY)
        .args(["gen", "ctr", "--rows", &rows.to_string(), "--out"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    data
}

fn learn(data: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(EDDY);
    c.args(["learn", "--label", "label", "--model", "ftrl", "--data"])
        .arg(data)
        .args(extra);
    c
}

/// The JSON line of a successful `eddy learn`.
fn report(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "eddy learn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn two_workers_on_two_grpc_shards_match_single_process_ftrl() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen(dir.path(), 50_000);
    let single = report(&learn(&data, &[]).output().unwrap());
    let s0 = shard(0, 2, "127.0.0.1:0", &dir.path().join("s0"));
    let s1 = shard(1, 2, "127.0.0.1:0", &dir.path().join("s1"));
    let ps = format!("grpc://{},{}", s0.addr, s1.addr);
    // mini-batches of 16 rows: each batch's gradient is taken at one pull, the one thing that
    // separates this run from row-at-a-time training (about 0.4% logloss on this data)
    let out = learn(&data, &["--ps", &ps, "--workers", "2", "--ps-batch", "16"])
        .output()
        .unwrap();
    let distributed = report(&out);
    assert_eq!(distributed["rows"], 50_000);
    assert_eq!(distributed["workers"], 2.0);
    assert_eq!(distributed["retries"], 0.0);
    let (a, b) = (
        single["logloss"].as_f64().unwrap(),
        distributed["logloss"].as_f64().unwrap(),
    );
    assert!(a < 0.4, "single-process FTRL learns: {a}");
    eprintln!("logloss: single-process {a}, 2 workers x 2 shards {b}");
    assert!(
        (b - a).abs() / a < 0.01,
        "2 workers × 2 shards: logloss {b} vs single-process {a}"
    );
}

#[test]
fn a_killed_shard_restarts_from_its_snapshot_and_training_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen(dir.path(), 100_000);
    let (d0, d1) = (dir.path().join("s0"), dir.path().join("s1"));
    let s0 = shard(0, 2, "127.0.0.1:0", &d0);
    let mut s1 = shard(1, 2, "127.0.0.1:0", &d1);
    let ps = format!("grpc://{},{}", s0.addr, s1.addr);
    let mut training = learn(&data, &["--ps", &ps, "--workers", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait for shard 1's first snapshot (renamed into place: a `.tmp` file is not one yet),
    // then kill it while training is under way
    let snapshots = |d: &Path| {
        std::fs::read_dir(d).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                .count()
        })
    };
    while snapshots(&d1) == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        training.try_wait().unwrap().is_none(),
        "training is still running when the shard is killed"
    );
    s1.child.kill().unwrap();
    s1.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let restarted = shard(1, 2, &s1.addr, &d1);
    let out = training.wait_with_output().unwrap();
    let r = report(&out);
    eprintln!("after a shard restart: {r}");
    assert_eq!(r["rows"], 100_000, "no worker crashed: every row trained");
    assert!(r["shard_restarts"].as_f64().unwrap() >= 1.0, "{r}");
    assert!(r["retries"].as_f64().unwrap() >= 1.0, "{r}");
    assert!(
        r.get("lost_updates").is_some() && r.get("duplicate_pushes").is_some(),
        "lost updates and duplicate pushes are reported: {r}"
    );
    assert!(r["logloss"].as_f64().unwrap() < 0.4, "{r}");
    // said on stderr as it happened, not only in the summary
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a shard restarted"), "{err}");
    drop(restarted);
    drop(s0);
}
