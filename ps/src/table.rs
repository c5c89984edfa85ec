//! Table declarations: [`TableConfig`] (serde, unchecked) → [`TableConfig::check`] →
//! [`ValidTableConfig`], which is what a store builds its tables from.
//!
//! A table holds `dim` floats per `u64` key, plus the update rule's state, and grows with the key
//! space. A row appears on the push that *admits* its key:
//!
//! - **Admission** (`admission-min-count = N`): only **pushes** count occurrences (pulls never
//!   admit, so serving traffic does not grow a table). With `N <= 1` the first push admits the
//!   key. With `N > 1` the first `N − 1` pushes of a key only count (their gradients are
//!   dropped) and the `N`-th creates the row and applies its gradient.
//! - **Pulls** of a key without a row answer the initializer's values when `N <= 1` (the values
//!   the row will start from) and zeros while the key is not admitted (`N > 1`).
//! - **Expiry**: a row not pushed to for `expiry` is dropped by the store's `expire(now)`; so
//!   are pending admission counts not bumped for that long. A dropped key starts over.

use std::time::Duration;

use eddy_algorithms::optim::{Rule, RuleParams};
use eddy_algorithms::transform::Params;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The largest `dim` a table accepts.
pub const MAX_DIM: usize = 1 << 16;

/// The longest table name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// How a fresh row's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum Initializer {
    /// All zeros (the default; what linear models want).
    #[default]
    Zeros,
    /// Independent `N(0, std²)` draws, deterministic per key: the generator is seeded from
    /// `(seed, key)`, so every shard, process and restart initializes a key identically.
    Normal {
        /// Standard deviation (finite, > 0).
        std: f32,
        /// Base seed.
        seed: u64,
    },
}

impl Initializer {
    /// Fills `out` with the initial weights of `key`.
    pub fn fill(&self, key: u64, out: &mut [f32]) {
        match *self {
            Initializer::Zeros => out.fill(0.0),
            Initializer::Normal { std, seed } => {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&seed.to_le_bytes());
                bytes[8..].copy_from_slice(&key.to_le_bytes());
                let mut rng = ChaCha8Rng::seed_from_u64(xxhash_rust::xxh3::xxh3_64(&bytes));
                for w in out.iter_mut() {
                    // Box–Muller; u1 in (0, 1] so the logarithm is finite.
                    let u1: f64 = 1.0 - rng.random::<f64>();
                    let u2: f64 = rng.random::<f64>();
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    *w = (z * f64::from(std)) as f32;
                }
            }
        }
    }
}

/// The declaration of one table (kebab-case keys, unknown keys rejected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TableConfig {
    /// Unique name (1..=255 bytes). Required.
    pub name: String,
    /// Floats per key (1..=65536): 1 for linear weights, `k` for factors or embeddings.
    /// Required.
    pub dim: usize,
    /// The update rule applied on the server. Default: normalized-adaptive.
    #[serde(default)]
    pub rule: RuleParams,
    /// How fresh rows start. Default: zeros.
    #[serde(default)]
    pub init: Initializer,
    /// Pushes a key needs before it gets a row (0 or 1: at once). Default 0.
    #[serde(default)]
    pub admission_min_count: u32,
    /// Rows not pushed to for this long are dropped by `expire`. Default: never.
    #[serde(default)]
    pub expiry: Option<Duration>,
}

impl TableConfig {
    /// A table named `name` of `dim` floats per key with every other field at its default.
    pub fn new(name: impl Into<String>, dim: usize) -> Self {
        TableConfig {
            name: name.into(),
            dim,
            rule: RuleParams::default(),
            init: Initializer::Zeros,
            admission_min_count: 0,
            expiry: None,
        }
    }

    /// Validates every field, naming the first one that is out of range.
    pub fn check(&self) -> Result<ValidTableConfig> {
        let name = &self.name;
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::config(
                name,
                "name",
                format!("must be 1..={MAX_NAME_LEN} bytes"),
            ));
        }
        if self.dim == 0 || self.dim > MAX_DIM {
            return Err(Error::config(
                name,
                "dim",
                format!("{} is not in 1..={MAX_DIM}", self.dim),
            ));
        }
        let rule = self
            .rule
            .check()
            .map_err(|e| Error::config(name, "rule", e.to_string()))?;
        if let Initializer::Normal { std, .. } = self.init {
            if !(std.is_finite() && std > 0.0) {
                return Err(Error::config(
                    name,
                    "init.std",
                    format!("{std} must be finite and > 0"),
                ));
            }
        }
        if self.expiry == Some(Duration::ZERO) {
            return Err(Error::config(name, "expiry", "must be > 0 (or absent)"));
        }
        Ok(ValidTableConfig {
            config: self.clone(),
            rule,
        })
    }
}

/// A checked [`TableConfig`] with its built rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTableConfig {
    config: TableConfig,
    rule: Rule,
}

impl ValidTableConfig {
    /// The declaration it was checked from.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Floats per key.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// The update rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Pushes a key needs before it gets a row (at least 1).
    pub fn admission(&self) -> u32 {
        self.config.admission_min_count.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_algorithms::optim::FtrlProximalParams;

    #[test]
    fn validation_names_the_bad_field() {
        let field = |c: TableConfig| match c.check() {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        };
        assert_eq!(field(TableConfig::new("", 1)), "name");
        assert_eq!(field(TableConfig::new("w", 0)), "dim");
        assert_eq!(field(TableConfig::new("w", MAX_DIM + 1)), "dim");
        let mut c = TableConfig::new("w", 1);
        c.rule = RuleParams::Ftrl(FtrlProximalParams {
            alpha: -1.0,
            ..Default::default()
        });
        let e = c.check().unwrap_err();
        assert!(e.to_string().contains("ftrl.alpha"), "{e}");
        let mut c = TableConfig::new("w", 1);
        c.init = Initializer::Normal {
            std: f32::NAN,
            seed: 1,
        };
        assert_eq!(field(c), "init.std");
        let mut c = TableConfig::new("w", 1);
        c.expiry = Some(Duration::ZERO);
        assert_eq!(field(c), "expiry");
        assert_eq!(TableConfig::new("w", 4).check().unwrap().admission(), 1);
    }

    #[test]
    fn config_from_json_with_defaults_and_unknown_keys_rejected() {
        let c: TableConfig = serde_json::from_str(
            r#"{"name":"emb","dim":8,"rule":{"kind":"ftrl","alpha":0.05},
                "init":{"kind":"normal","std":0.01,"seed":7},"admission-min-count":3}"#,
        )
        .unwrap();
        assert_eq!(c.dim, 8);
        assert_eq!(c.admission_min_count, 3);
        assert_eq!(c.expiry, None);
        assert_eq!(c.check().unwrap().rule().as_dyn().state_len(), 2);
        assert!(serde_json::from_str::<TableConfig>(r#"{"name":"w","dim":1,"bogus":1}"#).is_err());
    }

    #[test]
    fn normal_init_is_deterministic_per_key_and_roughly_normal() {
        let init = Initializer::Normal { std: 0.5, seed: 3 };
        let (mut a, mut b, mut c) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 4]);
        init.fill(42, &mut a);
        init.fill(42, &mut b);
        init.fill(43, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut big = vec![0.0; 20_000];
        init.fill(1, &mut big);
        let n = big.len() as f64;
        let mean = big.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = big
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.02, "std {}", var.sqrt());
        let mut z = vec![1.0; 3];
        Initializer::Zeros.fill(9, &mut z);
        assert_eq!(z, vec![0.0; 3]);
    }
}
