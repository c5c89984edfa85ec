//! Durable parameter-server shards, as processes: `eddy ps serve` on 127.0.0.1 port 0 and
//! `eddy learn --ps grpc://…` against it. A SIGTERM'd shard keeps every update it
//! acknowledged; an exactly-once job rolls every shard back to its checkpoint epoch after a
//! `kill -9` and ends with the fault-free model; a shard that comes back empty is detected; a
//! rerun against an earlier job's tables is refused unless it resumes or starts fresh.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use eddy::ps::{JobPolicy, ParamStore, PsClientConfig, TableConfig};

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

impl Shard {
    /// `kill -9`: no last snapshot.
    fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.addr.clone()
    }
}

/// Starts shard `i` of `n` on `listen` with its snapshots in `dir` every `interval`, and
/// reads the bound address it prints. A restart on a port just freed retries the bind.
fn shard(i: u32, n: u32, listen: &str, dir: &Path, interval: &str) -> Shard {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut child = Command::new(EDDY)
            .args(["ps", "serve", "--shard", &format!("{i}/{n}")])
            .args(["--listen", listen, "--snapshot-interval", interval])
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            return Shard {
                child,
                addr: addr.to_string(),
            };
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("in use") && Instant::now() < deadline,
            "shard {i}/{n} did not start: {err}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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

fn learn(data: &Path, ps: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(EDDY);
    c.args(["learn", "--label", "label", "--model", "ftrl", "--data"])
        .arg(data)
        .args(["--ps", ps, "--ps-batch", "16"])
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

fn failed_with(out: &Output, needle: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "expected a failure naming {needle:?}"
    );
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

/// Whether `dir` holds a snapshot file labelled with a checkpoint epoch.
fn has_epoch_snapshot(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|d| {
        d.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.contains(".e") && name.ends_with(".snap")
        })
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn sgd_tables() -> Vec<TableConfig> {
    vec![TableConfig {
        rule: eddy::algorithms::optim::RuleParams::Sgd(
            eddy::algorithms::optim::SgdParams::constant(1.0),
        ),
        ..TableConfig::new("w", 1)
    }]
}

fn client(addr: &str, job: &str) -> PsClientConfig {
    PsClientConfig {
        job: job.into(),
        retry_for: Duration::from_secs(10),
        ..PsClientConfig::new(vec![addr.into()], sgd_tables())
    }
}

/// #16: SIGTERM → the shard drains and writes a last snapshot; a restart on the same data
/// directory holds every acknowledged update (the periodic snapshot never ran: 1 h).
#[test]
fn sigterm_keeps_every_acknowledged_update() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    for round in 0..3u64 {
        let s = shard(0, 1, "127.0.0.1:0", dir.path(), "1h");
        let c = rt.block_on(client(&s.addr, "durable").connect()).unwrap();
        let keys: Vec<u64> = (0..500).map(|k| k * 7 + round).collect();
        // constant-rate SGD: each push of gradient -1 adds exactly 1 to the row
        for _ in 0..4 {
            rt.block_on(c.push("w", &keys, &vec![-1.0; keys.len()], None))
                .unwrap();
        }
        let status = Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut s = s;
        let exit = s.child.wait().unwrap();
        assert!(exit.success(), "SIGTERM exits 0: {exit:?}");
        drop(c);
        let back = shard(0, 1, "127.0.0.1:0", dir.path(), "1h");
        let c = rt
            .block_on(client(&back.addr, "durable").connect())
            .unwrap();
        let mut got = Vec::new();
        let all: Vec<u64> = (0..=round)
            .flat_map(|r| (0..500).map(move |k| k * 7 + r))
            .collect();
        rt.block_on(c.pull("w", &all, &mut got)).unwrap();
        let lost = got.iter().filter(|&&w| w != 4.0).count();
        assert_eq!(
            lost, 0,
            "round {round}: {lost} rows lost an acknowledged update"
        );
        // and another job is refused these tables
        let other = rt.block_on(client(&back.addr, "another").connect());
        match other {
            Err(eddy::ps::Error::JobMismatch { held, .. }) => assert_eq!(held, "durable"),
            other => panic!("another job was let in: {:?}", other.map(|_| ())),
        }
        drop(back);
    }
}

/// #16: a rerun against the shards of an earlier job is refused; `--ps-resume` continues its
/// tables, `--ps-fresh` clears them (the fresh rerun saves the first run's model exactly).
#[test]
fn a_rerun_against_an_earlier_jobs_shards_refuses_without_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen(dir.path(), 5_000);
    let s = shard(0, 1, "127.0.0.1:0", &dir.path().join("s0"), "200ms");
    let ps = format!("grpc://{}", s.addr);
    let saved = |name: &str| dir.path().join(name);
    let p = |p: &PathBuf| p.to_str().unwrap().to_string();
    let first = learn(&data, &ps, &["--save", &p(&saved("first.eddy"))])
        .output()
        .unwrap();
    report(&first);
    let again = learn(&data, &ps, &[]).output().unwrap();
    failed_with(&again, "holds the tables of job");
    let resumed = learn(
        &data,
        &ps,
        &["--ps-resume", "--save", &p(&saved("resumed.eddy"))],
    )
    .output()
    .unwrap();
    report(&resumed);
    let fresh = learn(
        &data,
        &ps,
        &["--ps-fresh", "--save", &p(&saved("fresh.eddy"))],
    )
    .output()
    .unwrap();
    report(&fresh);
    let bytes = |name: &str| std::fs::read(saved(name)).unwrap();
    assert_ne!(
        bytes("first.eddy"),
        bytes("resumed.eddy"),
        "resuming trained on top of the first run's tables"
    );
    assert_eq!(
        bytes("first.eddy"),
        bytes("fresh.eddy"),
        "a fresh start trains from empty tables, as the first run did"
    );
    // a named job reruns under its own name without asking
    let named = |extra: &[&str]| {
        let mut args = vec!["--ps-fresh", "--ps-job", "nightly"];
        args.extend_from_slice(extra);
        learn(&data, &ps, &args).output().unwrap()
    };
    report(&named(&[]));
    let same = learn(&data, &ps, &["--ps-job", "nightly"])
        .output()
        .unwrap();
    report(&same);
}

