//! #16: approximate failover across processes. `eddy learn --processes 2` trains a 4-partition
//! topic of generated CTR rows (a tansu broker on 127.0.0.1: eddy-core's harness
//! `core/tests/support/kafka.rs`) in two `eddy worker` processes through two `eddy ps serve`
//! shard processes. One worker is `kill -9`ed at a random moment after its first checkpoint
//! (three seeds); it must come back alone (the other keeps its pid and is never restarted),
//! resume from its checkpoint, and the job must end with:
//! - every row of the topic in the final evaluation, each worker exactly its own partitions'
//!   rows (the partitions are of unequal sizes, so a worker that read another's partitions,
//!   or re-read its own from the start, has the wrong count);
//! - the accounting identity: rows trained over all of a worker's processes = its rows +
//!   the replayed rows reported (nothing is lost across a process restart);
//! - the merged progressive log loss within 1% of a fault-free run's;
//! - the fault-free run's `--save`d model (worker 0's pipeline, the shards' tables read back
//!   after every worker finished) scoring rows it never saw below 0.40 log loss;
//! - the peer's rows/s while the worker was down over before, and the recovery time, logged
//!   (not asserted: the machine is shared).
//!
//! Mutations tried (each by hand, then restored), all caught by the killed runs:
//! - restarts disabled (the supervisor treating a dead worker as finished): worker 1 has no
//!   final report (0 rows of 36,000) and 0 restarts;
//! - a restart without the partition offsets (`KafkaSource::seek` ignoring the restored
//!   position): worker 1 ends with its checkpoint's rows + 36,000 rows;
//! - a restarted worker taking the other's partitions (the supervisor restarting worker `w`
//!   with index `(w + 1) % 2`): worker 1 ends with 24,000 rows (+ its checkpoint's) instead
//!   of 36,000;
//! - the job's model not read back from the shards (`final_model` keeping a fresh model of
//!   the learner instead of `shard_model`'s): holdout log loss 0.693.

#[path = "support/checkpoints.rs"]
mod checkpoints;
#[path = "support/clicks.rs"]
mod clicks;
#[path = "../core/tests/support/kafka.rs"]
mod kafka;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use checkpoints::checkpoint_holds_rows;
use clicks::{clicks, LAYOUT, ROWS, WORKER_ROWS};
use eddy_core::datagen::ctr::CtrGenerator;
use kafka::Broker;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
/// How long one training run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// A running process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts shard `i` of `n` on port 0 with its data in `dir`; the process and its address.
fn shard(i: u32, n: u32, dir: &Path) -> (Proc, String) {
    let mut child = Command::new(EDDY)
        .args(["ps", "serve", "--shard", &format!("{i}/{n}")])
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("shard {i}/{n} did not start: {line:?}"))
        .to_string();
    (Proc(child), addr)
}

/// What one `eddy learn --processes 2` run did.
struct Run {
    report: Value,
    /// The supervisor's stderr lines.
    log: Vec<String>,
    /// The pid worker 1 had when it was killed.
    killed: Option<u32>,
}

