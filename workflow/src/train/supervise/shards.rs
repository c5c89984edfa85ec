//! Parameter-server shard processes on loopback: what a job of worker processes starts when
//! it names no running shards (`eddy learn --processes N`, a `stream-train` node with
//! `processes = N`, `eddy bench failover`).
//!
//! Each shard is `<eddy> ps serve --shard I/N --listen 127.0.0.1:0 --data-dir DIR/shard-I`;
//! the first line it prints, `listening on ADDR`, gives its address. The shards keep their
//! snapshots in their data directories, so a job started again on the same directory finds
//! its tables there. Dropping [`ShardProcesses`] kills them (their last snapshot is what they
//! wrote at the job's last epoch).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::error::{Error, Result};

/// Shard processes a job started (killed when dropped).
#[derive(Debug, Default)]
pub struct ShardProcesses {
    children: Vec<Child>,
    addrs: Vec<String>,
}

impl ShardProcesses {
    /// Starts `n` shards of the `eddy` binary `exe` on 127.0.0.1 port 0, shard `i`'s snapshots
    /// in `dir/shard-i`; returns once each has said where it listens.
    pub fn start(exe: &Path, n: usize, dir: &Path) -> Result<ShardProcesses> {
        let mut shards = ShardProcesses::default();
        for i in 0..n {
            let mut child = Command::new(exe)
                .args(["ps", "serve", "--shard", &format!("{i}/{n}")])
                .args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.join(format!("shard-{i}")))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| {
                    Error::InvalidArgument(format!(
                        "starting parameter-server shard {i}/{n} ({}): {e}",
                        exe.display()
                    ))
                })?;
            let mut line = String::new();
            if let Some(out) = child.stdout.take() {
                // a shard that dies before it listens closes its stdout: an empty line
                let _ = BufReader::new(out).read_line(&mut line);
            }
            shards.children.push(child);
            match line.trim().strip_prefix("listening on ") {
                Some(addr) => shards.addrs.push(addr.to_string()),
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "parameter-server shard {i}/{n} did not start (it said {line:?})"
                    )))
                }
            }
        }
        Ok(shards)
    }

    /// Shard `i`'s address at index `i` (`HOST:PORT`).
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The shards as a `--ps` value: `grpc://A,B,…`.
    pub fn uri(&self) -> String {
        format!("grpc://{}", self.addrs.join(","))
    }

    /// Each shard's process id, by index.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for ShardProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
