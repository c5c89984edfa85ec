use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::conformance::check_online_learner;
use crate::transform::Params;

/// `n` points around the given 2-d centres (uniform noise of ±`spread`), round robin.
fn points(n: usize, centres: &[[f32; 2]], spread: f32, seed: u64) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((n, 2), |(i, j)| {
        centres[i % centres.len()][j] + rng.random_range(-spread..spread)
    });
    Examples::new(Features::Dense(x), vec![0.0; n], None).unwrap()
}

fn to_sparse(ex: &Examples) -> Examples {
    let Features::Dense(x) = &ex.features else {
        unreachable!()
    };
    let mut m = CsrMatrix::with_capacity(x.ncols() as u64, x.nrows(), x.ncols());
    for r in x.rows() {
        for (j, &v) in r.iter().enumerate() {
            if v != 0.0 {
                m.push(j as u32, v);
            }
        }
        m.finish_row();
    }
    Examples::new(Features::Sparse(m), ex.labels.clone(), ex.weights.clone()).unwrap()
}

fn kmeans(k: usize, decay: Decay, init: KMeansInit, seed: u64) -> StreamingKMeans {
    let mut p = StreamingKMeansParams::new(2, k);
    p.decay = decay;
    p.init = init;
    p.seed = seed;
    StreamingKMeans::new(p.check().unwrap())
}

const TRUE: [[f32; 2]; 3] = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]];

/// Every true centre has a learned centre within `tol`.
fn assert_recovers(m: &StreamingKMeans, truth: &[[f32; 2]], tol: f64) {
    let mut c = Vec::new();
    for t in truth {
        let best = (0..m.params.k)
            .map(|j| {
                m.center(j, &mut c);
                (c[0] - f64::from(t[0])).hypot(c[1] - f64::from(t[1]))
            })
            .fold(f64::INFINITY, f64::min);
        assert!(best < tol, "no centre near {t:?} (closest {best})");
    }
}

#[test]
fn recovers_well_separated_clusters() {
    for sparse in [false, true] {
        let mut data = points(3000, &TRUE, 1.0, 1);
        if sparse {
            data = to_sparse(&data);
        }
        let mut m = kmeans(3, Decay::None, KMeansInit::KMeansPlusPlus { rows: None }, 3);
        m.learn(&data).unwrap();
        assert_recovers(&m, &TRUE, 0.15);
        // The three clusters hold the points, and predict names the nearest centre.
        let total: f64 = m.weights().iter().sum();
        assert!((total - 3000.0).abs() < 1e-6);
        let mut out = Vec::new();
        m.predict(&data.features, &mut out).unwrap();
        assert_eq!(out[0], out[3]);
        assert_ne!(out[0], out[1]);
        assert_ne!(out[1], out[2]);
    }
}

#[test]
fn centre_is_the_weighted_mean_without_decay() {
    // One cluster, no decay: the centre is the weighted mean of everything seen.
    let x = Array2::from_shape_vec((3, 2), vec![1.0, 2.0, 3.0, 4.0, 5.0, 0.0]).unwrap();
    let ex = Examples::new(Features::Dense(x), vec![0.0; 3], Some(vec![1.0, 2.0, 1.0])).unwrap();
    let init = KMeansInit::Centers {
        centers: vec![100.0, 100.0],
        weight: 0.0,
    };
    let mut m = kmeans(1, Decay::None, init, 0);
    m.learn(&ex).unwrap();
    let mut c = Vec::new();
    m.center(0, &mut c);
    assert!(
        (c[0] - 12.0 / 4.0).abs() < 1e-12 && (c[1] - 10.0 / 4.0).abs() < 1e-12,
        "{c:?}"
    );
    // Spark's formula with decay: a = 0.5, c' = (c·n·a + x·m) / (n·a + m).
    let init = KMeansInit::Centers {
        centers: vec![2.0, 2.0],
        weight: 4.0,
    };
    let mut m = kmeans(1, Decay::Factor { a: 0.5 }, init, 0);
    m.learn(&ex.slice(0, 1)).unwrap();
    m.center(0, &mut c);
    assert!((c[0] - (2.0 * 2.0 + 1.0) / 3.0).abs() < 1e-12);
    assert!((m.weights()[0] - 3.0).abs() < 1e-12);
}