/// The pid in a supervisor line `worker W started (pid P)` / `restarted (pid P, …)`.
fn started_pid(line: &str, worker: usize) -> Option<u32> {
    let rest = line
        .strip_prefix(&format!("worker {worker} started (pid "))
        .or_else(|| line.strip_prefix(&format!("worker {worker} restarted (pid ")))?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// What a run does to the job.
#[derive(Clone, Copy)]
enum Fault {
    /// Nothing: it trains to the end of the topic.
    None,
    /// `kill -9` worker 1 at a random moment (from the seed) after its first checkpoint that
    /// holds rows.
    Kill(u64),
    /// SIGTERM to `eddy learn --processes` once both workers checkpointed rows.
    Stop,
}

/// Trains the topic with two worker processes through the shards at `ps`, checkpoints in
/// `dir`; `extra` flags appended. Fails the test unless it exits 0.
fn run(broker: &Broker, topic: &str, dir: &Path, ps: &str, fault: Fault, extra: &[&str]) -> Run {
    let checkpoints = dir.join("checkpoints");
    let mut child = Command::new(EDDY)
        .args(["learn", "--processes", "2", "--label", "label", "--data"])
        .arg(broker.uri(topic))
        .args(["--ps", ps, "--ps-job", "failover"])
        .args(["--batch-rows", "256", "--checkpoint-every", "100ms"])
        .arg("--checkpoint-dir")
        .arg(&checkpoints)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child_guard_pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut log = Vec::new();
    let mut killed = None;
    if !matches!(fault, Fault::None) {
        // both workers training, then a checkpoint of each taken since: they hold rows
        let (mut pid, mut training) = (None, [false; 2]);
        while pid.is_none() || training != [true; 2] {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("both workers start training");
            pid = pid.or(started_pid(&line, 1));
            for (w, t) in training.iter_mut().enumerate() {
                *t |= line.starts_with(&format!("worker {w} training"));
            }
            log.push(line);
        }
        for w in 0..2 {
            let own = checkpoints.join(format!("worker-{w}"));
            while !checkpoint_holds_rows(&own) {
                assert!(
                    started.elapsed() < RUN_LIMIT,
                    "worker {w} never checkpointed"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let (signal, pid) = match fault {
            Fault::Kill(seed) => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
                killed = pid;
                ("-9", pid.unwrap())
            }
            _ => ("-TERM", child_guard_pid),
        };
        log.extend(rx.try_iter());
        assert!(
            !log.iter().any(|l| l.ends_with(" finished")),
            "a worker finished before the fault; make the topic larger"
        );
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
    let mut stdout = child.stdout.take().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("eddy learn --processes (pid {child_guard_pid}) ran past {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    log.extend(rx.try_iter());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    assert!(
        status.success(),
        "eddy learn --processes failed ({status}):\n{}",
        log.join("\n")
    );
    let report: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {out}"));
    Run {
        report,
        log,
        killed,
    }
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number `{key}` in {v}"))
}

/// What every run must show: all rows, each worker its own partitions', the identity.
fn assert_accounted(run: &Run, what: &str) {
    let r = &run.report;
    assert_eq!(num(r, "rows") as u64, ROWS, "{what}: {r}");
    assert_eq!(num(r, "records_lost"), 0.0, "{what}: {r}");
    for (w, worker) in r["workers"].as_array().unwrap().iter().enumerate() {
        let rows = num(worker, "rows") as u64;
        assert_eq!(
            rows, WORKER_ROWS[w],
            "{what}: worker {w} must end with exactly its partitions' rows: {worker}"
        );
        let trained = num(worker, "rows_trained") as u64;
        let replayed = num(worker, "records_replayed") as u64;
        let from = num(worker, "started_from") as u64;
        assert_eq!(
            trained,
            rows - from + replayed,
            "{what}: worker {w}: rows trained by all its processes = rows + replayed: {worker}"
        );
    }
}

/// The log loss of the model saved at `path` on 4,000 rows of the topic's generator it never
/// saw.
fn holdout_logloss(path: &Path) -> f64 {
    use eddy_algorithms::eval::MetricSet;
    use eddy_algorithms::features::{Examples, Features};
    use eddy_algorithms::learner::Predictor;
    let trained = eddy_algorithms::trained::TrainedModel::load(path).expect("the saved model");
    let batch = CtrGenerator::new(7, false).batch(1_000_000, 4_000).unwrap();
    let mut ex = Examples::new(Features::Sparse(Default::default()), Vec::new(), None).unwrap();
    let mut preds = Vec::new();
    trained.pipeline.examples_into(&batch, &mut ex).unwrap();
    trained.model.predict(&ex.features, &mut preds).unwrap();
    let mut set = MetricSet::for_task(trained.model.task());
    set.update_batch(&preds, &ex.labels, None).unwrap();
    set.values().get("logloss").expect("a log loss")
}

/// A topic of the [`LAYOUT`], and two fresh shards: their processes and `grpc://` address.
fn setup(broker: &Broker, topic: &str, dir: &Path) -> ([Proc; 2], String) {
    broker.create_topic(topic, 4);
    broker.produce(topic, &clicks(ROWS), |i| LAYOUT[i % LAYOUT.len()]);
    let (s0, a0) = shard(0, 2, &dir.join("ps-0"));
    let (s1, a1) = shard(1, 2, &dir.join("ps-1"));
    ([s0, s1], format!("grpc://{a0},{a1}"))
}

#[test]
fn a_killed_worker_comes_back_alone_from_its_offsets_and_every_row_is_accounted_for() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let topic = "clicks";
    broker.create_topic(topic, 4);
    broker.produce(topic, &clicks(ROWS), |i| LAYOUT[i % LAYOUT.len()]);
    // fresh shards per run: each run trains its own model from zero
    let fresh_with = |name: &str, fault: Fault, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let (s0, a0) = shard(0, 2, &dir.join("ps-0"));
        let (s1, a1) = shard(1, 2, &dir.join("ps-1"));
        let run = run(
            &broker,
            topic,
            &dir,
            &format!("grpc://{a0},{a1}"),
            fault,
            extra,
        );
        drop((s0, s1));
        run
    };
    let fresh = |name: &str, fault: Fault| fresh_with(name, fault, &[]);

    let saved = tmp.path().join("clean.model");
    let clean = fresh_with("clean", Fault::None, &["--save", saved.to_str().unwrap()]);
    assert_accounted(&clean, "fault-free");
    let holdout = holdout_logloss(&saved);
    eprintln!(
        "the saved model (worker 0's pipeline, the shards' tables): holdout logloss {holdout:.5}"
    );
    assert!(
        holdout < 0.40,
        "the saved model holds the trained tables (a fresh one scores 0.693): {holdout}"
    );
    assert_eq!(num(&clean.report, "restarts"), 0.0);
    assert_eq!(num(&clean.report, "records_replayed"), 0.0);
    let clean_loss = num(&clean.report, "logloss");

    for seed in 0..3u64 {
        let what = format!("seed {seed}");
        let run = fresh(&format!("kill-{seed}"), Fault::Kill(seed));
        assert_accounted(&run, &what);
        let r = &run.report;
        let workers = r["workers"].as_array().unwrap();
        let (w0, w1) = (&workers[0], &workers[1]);
        // it came back alone: worker 0 never restarted and kept its first pid
        let first0: Vec<u32> = run.log.iter().filter_map(|l| started_pid(l, 0)).collect();
        assert_eq!(
            first0.len(),
            1,
            "{what}: worker 0 started once: {:?}",
            run.log
        );
        assert_eq!(num(w0, "restarts"), 0.0, "{what}: {w0}");
        assert_eq!(
            num(w0, "pid") as u32,
            first0[0],
            "{what}: worker 0's pid changed"
        );
        assert_eq!(num(w1, "restarts"), 1.0, "{what}: {w1}");
        assert_ne!(num(w1, "pid") as u32, run.killed.unwrap(), "{what}");
        // it resumed from its checkpoint, not from the start of its partitions
        let resumed = w1["resumed_rows"][0].as_u64().unwrap_or(0);
        assert!(
            resumed > 0,
            "{what}: worker 1 resumed from no checkpoint: {w1}"
        );
        let loss = num(r, "logloss");
        let recovery = w1["recovery_ms"][0].as_f64().unwrap_or(f64::NAN);
        let ratio = w1["peer_ratio"][0].as_f64().unwrap_or(f64::NAN);
        eprintln!(
            "{what}: resumed at row {resumed}, replayed {}, recovery {recovery:.0} ms, peer \
             rows/s during the outage / before = {ratio:.2}, logloss {loss:.5} (fault-free \
             {clean_loss:.5})",
            num(w1, "records_replayed")
        );
        assert!(
            (loss - clean_loss).abs() <= 0.01 * clean_loss,
            "{what}: logloss {loss} is not within 1% of the fault-free {clean_loss}"
        );
    }
}

/// SIGTERM to `eddy learn --processes` on a followed topic: every worker takes a last
/// checkpoint and exits 0, and so does the supervisor; the same command on the bounded topic
/// then resumes each worker from its checkpoint and trains exactly the rest of its partitions
/// (each worker's final count is exactly its partitions' rows, the accounting identity holds).
#[test]
fn sigterm_stops_every_worker_at_a_checkpoint_and_a_rerun_resumes_them() {
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let (shards, ps) = setup(&broker, "clicks", tmp.path());
    let first = run(
        &broker,
        "clicks",
        tmp.path(),
        &ps,
        Fault::Stop,
        &["--follow"],
    );
    let trained: Vec<u64> = (0..2)
        .map(|w| num(&first.report["workers"][w], "rows") as u64)
        .collect();
    assert!(
        trained
            .iter()
            .zip(WORKER_ROWS)
            .all(|(t, all)| *t > 0 && *t < all),
        "the stopped run trained part of each worker's rows: {trained:?}"
    );
    assert!(
        first.log.iter().any(|l| l.starts_with("stopping")),
        "{:?}",
        first.log
    );
    let second = run(&broker, "clicks", tmp.path(), &ps, Fault::None, &[]);
    assert_accounted(&second, "resumed");
    assert_eq!(num(&second.report, "records_replayed"), 0.0);
    for (w, first_rows) in trained.iter().enumerate() {
        let from = num(&second.report["workers"][w], "started_from") as u64;
        // the stop's checkpoint comes before the followed source ends: the rows read in
        // between are trained by both runs
        assert!(
            from > 0 && from <= *first_rows,
            "worker {w} resumed at row {from} of the {first_rows} the stopped run trained"
        );
        eprintln!("worker {w}: stopped after {first_rows} rows, resumed at {from}");
    }
    drop(shards);
}
