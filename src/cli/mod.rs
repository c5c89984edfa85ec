//! Subcommands of the `eddy` binary, one module each.
//!
//! | module | command |
//! |---|---|
//! | [`gen`] | `eddy gen ctr`: the synthetic click stream |
//! | [`progress`] | progress bars that stay silent off a terminal |

pub mod gen;
pub mod progress;

use clap::{Parser, Subcommand};

/// eddy: online machine-learning pipelines.
#[derive(Debug, Parser)]
#[command(name = "eddy", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate synthetic data.
    #[command(subcommand)]
    Gen(gen::GenCommand),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Gen(cmd) => gen::run(cmd),
    }
}
