//! What learners consume: a [`Features`] matrix (sparse CSR over hashed indices, or dense), with
//! labels and weights as [`Examples`].
//!
//! Record batches are for the dataflow; this is for arithmetic. The featurizer that turns one
//! into the other is the same code in training and serving, so there is no skew.

use ndarray::{Array2, ArrayView1};

use crate::error::{Error, Result};

/// A sparse matrix in compressed sparse row form: row `i` holds the entries
/// `indptr[i]..indptr[i + 1]` of `indices` / `values`. Indices are hashed feature ids below `dim`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CsrMatrix {
    indptr: Vec<u32>,
    indices: Vec<u32>,
    values: Vec<f32>,
    dim: u64,
}

impl Default for CsrMatrix {
    /// An empty matrix of dimension 0 (no rows).
    fn default() -> Self {
        CsrMatrix::with_capacity(0, 0, 0)
    }
}

impl CsrMatrix {
    /// An empty matrix of `dim` columns, with room for `rows` rows of `nnz_per_row` entries.
    pub fn with_capacity(dim: u64, rows: usize, nnz_per_row: usize) -> Self {
        let mut indptr = Vec::with_capacity(rows + 1);
        indptr.push(0);
        CsrMatrix {
            indptr,
            indices: Vec::with_capacity(rows * nnz_per_row),
            values: Vec::with_capacity(rows * nnz_per_row),
            dim,
        }
    }

    /// Builds a matrix from raw parts, checking every invariant.
    pub fn from_parts(
        dim: u64,
        indptr: Vec<u32>,
        indices: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<Self> {
        if indptr.first() != Some(&0) {
            return Err(Error::Shape("indptr must start at 0".into()));
        }
        if indptr.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::Shape("indptr must not decrease".into()));
        }
        let nnz = *indptr.last().unwrap_or(&0) as usize;
        if nnz != indices.len() || nnz != values.len() {
            return Err(Error::Shape(format!(
                "indptr ends at {nnz} but there are {} indices and {} values",
                indices.len(),
                values.len()
            )));
        }
        if let Some(&bad) = indices.iter().find(|&&i| u64::from(i) >= dim) {
            return Err(Error::Shape(format!("index {bad} is not below dim {dim}")));
        }
        Ok(CsrMatrix {
            indptr,
            indices,
            values,
            dim,
        })
    }

    /// Empties the matrix, keeping its allocations (so a featurizer reuses one per batch).
    pub fn clear(&mut self, dim: u64) {
        self.indptr.clear();
        self.indptr.push(0);
        self.indices.clear();
        self.values.clear();
        self.dim = dim;
    }

    /// Appends one entry to the row being built.
    #[inline]
    pub fn push(&mut self, index: u32, value: f32) {
        debug_assert!(u64::from(index) < self.dim);
        self.indices.push(index);
        self.values.push(value);
    }

    /// Closes the row being built.
    #[inline]
    pub fn finish_row(&mut self) {
        self.indptr.push(self.indices.len() as u32);
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Number of columns (the hashed feature space).
    pub fn dim(&self) -> u64 {
        self.dim
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Row `i` as parallel index and value slices.
    #[inline]
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// Rows `start..end` as a new matrix.
    pub fn slice_rows(&self, start: usize, end: usize) -> CsrMatrix {
        let (a, b) = (self.indptr[start] as usize, self.indptr[end] as usize);
        CsrMatrix {
            indptr: self.indptr[start..=end]
                .iter()
                .map(|p| p - self.indptr[start])
                .collect(),
            indices: self.indices[a..b].to_vec(),
            values: self.values[a..b].to_vec(),
            dim: self.dim,
        }
    }
}

/// One row of a [`Features`] matrix.
#[derive(Debug, Clone, Copy)]
pub enum FeatureRow<'a> {
    /// Sparse: hashed indices and their values.
    Sparse {
        /// Feature indices.
        indices: &'a [u32],
        /// Feature values.
        values: &'a [f32],
    },
    /// Dense: one value per column.
    Dense(ArrayView1<'a, f32>),
}

impl FeatureRow<'_> {
    /// The dot product with a weight vector indexed by feature (dense index = column).
    #[inline]
    pub fn dot(&self, weights: &[f32]) -> f32 {
        match self {
            FeatureRow::Sparse { indices, values } => indices
                .iter()
                .zip(values.iter())
                .map(|(&i, &v)| weights[i as usize] * v)
                .sum(),
            FeatureRow::Dense(x) => x.iter().zip(weights).map(|(a, b)| a * b).sum(),
        }
    }
}

