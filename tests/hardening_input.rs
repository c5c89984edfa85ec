//! Issue #14's input cases through the `eddy` binary: `agg` on hostile files, a FIFO and
//! `/dev/zero` as input, `gen --out -`, and errors that name their cause once. Input tests
//! check the accounting identity: rows aggregated + dead letters = rows in the file.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{eddy, ok};

const SCHEMA: &str = "label:int64,f0:float64,c0:utf8,ts:int64";

/// `rows` data lines `label,f0,c0,ts` (ts 1 ms apart) after a header; `special` replaces some.
fn events(rows: usize, special: &[(usize, &str)]) -> String {
    let mut s = String::from("label,f0,c0,ts\n");
    for i in 0..rows {
        match special.iter().find(|(at, _)| *at == i) {
            Some((_, line)) => s.push_str(line),
            None => s.push_str(&format!("{},{}.5,k{},{}", i % 2, i % 7, i % 3, 1_000 + i)),
        }
        s.push('\n');
    }
    s
}

/// The rows counted by an `agg --agg count` output file (sum of its `count` column).
fn counted(out: &Path) -> u64 {
    let text = std::fs::read_to_string(out).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "count").unwrap();
    lines
        .map(|l| l.split(',').nth(at).unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The `dead_letters` of an `agg --json` summary (its last stdout line).
fn dead_letters(out: &Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    summary["dead_letters"].as_u64().unwrap()
}

fn agg_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "agg", "--data", data, "--key", "c0", "--time", "ts", "--window", "1s", "--out", out,
        "--json",
    ]
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Waits for `child` at most `limit`, killing it (and failing the test) when it runs longer.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {limit:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn agg_an_empty_event_time_is_a_dead_letter_and_a_failed_job_leaves_no_output() {
    // #14 case 9: one empty `ts` failed the job ("ts has null values") with partial output
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("events.csv");
    std::fs::write(&data, events(300, &[(48, "1,2.5,k1,")])).unwrap();
    let out = dir.path().join("out.csv");
    let dead = dir.path().join("dead.jsonl");
    for p in ["1", "2"] {
        let mut args = agg_args(s(&data), s(&out));
        args.extend(["--dead-letter", s(&dead), "--parallelism", p]);
        let run = ok(&args);
        assert_eq!(
            (counted(&out), dead_letters(&run)),
            (299, 1),
            "parallelism {p}"
        );
        let rejected: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(&dead).unwrap().trim()).unwrap();
        assert_eq!(
            (rejected["line"].as_u64(), rejected["column"].as_u64()),
            (Some(50), Some(4))
        );
    }
    // under --on-error fail the job fails naming the place, and leaves no partial output
    let mut args = agg_args(s(&data), s(&out));
    args.extend(["--on-error", "fail"]);
    let run = eddy(&args);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("events.csv:50:4"), "{stderr}");
    assert!(!out.exists(), "a failed job left {}", out.display());
}

#[test]
fn agg_reads_every_row_past_a_stray_quote_at_any_parallelism() {
    // #14 case 1 end to end: 31 of 100 rows read, exit 0, nothing dead-lettered
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("stray.csv");
    std::fs::write(&data, events(100, &[(30, "0,2.0,ab\"cd,1030")])).unwrap();
    let out = dir.path().join("out.csv");
    for p in ["1", "2"] {
        let mut args = agg_args(s(&data), s(&out));
        args.extend(["--parallelism", p]);
        let run = ok(&args);
        assert_eq!(
            (counted(&out), dead_letters(&run)),
            (100, 0),
            "parallelism {p}"
        );
    }
}

