//! [`KMeans`]: Lloyd's k-means with k-means++ initialization, fitted by linfa-clustering with a
//! seeded RNG (xoshiro256+), so equal seeds on equal data give equal centroids.

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_clustering::KMeansInit;
use ndarray::Array2;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde::{Deserialize, Serialize};

use super::data::{check_dim, dense_records, fit_failed, invalid, refuse_weights};
use crate::error::{Error, Result};
use crate::features::{Examples, FeatureRow, Features};
use crate::learner::{BatchLearner, Predictor, Task};
use crate::transform::Params;

const NAME: &str = "k-means";

/// Parameters of [`KMeans`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct KMeansParams {
    /// Number of clusters, `>= 1` and at most the number of training rows. Default 8.
    pub n_clusters: usize,
    /// Seed of the initialization RNG. Default 0.
    pub seed: u64,
    /// Independent runs (each from a fresh k-means++ initialization); the run with the lowest
    /// inertia wins. `>= 1`. Default 10.
    pub n_runs: usize,
    /// Maximum Lloyd iterations per run, `>= 1`. Default 300.
    pub max_iterations: u64,
    /// A run stops when the centroids move less than this (Euclidean distance between the old
    /// and new centroid matrices); finite and `> 0`. Default `1e-4`.
    pub tolerance: f64,
}

impl Default for KMeansParams {
    fn default() -> Self {
        KMeansParams {
            n_clusters: 8,
            seed: 0,
            n_runs: 10,
            max_iterations: 300,
            tolerance: 1e-4,
        }
    }
}

impl Params for KMeansParams {
    type Valid = KMeans;

    fn check(&self) -> Result<KMeans> {
        if self.n_clusters == 0 {
            return Err(Error::param(format!("{NAME}.n-clusters"), "must be >= 1"));
        }
        if self.n_runs == 0 {
            return Err(Error::param(format!("{NAME}.n-runs"), "must be >= 1"));
        }
        if self.max_iterations == 0 {
            return Err(Error::param(
                format!("{NAME}.max-iterations"),
                "must be >= 1",
            ));
        }
        if !self.tolerance.is_finite() || self.tolerance <= 0.0 {
            return Err(Error::param(
                format!("{NAME}.tolerance"),
                format!("{} is not a finite number > 0", self.tolerance),
            ));
        }
        Ok(KMeans(*self))
    }
}

/// K-means clustering on bounded data: the checked [`KMeansParams`]. Labels are ignored;
/// sample weights other than 1 are refused (linfa's k-means has none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeans(KMeansParams);

impl KMeans {
    /// The parameters.
    pub fn params(&self) -> &KMeansParams {
        &self.0
    }
}

impl BatchLearner for KMeans {
    type Model = KMeansModel;

    fn fit(&self, examples: &Examples) -> Result<KMeansModel> {
        let rows = examples.features.rows();
        if rows == 0 {
            return Err(Error::Shape(format!("{NAME}: no examples to train on")));
        }
        refuse_weights(NAME, examples)?;
        let p = &self.0;
        if p.n_clusters > rows {
            return Err(Error::param(
                format!("{NAME}.n-clusters"),
                format!("{} clusters for {rows} training rows", p.n_clusters),
            ));
        }
        let records = dense_records(NAME, &examples.features)?;
        let fitted = linfa_clustering::KMeans::params_with_rng(
            p.n_clusters,
            Xoshiro256Plus::seed_from_u64(p.seed),
        )
        .n_runs(p.n_runs)
        .max_n_iterations(p.max_iterations)
        .tolerance(p.tolerance)
        .init_method(KMeansInit::KMeansPlusPlus)
        .fit(&DatasetBase::new(records, ()))
        .map_err(|e| fit_failed(NAME, e))?;
        KMeansModel::new(fitted.centroids().clone())
    }
}

/// A fitted [`KMeans`]: `predict` gives the index of the nearest centroid (Euclidean; ties go
/// to the lower index), on dense or sparse features of the training dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawKMeansModel", rename_all = "kebab-case")]
pub struct KMeansModel {
    centroids: Array2<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawKMeansModel {
    centroids: Array2<f64>,
}

impl TryFrom<RawKMeansModel> for KMeansModel {
    type Error = Error;

    fn try_from(raw: RawKMeansModel) -> Result<Self> {
        KMeansModel::new(raw.centroids)
    }
}

impl KMeansModel {
    /// A model with these centroids (one per row); refuses none and non-finite ones.
    fn new(centroids: Array2<f64>) -> Result<Self> {
        if centroids.nrows() == 0 {
            return Err(Error::Shape(format!("{NAME} model: no centroids")));
        }
        if let Some(row) = centroids
            .rows()
            .into_iter()
            .position(|c| c.iter().any(|v| !v.is_finite()))
        {
            return Err(invalid(
                NAME,
                "centroids",
                row,
                "a coordinate is not finite".into(),
            ));
        }
        Ok(KMeansModel { centroids })
    }

    /// The centroids, one row per cluster.
    pub fn centroids(&self) -> &Array2<f64> {
        &self.centroids
    }
}

impl Predictor for KMeansModel {
    fn task(&self) -> Task {
        Task::Clustering {
            clusters: self.centroids.nrows(),
        }
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        let dim = self.centroids.ncols();
        check_dim(NAME, x, dim as u64)?;
        out.clear();
        let mut buf = vec![0.0f64; dim];
        for r in 0..x.rows() {
            match x.row(r) {
                FeatureRow::Dense(v) => buf.iter_mut().zip(v).for_each(|(b, &v)| *b = f64::from(v)),
                FeatureRow::Sparse { indices, values } => {
                    buf.fill(0.0);
                    for (&j, &v) in indices.iter().zip(values) {
                        buf[j as usize] += f64::from(v);
                    }
                }
            }
            let mut best = (0, f64::INFINITY);
            for (k, c) in self.centroids.rows().into_iter().enumerate() {
                let d2: f64 = c.iter().zip(&buf).map(|(a, b)| (a - b) * (a - b)).sum();
                if d2 < best.1 {
                    best = (k, d2);
                }
            }
            out.push(best.0 as f32);
        }
        Ok(())
    }
}
