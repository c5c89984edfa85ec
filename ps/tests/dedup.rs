//! Idempotent pushes: a stamped push is applied once however often it arrives — sent twice by
//! hand over gRPC, replayed after a snapshot + restore or a restart from the data directory,
//! or retried by the real client after a reply that never came — while unstamped pushes are
//! applied every time. Shards run in process on 127.0.0.1 port 0.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use eddy_algorithms::optim::{RuleParams, SgdParams};
use eddy_ps::grpc::proto::ps_shard_client::PsShardClient;
use eddy_ps::grpc::proto::{
    ConfigureRequest, PullRequest, PushRequest, RestoreRequest, SnapshotRequest, StatsReply,
    StatsRequest,
};
use eddy_ps::{
    Error, LocalPsConfig, ParamStore, PsClientConfig, PsServerConfig, PushOutcome, PushReplyDelay,
    PushStamp, TableConfig,
};
use tonic::transport::Channel;

/// One table `w` of dim 1 under plain SGD with rate 1: a gradient of 1 moves a weight by -1.
fn tables() -> Vec<TableConfig> {
    vec![TableConfig {
        rule: RuleParams::Sgd(SgdParams::constant(1.0)),
        ..TableConfig::new("w", 1)
    }]
}

/// A raw gRPC client of shard 0 of 1, with the tables declared.
async fn raw(addr: &str) -> PsShardClient<Channel> {
    let mut c = PsShardClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    c.configure(ConfigureRequest {
        tables_json: serde_json::to_string(&tables()).unwrap(),
        shard: 0,
        shards: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    c
}

/// Pushes a gradient of 1 to `keys`, stamped `(client, seq)` (0: unstamped); returns whether
/// the shard answered it as a duplicate.
async fn push(c: &mut PsShardClient<Channel>, keys: &[u64], client: u64, seq: u64) -> bool {
    let req = PushRequest {
        table: "w".into(),
        keys: keys.to_vec(),
        grads: vec![1.0; keys.len()],
        client,
        seq,
        ..Default::default()
    };
    c.push(req).await.unwrap().into_inner().duplicate
}

async fn pull(c: &mut PsShardClient<Channel>, keys: &[u64]) -> Vec<f32> {
    let req = PullRequest {
        table: "w".into(),
        keys: keys.to_vec(),
    };
    c.pull(req).await.unwrap().into_inner().values
}

async fn stats(c: &mut PsShardClient<Channel>) -> StatsReply {
    let req = StatsRequest { table: "w".into() };
    c.stats(req).await.unwrap().into_inner()
}

/// A fresh directory under the system temp dir, named after the test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eddy-ps-dedup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamped_push_sent_twice_is_applied_once() {
    let addr = common::spawn_shards(1).await.remove(0);
    let mut c = raw(&addr).await;
    assert!(!push(&mut c, &[1, 2], 7, 1).await, "first time: applied");
    assert!(
        push(&mut c, &[1, 2], 7, 1).await,
        "second time: a duplicate"
    );
    assert_eq!(
        pull(&mut c, &[1, 2]).await,
        vec![-1.0, -1.0],
        "applied once"
    );
    let s = stats(&mut c).await;
    assert_eq!(s.duplicate_pushes, 1);
    assert_eq!(s.dedup_clients, 1);
    assert_eq!(
        s.health.unwrap().applied,
        2,
        "the duplicate's keys are not counted as applied"
    );
    // the next sequence number, and the same one from another client, are new
    assert!(!push(&mut c, &[1], 7, 2).await);
    assert!(!push(&mut c, &[1], 8, 1).await);
    // out of order inside the window: applied once each
    assert!(!push(&mut c, &[2], 7, 10).await);
    assert!(!push(&mut c, &[2], 7, 5).await);
    assert!(push(&mut c, &[2], 7, 5).await);
    assert_eq!(pull(&mut c, &[1, 2]).await, vec![-3.0, -3.0]);
    assert_eq!(stats(&mut c).await.duplicate_pushes, 2);
    // below the window: refused, not applied
    assert!(!push(&mut c, &[2], 7, 1000).await);
    let stale = PushRequest {
        table: "w".into(),
        keys: vec![2],
        grads: vec![1.0],
        client: 7,
        seq: 3,
        ..Default::default()
    };
    let status = c.push(stale).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    assert_eq!(pull(&mut c, &[2]).await, vec![-4.0]);
    // a stamp needs a sequence number
    let unnumbered = PushRequest {
        table: "w".into(),
        keys: vec![2],
        grads: vec![1.0],
        client: 7,
        seq: 0,
        ..Default::default()
    };
    let status = c.push(unnumbered).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstamped_pushes_apply_every_time() {
    let addr = common::spawn_shards(1).await.remove(0);
    let mut c = raw(&addr).await;
    for _ in 0..3 {
        assert!(!push(&mut c, &[4], 0, 0).await);
    }
    // an unstamped push with a sequence number is still unstamped (client 0)
    assert!(!push(&mut c, &[4], 0, 9).await);
    assert!(!push(&mut c, &[4], 0, 9).await);
    assert_eq!(pull(&mut c, &[4]).await, vec![-5.0]);
    let s = stats(&mut c).await;
    assert_eq!((s.duplicate_pushes, s.dedup_clients), (0, 0));
    // and in process
    let ps = LocalPsConfig::new(tables()).build().unwrap();
    for _ in 0..3 {
        ps.push_now("w", &[4], &[1.0], None).unwrap();
    }
    assert_eq!(ps.row_updates("w", 4).unwrap(), Some(3));
    assert_eq!(ps.duplicate_pushes(), 0);
}

#[test]
fn local_stamped_pushes_apply_once_and_their_stamps_survive_snapshot_and_restore() {
    let ps = LocalPsConfig::new(tables()).build().unwrap();
    let now = SystemTime::now();
    let stamp = |seq| PushStamp { client: 42, seq };
    let push =
        |ps: &eddy_ps::LocalPs, seq| ps.push_stamped("w", &[1], &[1.0], None, now, stamp(seq));
    assert_eq!(push(&ps, 1).unwrap(), PushOutcome::Applied);
    assert_eq!(push(&ps, 1).unwrap(), PushOutcome::Duplicate);
    let bytes = ps.snapshot_now().unwrap();
    assert_eq!(push(&ps, 2).unwrap(), PushOutcome::Applied);
    // a fresh store restored from the snapshot: seq 1 is in it, seq 2 is not
    let restored = LocalPsConfig::new(tables()).build().unwrap();
    restored.restore_now(&bytes).unwrap();
    assert_eq!(restored.row_updates("w", 1).unwrap(), Some(1));
    assert_eq!(push(&restored, 1).unwrap(), PushOutcome::Duplicate);
    assert_eq!(push(&restored, 2).unwrap(), PushOutcome::Applied);
    assert_eq!(push(&restored, 2).unwrap(), PushOutcome::Duplicate);
    assert_eq!(restored.row_updates("w", 1).unwrap(), Some(2));
    assert_eq!(
        restored.duplicate_pushes(),
        2,
        "counted per store, not persisted"
    );
    // a shape error or a bad stamp is refused before the stamp is claimed
    assert!(matches!(
        ps.push_stamped("w", &[1], &[1.0, 2.0], None, now, stamp(3)),
        Err(Error::Shape { .. })
    ));
    assert_eq!(push(&ps, 3).unwrap(), PushOutcome::Applied);
    assert!(ps
        .push_stamped(
            "w",
            &[1],
            &[1.0],
            None,
            now,
            PushStamp { client: 0, seq: 1 }
        )
        .is_err());
    // below the window
    assert_eq!(push(&ps, 500).unwrap(), PushOutcome::Applied);
    assert!(matches!(
        push(&ps, 4),
        Err(Error::StalePush {
            client: 42,
            seq: 4,
            ..
        })
    ));
    assert_eq!(ps.row_updates("w", 1).unwrap(), Some(4));
    // an idle client is forgotten after its ttl (default 1 h)
    assert_eq!(ps.forget_idle_clients(SystemTime::now()), 0);
    assert_eq!(ps.dedup_clients(), 1);
    let later = SystemTime::now() + Duration::from_secs(3601);
    assert_eq!(ps.forget_idle_clients(later), 1);
    assert_eq!(ps.dedup_clients(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_snapshot_and_restore_is_still_refused() {
    let addr = common::spawn_shards(1).await.remove(0);
    let mut c = raw(&addr).await;
    assert!(!push(&mut c, &[1], 9, 1).await);
    let snap = c
        .snapshot(SnapshotRequest {})
        .await
        .unwrap()
        .into_inner()
        .data;
    assert!(!push(&mut c, &[1], 9, 2).await);
    c.restore(RestoreRequest { data: snap }).await.unwrap();
    assert_eq!(pull(&mut c, &[1]).await, vec![-1.0], "back to the snapshot");
    assert!(push(&mut c, &[1], 9, 1).await, "in the snapshot: refused");
    assert!(
        !push(&mut c, &[1], 9, 2).await,
        "undone by the restore: applied again"
    );
    assert_eq!(pull(&mut c, &[1]).await, vec![-2.0]);
    assert_eq!(stats(&mut c).await.duplicate_pushes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_restarted_from_its_snapshot_refuses_a_replay() {
    let dir = temp_dir("restart");
    let open = || {
        PsServerConfig {
            data_dir: Some(dir.clone()),
            // only the snapshot a graceful stop takes
            snapshot_interval: Duration::from_secs(3600),
            ..PsServerConfig::new(0, 1)
        }
        .open()
        .unwrap()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(open().serve(listener, async {
        let _ = stopped.await;
    }));
    let mut c = raw(&addr).await;
    assert!(!push(&mut c, &[3, 4], 11, 1).await);
    drop(c);
    stop.send(()).unwrap();
    first.await.unwrap().unwrap(); // the last snapshot is written
    let second = open();
    assert!(second.restored_from().is_some());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(second.serve(listener, std::future::pending()));
    let mut c = raw(&addr).await;
    assert!(
        push(&mut c, &[3, 4], 11, 1).await,
        "the restored shard refuses the replay"
    );
    assert_eq!(pull(&mut c, &[3, 4]).await, vec![-1.0, -1.0]);
    assert_eq!(stats(&mut c).await.duplicate_pushes, 1);
    assert!(!push(&mut c, &[3], 11, 2).await);
    assert_eq!(pull(&mut c, &[3, 4]).await, vec![-2.0, -1.0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_retried_after_a_timeout_is_applied_once() {
    // Each shard applies the first push it receives, then holds that reply (far longer than
    // any test runs): whichever attempt reaches a shard first is applied and never answered,
    // so the client times out and retries, and the attempt that is answered is a duplicate.
    let addrs = common::spawn_shards_with(2, |i| PsServerConfig {
        delay_push_reply: Some(PushReplyDelay {
            nth: 1,
            delay: Duration::from_secs(24 * 3600),
        }),
        ..PsServerConfig::new(i, 2)
    })
    .await;
    let client = PsClientConfig {
        timeout: Duration::from_millis(300),
        ..PsClientConfig::new(addrs, tables())
    }
    .connect()
    .await
    .unwrap();
    let keys: Vec<u64> = (0..16).collect();
    assert!(
        (0..2).all(|s| keys.iter().any(|&k| eddy_ps::grpc::shard_of(k, 2) == s)),
        "the push reaches both shards"
    );
    client.push("w", &keys, &[1.0; 16], None).await.unwrap();
    assert!(client.retries() >= 2, "each shard's part timed out once");
    assert_eq!(
        client.duplicate_acks(),
        2,
        "each part was answered as a duplicate of the applied, held attempt"
    );
    let dups = client.duplicate_pushes().await.unwrap();
    assert!(
        (2..=client.retries()).contains(&dups),
        "{dups} duplicates for {} retries",
        client.retries()
    );
    let mut rows = Vec::new();
    client.pull("w", &keys, &mut rows).await.unwrap();
    assert_eq!(rows, vec![-1.0; 16], "applied once");
    // later pushes are answered at once and applied
    client.push("w", &keys, &[1.0; 16], None).await.unwrap();
    client.pull("w", &keys, &mut rows).await.unwrap();
    assert_eq!(rows, vec![-2.0; 16]);
}
