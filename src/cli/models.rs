//! `eddy models`: the models of a registry and their versions, and stage changes.
//!
//! ```text
//! eddy models --registry DIR                 every model: versions, newest, production, pin
//! eddy models --registry DIR NAME            every version of NAME: stage, rows, metrics, lineage
//! eddy models --registry DIR promote NAME VERSION [--stage production]
//! eddy models --registry DIR archive NAME VERSION
//! eddy models --registry DIR pin NAME VERSION
//! eddy models --registry DIR unpin NAME
//! ```
//! `--json` prints JSON instead of a table.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use eddy_workflow::registry::{Registry, Stage, VersionMeta};
use eddy_workflow::serving::policy::{parse_stage, stage_name};

/// Arguments of `eddy models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// The model registry directory.
    #[arg(long, global = true)]
    pub registry: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Show the versions of this model (default: list the models).
    pub name: Option<String>,
    /// A stage change.
    #[command(subcommand)]
    pub action: Option<ModelsAction>,
}

/// Stage changes of `eddy models`.
#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Move a version to a stage (default production; the previous production version is
    /// archived).
    Promote {
        /// The model.
        name: String,
        /// The version.
        version: u64,
        /// candidate, validated, production or archived.
        #[arg(long, default_value = "production", value_parser = parse_stage_arg)]
        stage: Stage,
    },
    /// Archive a version.
    Archive {
        /// The model.
        name: String,
        /// The version.
        version: u64,
    },
    /// Pin a version (servers with the `@pinned` policy serve it).
    Pin {
        /// The model.
        name: String,
        /// The version.
        version: u64,
    },
    /// Remove the pin of a model.
    Unpin {
        /// The model.
        name: String,
    },
}

fn parse_stage_arg(s: &str) -> Result<Stage, String> {
    parse_stage(s).ok_or_else(|| {
        format!("unknown stage `{s}` (expected candidate, validated, production or archived)")
    })
}

/// Runs `eddy models`.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let dir = args
        .registry
        .clone()
        .context("--registry DIR is required")?;
    let registry = Registry::open_existing(&dir)
        .with_context(|| format!("opening the registry {}", dir.display()))?;
    match args.action {
        Some(action) => change(&registry, action, args.json),
        None => match &args.name {
            Some(name) => show_versions(&registry, name, args.json),
            None => list_models(&registry, args.json),
        },
    }
}

fn change(registry: &Registry, action: ModelsAction, json: bool) -> anyhow::Result<()> {
    let meta = match action {
        ModelsAction::Promote {
            name,
            version,
            stage,
        } => registry
            .promote(&name, version, stage)
            .with_context(|| format!("promoting {name} version {version}"))?,
        ModelsAction::Archive { name, version } => registry
            .archive(&name, version)
            .with_context(|| format!("archiving {name} version {version}"))?,
        ModelsAction::Pin { name, version } => {
            registry
                .pin(&name, version)
                .with_context(|| format!("pinning {name} version {version}"))?;
            registry.get(&name, version)?
        }
        ModelsAction::Unpin { name } => {
            registry
                .unpin(&name)
                .with_context(|| format!("unpinning {name}"))?;
            println!("{name}: unpinned");
            return Ok(());
        }
    };
    if json {
        println!("{}", serde_json::to_string(&meta)?);
    } else {
        println!(
            "{} version {}: {}{}",
            meta.model,
            meta.version,
            stage_name(meta.stage),
            pin_note(registry, &meta.model, meta.version)?
        );
    }
    Ok(())
}

fn pin_note(registry: &Registry, name: &str, version: u64) -> anyhow::Result<&'static str> {
    Ok(if registry.pinned(name)? == Some(version) {
        " (pinned)"
    } else {
        ""
    })
}

fn list_models(registry: &Registry, json: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for name in registry.models()? {
        // One unreadable model (a corrupt PIN, an unreadable directory) is a warning, not the
        // end of the listing.
        let versions = match registry.versions(&name) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("warning: model `{name}` skipped: {e}");
                continue;
            }
        };
        let latest = versions.last().map(|m| m.version);
        let production = versions
            .iter()
            .rev()
            .find(|m| m.stage == Stage::Production)
            .map(|m| m.version);
        let pinned = registry.pinned(&name).unwrap_or_else(|e| {
            eprintln!("warning: model `{name}`: {e}");
            None
        });
        rows.push(serde_json::json!({
            "name": name,
            "versions": versions.len(),
            "latest": latest,
            "production": production,
            "pinned": pinned,
            "metrics": versions.last().map(|m| m.metrics.clone()).unwrap_or_default(),
        }));
    }
    if json {
        println!("{}", serde_json::json!({ "models": rows }));
        return Ok(());
    }
    println!(
        "{:<24} {:>8} {:>8} {:>10} {:>7}  latest metrics",
        "model", "versions", "latest", "production", "pinned"
    );
    let dash = |v: &serde_json::Value| {
        v.as_u64()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into())
    };
    for r in &rows {
        println!(
            "{:<24} {:>8} {:>8} {:>10} {:>7}  {}",
            r["name"].as_str().unwrap_or_default(),
            r["versions"],
            dash(&r["latest"]),
            dash(&r["production"]),
            dash(&r["pinned"]),
            metrics_text(&serde_json::from_value(r["metrics"].clone()).unwrap_or_default())
        );
    }
    Ok(())
}

fn metrics_text(metrics: &std::collections::BTreeMap<String, f64>) -> String {
    metrics
        .iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn show_versions(registry: &Registry, name: &str, json: bool) -> anyhow::Result<()> {
    let versions: Vec<VersionMeta> = registry
        .versions(name)
        .with_context(|| format!("reading model `{name}`"))?;
    if versions.is_empty() {
        anyhow::bail!(
            "model `{name}` has no versions in {}",
            registry.root().display()
        );
    }
    let pinned = registry.pinned(name)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "model": name, "pinned": pinned, "versions": versions })
        );
        return Ok(());
    }
    println!(
        "{:>7} {:<11} {:>6} {:>12} {:>20} {:>6}  metrics / data",
        "version", "stage", "pinned", "rows", "created (UTC ms)", "parent"
    );
    for m in &versions {
        println!(
            "{:>7} {:<11} {:>6} {:>12} {:>20} {:>6}  {}{}",
            m.version,
            stage_name(m.stage),
            if pinned == Some(m.version) { "yes" } else { "" },
            m.training_rows,
            m.created_ms,
            m.lineage
                .parent
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            metrics_text(&m.metrics),
            m.lineage
                .data
                .as_ref()
                .map(|d| format!("  data={d}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
