//! The bounded-memory [`Auc`] against the exact AUC (an exact [`WindowedAuc`] as wide as the
//! stream) on random data: the difference stays within the reported error bound, and the
//! bound is below `1e-3` for realistic score distributions.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::eval::{Auc, Metric, WindowedAuc};
use crate::transform::Mergeable;

/// `n` rows of a logistic model: labels drawn with probability `sigmoid(z)`, and predictions
/// `sigmoid(z + noise)` (a model that is right on average), with weights in `[0.5, 2)`.
fn rows(seed: u64, n: usize, spread: f64, bias: f64) -> Vec<(f32, f32, f32)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let t = bias + spread * normal(&mut rng);
            let y = rng.random_bool(1.0 / (1.0 + (-t).exp()));
            let p = 1.0 / (1.0 + (-(t + 0.5 * normal(&mut rng))).exp());
            (
                p as f32,
                f32::from(u8::from(y)),
                rng.random_range(0.5f32..2.0),
            )
        })
        .collect()
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn exact(rows: &[(f32, f32, f32)]) -> f64 {
    let mut w = WindowedAuc::new(rows.len().max(1)).expect("window >= 1");
    for &(p, y, wt) in rows {
        w.update(p, y, wt);
    }
    w.value()
}

fn binned(rows: &[(f32, f32, f32)]) -> Auc {
    let mut a = Auc::new();
    for &(p, y, w) in rows {
        a.update(p, y, w);
    }
    a
}

#[test]
fn binned_auc_is_within_its_bound_of_the_exact_one() {
    // (spread, bias): a sharp CTR-like model (rare positives), a weak one, a balanced one
    for (seed, &(spread, bias)) in
        (0u64..6).zip([(1.5, -3.0), (0.3, -1.0), (2.0, 0.0)].iter().cycle())
    {
        let rows = rows(seed, 40_000, spread, bias);
        let (e, a) = (exact(&rows), binned(&rows));
        let (v, bound) = (a.value(), a.error_bound());
        assert!(
            (v - e).abs() <= bound + 1e-12,
            "seed {seed}: binned {v} exact {e} bound {bound}"
        );
        assert!(bound < 1e-3, "seed {seed}: bound {bound}");
        assert!((v - e).abs() < 1e-4, "seed {seed}: binned {v} exact {e}");
        assert_eq!(a.len(), rows.len());
    }
}

#[test]
fn a_coarse_distribution_reports_a_large_bound_and_stays_within_it() {
    // every score in one bin: the bound says 1/2, and the value is 1/2 whatever the labels
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let rows: Vec<(f32, f32, f32)> = (0..2000)
        .map(|i| {
            let p = 0.5 + rng.random_range(0.0f32..1e-5);
            (p, f32::from(u8::from(i % 3 == 0)), 1.0)
        })
        .collect();
    let (e, a) = (exact(&rows), binned(&rows));
    assert!((a.error_bound() - 0.5).abs() < 1e-12);
    assert!((a.value() - 0.5).abs() < 1e-12);
    assert!((a.value() - e).abs() <= a.error_bound());
}

#[test]
fn memory_stays_flat_and_merge_serde_and_reset_hold() {
    let rows = rows(11, 30_000, 1.5, -3.0);
    let (head, tail) = rows.split_at(12_345);
    let whole = binned(&rows);
    let mut merged = binned(head);
    merged.merge(&binned(tail)).expect("auc merge");
    assert_eq!(merged.value(), whole.value());
    assert_eq!(merged.len(), whole.len());
    // the state is one entry per bin hit, not per row: 4x the rows hit only a few more bins
    // (the scores' range has ~46k bins; 100k rows hit 32k of them, 400k rows 41k)
    let many = self::rows(12, 400_000, 1.5, -3.0);
    let size =
        |rows: &[(f32, f32, f32)]| serde_json::to_vec(&binned(rows)).expect("serialize").len();
    let (quarter, all) = (size(&many[..100_000]), size(&many));
    assert!(
        all < quarter * 3 / 2,
        "{all} bytes for 400k rows vs {quarter} for 100k"
    );
    let json = serde_json::to_vec(&whole).expect("serialize");
    let back: Auc = serde_json::from_slice(&json).expect("deserialize");
    assert_eq!(back.value(), whole.value());
    assert_eq!(back.len(), whole.len());
    // a bin out of range or a negative weight is refused, not half-loaded
    for bad in [
        r#"{"rows":1,"bins":[[4294967295,1.0,0.0]]}"#,
        r#"{"rows":1,"bins":[[3,-1.0,0.0]]}"#,
    ] {
        assert!(serde_json::from_str::<Auc>(bad).is_err(), "{bad}");
    }
    let mut reset = whole.clone();
    reset.reset();
    assert!(reset.value().is_nan() && reset.is_empty());
    for &(p, y, w) in head {
        reset.update(p, y, w);
    }
    assert_eq!(reset.value(), binned(head).value());
}
