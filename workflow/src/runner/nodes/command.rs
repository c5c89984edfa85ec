//! `command`: runs an external program in the spec's directory, with its output appended to
//! `<run-dir>/logs/<node>.log`. It sees `EDDY_RUN_DIR`, `EDDY_REGISTRY` (absolute paths), `EDDY_NODE` and, when
//! a model version triggered it, `EDDY_MODEL_VERSION`. A non-zero exit, a timeout or Ctrl-C
//! fails the attempt (the child is killed).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{NodeCtx, Outcome};
use crate::error::{Error, Result};
use crate::spec::NodeKind;

const POLL: Duration = Duration::from_millis(20);

pub(crate) async fn run(ctx: &NodeCtx) -> Result<Outcome> {
    let NodeKind::Command(c) = &ctx.spec.kind else {
        unreachable!("command::run on another kind")
    };
    let fail = |message: String| Error::Node {
        node: ctx.spec.name.clone(),
        message,
    };
    let logs = ctx.run_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let log_path = logs.join(format!("{}.log", ctx.spec.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(&log_path, e))?;
    let log2 = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
    // the command runs in the spec's directory: every path it is given is absolute, so that
    // it means the same there as where `eddy run` was started
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| Error::io(p, e));
    let base_dir = absolute(&ctx.wf.base_dir)?;
    let program = if c.program.contains('/') {
        base_dir.join(&c.program)
    } else {
        c.program.clone().into()
    };
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&c.args)
        .current_dir(&base_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .env("EDDY_RUN_DIR", absolute(&ctx.run_dir)?)
        .env("EDDY_REGISTRY", absolute(ctx.registry.root())?)
        .env("EDDY_NODE", &ctx.spec.name);
    if let Some(v) = ctx.input_version {
        cmd.env("EDDY_MODEL_VERSION", v.to_string());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start `{}`: {e}", program.display())))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                return Ok(Outcome {
                    version: ctx.input_version,
                    pass: true,
                    message: Some(format!("`{}` exited 0", c.program)),
                    ..Default::default()
                })
            }
            Ok(Some(status)) => {
                return Err(fail(format!(
                    "`{}` {status} (output in {})",
                    c.program,
                    log_path.display()
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(fail(format!("waiting for `{}`: {e}", c.program))),
        }
        let timed_out = c.timeout.is_some_and(|t| started.elapsed() >= t);
        if timed_out || ctx.stopped() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(if timed_out {
                format!(
                    "`{}` timed out after {:?}",
                    c.program,
                    c.timeout.unwrap_or_default()
                )
            } else {
                format!("`{}` stopped", c.program)
            }));
        }
        tokio::time::sleep(POLL).await;
    }
}
