//! The dense network: its parameter layout over one flat `Vec<f32>` (so learner state is plain
//! serializable floats and the crate's [`UpdateRule`](crate::learner::UpdateRule)s update it),
//! and the forward pass in tch.

use tch::{Device, Kind, Tensor};

use super::params::{DeepKind, DeepValidParams};
use crate::error::{Error, Result};
use crate::online::fm::init_factors;

/// One parameter tensor of the network: its shape and where it starts in the flat vector.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Block {
    shape: Vec<i64>,
    offset: usize,
}

impl Block {
    fn len(&self) -> usize {
        self.shape.iter().product::<i64>() as usize
    }
}

/// The parameter blocks of a network, in order: cross layers `(W, b)`, hidden layers
/// `(W, b)`, output `(W, b)`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Layout {
    kind: DeepKind,
    cross: usize,
    hidden: usize,
    pub(super) blocks: Vec<Block>,
    pub(super) len: usize,
}

impl Layout {
    /// The layout for checked params.
    pub(super) fn new(p: &DeepValidParams) -> Layout {
        let d = (p.slots * p.embedding_dim) as i64;
        let mut shapes: Vec<Vec<i64>> = Vec::new();
        for _ in 0..p.cross_layers {
            shapes.push(vec![d, d]);
            shapes.push(vec![d]);
        }
        let mut width = d;
        for &h in &p.hidden {
            shapes.push(vec![width, h as i64]);
            shapes.push(vec![h as i64]);
            width = h as i64;
        }
        shapes.push(vec![width, 1]);
        shapes.push(vec![1]);
        let mut offset = 0;
        let blocks = shapes
            .into_iter()
            .map(|shape| {
                let b = Block { shape, offset };
                offset += b.len();
                b
            })
            .collect();
        Layout {
            kind: p.kind,
            cross: p.cross_layers,
            hidden: p.hidden.len(),
            blocks,
            len: offset,
        }
    }

    /// Seeded initial values: He-normal weights (scaled down for cross layers so that they
    /// start near the identity map), zero biases.
    pub(super) fn init(&self, seed: u64) -> Vec<f32> {
        let mut values = vec![0.0; self.len];
        for (i, b) in self.blocks.iter().enumerate() {
            if b.shape.len() == 2 {
                let fan_in = b.shape[0] as f32;
                let mut std = (2.0 / fan_in).sqrt();
                if i < 2 * self.cross {
                    std *= 0.1;
                }
                let w = &mut values[b.offset..b.offset + b.len()];
                init_factors(seed, 1 + i as u64, std, w);
            }
        }
        values
    }

    /// The blocks as tensors on `device` (leaves that record gradients when `grad`).
    pub(super) fn tensors(&self, values: &[f32], device: Device, grad: bool) -> Vec<Tensor> {
        self.blocks
            .iter()
            .map(|b| {
                let t = Tensor::from_slice(&values[b.offset..b.offset + b.len()])
                    .view(b.shape.as_slice())
                    .to_device(device);
                if grad {
                    t.set_requires_grad(true)
                } else {
                    t
                }
            })
            .collect()
    }

    /// The logits `[B]`: `wide` (`[B]`, the linear part) plus the network over `emb`
    /// (`[B, slots, k]`).
    pub(super) fn forward(&self, w: &[Tensor], emb: &Tensor, wide: &Tensor) -> Tensor {
        let rows = emb.size()[0];
        let x0 = emb.view([rows, -1]);
        let mut h = x0.shallow_clone();
        let mut i = 0;
        for _ in 0..self.cross {
            h = &x0 * (h.matmul(&w[i]) + &w[i + 1]) + &h;
            i += 2;
        }
        for _ in 0..self.hidden {
            h = (h.matmul(&w[i]) + &w[i + 1]).relu();
            i += 2;
        }
        let mut logit = (h.matmul(&w[i]) + &w[i + 1]).view([rows]) + wide;
        if self.kind == DeepKind::DeepFm {
            let sum = emb.sum_dim_intlist(1, false, Kind::Float);
            let sq = (emb * emb).sum_dim_intlist(1, false, Kind::Float);
            let fm = ((&sum * &sum) - sq).sum_dim_intlist(-1, false, Kind::Float) * 0.5;
            logit += fm;
        }
        logit
    }

    /// The gradients of every block after `backward`, flattened into `out` (in layout order).
    pub(super) fn gradients(&self, w: &[Tensor], out: &mut [f32]) -> Result<()> {
        for (t, b) in w.iter().zip(&self.blocks) {
            let g = t.grad();
            let dst = &mut out[b.offset..b.offset + b.len()];
            if g.defined() {
                copy_out(&g, dst)?;
            } else {
                dst.fill(0.0);
            }
        }
        Ok(())
    }
}

/// Copies a float tensor (any device) into `dst`, which must have its number of elements.
pub(super) fn copy_out(t: &Tensor, dst: &mut [f32]) -> Result<()> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let n = t.numel();
    if n != dst.len() {
        return Err(Error::Shape(format!(
            "tensor has {n} elements, expected {}",
            dst.len()
        )));
    }
    t.copy_data(dst, n);
    Ok(())
}
