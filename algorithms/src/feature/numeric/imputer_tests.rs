use proptest::prelude::*;

use super::*;
use crate::feature::numeric::testutil::*;

fn params(cols: &[&str], strategy: ImputeStrategy) -> ImputerParams {
    ImputerParams {
        input_cols: cols.iter().map(|c| c.to_string()).collect(),
        strategy,
        sketch_size: 8,
        ..Default::default()
    }
}

fn messy() -> RecordBatch {
    batch(&[(
        "x",
        vec![
            Some(1.0),
            None,
            Some(f64::NAN),
            Some(5.0),
            Some(5.0),
            Some(f64::INFINITY),
            Some(3.0),
            Some(10.0),
        ],
    )])
}

#[test]
fn each_strategy_against_first_principles() {
    let b = messy();
    // finite values: 1, 5, 5, 3, 10 → mean 24/5, lower median 5, mode 5
    for (strategy, fill) in [
        (ImputeStrategy::Mean, 4.8),
        (ImputeStrategy::Median, 5.0),
        (ImputeStrategy::MostFrequent, 5.0),
        (ImputeStrategy::Constant(-1.0), -1.0),
    ] {
        let s = params(&["x"], strategy)
            .fit(std::slice::from_ref(&b))
            .unwrap();
        assert_eq!(s.fill_values(), &[Some(fill)], "{strategy:?}");
        let out = s.transform(&b).unwrap();
        let x = col(&out, "x");
        assert_eq!(out.column(0).null_count(), 0);
        assert_eq!(x[1], Some(fill));
        assert_eq!(x[2], Some(fill));
        assert_eq!(x[5], Some(f64::INFINITY), "±inf is a value, not missing");
        assert_eq!((x[0], x[3]), (Some(1.0), Some(5.0)));
    }
    // ties in most-frequent go to the smallest value
    let t = dense(&[("x", vec![7.0, 2.0, 7.0, 2.0, 9.0])]);
    let s = params(&["x"], ImputeStrategy::MostFrequent)
        .fit(&[t])
        .unwrap();
    assert_eq!(s.fill_values(), &[Some(2.0)]);
}

#[test]
fn per_column_strategies_outputs_and_errors() {
    let b = batch(&[
        ("a", vec![Some(1.0), None, Some(3.0)]),
        ("b", vec![None, Some(4.0), Some(4.0)]),
    ]);
    let mut p = params(&["a", "b"], ImputeStrategy::Mean);
    p.per_column
        .insert("b".into(), ImputeStrategy::Constant(0.0));
    p.output_cols = Some(vec!["a2".into(), "b2".into()]);
    let s = p.fit(std::slice::from_ref(&b)).unwrap();
    let out = s.transform(&b).unwrap();
    assert_eq!(col(&out, "a2"), vec![Some(1.0), Some(2.0), Some(3.0)]);
    assert_eq!(col(&out, "b2"), vec![Some(0.0), Some(4.0), Some(4.0)]);
    assert_eq!(col(&out, "a"), col(&b, "a"));

    let mut bad = p.clone();
    bad.per_column.insert("zzz".into(), ImputeStrategy::Mean);
    assert!(bad
        .check()
        .unwrap_err()
        .to_string()
        .contains("per_column.zzz"));
    let bad = params(&["a"], ImputeStrategy::Constant(f64::NAN));
    assert!(bad
        .check()
        .unwrap_err()
        .to_string()
        .contains("imputer.strategy"));
    // nothing seen: mean cannot fill, constant can
    let all_missing = batch(&[("a", vec![None, Some(f64::NAN)])]);
    let s = params(&["a"], ImputeStrategy::Mean)
        .fit(std::slice::from_ref(&all_missing))
        .unwrap();
    assert!(matches!(
        s.transform(&all_missing),
        Err(Error::NotFitted(_))
    ));
    let s = params(&["a"], ImputeStrategy::Constant(7.0))
        .check()
        .map(Imputer::new)
        .unwrap();
    assert_eq!(
        col(&s.transform(&all_missing).unwrap(), "a"),
        vec![Some(7.0); 2]
    );
    assert!(matches!(
        s.transform(&dense(&[("q", vec![1.0])])),
        Err(Error::MissingColumn { .. })
    ));
}

