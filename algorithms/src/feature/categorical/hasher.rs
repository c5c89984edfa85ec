//! [`FeatureHasher`]: numeric, categorical and crossed columns hashed into a sparse vector.

use std::borrow::Cow;

use arrow::array::{Array, Float64Array, StringArray};
use arrow::record_batch::RecordBatch;

use super::{check_columns, sparse_out};
use crate::columns::{f64_column, str_column};
use crate::error::{Error, Result};
use crate::features::{CsrMatrix, Features};
use crate::hash::{murmur3_32, murmur3_u32};
use crate::transform::{Params, ToFeatures};

pub(crate) const KIND: &str = "feature-hasher";

/// Parameters of a [`FeatureHasher`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct FeatureHasherParams {
    /// Numeric columns: each contributes `(hash(name), value)`. Default: none.
    pub numeric: Vec<String>,
    /// Categorical columns (Utf8, or any type by its text form): each contributes
    /// `(hash(name, value), 1.0)`. Default: none.
    pub categorical: Vec<String>,
    /// Hashed crosses, each of two or more categorical columns (which need not be listed in
    /// `categorical`): each contributes `(hash(values…), 1.0)`. Default: none.
    pub crosses: Vec<Vec<String>>,
    /// The hashed space has `2^bits` indices. Default 22, range 1..=31.
    pub bits: u32,
    /// Signed hashing (scikit-learn's `alternate_sign`): bit 31 of the hash flips the value's
    /// sign, so collisions cancel in expectation. Default false.
    pub signed: bool,
    /// Adds a constant 1.0 feature at index `2^bits`, just past the hashed space (so nothing
    /// collides with it; the dimension is then `2^bits + 1`). Default false.
    pub bias: bool,
    /// Seed of every hash. Default 0.
    pub seed: u32,
}

impl Default for FeatureHasherParams {
    fn default() -> Self {
        FeatureHasherParams {
            numeric: Vec::new(),
            categorical: Vec::new(),
            crosses: Vec::new(),
            bits: 22,
            signed: false,
            bias: false,
            seed: 0,
        }
    }
}

/// Checked [`FeatureHasherParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureHasherValidParams(FeatureHasherParams);

impl FeatureHasherValidParams {
    /// The parameters.
    pub fn params(&self) -> &FeatureHasherParams {
        &self.0
    }
}

impl Params for FeatureHasherParams {
    type Valid = FeatureHasherValidParams;

    fn check(&self) -> Result<FeatureHasherValidParams> {
        if !(1..=31).contains(&self.bits) {
            return Err(Error::param(
                format!("{KIND}.bits"),
                format!("{} is not in 1..=31", self.bits),
            ));
        }
        check_columns(&format!("{KIND}.numeric"), &self.numeric, true)?;
        check_columns(&format!("{KIND}.categorical"), &self.categorical, true)?;
        for (i, cross) in self.crosses.iter().enumerate() {
            let param = format!("{KIND}.crosses[{i}]");
            check_columns(&param, cross, false)?;
            if cross.len() < 2 {
                return Err(Error::param(param, "a cross needs at least two columns"));
            }
        }
        let inputs = self.numeric.len() + self.categorical.len() + self.crosses.len();
        if inputs == 0 && !self.bias {
            return Err(Error::param(
                format!("{KIND}.numeric"),
                "no input columns and no bias",
            ));
        }
        Ok(FeatureHasherValidParams(self.clone()))
    }
}

/// A cross: its seed and the text columns (slots) it combines.
#[derive(Debug, Clone, PartialEq)]
struct Cross {
    seed: u32,
    slots: Vec<usize>,
}

/// Hashes columns into a sparse [`Features`] matrix of dimension `2^bits` (`+ 1` with `bias`).
///
/// With `h(bytes, seed)` = MurmurHash3_x86_32 and `s` = `seed`:
/// - a numeric column `c` with value `x`: index from `h(c, s)`, value `x`;
/// - a categorical column `c` with value `v`: index from `hv(c, v) = h(v, h(c, s))`, value 1 —
///   the value hash is seeded with the column-name hash, so no `"c=v"` string is built;
/// - a cross `[c1, …, ck]`: index from `g_k`, where `g_0 = murmur3_u32(k, s)` and
///   `g_i = murmur3_u32(hv(c_i, v_i), g_{i-1})`, value 1 (column order matters);
/// - the index is the hash's low `bits` bits; when `signed`, a hash with bit 31 set negates
///   the value;
/// - with `bias`, a 1.0 at index `2^bits`.
///
/// Null values contribute nothing (and a cross with a null part contributes nothing); NaN and
/// ±inf numeric values contribute nothing; numeric zeros are not stored (a no-op in any dot
/// product); an empty string is a value like any other. Colliding features of one row are
/// kept as separate entries, which a dot product sums. Stateless: there is nothing to fit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "FeatureHasherParams", into = "FeatureHasherParams")]
pub struct FeatureHasher {
    params: FeatureHasherParams,
    mask: u32,
    numeric_hashes: Vec<u32>,
    /// Text columns: the categorical ones first, then those only in crosses.
    slot_columns: Vec<String>,
    slot_seeds: Vec<u32>,
    crosses: Vec<Cross>,
}

