//! `polynomial-expansion`: every monomial of degree `1..=degree` over the input columns
//! (stateless).
//!
//! Terms are ordered by degree, then lexicographically by column position: for inputs `x, y`
//! and degree 2 they are `x, y, x^2, x*y, y^2`. With `interaction_only`, a column appears at
//! most once per term (`x, y, x*y`). No constant term. **Names**: factors joined by `*` in
//! input order, a repeated factor written `name^k` — so the degree-1 terms keep the input
//! names and replace the inputs in place, and the others are added after them — unless
//! `output_cols` names every term. Each term is one columnar multiply of a lower-degree term by
//! a column. Outputs are `Float64`; a product is null when any factor is null, and NaN/±inf
//! follow IEEE arithmetic.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::kernels::numeric::mul;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::common::{check_cols, check_names, feature_step, valid_params};
use crate::columns::{f64_column, with_columns};
use crate::error::{Error, Result};
use crate::transform::{Estimator, Params, Transformer};

/// The most terms an expansion may produce.
const MAX_TERMS: usize = 10_000;
/// The highest accepted degree.
const MAX_DEGREE: usize = 16;

/// Parameters of [`PolynomialExpansion`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolynomialExpansionParams {
    /// Numeric columns to expand. Required, non-empty, distinct.
    pub input_cols: Vec<String>,
    /// One name per term, in term order. Default `None`: the documented names.
    pub output_cols: Option<Vec<String>>,
    /// The highest degree, `1..=16`. Default 2.
    pub degree: usize,
    /// Only products of distinct columns (no powers). Default `false`.
    pub interaction_only: bool,
}

impl Default for PolynomialExpansionParams {
    fn default() -> Self {
        PolynomialExpansionParams {
            input_cols: Vec::new(),
            output_cols: None,
            degree: 2,
            interaction_only: false,
        }
    }
}

valid_params! {
    /// Checked [`PolynomialExpansionParams`].
    PolynomialExpansionValidParams(PolynomialExpansionParams)
}

/// One term: the product of term `parent` (none for degree 1) and input column `column`.
#[derive(Debug, Clone, PartialEq)]
struct Term {
    parent: Option<usize>,
    column: usize,
    /// Input positions of its factors, non-decreasing.
    factors: Vec<usize>,
}

/// The terms of an expansion, or `None` past `MAX_TERMS`.
fn terms(n: usize, degree: usize, interaction_only: bool) -> Option<Vec<Term>> {
    let mut out: Vec<Term> = (0..n)
        .map(|j| Term {
            parent: None,
            column: j,
            factors: vec![j],
        })
        .collect();
    let mut level = 0..out.len();
    for _ in 2..=degree {
        let start = out.len();
        for t in level.clone() {
            let last = *out[t].factors.last()?;
            for j in (last + usize::from(interaction_only))..n {
                if out.len() >= MAX_TERMS {
                    return None;
                }
                let mut factors = out[t].factors.clone();
                factors.push(j);
                out.push(Term {
                    parent: Some(t),
                    column: j,
                    factors,
                });
            }
        }
        level = start..out.len();
    }
    (out.len() <= MAX_TERMS).then_some(out)
}

/// The documented name of a term: `x^2*y` for factors `[x, x, y]`.
fn term_name(cols: &[String], factors: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < factors.len() {
        let run = factors[i..]
            .iter()
            .take_while(|&&f| f == factors[i])
            .count();
        let name = &cols[factors[i]];
        parts.push(if run == 1 {
            name.clone()
        } else {
            format!("{name}^{run}")
        });
        i += run;
    }
    parts.join("*")
}

impl Params for PolynomialExpansionParams {
    type Valid = PolynomialExpansionValidParams;

    fn check(&self) -> Result<PolynomialExpansionValidParams> {
        let kind = PolynomialExpansion::KIND;
        check_cols(kind, &self.input_cols, None)?;
        if !(1..=MAX_DEGREE).contains(&self.degree) {
            return Err(Error::param(
                format!("{kind}.degree"),
                format!("must be in 1..={MAX_DEGREE}, got {}", self.degree),
            ));
        }
        let n = terms(self.input_cols.len(), self.degree, self.interaction_only)
            .ok_or_else(|| {
                Error::param(
                    format!("{kind}.degree"),
                    format!("the expansion would have more than {MAX_TERMS} terms"),
                )
            })?
            .len();
        if let Some(out) = &self.output_cols {
            check_names(kind, "output_cols", out)?;
            if out.len() != n {
                return Err(Error::param(
                    format!("{kind}.output_cols"),
                    format!("has {} names for {n} terms", out.len()),
                ));
            }
        }
        Ok(PolynomialExpansionValidParams(self.clone()))
    }
}

impl Estimator for PolynomialExpansionParams {
    type Fitted = PolynomialExpansion;

    /// Checks the params; an expansion learns nothing from data.
    fn fit(&self, _batches: &[RecordBatch]) -> Result<PolynomialExpansion> {
        PolynomialExpansion::new(self.check()?)
    }
}

/// A polynomial expansion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PolynomialExpansionState")]
pub struct PolynomialExpansion {
    params: PolynomialExpansionValidParams,
    #[serde(skip)]
    terms: Vec<Term>,
    #[serde(skip)]
    names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolynomialExpansionState {
    params: PolynomialExpansionParams,
}

impl TryFrom<PolynomialExpansionState> for PolynomialExpansion {
    type Error = Error;

