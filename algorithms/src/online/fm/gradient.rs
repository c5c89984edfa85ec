//! [`FmGradientModel`]: the factorization machine with `w0`, `w` and `V` in an external store.

use super::{check_dim, check_row, for_each_nz, loss, output, score, FmValidParams};
use crate::error::{Error, Result};
use crate::features::{Examples, Features};
use crate::learner::{GradientModel, TableSpec};

/// The key of the global bias `w0` in table `"w"` (feature indices are below 2^32).
pub const BIAS_KEY: u64 = u64::MAX;

/// A factorization machine as a [`GradientModel`]: table `"w"` (dim 1) holds `w_i` under key
/// `i` and `w0` under [`BIAS_KEY`]; table `"v"` (dim `k`) holds `v_i` under key `i`. Keys are
/// the distinct feature indices of a batch, ascending (the bias last in `"w"`). Gradients
/// are those of the [module docs](super), summed over the batch; for batches of one row a
/// store applying the learner's rules reproduces
/// [`FactorizationMachine`](super::FactorizationMachine) (initialize `v_i` with
/// [`init_factors`](super::init_factors)).
#[derive(Debug, Clone, PartialEq)]
pub struct FmGradientModel {
    params: FmValidParams,
}

impl FmGradientModel {
    /// The model for checked params.
    pub fn new(params: FmValidParams) -> Self {
        FmGradientModel { params }
    }

    /// The checked params.
    pub fn params(&self) -> &FmValidParams {
        &self.params
    }

    /// Positions of row `r`'s features in `keys` (`w` keys, `v` keys), the bias position, and
    /// the pulled row lengths checked.
    fn locate(
        &self,
        x: &Features,
        r: usize,
        keys: &[Vec<u64>],
        pos: &mut Vec<(usize, usize)>,
    ) -> Result<()> {
        pos.clear();
        let mut missing = None;
        for_each_nz(&x.row(r), |i, _| {
            let key = i as u64;
            match (keys[0].binary_search(&key), keys[1].binary_search(&key)) {
                (Ok(a), Ok(b)) => pos.push((a, b)),
                _ => missing = Some(key),
            }
        });
        match missing {
            Some(key) => Err(Error::Shape(format!(
                "fm: key {key} of row {r} was not pulled"
            ))),
            None => Ok(()),
        }
    }

    fn check_shapes(&self, x: &Features, keys: &[Vec<u64>], rows: &[Vec<f32>]) -> Result<usize> {
        check_dim(x, self.params.dim)?;
        let k = self.params.factors;
        if keys.len() != 2 || rows.len() != 2 {
            return Err(Error::Shape(
                "fm: expects the tables \"w\" and \"v\"".into(),
            ));
        }
        if rows[0].len() != keys[0].len() || rows[1].len() != keys[1].len() * k {
            return Err(Error::Shape("fm: pulled rows do not match the keys".into()));
        }
        keys[0]
            .binary_search(&BIAS_KEY)
            .map_err(|_| Error::Shape("fm: the bias key was not pulled".into()))
    }
}

impl GradientModel for FmGradientModel {
    fn tables(&self) -> Vec<TableSpec> {
        vec![
            TableSpec {
                name: "w".into(),
                dim: 1,
            },
            TableSpec {
                name: "v".into(),
                dim: self.params.factors,
            },
        ]
    }

    fn keys(&self, x: &Features, keys: &mut [Vec<u64>]) {
        let [w, v, ..] = keys else { return };
        v.clear();
        for r in 0..x.rows() {
            for_each_nz(&x.row(r), |i, _| v.push(i as u64));
        }
        v.sort_unstable();
        v.dedup();
        w.clear();
        w.extend_from_slice(v);
        w.push(BIAS_KEY);
    }

    fn gradients(
        &self,
        examples: &Examples,
        keys: &[Vec<u64>],
        rows: &[Vec<f32>],
        grads: &mut [Vec<f32>],
    ) -> Result<f64> {
        let x = &examples.features;
        let bias = self.check_shapes(x, keys, rows)?;
        if grads.len() != 2 {
            return Err(Error::Shape("fm: expects two gradient tables".into()));
        }
        let p = &self.params;
        let k = p.factors;
        for (g, r) in grads.iter_mut().zip(rows) {
            g.clear();
            g.resize(r.len(), 0.0);
        }
        let (w, v) = (&rows[0], &rows[1]);
        let mut sums = vec![0.0f32; k];
        let mut pos = Vec::new();
        let mut total = 0.0f64;
        for r in 0..examples.len() {
            let (y, s) = check_row(p.task, examples, r)?;
            self.locate(x, r, keys, &mut pos)?;
            let row = x.row(r);
            let yhat = score(&row, w[bias], w, v, &mut sums, |e, _| pos[e]);
            let (l, g) = loss(p.task, yhat, y);
            total += f64::from(s * l);
            if s == 0.0 {
                continue;
            }
            let g = s * g;
            grads[0][bias] += g + p.l2_w0 * w[bias];
            let mut e = 0;
            for_each_nz(&row, |_, xi| {
                let (pw, pv) = pos[e];
                e += 1;
                grads[0][pw] += g * xi + p.l2_w * w[pw];
                for (f, &sum) in sums.iter().enumerate() {
                    let at = pv * k + f;
                    grads[1][at] += g * xi * (sum - v[at] * xi) + p.l2_v * v[at];
                }
            });
        }
        Ok(total)
    }

    fn predict_with(
        &self,
        x: &Features,
        keys: &[Vec<u64>],
        rows: &[Vec<f32>],
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let bias = self.check_shapes(x, keys, rows)?;
        out.clear();
        let mut sums = vec![0.0f32; self.params.factors];
        let mut pos = Vec::new();
        for r in 0..x.rows() {
            self.locate(x, r, keys, &mut pos)?;
            let yhat = score(
                &x.row(r),
                rows[0][bias],
                &rows[0],
                &rows[1],
                &mut sums,
                |e, _| pos[e],
            );
            out.push(output(self.params.task, yhat));
        }
        Ok(())
    }
}
