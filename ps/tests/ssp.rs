//! Consistency clocks through `ParamStore`: SSP blocks a worker that runs ahead until the slow
//! one clocks; `sync` is staleness 0; `async` never waits. Blocking is observed with
//! `tokio::time::timeout` under paused time, so nothing depends on real speed.

use std::sync::Arc;
use std::time::Duration;

use eddy_ps::{Consistency, Error, LocalPs, LocalPsConfig, ParamStore, TableConfig, WorkerId};
use tokio::time::timeout;

const FAST: WorkerId = WorkerId(0);
const SLOW: WorkerId = WorkerId(1);

fn ps() -> Arc<LocalPs> {
    Arc::new(
        LocalPsConfig::new(vec![TableConfig::new("w", 1)])
            .build()
            .unwrap(),
    )
}

/// Whether `wait_bounded(worker, s)` is still waiting after a (virtual) second.
async fn blocks(ps: &LocalPs, worker: WorkerId, s: u64) -> bool {
    timeout(Duration::from_secs(1), ps.wait_bounded(worker, s))
        .await
        .is_err()
}

#[tokio::test(start_paused = true)]
async fn bounded_staleness_blocks_the_fast_worker_until_the_slow_one_clocks() {
    let ps = ps();
    assert_eq!(ps.register(FAST).await.unwrap(), 0);
    assert_eq!(ps.register(SLOW).await.unwrap(), 0);
    assert_eq!(ps.clock(FAST).await.unwrap(), 1);
    assert!(
        !blocks(&ps, FAST, 1).await,
        "one ahead is within staleness 1"
    );
    assert!(blocks(&ps, FAST, 0).await, "sync: one ahead waits");
    assert_eq!(ps.clock(FAST).await.unwrap(), 2);
    assert!(blocks(&ps, FAST, 1).await, "two ahead waits");
    assert!(!blocks(&ps, SLOW, 1).await, "the slowest never waits");
    // a waiting fast worker is released by the slow worker's clock
    let waiter = {
        let ps = Arc::clone(&ps);
        tokio::spawn(async move { ps.wait_bounded(FAST, 1).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    assert_eq!(ps.clock(SLOW).await.unwrap(), 1);
    timeout(Duration::from_secs(1), waiter)
        .await
        .expect("released by the slow worker's clock")
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_departing_worker_releases_the_others_and_async_never_waits() {
    let ps = ps();
    ps.register(FAST).await.unwrap();
    ps.register(SLOW).await.unwrap();
    for _ in 0..5 {
        ps.clock(FAST).await.unwrap();
    }
    let clocks = ps.clocks();
    assert!(
        timeout(Duration::from_secs(1), clocks.wait(FAST, Consistency::Sync))
            .await
            .is_err()
    );
    timeout(
        Duration::from_secs(1),
        clocks.wait(FAST, Consistency::Async),
    )
    .await
    .unwrap()
    .unwrap();
    let waiter = {
        let ps = Arc::clone(&ps);
        tokio::spawn(async move { ps.clocks().wait(FAST, Consistency::Bounded(2)).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    clocks.deregister(SLOW).unwrap();
    timeout(Duration::from_secs(1), waiter)
        .await
        .expect("released when the slow worker leaves")
        .unwrap()
        .unwrap();
    assert!(matches!(
        ps.wait_bounded(WorkerId(7), 0).await,
        Err(Error::UnknownWorker(WorkerId(7)))
    ));
    assert!(ps.clock(WorkerId(7)).await.is_err());
}