    fn try_from(s: PolynomialExpansionState) -> Result<Self> {
        PolynomialExpansion::new(s.params.check()?)
    }
}

impl PolynomialExpansion {
    /// The kind name in pipeline files.
    pub const KIND: &'static str = "polynomial-expansion";

    /// An expansion with checked params.
    pub fn new(params: PolynomialExpansionValidParams) -> Result<Self> {
        let p = &params;
        let terms = terms(p.input_cols.len(), p.degree, p.interaction_only)
            .ok_or_else(|| Error::param(format!("{}.degree", Self::KIND), "too many terms"))?;
        let names = match &p.output_cols {
            Some(out) => out.clone(),
            None => terms
                .iter()
                .map(|t| term_name(&p.input_cols, &t.factors))
                .collect(),
        };
        Ok(PolynomialExpansion {
            params,
            terms,
            names,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &PolynomialExpansionValidParams {
        &self.params
    }

    /// The output column names, in term order.
    pub fn output_names(&self) -> &[String] {
        &self.names
    }
}

impl Transformer for PolynomialExpansion {
    fn transform(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let inputs = self
            .params
            .input_cols
            .iter()
            .map(|c| f64_column(batch, Self::KIND, c).map(|a| Arc::new(a.into_owned()) as ArrayRef))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let mut products: Vec<ArrayRef> = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            let column = Arc::clone(&inputs[t.column]);
            let value: ArrayRef = match t.parent {
                None => column,
                Some(parent) => mul(&products[parent], &column)?,
            };
            products.push(value);
        }
        with_columns(batch, self.names.iter().cloned().zip(products))
    }
}

feature_step!(PolynomialExpansion, stateless);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::numeric::testutil::*;
    use proptest::prelude::*;

    fn expansion(cols: &[&str], degree: usize, interaction_only: bool) -> PolynomialExpansion {
        let p = PolynomialExpansionParams {
            input_cols: cols.iter().map(|c| c.to_string()).collect(),
            degree,
            interaction_only,
            ..Default::default()
        };
        p.fit(&[]).unwrap()
    }

    #[test]
    fn terms_names_and_values_against_first_principles() {
        let e = expansion(&["x", "y"], 3, false);
        let want = [
            "x", "y", "x^2", "x*y", "y^2", "x^3", "x^2*y", "x*y^2", "y^3",
        ];
        assert_eq!(e.output_names(), &want);
        let b = batch(&[
            ("x", vec![Some(2.0), None]),
            ("y", vec![Some(3.0), Some(1.0)]),
        ]);
        let out = e.transform(&b).unwrap();
        assert_eq!(out.num_columns(), 9);
        let vals: Vec<Option<f64>> = want.iter().map(|n| col(&out, n)[0]).collect();
        let expect = [2., 3., 4., 6., 9., 8., 12., 18., 27.].map(Some);
        assert_eq!(vals, expect);
        assert_eq!(col(&out, "x*y")[1], None, "null factor → null");
        assert_eq!(col(&out, "y^3")[1], Some(1.0));

        let e = expansion(&["a", "b", "c"], 3, true);
        assert_eq!(
            e.output_names(),
            &["a", "b", "c", "a*b", "a*c", "b*c", "a*b*c"]
        );
        let mut p = PolynomialExpansionParams {
            input_cols: vec!["a".into(), "b".into()],
            output_cols: Some(vec!["p".into(), "q".into(), "r".into()]),
            interaction_only: true,
            ..Default::default()
        };
        let out = p
            .fit(&[])
            .unwrap()
            .transform(&dense(&[("a", vec![2.0]), ("b", vec![5.0])]))
            .unwrap();
        assert_eq!(col(&out, "r"), vec![Some(10.0)]);
        p.output_cols = Some(vec!["p".into()]);
        assert!(p.check().unwrap_err().to_string().contains("output_cols"));
        p.degree = 0;
        assert!(p.check().unwrap_err().to_string().contains("degree"));
        let wide: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let p = PolynomialExpansionParams {
            input_cols: wide,
            degree: 3,
            ..Default::default()
        };
        assert!(p.check().unwrap_err().to_string().contains("terms"));
    }

    proptest! {
        #[test]
        fn one_row_equals_batch_and_oracle(
            x in messy_values(1..20),
            y in messy_values(20..21),
            degree in 1usize..4,
            io in any::<bool>(),
        ) {
            let y = y[..x.len()].to_vec();
            let b = batch(&[("x", x.clone()), ("y", y.clone())]);
            let e = expansion(&["x", "y"], degree, io);
            check_one_row_equals_batch(&e, &b)?;
            let out = e.transform(&b).unwrap();
            for t in &e.terms {
                let name = term_name(&e.params.input_cols, &t.factors);
                for (r, got) in col(&out, &name).into_iter().enumerate() {
                    let want = t.factors.iter().try_fold(1.0, |acc, &f| {
                        [x[r], y[r]][f].map(|v| acc * v)
                    });
                    prop_assert!(close(got, want, 1e-12), "{} row {}: {:?} vs {:?}", name, r, got, want);
                }
            }
        }
    }

    #[test]
    fn save_load_roundtrip_and_corruption() {
        let b = dense(&[("a", vec![-1.0, 0.5]), ("b", vec![2.0, 0.0])]);
        check_save_load(&expansion(&["a", "b"], 2, false), &b);
    }
}
