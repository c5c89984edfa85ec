//! Parameters of the deep CTR learners ([`DeepModel`](super::DeepModel)).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{AdaGradParams, AdamParams, Rule, RuleParams};
use crate::transform::Params;

/// Which network sits on top of the embeddings (every one also has the wide, linear part).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeepKind {
    /// Wide & deep (Cheng et al. 2016): linear part + an MLP over the concatenated embeddings.
    WideDeep,
    /// DeepFM (Guo et al. 2017): linear part + factorization-machine pairwise term over the
    /// embeddings + an MLP over them.
    #[serde(rename = "deepfm")]
    DeepFm,
    /// DCN-v2 (Wang et al. 2021), stacked: linear part + full-rank cross layers
    /// `x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l` over the embeddings, then an MLP.
    Dcn,
}

impl DeepKind {
    /// The learner name (`wide-deep`, `deepfm`, `dcn`).
    pub fn name(self) -> &'static str {
        match self {
            DeepKind::WideDeep => "wide-deep",
            DeepKind::DeepFm => "deepfm",
            DeepKind::Dcn => "dcn",
        }
    }
}

/// Where the dense network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// The CPU (the default; seeded runs are deterministic).
    Cpu,
    /// CUDA device 0; refused when the libtorch loaded has no CUDA.
    Cuda,
    /// CUDA when available, else the CPU.
    Auto,
}

/// Parameters of the deep learners. Every field has a default; `dim` comes from the feature
/// pipeline. Keys are kebab-case (`embedding-dim`, `hidden`, …); unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DeepParams {
    /// Feature dimension (the hashed space). Required, 1..=2^32.
    pub dim: u64,
    /// The network. Set by the learner name; a `kind` in the params must agree with it.
    pub kind: DeepKind,
    /// Embedding width `k`, 1..=256. Default 8.
    #[serde(default = "d_embedding_dim")]
    pub embedding_dim: usize,
    /// Embedding slots per row, 1..=1024: the first `slots` features of a row get embeddings
    /// (slot `i` is the row's `i`-th feature; with the standard pipeline — numeric columns,
    /// then categorical, then crosses — slot `i` is column `i` of a row without nulls). Later
    /// features (e.g. hashed crosses) feed only the wide part; missing ones are zeros.
    /// Default 16.
    #[serde(default = "d_slots")]
    pub slots: usize,
    /// Embedding table rows are `min(dim, 2^table_bits)` (feature index modulo rows),
    /// 1..=28. Default 20.
    #[serde(default = "d_table_bits")]
    pub table_bits: u32,
    /// Wide weights are `min(dim, 2^wide_bits)` (feature index modulo that), 1..=30.
    /// Default 24.
    #[serde(default = "d_wide_bits")]
    pub wide_bits: u32,
    /// Hidden layer widths of the MLP, each 1..=4096, at most 8 layers. Default `[64, 32]`.
    #[serde(default = "d_hidden")]
    pub hidden: Vec<usize>,
    /// Cross layers (DCN only; 1..=8 there, must be absent or 0 otherwise). Default 2 for DCN.
    #[serde(default)]
    pub cross_layers: Option<usize>,
    /// Rows per gradient step, 1..=65536. The model steps once every `batch-size` rows
    /// learned, however the input is chunked (rows in between wait in a pending batch that is
    /// part of the learner state). Default 256.
    #[serde(default = "d_batch_size")]
    pub batch_size: usize,
    /// Standard deviation of the embeddings' normal initialization, finite, ≥ 0. Default 0.01.
    #[serde(default = "d_init_std")]
    pub init_std: f32,
    /// Seed of every initialization. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Update rule of the wide weights and the embeddings (sparse rows, applied row by row as
    /// a parameter server does). Default AdaGrad (`η = 0.05`).
    #[serde(default = "d_sparse_rule")]
    pub sparse_rule: RuleParams,
    /// Update rule of the dense network. Default Adam (`η = 0.002`).
    #[serde(default = "d_dense_rule")]
    pub dense_rule: RuleParams,
    /// Where the dense network runs. Default `cpu`.
    #[serde(default = "d_device")]
    pub device: DeviceChoice,
}

