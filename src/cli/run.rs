//! `eddy run WORKFLOW.toml`: executes a workflow in this process (files, a local registry under
//! the run directory), with a live status line per node on a terminal and a summary at the
//! end. Ctrl-C stops cleanly; running it again on the same run directory resumes (completed
//! nodes are not re-run). `--json` prints the final run state on stdout.
//!
//! While it runs, the dashboard (DAG, training with per-operator backpressure and source lag,
//! models, and the serve nodes' serving figures; `/metrics` with all of them) is served on
//! `--ui` (127.0.0.1, a free port by default; `--no-ui` turns it off); its URL,
//! with the action token, is printed at start. `eddy ui RUN_DIR` shows it after the run.
//!
//! Exit status: 0 when every node succeeded or the run was stopped (Ctrl-C); 1 when a node
//! failed — including a `serve` node that never had a version to serve (its gate rejected
//! every version), so "nothing deployed" is never a success.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use clap::Args;
use eddy_workflow::runner::{self, NodeStatus, RunOptions, RunState};
use eddy_workflow::spec::Workflow;
use eddy_workflow::ui::{self, Dashboard};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::status::node_lines;

/// Arguments of `eddy run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The workflow spec (TOML).
    pub workflow: PathBuf,
    /// The run directory: state, registry, logs (default `eddy-runs/<workflow name>`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Keep serving after the rest of the workflow finished, until Ctrl-C.
    #[arg(long)]
    pub serve_forever: bool,
    /// Start over: delete the run directory's state, registry and logs first.
    #[arg(long)]
    pub fresh: bool,
    /// Print the final run state (`state.json`: every node's status, rows, metrics, versions,
    /// errors) as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// The dashboard's address (loopback unless told otherwise; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub ui: std::net::SocketAddr,
    /// Serve no dashboard.
    #[arg(long)]
    pub no_ui: bool,
}

/// Live status: one spinner per node on a terminal, one line per state change otherwise.
struct Status {
    bars: Option<(MultiProgress, BTreeMap<String, ProgressBar>)>,
    last: Mutex<BTreeMap<String, (NodeStatus, u32)>>,
    curl_shown: Mutex<bool>,
}

impl Status {
    fn new(wf: &Workflow) -> Status {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let style = ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bars = wf
                .nodes
                .iter()
                .map(|n| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(style.clone());
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    (n.name.clone(), bar)
                })
                .collect();
            (multi, bars)
        });
        Status {
            bars,
            last: Mutex::new(BTreeMap::new()),
            curl_shown: Mutex::new(false),
        }
    }

    fn update(&self, state: &RunState) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for (name, n) in &state.nodes {
            let note = n
                .error
                .clone()
                .or_else(|| n.message.clone())
                .unwrap_or_default();
            let line = format!(
                "{name:<16} {:<11} rows {:<9} versions {:<4} {note}",
                n.status.word(),
                n.rows,
                n.versions.len()
            );
            match &self.bars {
                Some((_, bars)) => {
                    if let Some(bar) = bars.get(name) {
                        bar.set_message(line);
                        if matches!(n.status, NodeStatus::Failed | NodeStatus::Skipped) {
                            bar.disable_steady_tick();
                        }
                    }
                }
                None => {
                    let key = (n.status, n.runs);
                    if last.get(name) != Some(&key) {
                        last.insert(name.clone(), key);
                        if n.status != NodeStatus::Pending {
                            eprintln!(
                                "[{name}] {}{}",
                                n.status.word(),
                                if note.is_empty() {
                                    String::new()
                                } else {
                                    format!(": {note}")
                                }
                            );
                        }
                    }
                }
            }
        }
        if let (Some(url), true) = (&state.serving, state.settled) {
            let mut shown = self.curl_shown.lock().unwrap_or_else(|p| p.into_inner());
            if !*shown {
                *shown = true;
                let text = serving_lines(url, state.serving_example.as_deref()).join("\n");
                match &self.bars {
                    Some((multi, _)) => {
                        let _ = multi.println(text);
                    }
                    None => eprintln!("{text}"),
                }
            }
        }
    }

    fn finish(&self) {
        if let Some((multi, bars)) = &self.bars {
            for bar in bars.values() {
                bar.finish();
            }
            let _ = multi.clear();
        }
    }
}