/// A feature matrix: sparse hashed CSR or dense.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Features {
    /// Hashed sparse features.
    Sparse(CsrMatrix),
    /// Dense features, one row per example.
    Dense(Array2<f32>),
}

impl Features {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self {
            Features::Sparse(m) => m.rows(),
            Features::Dense(a) => a.nrows(),
        }
    }

    /// Number of columns (the dimension learners size their weights by).
    pub fn dim(&self) -> u64 {
        match self {
            Features::Sparse(m) => m.dim(),
            Features::Dense(a) => a.ncols() as u64,
        }
    }

    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> FeatureRow<'_> {
        match self {
            Features::Sparse(m) => {
                let (indices, values) = m.row(i);
                FeatureRow::Sparse { indices, values }
            }
            Features::Dense(a) => FeatureRow::Dense(a.row(i)),
        }
    }

    /// Rows `start..end` as a new matrix.
    pub fn slice_rows(&self, start: usize, end: usize) -> Features {
        match self {
            Features::Sparse(m) => Features::Sparse(m.slice_rows(start, end)),
            Features::Dense(a) => Features::Dense(a.slice(ndarray::s![start..end, ..]).to_owned()),
        }
    }
}

/// Features with their labels and optional per-example weights: what learners learn from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Examples {
    /// The feature matrix.
    pub features: Features,
    /// One label per row (0/1 for binary classification, the class index for multiclass, the
    /// target for regression).
    pub labels: Vec<f32>,
    /// Optional importance weight per row (1 when absent).
    pub weights: Option<Vec<f32>>,
}

impl Examples {
    /// Checks that labels and weights match the number of rows.
    pub fn new(features: Features, labels: Vec<f32>, weights: Option<Vec<f32>>) -> Result<Self> {
        let rows = features.rows();
        if labels.len() != rows {
            return Err(Error::Shape(format!(
                "{} labels for {rows} rows",
                labels.len()
            )));
        }
        if let Some(w) = &weights {
            if w.len() != rows {
                return Err(Error::Shape(format!("{} weights for {rows} rows", w.len())));
            }
        }
        Ok(Examples {
            features,
            labels,
            weights,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The weight of example `i`.
    #[inline]
    pub fn weight(&self, i: usize) -> f32 {
        self.weights.as_ref().map_or(1.0, |w| w[i])
    }

    /// Examples `start..end`.
    pub fn slice(&self, start: usize, end: usize) -> Examples {
        Examples {
            features: self.features.slice_rows(start, end),
            labels: self.labels[start..end].to_vec(),
            weights: self.weights.as_ref().map(|w| w[start..end].to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_build_slice_and_dot() {
        let mut m = CsrMatrix::with_capacity(8, 3, 2);
        m.push(1, 2.0);
        m.push(3, 1.0);
        m.finish_row();
        m.finish_row(); // empty row
        m.push(7, -1.0);
        m.finish_row();
        assert_eq!(m.rows(), 3);
        assert_eq!(m.nnz(), 3);
        let f = Features::Sparse(m.clone());
        let w = [0.0, 1.0, 0.0, 10.0, 0.0, 0.0, 0.0, 5.0];
        assert_eq!(f.row(0).dot(&w), 12.0);
        assert_eq!(f.row(1).dot(&w), 0.0);
        assert_eq!(f.row(2).dot(&w), -5.0);
        let s = m.slice_rows(1, 3);
        assert_eq!(s.rows(), 2);
        assert_eq!(s.row(1), (&[7u32][..], &[-1.0f32][..]));
        assert!(CsrMatrix::from_parts(4, vec![0, 1], vec![4], vec![1.0]).is_err());
        assert!(CsrMatrix::from_parts(4, vec![0, 2], vec![1], vec![1.0]).is_err());
        let empty = CsrMatrix::default();
        assert_eq!((empty.rows(), empty.nnz()), (0, 0));
    }

    #[test]
    fn examples_check_lengths() {
        let f = Features::Dense(Array2::zeros((2, 3)));
        assert!(Examples::new(f.clone(), vec![0.0], None).is_err());
        assert!(Examples::new(f.clone(), vec![0.0, 1.0], Some(vec![1.0])).is_err());
        let e = Examples::new(f, vec![0.0, 1.0], None).unwrap();
        assert_eq!(e.weight(1), 1.0);
        assert_eq!(e.slice(1, 2).len(), 1);
    }
}
