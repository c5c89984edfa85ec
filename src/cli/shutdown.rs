//! The shutdown signal of every long-running command (`eddy serve`, `eddy ps serve`,
//! `eddy agg --follow`, `eddy learn --follow`, `eddy run`): Ctrl-C (SIGINT) or SIGTERM — what
//! `kill`, systemd, Docker and Kubernetes send — as one future, so each command drains and
//! exits the same way whichever of the two arrives: `server.run(listener, shutdown::signal())`.

use std::future::Future;

use anyhow::Context;

/// Calls `on_first` on the first Ctrl-C or SIGTERM, from a listener thread, for commands that
/// are not async themselves (`eddy learn`, `eddy agg --follow`). The handlers are installed
/// before this returns, so a signal sent right after is handled. With `exit_on_second`, a
/// second signal exits the process at once (status 130) — for a drain that may take long.
pub fn on_signal(
    on_first: impl FnOnce() + Send + 'static,
    exit_on_second: bool,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal listener")?;
    let first = {
        let _inside = rt.enter();
        signal()
    };
    std::thread::Builder::new()
        .name("eddy-signal".into())
        .spawn(move || {
            rt.block_on(first);
            on_first();
            if exit_on_second {
                rt.block_on(signal());
                std::process::exit(130);
            }
        })
        .context("starting the signal listener")?;
    Ok(())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM (on other platforms: Ctrl-C).
///
/// Called inside a Tokio runtime, the handlers are installed at the call, so a signal sent
/// right after it returns is not lost; called outside one, they are installed when the future
/// is first polled. If no handler can be installed, a warning is printed and the future never
/// resolves (the command then runs until it is killed).
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    let early = tokio::runtime::Handle::try_current()
        .ok()
        .map(|_| Handlers::install());
    async move {
        let handlers = match early {
            Some(h) => h,
            None => Handlers::install(),
        };
        match handlers {
            Ok(h) => h.wait().await,
            Err(e) => {
                eprintln!("warning: cannot install the signal handlers ({e}); stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(unix)]
struct Handlers {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Handlers {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Handlers {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Handlers;

#[cfg(not(unix))]
impl Handlers {
    fn install() -> std::io::Result<Self> {
        Ok(Handlers)
    }

    async fn wait(self) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
