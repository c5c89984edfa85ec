use proptest::prelude::*;

use super::*;

/// Exact `#{v ≤ x}` and `#{v < x}`.
fn exact(data: &[f64], x: f64) -> (u64, u64) {
    let le = data.iter().filter(|&&v| v <= x).count() as u64;
    let lt = data.iter().filter(|&&v| v < x).count() as u64;
    (le, lt)
}

/// Checks the rank guarantee at every data value (and just around them) and the quantile
/// guarantee at a grid of `q`s.
fn check_bounds(s: &QuantileSketch, data: &[f64]) -> std::result::Result<(), TestCaseError> {
    let n = data.len() as u64;
    prop_assert_eq!(s.count(), n);
    let e = s.max_rank_error();
    prop_assert!(e <= rank_error_bound(n, s.k()), "{} > bound", e);
    for &x in data.iter().step_by(7).chain([f64::MIN, f64::MAX].iter()) {
        let (le, _) = exact(data, x);
        let est = s.rank(x);
        prop_assert!(
            est.abs_diff(le) <= e,
            "rank({}) = {} vs {} (e = {})",
            x,
            est,
            le,
            e
        );
    }
    let qs: Vec<f64> = (0..=20).map(|i| f64::from(i) / 20.0).collect();
    let ys = s.quantiles(&qs).expect("non-empty");
    for (&q, &y) in qs.iter().zip(&ys) {
        prop_assert!(data.contains(&y), "quantile {} is not a data value", y);
        let (le, lt) = exact(data, y);
        let qn = q * n as f64;
        prop_assert!(
            lt as f64 <= qn + e as f64,
            "q {}: #<y = {} (e {})",
            q,
            lt,
            e
        );
        prop_assert!(
            le as f64 >= qn - e as f64,
            "q {}: #≤y = {} (e {})",
            q,
            le,
            e
        );
    }
    Ok(())
}

fn values() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        // continuous values
        prop::collection::vec(-1e6f64..1e6, 1..6000),
        // heavy duplicates
        prop::collection::vec((0i32..20).prop_map(f64::from), 1..6000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn rank_error_within_bound(data in values(), k in prop::sample::select(vec![8usize, 16, 64])) {
        let mut s = QuantileSketch::new(k).unwrap();
        data.iter().for_each(|&v| s.insert(v));
        check_bounds(&s, &data)?;
        // at most k − 1 items per level
        prop_assert!(s.levels.iter().all(|l| l.len() < k));
    }

    #[test]
    fn merged_sketch_within_bound_of_union(
        data in values(),
        cuts in prop::collection::vec(0.0f64..1.0, 1..4),
        k in prop::sample::select(vec![8usize, 32]),
    ) {
        let mut idx: Vec<usize> = cuts.iter().map(|c| (c * data.len() as f64) as usize).collect();
        idx.sort_unstable();
        let mut parts = Vec::new();
        let mut start = 0;
        for &i in idx.iter().chain([data.len()].iter()) {
            let mut s = QuantileSketch::new(k).unwrap();
            data[start..i].iter().for_each(|&v| s.insert(v));
            parts.push(s);
            start = i;
        }
        let mut merged = parts[0].clone();
        for p in &parts[1..] {
            merged.merge(p).unwrap();
        }
        check_bounds(&merged, &data)?;
    }

    #[test]
    fn state_roundtrips_through_json(data in prop::collection::vec(-1e3f64..1e3, 0..500)) {
        let mut s = QuantileSketch::new(8).unwrap();
        data.iter().for_each(|&v| s.insert(v));
        let j = serde_json::to_value(&s).unwrap();
        let back: QuantileSketch = serde_json::from_value(j).unwrap();
        prop_assert_eq!(back, s);
    }
}

#[test]
fn exact_below_capacity_and_ignores_non_finite() {
    let mut s = QuantileSketch::new(16).unwrap();
    for v in [4.0, 1.0, f64::NAN, 3.0, f64::INFINITY, 2.0] {
        s.insert(v);
    }
    assert_eq!(s.count(), 4);
    assert_eq!(s.max_rank_error(), 0);
    assert_eq!(s.quantile(0.5), Some(2.0)); // lower median of 1..4
    assert_eq!(s.quantile(0.0), Some(1.0));
    assert_eq!(s.quantile(1.0), Some(4.0));
    assert_eq!(s.quantile(0.75), Some(3.0));
    assert_eq!(s.rank(2.5), 2);
    assert_eq!(QuantileSketch::new(16).unwrap().quantile(0.5), None);
}

#[test]
fn deterministic_and_bound_formula() {
    let data: Vec<f64> = (0..100_000)
        .map(|i| f64::from((i * 7919) % 100_003))
        .collect();
    let mut a = QuantileSketch::default();
    let mut b = QuantileSketch::default();
    data.iter().for_each(|&v| a.insert(v));
    data.iter().for_each(|&v| b.insert(v));
    assert_eq!(a, b);
    // n = 1e5, k = 1024: L = ⌊log2 97⌋ + 1 = 7, bound = ⌊1e5·7/1024⌋ = 683
    assert_eq!(rank_error_bound(100_000, 1024), 683);
    assert!(a.max_rank_error() <= 683);
    assert!(a.stored() < 1024 * 8);
    assert_eq!(rank_error_bound(1023, 1024), 0);
    assert_eq!(rank_error_bound(1_000_000, 1024), 9765); // L = 10: ε ≈ 0.98 %
}

#[test]
fn bad_states_and_params_are_refused() {
    assert!(QuantileSketch::new(7).is_err());
    assert!(QuantileSketch::new(4).is_err());
    let mut a = QuantileSketch::new(8).unwrap();
    assert!(a.merge(&QuantileSketch::new(16).unwrap()).is_err());
    for bad in [
        r#"{"k":8,"n":2,"max_error":0,"parity":0,"levels":[[1.0]]}"#,
        r#"{"k":9,"n":1,"max_error":0,"parity":0,"levels":[[1.0]]}"#,
        r#"{"k":8,"n":9,"max_error":0,"parity":0,"levels":[[1,2,3,4,5,6,7,8,9]]}"#,
        r#"{"k":8,"n":1,"max_error":5,"parity":0,"levels":[[1.0]]}"#,
        r#"{"k":8,"n":1,"max_error":0,"parity":0,"levels":[[null]]}"#,
        r#"{"k":8,"n":1,"max_error":0,"parity":0,"levels":[[1.0]],"x":1}"#,
        r#"{"k":8,"n":"1","max_error":0,"parity":0,"levels":[[1.0]]}"#,
    ] {
        assert!(
            serde_json::from_str::<QuantileSketch>(bad).is_err(),
            "{bad}"
        );
    }
    let ok = r#"{"k":8,"n":3,"max_error":0,"parity":0,"levels":[[1.0],[2.0]]}"#;
    assert_eq!(
        serde_json::from_str::<QuantileSketch>(ok).unwrap().count(),
        3
    );
}
