//! `eddy predict --threads N` (#12): the input is read, scored and written in N splits and the
//! output is joined in input order, so it is the same bytes for every thread count — CSV,
//! JSON lines and stdout — and every input row is either scored or a dead letter.

mod common;

use std::path::Path;

use common::{eddy, ok};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The input's columns (the malformed rows must not change inferred types).
const SCHEMA: &str = "label:int64,f0:float64,f1:int64,c0:utf8,c1:utf8";

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A ctr-like CSV of `rows` records (header `label,f0,f1,c0,c1`) in which, when `bad`, about
/// 1 in 40 is malformed (a bad number or a wrong field count), and about 1 in 30 has a quoted field with
/// a newline and a comma, at random places, so that split boundaries fall anywhere. Returns
/// the text, the number of malformed records and the number of well-formed ones with a
/// newline inside (each is two lines of CSV output).
fn input(seed: u64, rows: usize, bad: bool) -> (String, usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut text = String::from("label,f0,f1,c0,c1\n");
    let (mut malformed, mut multi) = (0, 0);
    for i in 0..rows {
        let (f0, f1) = (rng.random_range(-3.0..3.0f32), rng.random_range(0..50));
        let label = u8::from(rng.random_bool(0.3));
        let c0 = format!("v{}", rng.random_range(0..20));
        let c1 = match rng.random_range(0..30) {
            0 => format!("\"multi\nline, {i}\""),
            _ => format!("w{}", rng.random_range(0..200)),
        };
        match if bad { rng.random_range(0..40) } else { 2 } {
            0 => {
                malformed += 1;
                text.push_str(&format!("{label},oops,{f1},{c0},{c1}\n"));
            }
            1 => {
                malformed += 1;
                text.push_str(&format!("{label},{f0},{c0}\n"));
            }
            _ => {
                multi += usize::from(c1.contains('\n'));
                text.push_str(&format!("{label},{f0},{f1},{c0},{c1}\n"));
            }
        }
    }
    (text, malformed, multi)
}

/// Lines of a text file (0 when it does not exist).
fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// The dead letters of `path`, sorted (subtasks meet them in any order).
fn dead_letters(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut v: Vec<String> = text.lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[test]
fn output_is_the_same_bytes_for_any_thread_count_and_every_row_is_accounted_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let train = dir.path().join("train.csv");
    let model = dir.path().join("m.eddy");
    std::fs::write(&train, input(99, 3000, false).0).expect("write");
    ok(&[
        "learn",
        "--data",
        p(&train),
        "--label",
        "label",
        "--hash-bits",
        "16",
        "--checkpoint-every",
        "off",
        "--save",
        p(&model),
    ]);
    for seed in 0..3u64 {
        let rows = 2500 + 700 * seed as usize;
        let (text, bad, multi) = input(seed, rows, true);
        let data = dir.path().join(format!("in-{seed}.csv"));
        std::fs::write(&data, &text).expect("write input");
        for ext in ["csv", "jsonl", "stdout"] {
            let mut first: Option<(Vec<u8>, Vec<String>)> = None;
            for threads in ["1", "2", "3"] {
                let dead = dir
                    .path()
                    .join(format!("dead-{seed}-{ext}-{threads}.jsonl"));
                let out = dir.path().join(format!("out-{seed}-{threads}.{ext}"));
                let mut args = vec![
                    "predict",
                    "--model",
                    p(&model),
                    "--data",
                    p(&data),
                    "--threads",
                    threads,
                    "--dead-letter",
                    p(&dead),
                    "--schema",
                    SCHEMA,
                ];
                if ext != "stdout" {
                    args.extend(["--out", p(&out)]);
                }
                let run = ok(&args);
                let bytes = match ext {
                    "stdout" => run.stdout,
                    _ => std::fs::read(&out).expect("the output exists"),
                };
                // CSV: minus the header row and the second line of each multi-line record
                let csv = usize::from(ext != "jsonl");
                let scored = bytes.iter().filter(|&&b| b == b'\n').count() - csv * (1 + multi);
                let letters = dead_letters(&dead);
                let what = format!("seed {seed}, {ext}, {threads} threads");
                assert_eq!(letters.len(), bad, "{what}: dead letters");
                assert_eq!(
                    scored + letters.len(),
                    rows,
                    "{what}: rows scored + dead letters"
                );
                match &first {
                    None => first = Some((bytes, letters)),
                    Some((one, one_letters)) => {
                        assert!(bytes == *one, "{what}: output differs from 1 thread");
                        assert_eq!(&letters, one_letters, "{what}: dead letters differ");
                    }
                }
                // no part files are left beside the output
                let left: Vec<String> = std::fs::read_dir(dir.path())
                    .expect("read dir")
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(".parts-"))
                    .collect();
                assert!(left.is_empty(), "{what}: {left:?}");
            }
        }
    }
}

#[test]
fn a_failing_split_fails_the_job_and_leaves_no_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let train = dir.path().join("train.csv");
    let model = dir.path().join("m.eddy");
    std::fs::write(&train, input(5, 2000, false).0).expect("write");
    ok(&[
        "learn",
        "--data",
        p(&train),
        "--label",
        "label",
        "--hash-bits",
        "16",
        "--checkpoint-every",
        "off",
        "--save",
        p(&model),
    ]);
    // a malformed row near the end (in the last split) under --on-error fail
    let (text, _, _) = input(6, 3000, false);
    let data = dir.path().join("in.csv");
    std::fs::write(&data, format!("{text}1,oops,3,v1,w1\n")).expect("write");
    let out = dir.path().join("out.csv");
    let run = eddy(&[
        "predict",
        "--model",
        p(&model),
        "--data",
        p(&data),
        "--threads",
        "2",
        "--out",
        p(&out),
        "--on-error",
        "fail",
        "--schema",
        SCHEMA,
    ]);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("in.csv:"), "the error names the place: {err}");
    assert!(!out.exists(), "a failed job published its output");
    assert_eq!(lines(&out), 0);
}
