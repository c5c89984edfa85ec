//! Tests of [`KMeans`] and [`DecisionTree`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{dense, param_of, predict, to_sparse};
use crate::batch::*;
use crate::error::Error;
use crate::features::Examples;
use crate::learner::{BatchLearner, Predictor, Task};
use crate::transform::Params;

const CENTERS: [[f32; 2]; 3] = [[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]];

/// 50 points around each of [`CENTERS`], in blob order.
fn blobs(seed: u64) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for c in CENTERS {
        for _ in 0..50 {
            rows.push([
                c[0] + rng.random_range(-1.0..1.0f32),
                c[1] + rng.random_range(-1.0..1.0f32),
            ]);
        }
    }
    dense(&rows, vec![0.0; rows.len()])
}

fn kmeans(seed: u64) -> KMeans {
    KMeansParams {
        n_clusters: 3,
        seed,
        ..Default::default()
    }
    .check()
    .unwrap()
}

#[test]
fn kmeans_recovers_separated_centers() {
    let ex = blobs(7);
    let model = kmeans(0).fit(&ex).unwrap();
    assert_eq!(model.task(), Task::Clustering { clusters: 3 });
    for c in CENTERS {
        let nearest = model
            .centroids()
            .rows()
            .into_iter()
            .map(|k| ((k[0] - f64::from(c[0])).powi(2) + (k[1] - f64::from(c[1])).powi(2)).sqrt())
            .fold(f64::INFINITY, f64::min);
        assert!(nearest < 0.5, "center {c:?}: nearest centroid at {nearest}");
    }
    // Each blob is one cluster, and the three clusters differ.
    let p = predict(&model, &ex.features);
    let ids: Vec<f32> = p.chunks(50).map(|blob| blob[0]).collect();
    for (blob, id) in p.chunks(50).zip(&ids) {
        assert!(blob.iter().all(|x| x == id));
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    // Sparse rows are assigned like dense ones.
    assert_eq!(predict(&model, &to_sparse(&ex.features, 2)), p);
}

#[test]
fn kmeans_is_deterministic_for_a_seed() {
    let ex = blobs(8);
    let a = kmeans(42).fit(&ex).unwrap();
    let b = kmeans(42).fit(&ex).unwrap();
    assert_eq!(a.centroids(), b.centroids());
    assert_eq!(predict(&a, &ex.features), predict(&b, &ex.features));
    // One run from a single initialization depends on the seed: some seed orders the clusters
    // differently from seed 0.
    let one_run = |seed| KMeansParams {
        n_clusters: 3,
        seed,
        n_runs: 1,
        ..Default::default()
    };
    let first = one_run(0).check().unwrap().fit(&ex).unwrap();
    let differs = (1..20).any(|s| one_run(s).check().unwrap().fit(&ex).unwrap() != first);
    assert!(differs, "the seed has no effect");
}

#[test]
fn kmeans_refuses_bad_params_and_weights() {
    assert_eq!(
        param_of(
            KMeansParams {
                n_clusters: 0,
                ..Default::default()
            }
            .check()
        ),
        "k-means.n-clusters"
    );
    assert_eq!(
        param_of(
            KMeansParams {
                n_runs: 0,
                ..Default::default()
            }
            .check()
        ),
        "k-means.n-runs"
    );
    assert_eq!(
        param_of(
            KMeansParams {
                tolerance: 0.0,
                ..Default::default()
            }
            .check()
        ),
        "k-means.tolerance"
    );
    let bad_iterations = KMeansParams {
        max_iterations: 0,
        ..Default::default()
    };
    assert_eq!(param_of(bad_iterations.check()), "k-means.max-iterations");
    let few = dense(&[[0.0], [1.0]], vec![0.0, 0.0]);
    assert_eq!(param_of(kmeans(0).fit(&few)), "k-means.n-clusters");
    let mut weighted = blobs(9);
    weighted.weights = Some(vec![2.0; weighted.len()]);
    assert!(
        matches!(kmeans(0).fit(&weighted), Err(Error::InvalidValue { column, .. }) if column == "weight")
    );
}

/// Points in the unit square labelled `(x0 > 0.5) xor (x1 > 0.5)`, away from the midlines.
fn xor(n: usize, seed: u64) -> Examples {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    while rows.len() < n {
        let x = [rng.random_range(0.0..1.0f32), rng.random_range(0.0..1.0f32)];
        if (x[0] - 0.5).abs() > 0.05 && (x[1] - 0.5).abs() > 0.05 {
            labels.push(if (x[0] > 0.5) != (x[1] > 0.5) {
                1.0
            } else {
                0.0
            });
            rows.push(x);
        }
    }
    dense(&rows, labels)
}

fn tree() -> DecisionTree {
    DecisionTreeParams::default().check().unwrap()
}

#[test]
fn decision_tree_fits_xor() {
    let ex = xor(200, 10);
    let model = tree().fit(&ex).unwrap();
    assert_eq!(model.task(), Task::Multiclass { classes: 2 });
    assert_eq!(predict(&model, &ex.features), ex.labels);
    let corners = dense(
        &[[0.2, 0.2], [0.8, 0.2], [0.2, 0.8], [0.8, 0.8]],
        vec![0.0; 4],
    );
    assert_eq!(predict(&model, &corners.features), [0.0, 1.0, 1.0, 0.0]);
    assert_eq!(
        predict(&model, &to_sparse(&corners.features, 2)),
        [0.0, 1.0, 1.0, 0.0]
    );
    // The training rows are pure in their leaves: probability 1 for the predicted class.
    let mut scores = Vec::new();
    assert_eq!(
        model
            .predict_scores(&corners.features, &mut scores)
            .unwrap(),
        2
    );
    assert_eq!(scores, [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]);
}

#[test]
fn decision_tree_leaf_probabilities_follow_the_weights() {
    // One split at most: each side's leaf holds its rows' weighted class frequencies.
    let rows = [[0.0f32], [0.0], [0.0], [1.0], [1.0]];
    let mut ex = dense(&rows, vec![0.0, 0.0, 1.0, 2.0, 2.0]);
    ex.weights = Some(vec![1.0, 2.0, 1.0, 1.0, 1.0]);
    let params = DecisionTreeParams {
        max_depth: Some(1),
        ..Default::default()
    };
    let model = params.check().unwrap().fit(&ex).unwrap();
    assert_eq!(model.classes(), 3);
    let mut scores = Vec::new();
    model
        .predict_scores(&dense(&[[0.0], [1.0]], vec![0.0; 2]).features, &mut scores)
        .unwrap();
    assert_eq!(scores, [0.75, 0.25, 0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn decision_tree_refuses_bad_labels_and_params() {
    let ex = dense(&[[0.0], [1.0]], vec![0.0, 1.5]);
    assert!(
        matches!(tree().fit(&ex), Err(Error::InvalidValue { row: 1, ref column, .. }) if column == "label")
    );
    let ex = dense(&[[0.0], [1.0]], vec![-1.0, 1.0]);
    assert!(matches!(
        tree().fit(&ex),
        Err(Error::InvalidValue { row: 0, .. })
    ));
    let bad = |p: DecisionTreeParams| param_of(p.check());
    let d = DecisionTreeParams::default();
    assert_eq!(
        bad(DecisionTreeParams {
            max_depth: Some(0),
            ..d
        }),
        "decision-tree.max-depth"
    );
    assert_eq!(
        bad(DecisionTreeParams {
            min_weight_split: -1.0,
            ..d
        }),
        "decision-tree.min-weight-split"
    );
    assert_eq!(
        bad(DecisionTreeParams {
            min_weight_leaf: f32::NAN,
            ..d
        }),
        "decision-tree.min-weight-leaf"
    );
    assert_eq!(
        bad(DecisionTreeParams {
            min_impurity_decrease: 0.0,
            ..d
        }),
        "decision-tree.min-impurity-decrease"
    );
    let toml_like = r#"{"split-quality": "entropy", "max-depth": 3}"#;
    let p: DecisionTreeParams = serde_json::from_str(toml_like).unwrap();
    assert_eq!(
        (p.split_quality, p.max_depth),
        (SplitQuality::Entropy, Some(3))
    );
}

#[test]
fn kmeans_and_tree_round_trip_through_serde() {
    let ex = blobs(11);
    let model = kmeans(1).fit(&ex).unwrap();
    let back: KMeansModel = serde_json::from_str(&serde_json::to_string(&model).unwrap()).unwrap();
    assert_eq!(predict(&back, &ex.features), predict(&model, &ex.features));
    let ex = xor(100, 12);
    let model = tree().fit(&ex).unwrap();
    let json = serde_json::to_string(&model).unwrap();
    let back: DecisionTreeModel = serde_json::from_str(&json).unwrap();
    assert_eq!(back, model);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    model.predict_scores(&ex.features, &mut a).unwrap();
    back.predict_scores(&ex.features, &mut b).unwrap();
    assert_eq!(a, b);
    // A tree whose node points back to itself is refused on load.
    let cyclic = r#"{"nodes": [{"split": {"feature": 0, "threshold": 0.5, "left": 0, "right": 0}}],
        "classes": 2, "dim": 1}"#;
    assert!(serde_json::from_str::<DecisionTreeModel>(cyclic).is_err());
}