impl TryFrom<FeatureHasherParams> for FeatureHasher {
    type Error = Error;

    fn try_from(p: FeatureHasherParams) -> Result<Self> {
        Ok(FeatureHasher::new(p.check()?))
    }
}

impl From<FeatureHasher> for FeatureHasherParams {
    fn from(h: FeatureHasher) -> Self {
        h.params
    }
}

impl FeatureHasher {
    /// A hasher for checked parameters.
    pub fn new(valid: FeatureHasherValidParams) -> Self {
        let p = valid.0;
        let name_hash = |c: &str| murmur3_32(c.as_bytes(), p.seed);
        let mut slot_columns = p.categorical.clone();
        let mut crosses = Vec::with_capacity(p.crosses.len());
        for cross in &p.crosses {
            let slots = cross
                .iter()
                .map(|c| match slot_columns.iter().position(|s| s == c) {
                    Some(i) => i,
                    None => {
                        slot_columns.push(c.clone());
                        slot_columns.len() - 1
                    }
                })
                .collect();
            crosses.push(Cross {
                seed: murmur3_u32(cross.len() as u32, p.seed),
                slots,
            });
        }
        FeatureHasher {
            mask: (1u32 << p.bits) - 1,
            numeric_hashes: p.numeric.iter().map(|c| name_hash(c)).collect(),
            slot_seeds: slot_columns.iter().map(|c| name_hash(c)).collect(),
            slot_columns,
            crosses,
            params: p,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &FeatureHasherParams {
        &self.params
    }

    /// The index of the bias feature (`2^bits`), when there is one.
    pub fn bias_index(&self) -> Option<u32> {
        self.params.bias.then(|| 1u32 << self.params.bits)
    }

    /// The hash `hv(column, value)` of a categorical value (see [the type docs](Self)).
    pub fn value_hash(&self, column: &str, value: &str) -> u32 {
        murmur3_32(
            value.as_bytes(),
            murmur3_32(column.as_bytes(), self.params.seed),
        )
    }

    #[inline]
    fn emit(&self, m: &mut CsrMatrix, h: u32, value: f32) {
        let value = if self.params.signed && h >> 31 == 1 {
            -value
        } else {
            value
        };
        m.push(h & self.mask, value);
    }

    /// Appends the features of every row of `batch` to `m` (rows are finished).
    pub(crate) fn push_rows(&self, batch: &RecordBatch, m: &mut CsrMatrix) -> Result<()> {
        let numeric: Vec<Cow<'_, Float64Array>> = self
            .params
            .numeric
            .iter()
            .map(|c| f64_column(batch, KIND, c))
            .collect::<Result<_>>()?;
        let text: Vec<Cow<'_, StringArray>> = self
            .slot_columns
            .iter()
            .map(|c| str_column(batch, KIND, c))
            .collect::<Result<_>>()?;
        // Per-batch scratch: the row's value hash per text column, or `None` for null.
        let mut hashes: Vec<Option<u32>> = vec![None; text.len()];
        for row in 0..batch.num_rows() {
            self.push_row(
                |i| numeric[i].is_valid(row).then(|| numeric[i].value(row)),
                |s| text[s].is_valid(row).then(|| text[s].value(row).as_bytes()),
                &mut hashes,
                m,
            );
        }
        Ok(())
    }

    /// The text columns a row provides to [`push_row`](Self::push_row), by slot: the
    /// categorical columns first, then those only in crosses.
    pub(crate) fn slot_columns(&self) -> &[String] {
        &self.slot_columns
    }

    /// Appends one row's features to `m` and finishes the row — the one hashing loop of both
    /// the batch path ([`push_rows`](Self::push_rows)) and a pipeline's per-row path.
    /// `number(i)`: the value of numeric column `i` (`None`: null); `text(s)`: the UTF-8
    /// bytes of text slot `s` ([`slot_columns`](Self::slot_columns)); `hashes`: scratch of one
    /// entry per slot.
    #[inline]
    pub(crate) fn push_row<'a>(
        &self,
        number: impl Fn(usize) -> Option<f64>,
        text: impl Fn(usize) -> Option<&'a [u8]>,
        hashes: &mut [Option<u32>],
        m: &mut CsrMatrix,
    ) {
        let emitted = self.params.categorical.len();
        for (i, &h) in self.numeric_hashes.iter().enumerate() {
            if let Some(x) = number(i) {
                if x.is_finite() && x != 0.0 {
                    self.emit(m, h, x as f32);
                }
            }
        }
        for (s, &seed) in self.slot_seeds.iter().enumerate() {
            hashes[s] = text(s).map(|bytes| {
                let h = murmur3_32(bytes, seed);
                if s < emitted {
                    self.emit(m, h, 1.0);
                }
                h
            });
        }
        'cross: for cross in &self.crosses {
            let mut g = cross.seed;
            for &s in &cross.slots {
                match hashes[s] {
                    Some(v) => g = murmur3_u32(v, g),
                    None => continue 'cross,
                }
            }
            self.emit(m, g, 1.0);
        }
        if let Some(b) = self.bias_index() {
            m.push(b, 1.0);
        }
        m.finish_row();
    }
}

