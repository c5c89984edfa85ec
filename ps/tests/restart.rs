//! Shard servers restarting from their data directory: a graceful stop snapshots and a
//! restart restores it; a killed shard comes back from its last snapshot, the client rides
//! through the outage and counts the acknowledged updates the shard lost.

use std::path::Path;
use std::time::Duration;

use eddy_algorithms::optim::SgdParams;
use eddy_ps::{ParamStore, PsClient, PsClientConfig, PsServerConfig, TableConfig};
use tokio::runtime::Runtime;

/// A shard server on a runtime of its own, so killing it drops every connection too.
struct Server {
    rt: Runtime,
    addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<eddy_ps::Result<()>>,
    restored: bool,
}

fn serve(listen: &str, dir: &Path) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = PsServerConfig {
        data_dir: Some(dir.to_path_buf()),
        // only the snapshot a graceful stop takes
        snapshot_interval: Duration::from_secs(3600),
        ..PsServerConfig::new(0, 1)
    }
    .open()
    .unwrap();
    let restored = server.restored_from().is_some();
    // the port of a killed server is free again once its runtime has wound down
    let listener = loop {
        match rt.block_on(tokio::net::TcpListener::bind(listen)) {
            Ok(l) => break l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    };
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = rt.spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Server {
        rt,
        addr,
        stop,
        done,
        restored,
    }
}

impl Server {
    /// Stops gracefully (the server writes its last snapshot).
    fn stop(self) {
        self.stop.send(()).unwrap();
        self.rt.block_on(self.done).unwrap().unwrap();
    }

    /// Kills the server: no last snapshot.
    fn kill(self) {
        self.rt.shutdown_background();
    }
}

fn sgd_table() -> Vec<TableConfig> {
    vec![TableConfig {
        rule: eddy_algorithms::optim::RuleParams::Sgd(SgdParams::constant(1.0)),
        ..TableConfig::new("w", 1)
    }]
}

fn push(rt: &Runtime, c: &PsClient, keys: std::ops::Range<u64>) {
    let keys: Vec<u64> = keys.collect();
    rt.block_on(c.push("w", &keys, &vec![1.0; keys.len()], None))
        .unwrap();
}

fn pull(rt: &Runtime, c: &PsClient, keys: std::ops::Range<u64>) -> Vec<f32> {
    let keys: Vec<u64> = keys.collect();
    let mut out = Vec::new();
    rt.block_on(c.pull("w", &keys, &mut out)).unwrap();
    out
}

#[test]
fn a_restarted_shard_restores_its_snapshot_and_lost_updates_are_counted() {
    let dir = std::env::temp_dir().join(format!("eddy-ps-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let first = serve("127.0.0.1:0", &dir);
    assert!(!first.restored, "an empty data directory: a fresh shard");
    let addr = first.addr.clone();
    let client = rt
        .block_on(PsClientConfig::new(vec![addr.clone()], sgd_table()).connect())
        .unwrap();
    push(&rt, &client, 0..50);
    // a graceful stop snapshots; the restart restores: nothing lost
    first.stop();
    let second = serve(&addr, &dir);
    assert!(second.restored);
    assert_eq!(pull(&rt, &client, 0..50), vec![-1.0; 50]);
    push(&rt, &client, 0..30);
    assert_eq!(client.restarts(), 1);
    assert_eq!(client.lost_updates(), 0);
    // killed before its next snapshot: the 30 updates since are lost, and counted
    second.kill();
    let third = serve(&addr, &dir);
    assert!(third.restored);
    push(&rt, &client, 100..101);
    assert_eq!(client.restarts(), 2);
    assert_eq!(client.lost_updates(), 30);
    let mut want = vec![-1.0; 50];
    want.push(-1.0);
    let mut keys = pull(&rt, &client, 0..50);
    keys.extend(pull(&rt, &client, 100..101));
    assert_eq!(keys, want, "back to the snapshot, plus the new push");
    // killed with no snapshot at all after a fresh start in an empty directory: the client
    // declares the tables again and every acknowledged update is counted lost
    third.kill();
    std::fs::remove_dir_all(&dir).unwrap();
    let fourth = serve(&addr, &dir);
    assert!(!fourth.restored);
    push(&rt, &client, 0..10);
    assert_eq!(client.restarts(), 3);
    assert_eq!(
        client.lost_updates(),
        30 + 51,
        "the third incarnation held 50 restored + 1 new updates; none survive"
    );
    assert_eq!(
        pull(&rt, &client, 0..11),
        [vec![-1.0; 10], vec![0.0]].concat()
    );
    fourth.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreachable_shard_fails_after_the_retries_naming_shard_and_address() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // bind, then close: nothing listens on this port any more
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let cfg = PsClientConfig {
        retry_for: Duration::from_millis(200),
        backoff: Duration::from_millis(10),
        ..PsClientConfig::new(vec![addr.clone()], sgd_table())
    };
    match rt.block_on(cfg.connect()) {
        Err(eddy_ps::Error::Remote {
            shard, addr: a, op, ..
        }) => {
            assert_eq!((shard, a.as_str(), op), (0, addr.as_str(), "configure"));
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
}
