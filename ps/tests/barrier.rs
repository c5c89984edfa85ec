//! The shards' epoch barrier for a job of several worker processes (exactly-once across
//! processes): a shard snapshots epoch n only once every worker of the job reported n (or
//! finished), a finished worker holds no later epoch back, and `restore_job_epoch` rolls every
//! shard back to the epoch's cut (0: the job's start).
//!
//! Mutation caught (by hand, then restored): a shard snapshotting an epoch at its first report
//! instead of waiting for every worker — the epoch-1 cut then lacks worker 1's push.

mod common;

use std::time::Duration;

use eddy_ps::grpc::client::restore_job_epoch;
use eddy_ps::{ParamStore, PsClient, PsClientConfig};

const WAIT: Duration = Duration::from_secs(60);

async fn worker(addrs: &[String]) -> PsClient {
    let tables = vec![common::table(
        "w",
        1,
        common::sgd(1.0),
        eddy_ps::Initializer::Zeros,
    )];
    PsClientConfig {
        job: "j".into(),
        strict: true,
        ..PsClientConfig::new(addrs.to_vec(), tables)
    }
    .connect()
    .await
    .unwrap()
}

/// The weights of keys 0..4.
async fn weights(c: &PsClient) -> Vec<f32> {
    let mut out = Vec::new();
    c.pull("w", &[0, 1, 2, 3], &mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_is_the_cut_where_every_worker_reported_it() {
    let addrs = common::spawn_shards(2).await;
    let (w0, w1) = (worker(&addrs).await, worker(&addrs).await);
    w0.push("w", &[0, 1], &[1.0, 1.0], None).await.unwrap();
    // worker 0 reaches epoch 1 first and waits there for worker 1
    let early = tokio::spawn(async move {
        w0.barrier_epoch(1, 0, 2, WAIT).await.unwrap();
        w0
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!early.is_finished(), "epoch 1 completed without worker 1");
    // worker 1's push before its own checkpoint 1 belongs in epoch 1
    w1.push("w", &[2, 3], &[1.0, 1.0], None).await.unwrap();
    w1.barrier_epoch(1, 1, 2, WAIT).await.unwrap();
    let w0 = early.await.unwrap();
    let cut = weights(&w1).await;
    assert_eq!(cut, [-1.0, -1.0, -1.0, -1.0]);

    // worker 1 finishes: epoch 2 completes with worker 0 alone
    w1.push("w", &[3], &[1.0], None).await.unwrap();
    w1.finish_barrier(1, 1, 2).await.unwrap();
    w0.push("w", &[0], &[1.0], None).await.unwrap();
    w0.barrier_epoch(2, 0, 2, WAIT).await.unwrap();
    let second = weights(&w0).await;
    assert_eq!(second, [-2.0, -1.0, -1.0, -2.0]);

    // later pushes are rolled back to the cut of epoch 1, then to the job's start
    w0.push("w", &[1, 2], &[5.0, 5.0], None).await.unwrap();
    restore_job_epoch(&addrs, "j", 1, 2, &[], WAIT)
        .await
        .unwrap();
    let fresh = worker(&addrs).await;
    assert_eq!(weights(&fresh).await, cut);
    // the barrier was reset to epoch 1: epoch 2 waits for both workers again
    let again = tokio::spawn(async move { fresh.barrier_epoch(2, 0, 2, WAIT).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!again.is_finished(), "the restored barrier forgot worker 1");
    worker(&addrs)
        .await
        .barrier_epoch(2, 1, 2, WAIT)
        .await
        .unwrap();
    again.await.unwrap().unwrap();
    restore_job_epoch(&addrs, "j", 0, 2, &[], WAIT)
        .await
        .unwrap();
    assert_eq!(weights(&worker(&addrs).await).await, [0.0; 4]);
    // another job's coordinator is refused
    let other = restore_job_epoch(&addrs, "other", 0, 2, &[], WAIT).await;
    assert!(other.is_err());
}