#[test]
fn decay_follows_a_moved_cluster() {
    let init = KMeansInit::Centers {
        centers: vec![0.0, 0.0, 10.0, 10.0],
        weight: 0.0,
    };
    let before = points(2000, &[[0.0, 0.0], [10.0, 10.0]], 0.5, 4);
    let after = points(2000, &[[0.0, 0.0], [20.0, 10.0]], 0.5, 5);
    let mut forgetful = kmeans(2, Decay::HalfLife { points: 50.0 }, init.clone(), 0);
    let mut steady = kmeans(2, Decay::None, init, 0);
    for m in [&mut forgetful, &mut steady] {
        m.learn(&before).unwrap();
        m.learn(&after).unwrap();
    }
    let mut c = Vec::new();
    forgetful.center(1, &mut c);
    assert!(
        (c[0] - 20.0).abs() < 0.5 && (c[1] - 10.0).abs() < 0.5,
        "{c:?}"
    );
    steady.center(1, &mut c);
    assert!(
        (c[0] - 15.0).abs() < 0.5,
        "the cumulative mean sits between: {c:?}"
    );
    let a = Decay::HalfLife { points: 50.0 }.factor();
    assert!((a.powi(50) - 0.5).abs() < 1e-12);
}

#[test]
fn dying_cluster_is_split_from_the_largest() {
    let init = KMeansInit::Centers {
        centers: vec![0.0, 0.0, 100.0, 100.0],
        weight: 1.0,
    };
    let mut m = kmeans(2, Decay::HalfLife { points: 1.0 }, init, 0);
    // 40 points near the origin: cluster 1 decays to 2^-40 of cluster 0 and is revived next to it.
    m.learn(&points(40, &[[0.0, 0.0]], 0.1, 6)).unwrap();
    let mut c = Vec::new();
    m.center(1, &mut c);
    assert!(c[0].abs() < 0.2 && c[1].abs() < 0.2, "{c:?}");
    assert!(m.weights()[1] > 1e-8 * m.weights()[0], "{:?}", m.weights());
}

#[test]
fn random_init_is_seeded_and_plus_plus_waits_for_its_rows() {
    let (a, b) = (
        kmeans(3, Decay::None, KMeansInit::Random { std: 1.0 }, 9),
        kmeans(3, Decay::None, KMeansInit::Random { std: 1.0 }, 9),
    );
    assert_eq!(a, b);
    assert_ne!(
        a,
        kmeans(3, Decay::None, KMeansInit::Random { std: 1.0 }, 10)
    );
    let mut m = kmeans(
        3,
        Decay::None,
        KMeansInit::KMeansPlusPlus { rows: Some(5) },
        1,
    );
    m.learn(&points(4, &TRUE, 0.1, 2)).unwrap();
    assert!(!m.is_initialized());
    m.learn(&points(1, &TRUE, 0.1, 3)).unwrap();
    assert!(m.is_initialized());
    assert!((m.weights().iter().sum::<f64>() - 5.0).abs() < 1e-12);
}

#[test]
fn params_and_inputs_are_checked() {
    let mut p = StreamingKMeansParams::new(2, 0);
    assert!(p.check().unwrap_err().to_string().contains("kmeans.k"));
    p.k = 2;
    p.decay = Decay::HalfLife { points: 0.0 };
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("kmeans.decay.points"));
    p.decay = Decay::None;
    p.init = KMeansInit::KMeansPlusPlus { rows: Some(1) };
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("kmeans.init.rows"));
    p.init = KMeansInit::Centers {
        centers: vec![0.0; 3],
        weight: 1.0,
    };
    assert!(p
        .check()
        .unwrap_err()
        .to_string()
        .contains("kmeans.init.centers"));
    let p: StreamingKMeansParams = serde_json::from_str(
        r#"{"dim": 3, "k": 2, "decay": {"kind": "half-life", "points": 100}}"#,
    )
    .unwrap();
    assert_eq!(p.decay, Decay::HalfLife { points: 100.0 });
    let mut m = kmeans(2, Decay::None, KMeansInit::Random { std: 1.0 }, 0);
    let bad = Array2::from_shape_vec((1, 2), vec![f32::NAN, 0.0]).unwrap();
    let bad = Examples::new(Features::Dense(bad), vec![0.0], None).unwrap();
    assert!(m.learn(&bad).is_err());
}

#[test]
fn conformance() {
    let data = points(60, &TRUE, 1.0, 7);
    let pp = KMeansInit::KMeansPlusPlus { rows: Some(10) };
    let half_life = Decay::HalfLife { points: 20.0 };
    check_online_learner(|s| kmeans(3, Decay::None, pp.clone(), s), &data, 1e-6);
    check_online_learner(
        |s| kmeans(3, half_life, pp.clone(), s),
        &to_sparse(&data),
        1e-6,
    );
    let random = KMeansInit::Random { std: 3.0 };
    check_online_learner(|s| kmeans(3, half_life, random.clone(), s), &data, 1e-6);
}
