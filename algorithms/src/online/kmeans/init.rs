//! Seeded initialization: k-means++ over buffered rows and random normal centres.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::features::CsrMatrix;

/// A uniform draw in `[0, 1)` with 53 random bits.
fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Fills `out` with `N(0, std²)` draws (Box–Muller) from `seed`.
pub(super) fn normal_centers(seed: u64, std: f64, out: &mut [f64]) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for pair in out.chunks_mut(2) {
        let u1 = 1.0 - uniform(&mut rng); // (0, 1]: the log is finite
        let u2 = uniform(&mut rng);
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = 2.0 * std::f64::consts::PI * u2;
        pair[0] = r * theta.cos();
        if let Some(second) = pair.get_mut(1) {
            *second = r * theta.sin();
        }
    }
}

/// Picks an index with probability proportional to `mass` (uniformly when all are 0).
fn sample(rng: &mut ChaCha8Rng, mass: &[f64]) -> usize {
    let total: f64 = mass.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return (uniform(rng) * mass.len() as f64) as usize % mass.len();
    }
    let target = uniform(rng) * total;
    let mut acc = 0.0;
    for (i, &m) in mass.iter().enumerate() {
        acc += m;
        if target < acc && m > 0.0 {
            return i;
        }
    }
    // Rounding left the target at the very end: the last row with mass.
    mass.iter().rposition(|&m| m > 0.0).unwrap_or(0)
}

/// k-means++ (Arthur & Vassilvitskii 2007) over the rows of `buf` with importance `weights`:
/// writes `k` dense centres into `centers` (`k · dim`, row-major). The first centre is drawn in
/// proportion to weight, each next one to weight × squared distance to the nearest centre.
pub(super) fn kmeans_plus_plus(
    buf: &CsrMatrix,
    weights: &[f32],
    k: usize,
    seed: u64,
    centers: &mut [f64],
) {
    let (n, dim) = (buf.rows(), buf.dim() as usize);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w: Vec<f64> = weights.iter().map(|&v| f64::from(v)).collect();
    let sq_norm: Vec<f64> = (0..n)
        .map(|i| buf.row(i).1.iter().map(|&v| f64::from(v).powi(2)).sum())
        .collect();
    let mut nearest = vec![f64::INFINITY; n];
    let mut mass = w.clone();
    for c in 0..k {
        let pick = sample(&mut rng, &mass);
        let centre = &mut centers[c * dim..(c + 1) * dim];
        centre.fill(0.0);
        let (idx, val) = buf.row(pick);
        for (&j, &v) in idx.iter().zip(val) {
            centre[j as usize] += f64::from(v);
        }
        let c_norm: f64 = centre.iter().map(|v| v * v).sum();
        for i in 0..n {
            let (idx, val) = buf.row(i);
            let dot: f64 = idx
                .iter()
                .zip(val)
                .map(|(&j, &v)| centre[j as usize] * f64::from(v))
                .sum();
            let d2 = (sq_norm[i] - 2.0 * dot + c_norm).max(0.0);
            nearest[i] = nearest[i].min(d2);
            mass[i] = w[i] * nearest[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_are_seeded_and_standard() {
        let (mut a, mut b) = (vec![0.0; 20_001], vec![0.0; 20_001]);
        normal_centers(5, 2.0, &mut a);
        normal_centers(5, 2.0, &mut b);
        assert_eq!(a, b);
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            mean.abs() < 0.05 && (var - 4.0).abs() < 0.15,
            "{mean} {var}"
        );
    }

    #[test]
    fn plus_plus_picks_one_point_per_far_group() {
        // Three tight groups far apart: k-means++ must pick one centre in each.
        let mut m = CsrMatrix::with_capacity(1, 9, 1);
        for g in [0.0f32, 100.0, 200.0] {
            for d in [0.0f32, 0.1, 0.2] {
                m.push(0, g + d + 1.0);
                m.finish_row();
            }
        }
        let mut centers = vec![0.0; 3];
        kmeans_plus_plus(&m, &[1.0; 9], 3, 11, &mut centers);
        let mut groups: Vec<i64> = centers.iter().map(|c| (c / 100.0).floor() as i64).collect();
        groups.sort_unstable();
        assert_eq!(groups, vec![0, 1, 2], "{centers:?}");
    }
}