/// #16: a shard killed and restarted with an empty data directory is detected by the job
/// (never re-declared and silently trained from zero) — under approximate failover, which
/// otherwise rides through a shard restart (exactly-once fails every restart, see below).
#[test]
fn a_shard_restarted_empty_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen(dir.path(), 200_000);
    let d0 = dir.path().join("s0");
    let s0 = shard(0, 1, "127.0.0.1:0", &d0, "100ms");
    let ps = format!("grpc://{}", s0.addr);
    let mut training = learn(
        &data,
        &ps,
        &["--ps-retry-for", "20s", "--failover", "approximate"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // two snapshot files: the one the worker-id lease wrote at connect, and a periodic one
    // after updates (so the job has had answers from the shard)
    let snapshots = || {
        std::fs::read_dir(&d0).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                .count()
        })
    };
    while snapshots() < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        training.try_wait().unwrap().is_none(),
        "training is still running when the shard is killed"
    );
    let addr = s0.kill();
    std::fs::remove_dir_all(&d0).unwrap();
    let _empty = shard(0, 1, &addr, &d0, "100ms");
    let out = training.wait_with_output().unwrap();
    failed_with(&out, "came back empty");
}

/// Runs exactly-once training through 2 shards in `dir`; with `kill_after` (a count of epoch
/// snapshot waits), `kill -9`s shard 1 once it has written an epoch snapshot and that much
/// later, and restarts it on the same address and data directory. Returns the report and
/// the saved model's bytes.
fn exactly_once_run(
    dir: &Path,
    data: &Path,
    kill_after: Option<Duration>,
) -> (serde_json::Value, Vec<u8>) {
    let (d0, d1) = (dir.join("s0"), dir.join("s1"));
    let s0 = shard(0, 2, "127.0.0.1:0", &d0, "50ms");
    let s1 = shard(1, 2, "127.0.0.1:0", &d1, "50ms");
    let ps = format!("grpc://{},{}", s0.addr, s1.addr);
    let model = dir.join("model.eddy");
    let ckpt = dir.join("ckpt");
    let mut training = learn(
        data,
        &ps,
        &[
            "--failover",
            "exactly-once",
            "--max-restarts",
            "5",
            "--checkpoint-every",
            "100ms",
            "--checkpoint-dir",
            ckpt.to_str().unwrap(),
            "--save",
            model.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut restarted = None;
    let mut s1 = Some(s1);
    if let Some(after) = kill_after {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !has_epoch_snapshot(&d1) {
            assert!(Instant::now() < deadline, "no epoch snapshot within 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(after);
        assert!(
            training.try_wait().unwrap().is_none(),
            "training is still running when the shard is killed"
        );
        let addr = s1.take().map(Shard::kill).unwrap_or_default();
        restarted = Some(shard(1, 2, &addr, &d1, "50ms"));
    }
    let out = training.wait_with_output().unwrap();
    let r = report(&out);
    drop((s0, s1, restarted));
    (r, std::fs::read(&model).unwrap())
}

/// #16: `kill -9` of a shard mid-training in exactly-once mode → the job rolls every shard
/// and the source back to its last checkpoint epoch, and the final model equals the
/// fault-free run's, bit for bit. Kill points vary with the seed.
#[test]
fn exactly_once_rolls_every_shard_back_after_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen(dir.path(), 60_000);
    let clean = dir.path().join("clean");
    let (want, want_model) = exactly_once_run(&clean, &data, None);
    assert_eq!(want["rows"], 60_000);
    for seed in 1..=3u64 {
        // a kill point 0..400 ms after the first epoch snapshot, from a fixed mix of the seed
        let after = Duration::from_millis((seed.wrapping_mul(0x9E37_79B9) >> 7) % 400);
        let run = dir.path().join(format!("kill-{seed}"));
        let (got, model) = exactly_once_run(&run, &data, Some(after));
        eprintln!("seed {seed} (kill {after:?} after the first epoch snapshot): {got}");
        assert!(
            got["restarts"].as_f64().unwrap_or(0.0) >= 1.0,
            "the job rolled back: {got}"
        );
        assert_eq!(
            got["logloss"], want["logloss"],
            "seed {seed}: {got} vs {want}"
        );
        assert!(
            model == want_model,
            "seed {seed}: the final model differs from the fault-free run's"
        );
    }
}

/// The policy a job's `Configure` sends is the one the CLI flag names (library level).
#[test]
fn job_policy_resume_keeps_and_fresh_clears_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let s = shard(0, 1, "127.0.0.1:0", dir.path(), "1h");
    let c = rt.block_on(client(&s.addr, "a").connect()).unwrap();
    rt.block_on(c.push("w", &[1, 2], &[-1.0, -1.0], None))
        .unwrap();
    let resumed = PsClientConfig {
        policy: JobPolicy::Resume,
        ..client(&s.addr, "b")
    };
    let b = rt.block_on(resumed.connect()).unwrap();
    let mut w = Vec::new();
    rt.block_on(b.pull("w", &[1, 2], &mut w)).unwrap();
    assert_eq!(w, vec![1.0, 1.0], "resume keeps the rows");
    let fresh = PsClientConfig {
        policy: JobPolicy::Fresh,
        ..client(&s.addr, "c")
    };
    let c2 = rt.block_on(fresh.connect()).unwrap();
    rt.block_on(c2.pull("w", &[1, 2], &mut w)).unwrap();
    assert_eq!(w, vec![0.0, 0.0], "fresh clears them");
    // the old clients see that the shard now holds another job's tables
    let e = rt.block_on(b.push("w", &[1], &[-1.0], None)).unwrap_err();
    assert!(e.to_string().contains("job `c`"), "{e}");
}

/// #16: worker ids leased by shard 0 are unique across clients (processes) and across a
/// `kill -9` of the shard: the next free id is durable before a lease is answered.
#[test]
fn leased_worker_ids_stay_unique_across_clients_and_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let lease = |addr: &str, job: &str| {
        let cfg = PsClientConfig {
            lease_workers: 8,
            policy: JobPolicy::Resume,
            ..client(addr, job)
        };
        rt.block_on(cfg.connect()).unwrap().worker_base()
    };
    let s = shard(0, 1, "127.0.0.1:0", dir.path(), "1h");
    let (a, b) = (lease(&s.addr, "j"), lease(&s.addr, "j"));
    assert!(a + 8 <= b, "two clients' blocks overlap: {a} and {b}");
    s.kill();
    let back = shard(0, 1, "127.0.0.1:0", dir.path(), "1h");
    let c = lease(&back.addr, "j");
    assert!(
        b + 8 <= c,
        "a lease after the restart reuses ids: {c} after {b}"
    );
}