fn strategies() -> impl Strategy<Value = ImputeStrategy> {
    prop::sample::select(vec![
        ImputeStrategy::Mean,
        ImputeStrategy::Median,
        ImputeStrategy::MostFrequent,
        ImputeStrategy::Constant(2.5),
    ])
}

proptest! {
    #[test]
    fn online_merge_and_one_row_agree(
        xs in messy_values(1..80),
        strategy in strategies(),
        cut in 0.0f64..1.0,
    ) {
        // small integers so most-frequent has ties and repeats
        let xs: Vec<Option<f64>> = xs.into_iter().map(|v| v.map(|x| if x.is_finite() { (x / 100.0).round() } else { x })).collect();
        let n = xs.len();
        let finite: Vec<f64> = xs.iter().flatten().copied().filter(|v| v.is_finite()).collect();
        let b = batch(&[("x", xs)]);
        let p = params(&["x"], strategy);
        let whole = p.fit(std::slice::from_ref(&b)).unwrap();
        let mut online = Imputer::new(p.check().unwrap());
        for i in 0..n {
            online.update(&b.slice(i, 1)).unwrap();
        }
        let k = (cut * n as f64) as usize;
        let mut merged = p.fit(&[b.slice(0, k)]).unwrap();
        merged.merge(&p.fit(&[b.slice(k, n - k)]).unwrap()).unwrap();
        let (w, o, m) = (whole.fill_values()[0], online.fill_values()[0], merged.fill_values()[0]);
        match strategy {
            ImputeStrategy::Median => {
                // online inserts in the same order as the batch fit; merged is within bound
                prop_assert_eq!(w, o);
                prop_assert_eq!(m.is_some(), !finite.is_empty());
                if let (Some(v), Surrogate::Median(s)) = (m, &merged.states[0]) {
                    let e = s.max_rank_error() as f64;
                    let half = finite.len() as f64 / 2.0;
                    prop_assert!(finite.iter().filter(|&&x| x < v).count() as f64 <= half + e);
                    prop_assert!(finite.iter().filter(|&&x| x <= v).count() as f64 >= half - e);
                }
            }
            _ => {
                prop_assert!(close(w, o, 1e-9) && close(w, m, 1e-9), "{:?} {:?} {:?}", w, o, m);
            }
        }
        if matches!(strategy, ImputeStrategy::Mean) && !finite.is_empty() {
            let mean = finite.iter().sum::<f64>() / finite.len() as f64;
            prop_assert!(close(w, Some(mean), 1e-9));
        }
        check_one_row_equals_batch(&whole, &b)?;
    }
}

#[test]
fn save_load_roundtrip_and_corruption() {
    let b = batch(&[
        ("a", vec![Some(1.0), None, Some(3.0), Some(3.0)]),
        ("b", vec![None, Some(4.0), Some(-0.0), Some(0.0)]),
        ("c", vec![Some(1.0), Some(f64::NAN), Some(2.0), Some(9.0)]),
        ("d", vec![Some(1.0), None, Some(2.0), None]),
    ]);
    let mut p = params(&["a", "b", "c", "d"], ImputeStrategy::Mean);
    p.per_column
        .insert("b".into(), ImputeStrategy::MostFrequent);
    p.per_column.insert("c".into(), ImputeStrategy::Median);
    p.per_column
        .insert("d".into(), ImputeStrategy::Constant(-3.0));
    let s = p.fit(std::slice::from_ref(&b)).unwrap();
    assert_eq!(
        s.fill_values(),
        &[Some(7.0 / 3.0), Some(0.0), Some(2.0), Some(-3.0)]
    );
    check_save_load(&s, &b);
    let mut j = crate::transform::FeatureStep::save(&s).unwrap();
    j["states"].as_array_mut().unwrap().swap(0, 1);
    assert!(crate::feature::load_step(Imputer::KIND, j).is_err());
}
