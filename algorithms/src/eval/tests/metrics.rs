//! Metrics against naive formulas on random data.

use proptest::prelude::*;

use crate::eval::*;
use crate::learner::Task;
use crate::transform::Mergeable;

/// Rows of (prediction, label, weight); predictions come from a few values so ties are common.
fn rows() -> impl Strategy<Value = Vec<(f32, f32, f32)>> {
    prop::collection::vec(
        (0u8..12, any::<bool>(), 0.25f32..4.0)
            .prop_map(|(p, y, w)| (f32::from(p) / 11.0, if y { 1.0 } else { 0.0 }, w)),
        0..150,
    )
}

fn split(rows: &[(f32, f32, f32)]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let p = rows.iter().map(|r| r.0).collect();
    let y = rows.iter().map(|r| r.1).collect();
    let w = rows.iter().map(|r| r.2).collect();
    (p, y, w)
}

/// The O(n²) definition: weighted share of (positive, negative) pairs ordered right, ties half.
fn naive_auc(rows: &[(f32, f32, f32)], weighted: bool) -> f64 {
    let w = |r: &(f32, f32, f32)| if weighted { f64::from(r.2) } else { 1.0 };
    let (mut num, mut wp, mut wn) = (0.0, 0.0, 0.0);
    for a in rows.iter().filter(|r| r.1 == 1.0) {
        wp += w(a);
        for b in rows.iter().filter(|r| r.1 == 0.0) {
            let s = if a.0 > b.0 {
                1.0
            } else if a.0 == b.0 {
                0.5
            } else {
                0.0
            };
            num += w(a) * w(b) * s;
        }
    }
    for b in rows.iter().filter(|r| r.1 == 0.0) {
        wn += w(b);
    }
    if wp == 0.0 || wn == 0.0 {
        f64::NAN
    } else {
        num / (wp * wn)
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

fn value_of<M: Metric>(mut m: M, rows: &[(f32, f32, f32)], weighted: bool) -> f64 {
    let (p, y, w) = split(rows);
    m.update_batch(&p, &y, weighted.then_some(&w[..]));
    m.value()
}

proptest! {
    #[test]
    fn auc_equals_pair_counting(rows in rows(), weighted in any::<bool>()) {
        let got = value_of(Auc::new(), &rows, weighted);
        prop_assert!(close(got, naive_auc(&rows, weighted)), "{got} vs {}", naive_auc(&rows, weighted));
        // Reading after `prepare` (sorted in place) and updating afterwards stay exact.
        let mut a = Auc::new();
        let (p, y, w) = split(&rows);
        let half = rows.len() / 2;
        a.update_batch(&p[..half], &y[..half], weighted.then_some(&w[..half]));
        a.prepare();
        prop_assert!(close(a.value(), naive_auc(&rows[..half], weighted)));
        a.update_batch(&p[half..], &y[half..], weighted.then_some(&w[half..]));
        a.prepare();
        prop_assert!(close(a.value(), got));
    }

    #[test]
    fn pointwise_metrics_equal_formulas(rows in rows(), weighted in any::<bool>()) {
        let w = |r: &(f32, f32, f32)| if weighted { f64::from(r.2) } else { 1.0 };
        let total: f64 = rows.iter().map(w).sum();
        let mean = |f: &dyn Fn(&(f32, f32, f32)) -> f64| {
            rows.iter().map(|r| w(r) * f(r)).sum::<f64>() / total
        };
        let ll = mean(&|r| {
            let p = f64::from(r.0).clamp(1e-15, 1.0 - 1e-15);
            let y = f64::from(r.1);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        });
        prop_assert!(close(value_of(LogLoss::new(), &rows, weighted), ll));
        let acc = mean(&|r| f64::from(u8::from((r.0 >= 0.5) == (r.1 == 1.0))));
        prop_assert!(close(value_of(Accuracy::binary(), &rows, weighted), acc));
        let count = |pred: bool, label: bool| -> f64 {
            rows.iter().filter(|r| (r.0 >= 0.5) == pred && (r.1 == 1.0) == label).map(w).sum()
        };
        let (tp, fp, fnn) = (count(true, true), count(true, false), count(false, true));
        prop_assert!(close(value_of(Precision::new(), &rows, weighted), tp / (tp + fp)));
        prop_assert!(close(value_of(Recall::new(), &rows, weighted), tp / (tp + fnn)));
        let (pr, re) = (tp / (tp + fp), tp / (tp + fnn));
        let f1 = if tp > 0.0 { 2.0 * pr * re / (pr + re) } else { 2.0 * tp / (2.0 * tp + fp + fnn) };
        prop_assert!(close(value_of(F1::new(), &rows, weighted), f1));
        let rmse = mean(&|r| (f64::from(r.0) - f64::from(r.1)).powi(2)).sqrt();
        prop_assert!(close(value_of(Rmse::new(), &rows, weighted), rmse));
        let mae = mean(&|r| (f64::from(r.0) - f64::from(r.1)).abs());
        prop_assert!(close(value_of(Mae::new(), &rows, weighted), mae));
    }

    #[test]
    fn merge_of_halves_equals_whole(rows in rows(), cut in 0usize..150, window in 1usize..40) {
        let cut = cut.min(rows.len());
        let (p, y, w) = split(&rows);
        let kinds: Vec<MetricKind> = "logloss auc accuracy precision recall f1 rmse mae"
            .split(' ')
            .map(|s| s.parse())
            .chain([Ok(MetricKind::WindowedAuc { window })])
            .collect::<crate::Result<_>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let task = Task::BinaryClassification;
        let mk = || MetricSet::new(&kinds, task);
        let (mut whole, mut a, mut b) = (mk()?, mk()?, mk()?);
        whole.update_batch(&p, &y, Some(&w))?;
        a.update_batch(&p[..cut], &y[..cut], Some(&w[..cut]))?;
        b.update_batch(&p[cut..], &y[cut..], Some(&w[cut..]))?;
        a.merge(&b)?;
        let (va, vw) = (a.values(), whole.values());
        prop_assert_eq!(va.len(), kinds.len());
        for ((name, x), (_, z)) in va.iter().zip(vw.iter()) {
            prop_assert!(close(x, z), "{name}: {x} vs {z}");
        }
    }

    #[test]
    fn windowed_auc_equals_auc_of_last_n(rows in rows(), window in 1usize..60) {
        let mut wa = WindowedAuc::new(window)?;
        for (i, &(p, y, w)) in rows.iter().enumerate() {
            wa.update(p, y, w);
            let from = (i + 1).saturating_sub(window);
            prop_assert!(close(wa.value(), naive_auc(&rows[from..=i], true)));
        }
        prop_assert_eq!(wa.len(), rows.len().min(window));
    }
}

#[test]
fn undefined_values_are_nan_and_edges_hold() {
    assert!(Auc::new().value().is_nan());
    let mut one_class = Auc::new();
    one_class.update_batch(&[0.2, 0.9], &[1.0, 1.0], None);
    assert!(one_class.value().is_nan());
    assert!(LogLoss::new().value().is_nan());
    // Clipping: a confident wrong prediction costs -ln(1e-15), not infinity.
    let mut ll = LogLoss::new();
    ll.update(0.0, 1.0, 1.0);
    assert!((ll.value() - 1e-15f64.ln().abs()).abs() < 1e-9);
    // -0.0 ties with 0.0; NaN ranks above every number.
    let mut a = Auc::new();
    a.update_batch(&[-0.0, 0.0, f32::NAN, 0.5], &[1.0, 0.0, 1.0, 0.0], None);
    assert_eq!(a.value(), 2.5 / 4.0);
    // Multiclass accuracy compares class indices.
    let mut m = Accuracy::multiclass();
    m.update_batch(&[2.0, 1.0, 0.0], &[2.0, 2.0, 0.0], None);
    assert!((m.value() - 2.0 / 3.0).abs() < 1e-12);
    assert!(m.merge(&Accuracy::binary()).is_err());
    assert!(WindowedAuc::new(0).is_err());
    let mut w3 = WindowedAuc::new(3).unwrap();
    assert!(w3.merge(&WindowedAuc::new(4).unwrap()).is_err());
    m.reset();
    assert!(m.value().is_nan() && m.is_multiclass());
}

#[test]
fn metric_kinds_parse_print_and_check_the_task() {
    for name in [
        "logloss",
        "auc",
        "auc_last500",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "rmse",
        "mae",
    ] {
        let k: MetricKind = name.parse().unwrap();
        assert_eq!(k.name(), name);
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{name}\""));
        assert_eq!(serde_json::from_str::<MetricKind>(&json).unwrap(), k);
    }
    for bad in ["", "AUC", "auc_last0", "auc_lastx", "log-loss"] {
        assert!(bad.parse::<MetricKind>().is_err(), "{bad}");
    }
    assert!(MetricSet::new(&[MetricKind::Auc], Task::Regression).is_err());
    assert!(MetricSet::new(&[MetricKind::Rmse], Task::Multiclass { classes: 3 }).is_err());
    assert!(MetricSet::new(
        &[MetricKind::Auc, MetricKind::Auc],
        Task::BinaryClassification
    )
    .is_err());
    assert_eq!(
        metrics_for_task(Task::BinaryClassification),
        [MetricKind::LogLoss, MetricKind::Auc, MetricKind::Accuracy]
    );
    assert_eq!(
        metrics_for_task(Task::Regression),
        [MetricKind::Rmse, MetricKind::Mae]
    );
    let mut set = MetricSet::for_task(Task::Regression);
    assert!(set.update_batch(&[1.0], &[1.0, 2.0], None).is_err());
    assert!(set.update_batch(&[1.0], &[1.0], Some(&[])).is_err());
    set.update_batch(&[1.0, 3.0], &[2.0, 2.0], None).unwrap();
    assert_eq!(
        set.values().iter().collect::<Vec<_>>(),
        [("rmse", 1.0), ("mae", 1.0)]
    );
    let other = MetricSet::for_task(Task::BinaryClassification);
    assert!(set.merge(&other).is_err());
}

#[test]
fn report_prints_the_peers_line_and_round_trips() {
    let mut m = MetricValues::default();
    m.push("logloss", 0.123_456_789);
    m.push("auc", f64::NAN);
    m.push("accuracy", 0.75);
    let r = Report::new(1000, 0.5, m);
    assert_eq!(
        r.to_json_line(),
        r#"{"rows":1000,"seconds":0.5,"rows_per_s":2000,"logloss":0.123457,"auc":null,"accuracy":0.75}"#
    );
    let json = serde_json::to_string(&r).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.rows, 1000);
    assert_eq!(back.get("logloss"), Some(0.123_456_789));
    assert!(back.get("auc").is_some_and(f64::is_nan));
    assert_eq!(
        Report::new(0, 0.0, MetricValues::default()).to_json_line(),
        r#"{"rows":0,"seconds":0,"rows_per_s":null}"#
    );
}
