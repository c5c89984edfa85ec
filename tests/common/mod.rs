//! Running the `eddy` binary from the end-to-end tests.

#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `eddy ARGS` to completion.
pub fn eddy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .output()
        .expect("the eddy binary runs")
}

/// Runs `eddy ARGS`, failing the test (with its output) unless it succeeds.
pub fn ok(args: &[&str]) -> Output {
    let out = eddy(args);
    assert!(
        out.status.success(),
        "eddy {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The standard output of a successful `eddy ARGS`.
pub fn ok_stdout(args: &[&str]) -> String {
    String::from_utf8(ok(args).stdout).expect("utf-8 output")
}