fn d_embedding_dim() -> usize {
    8
}
fn d_slots() -> usize {
    16
}
fn d_table_bits() -> u32 {
    20
}
fn d_wide_bits() -> u32 {
    24
}
fn d_hidden() -> Vec<usize> {
    vec![64, 32]
}
fn d_batch_size() -> usize {
    256
}
fn d_init_std() -> f32 {
    0.01
}
fn d_sparse_rule() -> RuleParams {
    RuleParams::AdaGrad(AdaGradParams {
        eta: 0.05,
        ..AdaGradParams::default()
    })
}
fn d_dense_rule() -> RuleParams {
    RuleParams::Adam(AdamParams {
        eta: 0.002,
        ..AdamParams::default()
    })
}
fn d_device() -> DeviceChoice {
    DeviceChoice::Cpu
}

impl DeepParams {
    /// The defaults of `kind` for `dim` features.
    pub fn new(kind: DeepKind, dim: u64) -> Self {
        DeepParams {
            dim,
            kind,
            embedding_dim: d_embedding_dim(),
            slots: d_slots(),
            table_bits: d_table_bits(),
            wide_bits: d_wide_bits(),
            hidden: d_hidden(),
            cross_layers: None,
            batch_size: d_batch_size(),
            init_std: d_init_std(),
            seed: 0,
            sparse_rule: d_sparse_rule(),
            dense_rule: d_dense_rule(),
            device: d_device(),
        }
    }
}

/// Checked [`DeepParams`]: ranges verified, rules built, sizes resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DeepValidParams {
    pub(super) params: DeepParams,
    pub(super) sparse_rule: Rule,
    pub(super) dense_rule: Rule,
    /// Embedding table rows.
    pub(super) table_rows: u64,
    /// Cross layers (0 unless DCN).
    pub(super) cross_layers: usize,
}

impl std::ops::Deref for DeepValidParams {
    type Target = DeepParams;
    fn deref(&self) -> &DeepParams {
        &self.params
    }
}

fn in_range(name: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(Error::param(
            format!("deep.{name}"),
            format!("must be in {lo}..={hi}, got {v}"),
        ))
    }
}

fn rule(name: &str, p: &RuleParams) -> Result<Rule> {
    p.check().map_err(|e| match e {
        Error::InvalidParam { param, message } => {
            Error::param(format!("deep.{name}.{param}"), message)
        }
        other => other,
    })
}

impl Params for DeepParams {
    type Valid = DeepValidParams;

    fn check(&self) -> Result<DeepValidParams> {
        if self.dim == 0 || self.dim > u64::from(u32::MAX) + 1 {
            return Err(Error::param("deep.dim", "must be in 1..=2^32"));
        }
        in_range("embedding-dim", self.embedding_dim, 1, 256)?;
        in_range("slots", self.slots, 1, 1024)?;
        in_range("table-bits", self.table_bits as usize, 1, 28)?;
        in_range("wide-bits", self.wide_bits as usize, 1, 30)?;
        in_range("batch-size", self.batch_size, 1, 65536)?;
        in_range("hidden (layers)", self.hidden.len(), 0, 8)?;
        for &h in &self.hidden {
            in_range("hidden", h, 1, 4096)?;
        }
        let cross_layers = match (self.kind, self.cross_layers) {
            (DeepKind::Dcn, None) => 2,
            (DeepKind::Dcn, Some(n)) => {
                in_range("cross-layers", n, 1, 8)?;
                n
            }
            (_, None | Some(0)) => 0,
            (kind, Some(_)) => {
                return Err(Error::param(
                    "deep.cross-layers",
                    format!("only `dcn` has cross layers, not `{}`", kind.name()),
                ))
            }
        };
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            return Err(Error::param("deep.init-std", "must be finite and >= 0"));
        }
        Ok(DeepValidParams {
            params: self.clone(),
            sparse_rule: rule("sparse-rule", &self.sparse_rule)?,
            dense_rule: rule("dense-rule", &self.dense_rule)?,
            table_rows: self.dim.min(1u64 << self.table_bits),
            cross_layers,
        })
    }
}
