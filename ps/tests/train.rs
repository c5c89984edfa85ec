//! PS-backed training (`PsWorker`): several workers share one model, FTRL and FM learn, and
//! the SSP bound holds under a deliberately slow worker.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eddy_algorithms::features::Examples;
use eddy_algorithms::online::fm::{FmGradientModel, FmParams, FmTask};
use eddy_algorithms::online::linear::LogisticGradientModel;
use eddy_algorithms::optim::FtrlProximalParams;
use eddy_algorithms::transform::Params;
use eddy_ps::train::{fm_tables, ftrl_tables};
use eddy_ps::{
    Consistency, Delta, DeltaCursor, LocalPs, LocalPsConfig, ParamStore, PsWorker, PsWorkerConfig,
    WorkerId, WorkerReport,
};

/// Trains on `data` with `workers` workers (tokio tasks), rows dealt round-robin in chunks of
/// 64, and returns the merged report.
async fn train<S, M>(ps: Arc<S>, model: Arc<M>, data: &Examples, workers: u32) -> WorkerReport
where
    S: ParamStore + 'static,
    M: eddy_algorithms::learner::GradientModel + 'static,
{
    let mut tasks = Vec::new();
    for w in 0..workers {
        let chunks: Vec<Examples> = (0..data.len())
            .step_by(64)
            .enumerate()
            .filter(|(i, _)| *i as u32 % workers == w)
            .map(|(_, s)| data.slice(s, (s + 64).min(data.len())))
            .collect();
        let (ps, model) = (ps.clone(), model.clone());
        tasks.push(tokio::spawn(async move {
            let mut worker = PsWorker::new(ps, model, PsWorkerConfig::new(WorkerId(w)));
            worker.start().await.unwrap();
            for c in &chunks {
                worker.process(c).await.unwrap();
                tokio::task::yield_now().await;
            }
            worker.finish().await.unwrap()
        }));
    }
    let mut report: Option<WorkerReport> = None;
    for t in tasks {
        let r = t.await.unwrap();
        match &mut report {
            Some(all) => all.merge(&r).unwrap(),
            None => report = Some(r),
        }
    }
    report.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_share_one_model_and_match_a_single_worker() {
    let data = common::sparse_data(7, 20_000, 512, 10);
    let ftrl = FtrlProximalParams {
        alpha: 0.2,
        ..Default::default()
    };
    let model = Arc::new(LogisticGradientModel::new(512, true));
    let mut losses = Vec::new();
    for workers in [1, 3] {
        let ps = Arc::new(LocalPsConfig::new(ftrl_tables(ftrl)).build().unwrap());
        let r = train(ps.clone(), model.clone(), &data, workers).await;
        assert_eq!(r.rows, 20_000, "every row predicted and learned once");
        assert_eq!(ps.row_count("w").unwrap(), 513, "one shared table");
        losses.push(r.metrics.get("logloss").unwrap());
    }
    assert!(losses[0] < 0.45, "it learns: {losses:?}");
    assert!(
        (losses[1] - losses[0]).abs() / losses[0] < 0.02,
        "3 workers within 2% of 1: {losses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_trains_through_the_store_over_grpc() {
    let data = common::sparse_data(9, 6_000, 256, 6);
    let params = FmParams {
        factors: 4,
        ..FmParams::new(256, FmTask::Binary)
    };
    let model = Arc::new(FmGradientModel::new(params.check().unwrap()));
    let ps = Arc::new(common::grpc_store(2, fm_tables(&params)).await);
    let r = train(ps.clone(), model, &data, 2).await;
    assert_eq!(r.rows, 6_000);
    let logloss = r.metrics.get("logloss").unwrap();
    assert!(logloss < 0.6, "fm learns: logloss {logloss}");
    let (mut cursor, mut d) = (DeltaCursor::default(), Delta::default());
    ps.delta("v", &mut cursor, &mut d).await.unwrap();
    assert_eq!(d.len(), 256, "every factor row was trained");
    assert_eq!(d.values.len(), 256 * 4);
}

/// A `LocalPs` that records, each time a worker is let through `wait_bounded`, how far it is
/// ahead of the slowest registered worker.
struct Spy {
    inner: LocalPs,
    workers: u32,
    max_lead: AtomicU64,
}

impl ParamStore for Spy {
    async fn pull(&self, t: &str, k: &[u64], out: &mut Vec<f32>) -> eddy_ps::Result<()> {
        self.inner.pull(t, k, out).await
    }
    async fn push(&self, t: &str, k: &[u64], g: &[f32], x: Option<&[f32]>) -> eddy_ps::Result<()> {
        self.inner.push(t, k, g, x).await
    }
    async fn register(&self, w: WorkerId) -> eddy_ps::Result<u64> {
        self.inner.register(w).await
    }
    async fn deregister(&self, w: WorkerId) -> eddy_ps::Result<()> {
        self.inner.deregister(w).await
    }
    async fn clock(&self, w: WorkerId) -> eddy_ps::Result<u64> {
        self.inner.clock(w).await
    }
    async fn wait_bounded(&self, w: WorkerId, s: u64) -> eddy_ps::Result<()> {
        self.inner.wait_bounded(w, s).await?;
        let clocks = self.inner.clocks();
        let mine = clocks.get(w).unwrap();
        let min = (0..self.workers)
            .filter_map(|i| clocks.get(WorkerId(i)))
            .min()
            .unwrap();
        self.max_lead.fetch_max(mine - min, Ordering::SeqCst);
        Ok(())
    }
    async fn delta(&self, t: &str, c: &mut DeltaCursor, out: &mut Delta) -> eddy_ps::Result<()> {
        self.inner.delta(t, c, out).await
    }
    async fn snapshot(&self) -> eddy_ps::Result<Vec<u8>> {
        self.inner.snapshot().await
    }
    async fn restore(&self, b: &[u8]) -> eddy_ps::Result<()> {
        self.inner.restore(b).await
    }
}

#[tokio::test(start_paused = true)]
async fn ssp_bound_holds_under_a_slow_worker() {
    let data = common::sparse_data(3, 4_000, 128, 6);
    for (consistency, bound) in [(Consistency::Bounded(3), 3), (Consistency::Sync, 0)] {
        let spy = Arc::new(Spy {
            inner: LocalPsConfig::new(ftrl_tables(FtrlProximalParams::default()))
                .build()
                .unwrap(),
            workers: 2,
            max_lead: AtomicU64::new(0),
        });
        let model = Arc::new(LogisticGradientModel::new(128, true));
        // both register before either starts, so the fast one cannot run ahead unseen
        spy.register(WorkerId(0)).await.unwrap();
        spy.register(WorkerId(1)).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..2u32 {
            let (spy, model, data) = (spy.clone(), model.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                let cfg = PsWorkerConfig {
                    consistency,
                    batch_rows: 50,
                    ..PsWorkerConfig::new(WorkerId(w))
                };
                let mut worker = PsWorker::new(spy, model, cfg);
                worker.start().await.unwrap();
                for s in (0..data.len()).step_by(50) {
                    if w == 1 {
                        // the slow worker: 20 ms per mini-batch (virtual time)
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    worker.process(&data.slice(s, s + 50)).await.unwrap();
                }
                worker.finish().await.unwrap().rows
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 4_000, "both workers finish");
        }
        let lead = spy.max_lead.load(Ordering::SeqCst);
        assert_eq!(
            lead, bound,
            "{consistency:?}: the fast worker reached the bound and never passed it"
        );
    }
}

/// A `sync` worker ahead of an idle one waits for it; the idle one's `checkpoint` releases it
/// (without ending the worker), and the checkpoint reports what was learned so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_releases_sync_workers_and_reports_so_far() {
    let data = common::sparse_data(11, 256, 64, 5);
    let ps = Arc::new(
        LocalPsConfig::new(ftrl_tables(FtrlProximalParams::default()))
            .build()
            .unwrap(),
    );
    let model = Arc::new(LogisticGradientModel::new(64, true));
    let cfg = |w| PsWorkerConfig {
        consistency: Consistency::Sync,
        batch_rows: 32,
        ..PsWorkerConfig::new(WorkerId(w))
    };
    let mut idle = PsWorker::new(ps.clone(), model.clone(), cfg(1));
    idle.start().await.unwrap();
    let mut busy = PsWorker::new(ps.clone(), model.clone(), cfg(0));
    busy.start().await.unwrap();
    // four mini-batches: the second waits for the idle worker's clock
    let ahead = data.slice(0, 128);
    let task = tokio::spawn(async move {
        busy.process(&ahead).await.unwrap();
        busy
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !task.is_finished(),
        "a sync worker ran ahead of an idle one"
    );
    let report = idle.checkpoint().await.unwrap();
    assert_eq!(report.rows, 0);
    let mut busy = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the checkpoint released the waiting worker")
        .unwrap();
    let report = busy.checkpoint().await.unwrap();
    assert_eq!((report.rows, report.steps), (128, 4));
    assert!(report.metrics.get("logloss").is_some());
    // both keep working after their checkpoints (registered again; one at a time, as `sync`
    // would hold the second behind the idle first)
    let rest = data.slice(128, 256);
    idle.process(&rest.slice(0, 64)).await.unwrap();
    let mut all = idle.finish().await.unwrap();
    busy.process(&rest.slice(64, 128)).await.unwrap();
    all.merge(&busy.finish().await.unwrap()).unwrap();
    assert_eq!(all.rows, 256);
}
