//! The `eddy` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Environment variables holding the log filter, first found wins: `EDDY_LOG` (eddy's own
/// name, kept as an alias) and `RUST_LOG` (the convention of Rust programs). Same syntax:
/// `info`, `warn,eddy_workflow=debug`, ...
const LOG_VARS: [&str; 2] = ["EDDY_LOG", "RUST_LOG"];

/// Logs to stderr: the level filter from [`LOG_VARS`] (default `warn`; an invalid filter is
/// reported and the default used), text coloured only on a terminal with `NO_COLOR` unset, or
/// JSON lines.
fn init_logging(format: cli::LogFormat) {
    use std::io::IsTerminal;
    let mut filter = None;
    for var in LOG_VARS {
        let Ok(text) = std::env::var(var) else {
            continue;
        };
        match EnvFilter::try_new(&text) {
            Ok(f) => {
                filter = Some(f);
                break;
            }
            Err(e) => eprintln!("warning: {var}={text:?} is not a log filter ({e}); ignored"),
        }
    }
    let filter = filter.unwrap_or_else(|| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init();
        }
    }
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging(args.log_format);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: an error whose message already ends
/// with its source (`path: cause`) does not get that cause repeated after it.
fn render(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