impl ToFeatures for FeatureHasher {
    fn to_features(&self, batch: &RecordBatch, out: &mut Features) -> Result<()> {
        let dim = self.dim();
        self.push_rows(batch, sparse_out(out, dim))
    }

    fn dim(&self) -> u64 {
        (1u64 << self.params.bits) + u64::from(self.params.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array};

    fn hasher(p: FeatureHasherParams) -> FeatureHasher {
        FeatureHasher::new(p.check().unwrap())
    }

    fn rows(h: &FeatureHasher, batch: &RecordBatch) -> CsrMatrix {
        let mut out = Features::Sparse(CsrMatrix::default());
        h.to_features(batch, &mut out).unwrap();
        match out {
            Features::Sparse(m) => m,
            Features::Dense(_) => panic!("sparse expected"),
        }
    }

    #[test]
    fn known_indices_from_murmur3() {
        // From an independent MurmurHash3_x86_32 (a Python transcription checked against the
        // published vectors): h("c0", 0) = 0x0431_b0a5, h("v2", 0x0431_b0a5) = 0x8e21_5338,
        // h("f0", 0) = 0x5c86_6b95. Low 10 bits: 0x338 = 824 and 0x395 = 917; bit 31 of the
        // value hash is set, so signed hashing negates it.
        assert_eq!(murmur3_32(b"c0", 0), 0x0431_b0a5);
        let h = hasher(FeatureHasherParams {
            numeric: vec!["f0".into()],
            categorical: vec!["c0".into()],
            bits: 10,
            signed: true,
            bias: true,
            ..Default::default()
        });
        assert_eq!(h.value_hash("c0", "v2"), 0x8e21_5338);
        let b = RecordBatch::try_from_iter([
            ("f0", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
            ("c0", Arc::new(StringArray::from(vec!["v2"])) as ArrayRef),
        ])
        .unwrap();
        let m = rows(&h, &b);
        assert_eq!(
            m.row(0),
            (&[917u32, 824, 1024][..], &[3.0f32, -1.0, 1.0][..])
        );
        assert_eq!(m.dim(), 1025);
        assert_eq!(h.bias_index(), Some(1024));
    }

    #[test]
    fn nulls_nan_empty_and_crosses() {
        let h = hasher(FeatureHasherParams {
            numeric: vec!["x".into()],
            categorical: vec!["a".into()],
            crosses: vec![vec!["a".into(), "b".into()]],
            bits: 20,
            ..Default::default()
        });
        let b = RecordBatch::try_from_iter([
            (
                "x",
                Arc::new(Float64Array::from(vec![
                    Some(f64::NAN),
                    None,
                    Some(f64::INFINITY),
                    Some(2.0),
                ])) as ArrayRef,
            ),
            (
                "a",
                Arc::new(StringArray::from(vec![
                    Some(""),
                    None,
                    Some("p"),
                    Some("p"),
                ])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(StringArray::from(vec![
                    Some("q"),
                    Some("q"),
                    None,
                    Some("q"),
                ])) as ArrayRef,
            ),
        ])
        .unwrap();
        let m = rows(&h, &b);
        let cross = |a: &str, b: &str| {
            let g = murmur3_u32(2, 0);
            let g = murmur3_u32(h.value_hash("a", a), g);
            murmur3_u32(h.value_hash("b", b), g) & h.mask
        };
        let ea = h.value_hash("a", "") & h.mask;
        assert_eq!(
            m.row(0).0,
            &[ea, cross("", "q")],
            "empty string is a value, NaN nothing"
        );
        assert_eq!(m.row(1).0.len(), 0, "nulls contribute nothing");
        assert_eq!(
            m.row(2).0,
            &[h.value_hash("a", "p") & h.mask],
            "inf and half-null cross: nothing"
        );
        assert_eq!(m.row(3).1, &[2.0, 1.0, 1.0]);
        assert_eq!(m.row(3).0[2], cross("p", "q"));
        assert_ne!(cross("p", "q"), cross("q", "p"));
    }

    #[test]
    fn params_checked_and_missing_column() {
        let bad = FeatureHasherParams {
            bits: 32,
            categorical: vec!["a".into()],
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("bits"));
        let bad = FeatureHasherParams {
            crosses: vec![vec!["a".into()]],
            ..Default::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("crosses[0]"));
        assert!(FeatureHasherParams::default().check().is_err());
        let h = hasher(FeatureHasherParams {
            categorical: vec!["zz".into()],
            ..Default::default()
        });
        let b =
            RecordBatch::try_from_iter([("a", Arc::new(StringArray::from(vec!["x"])) as ArrayRef)])
                .unwrap();
        let mut out = Features::Sparse(CsrMatrix::default());
        let e = h.to_features(&b, &mut out).unwrap_err();
        assert!(matches!(e, Error::MissingColumn { ref column, .. } if column == "zz"));
    }
}
