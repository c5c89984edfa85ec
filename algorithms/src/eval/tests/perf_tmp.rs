use crate::eval::*;
use std::time::Instant;
#[test]
fn perf_tmp() {
    let n = 10_000_000usize;
    let mut s = 12345u64;
    let mut p = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (s >> 40) as f32 / (1u64 << 24) as f32;
        p.push(u);
        y.push(if (s >> 20) & 1 == 1 { 1.0 } else { 0.0 });
    }
    fn t<M: Metric>(name: &str, mut m: M, p: &[f32], y: &[f32]) {
        let t0 = Instant::now();
        for c in 0..(p.len() / 1000) {
            m.update_batch(
                &p[c * 1000..(c + 1) * 1000],
                &y[c * 1000..(c + 1) * 1000],
                None,
            );
        }
        let dt = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        m.prepare();
        let v = m.value();
        eprintln!(
            "{name}: {:.2} ns/row update, value {:.3}s -> {v}",
            dt * 1e9 / p.len() as f64,
            t1.elapsed().as_secs_f64()
        );
    }
    t("logloss", LogLoss::new(), &p, &y);
    t("auc", Auc::new(), &p, &y);
    t("wauc", WindowedAuc::new(100000).unwrap(), &p, &y);
    t("acc", Accuracy::binary(), &p, &y);
    t("f1", F1::new(), &p, &y);
    t("rmse", Rmse::new(), &p, &y);
    t("mae", Mae::new(), &p, &y);
    let mut set = MetricSet::for_task(crate::learner::Task::BinaryClassification);
    let t0 = Instant::now();
    for c in 0..(n / 1000) {
        set.update_batch(
            &p[c * 1000..(c + 1) * 1000],
            &y[c * 1000..(c + 1) * 1000],
            None,
        )
        .unwrap();
    }
    eprintln!(
        "set: {:.2} ns/row",
        t0.elapsed().as_secs_f64() * 1e9 / n as f64
    );
    let t0 = Instant::now();
    let _ = set.values();
    eprintln!("set values: {:.3}s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let _ = set.values();
    eprintln!("set values again: {:.3}s", t0.elapsed().as_secs_f64());
    set.update_batch(&p[..100000], &y[..100000], None).unwrap();
    let t0 = Instant::now();
    let _ = set.values();
    eprintln!(
        "set values after 100k more: {:.3}s",
        t0.elapsed().as_secs_f64()
    );
}
