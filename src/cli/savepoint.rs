//! `eddy savepoint`: asks a running job to take a named savepoint.
//!
//! ```text
//! eddy savepoint --checkpoint-dir ckpt before-upgrade
//! ```
//!
//! A job run with `--checkpoint-dir DIR` (`eddy agg`, `eddy learn`) polls `DIR/savepoints/` for request files
//! `NAME.request` while it runs. This command writes one (atomically), then waits until the job
//! has written the savepoint `DIR/savepoints/NAME/` (it prints its path) or reports a failure in
//! `NAME.failed`. A new job starts from it with `--from-savepoint DIR/savepoints/NAME`, possibly
//! at another parallelism.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use eddy_core::checkpoint::store::SAVEPOINTS;
use eddy_core::dataflow::JobHandle;

use super::duration;

const REQUEST: &str = ".request";
const FAILED: &str = ".failed";

/// Arguments of `eddy savepoint`.
#[derive(Debug, Clone, Args)]
pub struct SavepointArgs {
    /// The running job's checkpoint directory (its `--checkpoint-dir`).
    #[arg(long)]
    pub checkpoint_dir: PathBuf,
    /// Name of the savepoint: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// How long to wait for the job to take it.
    #[arg(long, default_value = "60s", value_parser = duration::parse)]
    pub timeout: Duration,
}

/// Runs `eddy savepoint`: requests the savepoint and waits for it.
pub fn run(args: SavepointArgs) -> anyhow::Result<()> {
    let dir = args.checkpoint_dir.join(SAVEPOINTS);
    let name = &args.name;
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        bail!("`{name}` is not a savepoint name: use letters, digits, `-`, `_` and `.`");
    }
    let target = dir.join(name);
    if target.exists() {
        bail!("savepoint `{name}` exists already: {}", target.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let failed = dir.join(format!("{name}{FAILED}"));
    let _ = std::fs::remove_file(&failed);
    let request = dir.join(format!("{name}{REQUEST}"));
    let tmp = dir.join(format!(".tmp-{name}{REQUEST}"));
    std::fs::write(&tmp, name.as_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &request).with_context(|| format!("writing {}", request.display()))?;
    let deadline = Instant::now() + args.timeout;
    loop {
        if target.join("MANIFEST.json").is_file() {
            println!("{}", target.display());
            return Ok(());
        }
        if let Ok(message) = std::fs::read_to_string(&failed) {
            let _ = std::fs::remove_file(&failed);
            bail!("savepoint `{name}` failed: {message}");
        }
        if Instant::now() > deadline {
            let _ = std::fs::remove_file(&request);
            bail!(
                "no job took savepoint `{name}` within {:?}: is a job running with \
                 --checkpoint-dir {}?",
                args.timeout,
                args.checkpoint_dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Takes the savepoints requested in `checkpoint_dir` (called by a running job's loop): each
/// request file is removed, the savepoint taken, and a failure written to `NAME.failed`.
pub fn serve_requests(handle: &JobHandle, checkpoint_dir: &Path) {
    let dir = checkpoint_dir.join(SAVEPOINTS);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(REQUEST).filter(|n| !n.starts_with('.')) else {
            continue;
        };
        if std::fs::remove_file(entry.path()).is_err() {
            continue; // taken by someone else
        }
        match handle.savepoint(name) {
            Ok(path) => eprintln!("savepoint `{name}`: {}", path.display()),
            Err(e) => {
                eprintln!("savepoint `{name}` failed: {e}");
                let _ = std::fs::write(dir.join(format!("{name}{FAILED}")), e.to_string());
            }
        }
    }
}
