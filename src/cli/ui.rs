//! `eddy ui RUN_DIR`: the dashboard of a finished or running workflow run — its DAG and node
//! states (re-read from `state.json` at every request), its registry's versions (with the
//! promote / roll back / pin actions) and the run's metrics — on `--listen` (127.0.0.1:8686
//! by default) until Ctrl-C. Prints the dashboard URL (with the action token) at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use eddy_workflow::runner;
use eddy_workflow::ui::{self, Dashboard};

/// Arguments of `eddy ui`.
#[derive(Debug, Clone, Args)]
pub struct UiArgs {
    /// The run directory (`eddy run --run-dir`).
    pub run_dir: PathBuf,
    /// The dashboard's address (loopback unless told otherwise; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8686")]
    pub listen: SocketAddr,
}

/// Runs `eddy ui`.
pub fn run(args: UiArgs) -> anyhow::Result<()> {
    let state = runner::RunState::load(&args.run_dir)?;
    let Some(state) = state else {
        bail!(
            "{} holds no run (no {}): run `eddy run SPEC --run-dir {0}` first",
            args.run_dir.display(),
            runner::STATE_FILE
        );
    };
    let registry = runner::registry_of(&args.run_dir)?;
    let dashboard = Dashboard::new(format!("run {}", state.workflow))
        .with_run(args.run_dir.clone(), None)
        .with_registry(registry);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let signal = super::shutdown::signal();
        let dashboard = Arc::new(dashboard);
        eprintln!("dashboard at {}", dashboard.url(listener.local_addr()?));
        ui::api::serve(dashboard, listener, signal).await?;
        Ok(())
    })
}

/// The dashboard of `eddy learn --ui ADDR`: the job's training page and `/metrics`, served
/// from a thread of its own until the returned guard is dropped. `None` without `--ui`.
pub fn learn_dashboard(
    addr: Option<SocketAddr>,
    feed: Option<Arc<ui::TrainFeed>>,
    metrics: &eddy_core::metrics::MetricsRegistry,
) -> anyhow::Result<Option<UiGuard>> {
    let (Some(addr), Some(feed)) = (addr, feed) else {
        return Ok(None);
    };
    let dashboard = Arc::new(Dashboard::new("learn").with_training(ui::Training {
        name: "learn".into(),
        metrics: metrics.clone(),
        feed,
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the dashboard's runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("binding the dashboard to {addr}"))?;
    eprintln!("dashboard at {}", dashboard.url(listener.local_addr()?));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("eddy-ui".into())
        .spawn(move || {
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(e) = rt.block_on(ui::api::serve(dashboard, listener, stopped)) {
                tracing::error!(error = %e, "the dashboard stopped");
            }
        })
        .context("starting the dashboard thread")?;
    Ok(Some(UiGuard {
        stop: Some(stop),
        thread: Some(thread),
    }))
}

/// Stops a dashboard thread when dropped.
#[derive(Debug)]
pub struct UiGuard {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for UiGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