#[test]
fn a_record_over_max_record_bytes_is_a_dead_letter_in_agg_and_learn() {
    // #14 case 17, the configurable limit: one 3 kB record among 200, limit 1 kB
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("long.csv");
    let long = format!("1,2.5,{},1050", "x".repeat(3000));
    std::fs::write(&data, events(200, &[(50, &long)])).unwrap();
    let out = dir.path().join("out.csv");
    for p in ["1", "2"] {
        let mut args = agg_args(s(&data), s(&out));
        args.extend(["--parallelism", p, "--max-record-bytes", "1024"]);
        let run = ok(&args);
        assert_eq!(
            (counted(&out), dead_letters(&run)),
            (199, 1),
            "agg parallelism {p}: rows + dead letters = 200"
        );
    }
    let learned = ok(&[
        "learn",
        "--data",
        s(&data),
        "--label",
        "label",
        "--checkpoint-every",
        "off",
        "--max-record-bytes",
        "1024",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&learned.stdout).unwrap();
    assert_eq!(report["rows"], 199, "{report}");
    let err = String::from_utf8_lossy(&learned.stderr);
    assert!(err.contains("malformed records: 1"), "{err}");
}

#[test]
fn a_fifo_is_read_once_in_full_and_without_a_schema_is_refused_at_once() {
    // #14 case 3: the schema probe closed the FIFO (its writer died of SIGPIPE) and the reader
    // then hung; with two writers 0 rows were read and the exit status was 0
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = dir.path().join("out.csv");

    // no writer at all: refused without opening (opening would block)
    let run = wait_bounded(
        spawn(&agg_args(s(&fifo), s(&out))),
        Duration::from_secs(30),
        "agg on a FIFO without a schema",
    );
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("FIFO") && stderr.contains("schema"),
        "{stderr}"
    );

    // parallelism 2: every row, once (subtask 0 reads the stream, subtask 1 nothing)
    let body = events(500, &[]);
    let data: String = body.lines().skip(1).map(|l| format!("{l}\n")).collect();
    // each writer opens the FIFO, waits until every writer has it open (so that the reader
    // sees the end only after the last one), then writes line by line (atomic pipe writes)
    let writers = |texts: Vec<String>| {
        let ready = std::sync::Arc::new(std::sync::Barrier::new(texts.len()));
        texts
            .into_iter()
            .map(|text| {
                let (fifo, ready) = (fifo.clone(), ready.clone());
                std::thread::spawn(move || {
                    let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                    ready.wait();
                    for line in text.lines() {
                        f.write_all(format!("{line}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    let mut args = agg_args(s(&fifo), s(&out));
    args.extend(["--schema", SCHEMA, "--parallelism", "2", "--format", "csv"]);
    let child = spawn(&args);
    let threads = writers(vec![body.clone()]);
    let run = wait_bounded(child, Duration::from_secs(60), "agg on a FIFO");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!((counted(&out), dead_letters(&run)), (500, 0));

    // two writers at once: both are read to their end. Whichever line comes first is taken
    // as the header (the other writer's header, if it comes later, is a dead letter), so
    // rows + dead letters = the 1,000 data lines written
    let child = spawn(&args);
    let threads = writers(vec![body, data]);
    let run = wait_bounded(child, Duration::from_secs(60), "agg on a FIFO, two writers");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(counted(&out) + dead_letters(&run), 1000);
}

/// The resident set of process `pid` in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn dev_zero_as_input_keeps_memory_bounded() {
    // #14 case 17: /dev/zero (one endless record) grew memory at 170 MB/s; a record over the
    // 16 MiB limit is now a dead letter skipped in bounded memory. Bounded: 3 s of reading.
    if !Path::new("/proc/self/status").exists() {
        return; // no procfs to measure with
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let args = [
        "agg",
        "--data",
        "/dev/zero",
        "--schema",
        SCHEMA,
        "--key",
        "c0",
        "--time",
        "ts",
        "--window",
        "1s",
        "--out",
        s(&out),
    ];
    let mut child = spawn(&args);
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            child.try_wait().unwrap().is_none(),
            "eddy stopped reading /dev/zero"
        );
        peak = peak.max(rss(child.id()).unwrap_or(0));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // before: over 500 MB after 3 s; now about 50 MB (the 16 MiB record buffer included)
    assert!(peak > 0 && peak < 128 << 20, "peak RSS {peak} bytes");
}

#[test]
fn gen_out_dash_writes_to_stdout_and_no_file() {
    // #14 case 25: `--out -` wrote a file named `-`
    let dir = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["gen", "ctr", "--rows", "25", "--out", "-"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(run.status.success());
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 26, "header + 25 rows");
    assert!(stdout.starts_with("label,f0,"));
    assert!(!dir.path().join("-").exists());
    let jsonl = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "gen", "ctr", "--rows", "5", "--format", "jsonl", "--out", "-",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(jsonl.stdout).unwrap().lines().count(), 5);
    let oracle = eddy(&["gen", "ctr", "--rows", "5", "--out", "-", "--oracle"]);
    assert!(!oracle.status.success(), "--oracle would mix into the rows");
}

#[test]
fn a_missing_or_compressed_input_names_its_cause_once() {
    // #14 case 25: "x.csv: No such file or directory (os error 2): No such file or directory"
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.csv");
    let out = dir.path().join("out.csv");
    let run = eddy(&agg_args(s(&missing), s(&out)));
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("missing.csv"), "{stderr}");
    // #14 case 24: a gzip file is refused naming its format, not read as garbage rows
    let gz = dir.path().join("events.csv.gz");
    std::fs::write(
        &gz,
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcbH\xcd\xc9\xc9\x07\x00",
    )
    .unwrap();
    let run = eddy(&agg_args(s(&gz), s(&out)));
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("gzip") && stderr.contains("events.csv.gz"),
        "{stderr}"
    );
    let missing_out = dir.path().join("file").join("x.csv");
    std::fs::write(dir.path().join("file"), "").unwrap();
    let run = eddy(&["gen", "ctr", "--rows", "5", "--out", s(&missing_out)]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
}
