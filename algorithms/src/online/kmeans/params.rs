//! Parameters of [`StreamingKMeans`](super::StreamingKMeans).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::transform::Params;

/// How fast old points are forgotten. The decay is applied **per point** (see the
/// [module docs](super)): before each row of weight `s` is folded in, every cluster weight is
/// multiplied by `a^s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum Decay {
    /// `a = 1`: every point counts forever (cumulative means; Spark's default).
    None,
    /// The weight of a point halves after `points` further points: `a = 0.5^(1/points)`
    /// (Spark's `setHalfLife(points, "points")`). `points` is finite and > 0.
    HalfLife {
        /// The half-life in points.
        points: f64,
    },
    /// An explicit decay factor `a` in `[0, 1]` (Spark's `setDecayFactor`, applied per point).
    Factor {
        /// The factor `a`.
        a: f64,
    },
}

impl Decay {
    /// The per-point factor `a`.
    pub fn factor(&self) -> f64 {
        match *self {
            Decay::None => 1.0,
            Decay::HalfLife { points } => 0.5f64.powf(1.0 / points),
            Decay::Factor { a } => a,
        }
    }
}

/// How the centres start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum KMeansInit {
    /// Buffer the first `rows` rows (default `10·k`, at least `k`), seed the centres with
    /// k-means++ on them (sampling by importance weight × squared distance, from the params
    /// seed), then fold the buffered rows in one by one. Until then `predict` gives 0.
    KMeansPlusPlus {
        /// Rows to buffer; `None` means `10·k`.
        #[serde(default)]
        rows: Option<usize>,
    },
    /// Centres drawn from `N(0, std²)` per coordinate from the params seed, with weight 0
    /// (Spark's `setRandomCenters(dim, 0.0, seed)`); the first point a centre wins replaces it.
    Random {
        /// Standard deviation, finite and > 0.
        std: f64,
    },
    /// Given centres (`k · dim` values, row-major) with an initial weight each, e.g. from a
    /// batch k-means: the warm start.
    Centers {
        /// The centres, row-major.
        centers: Vec<f64>,
        /// Initial weight of every centre, finite and ≥ 0.
        weight: f64,
    },
}

/// Parameters of [`StreamingKMeans`](super::StreamingKMeans).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingKMeansParams {
    /// Feature dimension (dense width or hashed space). Required, 1..=2^32.
    pub dim: u64,
    /// Number of clusters `k`, ≥ 1. Required.
    pub k: usize,
    /// Forgetting. Default [`Decay::None`].
    #[serde(default = "no_decay")]
    pub decay: Decay,
    /// Initial centres. Default k-means++ on the first `10·k` rows.
    #[serde(default = "plus_plus")]
    pub init: KMeansInit,
    /// Seed of the initialization. Default 0.
    #[serde(default)]
    pub seed: u64,
}

fn no_decay() -> Decay {
    Decay::None
}

fn plus_plus() -> KMeansInit {
    KMeansInit::KMeansPlusPlus { rows: None }
}

impl StreamingKMeansParams {
    /// Parameters with the defaults for `dim` features and `k` clusters.
    pub fn new(dim: u64, k: usize) -> Self {
        StreamingKMeansParams {
            dim,
            k,
            decay: Decay::None,
            init: plus_plus(),
            seed: 0,
        }
    }
}

/// Checked [`StreamingKMeansParams`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct StreamingKMeansValidParams(StreamingKMeansParams);

impl std::ops::Deref for StreamingKMeansValidParams {
    type Target = StreamingKMeansParams;
    fn deref(&self) -> &StreamingKMeansParams {
        &self.0
    }
}

impl StreamingKMeansValidParams {
    /// Rows buffered before k-means++ seeding (0 for the other initializations).
    pub fn init_rows(&self) -> usize {
        match self.init {
            KMeansInit::KMeansPlusPlus { rows } => rows.unwrap_or(10 * self.k),
            _ => 0,
        }
    }
}

impl Params for StreamingKMeansParams {
    type Valid = StreamingKMeansValidParams;

    fn check(&self) -> Result<StreamingKMeansValidParams> {
        if self.dim == 0 || self.dim > u64::from(u32::MAX) + 1 {
            return Err(Error::param("kmeans.dim", "must be in 1..=2^32"));
        }
        if self.k == 0 {
            return Err(Error::param("kmeans.k", "must be at least 1"));
        }
        match self.decay {
            Decay::None => {}
            Decay::HalfLife { points } if points.is_finite() && points > 0.0 => {}
            Decay::HalfLife { .. } => {
                return Err(Error::param(
                    "kmeans.decay.points",
                    "must be finite and > 0",
                ))
            }
            Decay::Factor { a } if (0.0..=1.0).contains(&a) => {}
            Decay::Factor { .. } => {
                return Err(Error::param("kmeans.decay.a", "must be in [0, 1]"))
            }
        }
        match &self.init {
            KMeansInit::KMeansPlusPlus { rows: Some(r) } if *r < self.k => {
                return Err(Error::param("kmeans.init.rows", "must be at least k"))
            }
            KMeansInit::Random { std } if !(std.is_finite() && *std > 0.0) => {
                return Err(Error::param("kmeans.init.std", "must be finite and > 0"))
            }
            KMeansInit::Centers { centers, weight } => {
                if centers.len() as u64 != self.k as u64 * self.dim {
                    return Err(Error::param(
                        "kmeans.init.centers",
                        format!("needs k·dim = {} values", self.k as u64 * self.dim),
                    ));
                }
                if centers.iter().any(|c| !c.is_finite()) {
                    return Err(Error::param("kmeans.init.centers", "must be finite"));
                }
                if !(weight.is_finite() && *weight >= 0.0) {
                    return Err(Error::param(
                        "kmeans.init.weight",
                        "must be finite and >= 0",
                    ));
                }
            }
            _ => {}
        }
        Ok(StreamingKMeansValidParams(self.clone()))
    }
}