fn serving_lines(url: &str, curl: Option<&str>) -> Vec<String> {
    let mut out = vec![format!("serving at {url}")];
    if let Some(c) = curl {
        out.push("try:".into());
        out.push(format!("  {c}"));
    }
    out
}

/// Runs `eddy run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.workflow)
        .with_context(|| format!("reading {}", args.workflow.display()))?;
    let wf = Workflow::load(&args.workflow)?;
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("eddy-runs").join(&wf.name));
    if args.fresh {
        for sub in [runner::STATE_FILE, runner::REGISTRY_DIR, "logs"] {
            let p = run_dir.join(sub);
            let result = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            if let Err(e) = result {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(e).with_context(|| format!("removing {}", p.display()));
                }
            }
        }
    }
    let status = Arc::new(Status::new(&wf));
    let s2 = status.clone();
    let board = runner::RunBoard::default();
    let mut dashboard = Dashboard::new(format!("run {}", wf.name))
        .with_run(run_dir.clone(), Some(&wf))
        .with_registry(runner::registry_of(&run_dir)?)
        .with_jobs(board.jobs.clone());
    if wf
        .nodes
        .iter()
        .any(|n| matches!(n.kind, eddy_workflow::spec::NodeKind::Serve(_)))
    {
        dashboard = dashboard.with_servers(board.servers.clone());
    }
    let dashboard = Arc::new(dashboard);
    let d2 = dashboard.clone();
    let opts = RunOptions {
        run_dir: run_dir.clone(),
        spec_path: args.workflow.clone(),
        spec_hash: runner::state::spec_hash(&text),
        on_update: Some(Arc::new(move |state: &RunState| {
            d2.update_run(state);
            s2.update(state);
        })),
        serve_forever: args.serve_forever,
        program: std::env::current_exe().ok(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // the handlers go in now, before the run says anything a supervisor may wait for
    let signal = {
        let _inside = rt.enter();
        super::shutdown::signal()
    };
    let (ui_stop, ui_stopped) = tokio::sync::oneshot::channel::<()>();
    let ui_task = match args.no_ui {
        true => None,
        false => {
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(args.ui))
                .with_context(|| format!("binding the dashboard to {}", args.ui))?;
            eprintln!("dashboard at {}", dashboard.url(listener.local_addr()?));
            let stopped = async {
                let _ = ui_stopped.await;
            };
            Some(rt.spawn(ui::api::serve(dashboard.clone(), listener, stopped)))
        }
    };
    let summary = rt.block_on(runner::run_showing(wf, opts, board, signal))?;
    let _ = ui_stop.send(());
    if let Some(task) = ui_task {
        rt.block_on(task)
            .context("the dashboard task")?
            .context("serving the dashboard")?;
    }
    status.finish();
    let state = &summary.state;
    eprintln!(
        "{} `{}` in {}",
        if summary.interrupted {
            "stopped"
        } else {
            "finished"
        },
        state.workflow,
        run_dir.display()
    );
    for line in node_lines(state) {
        eprintln!("{line}");
    }
    let published: usize = state.nodes.values().map(|n| n.versions.len()).sum();
    eprintln!(
        "versions published: {published} (registry {})",
        summary.registry.display()
    );
    if let Some(url) = &state.serving {
        eprintln!("served at {url} (stopped with the run)");
    }
    if summary.interrupted {
        eprintln!(
            "run `eddy run {} --run-dir {}` again to resume",
            args.workflow.display(),
            run_dir.display()
        );
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(state).context("writing the run state as JSON")?
        );
    }
    let failed = summary.failed();
    if !failed.is_empty() {
        bail!("{} node(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}
