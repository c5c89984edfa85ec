//! [`RowPlan`]: a pipeline run one row at a time — River's `learn_one` / `predict_one` — with
//! no record batch and no allocation per row, through the batch path's own per-value code.
//!
//! A plan is made once for a row layout (column names and types, [`Pipeline::row_plan`]);
//! then every row is read through [`RowValues`] (the caller's reused buffers) and featurized
//! into the caller's reused [`Features`] / [`Examples`]. It covers the pipelines whose steps
//! have a per-row form — a [`StandardScaler`] replacing its columns, then a
//! [`FeatureHasher`](crate::feature::categorical::FeatureHasher) with labels and no weight
//! column (what [`StandardPipeline`](super::StandardPipeline) builds for sparse learners);
//! for any other pipeline `row_plan` answers `None` and the caller featurizes one-row batches.
//!
//! Parity with the batch path is by construction, not by a second implementation: the
//! scaler folds a row with [`Moments::of_value`] (what a one-row batch folds) and scales with
//! its [`affine`](StandardScaler::affine) and [`scaled`], the hasher runs its one
//! [`push_row`](crate::feature::categorical::FeatureHasher::push_row) loop, and labels pass
//! [`LabelSpec`]'s one check. So a row learned here leaves the pipeline, the features and the
//! labels bit for bit as [`Pipeline::learn_examples_into`] on the row as a one-row batch does
//! (tested below against random rows).
//!
//! [`Moments::of_value`]: crate::feature::numeric::stats::Moments::of_value

use super::Pipeline;
use crate::error::{Error, Result};
use crate::feature::categorical::{sparse_out, Featurizer, LabelSpec};
use crate::feature::numeric::{scaled, StandardScaler};
use crate::features::{Examples, Features};
use crate::transform::ToFeatures;

/// The type of a row's column, fixed by the layout (the Arrow type a one-row batch of it has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowType {
    /// A number (`Float64`).
    Number,
    /// A string (`Utf8`).
    Text,
    /// A boolean (`Boolean`; hashed as the text `true` / `false`, as Arrow casts it).
    Flag,
}

/// One value of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowValue<'a> {
    /// Missing (a null).
    Null,
    /// A number.
    Number(f64),
    /// A string's UTF-8 bytes.
    Text(&'a [u8]),
    /// A boolean.
    Flag(bool),
}

/// A row's values by column, in the order of the layout its plan was made for.
pub trait RowValues {
    /// The value of column `col`.
    fn value(&self, col: usize) -> RowValue<'_>;
}

impl RowValues for [RowValue<'_>] {
    fn value(&self, col: usize) -> RowValue<'_> {
        self[col]
    }
}

/// How a pipeline reads a row layout, with the scratch buffers of one row (reused).
#[derive(Debug, Clone)]
pub struct RowPlan {
    names: Vec<String>,
    types: Vec<RowType>,
    /// Per scaler input: the row column it reads.
    scaled_from: Vec<usize>,
    /// Per hasher numeric input: the row column and, when scaled, the scaler input.
    numeric_from: Vec<(usize, Option<usize>)>,
    /// Per hasher text slot: the row column.
    slots_from: Vec<usize>,
    label: LabelSpec,
    /// Scratch: per scaler input, its shift and divisor for this row.
    affine: Vec<(f64, f64)>,
    /// Scratch: per text slot, the value hash.
    hashes: Vec<Option<u32>>,
}

impl Pipeline {
    /// The per-row plan of this pipeline for rows of `columns` (names and types, in the order
    /// [`RowValues`] will give them), or `None` when a step has no per-row form or a column it
    /// reads is not in the layout or has another type (then featurize one-row batches, which
    /// say what is wrong).
    pub fn row_plan(&self, columns: &[(&str, RowType)]) -> Option<RowPlan> {
        let find =
            |name: &str, ty: RowType| columns.iter().position(|(n, t)| *n == name && *t == ty);
        let label = self.label.clone().filter(|l| l.weight.is_none())?;
        let Featurizer::Hasher(hasher) = &self.featurizer else {
            return None;
        };
        let scaler = match self.steps.as_slice() {
            [] => None,
            [step] => {
                let s = step.as_any()?.downcast_ref::<StandardScaler>()?;
                s.params().output_cols.is_none().then_some(s)?;
                Some(s)
            }
            _ => return None,
        };
        let scaled_cols: &[String] = scaler.map_or(&[], |s| &s.params().input_cols);
        let scaled_from = scaled_cols
            .iter()
            .map(|c| find(c, RowType::Number))
            .collect::<Option<Vec<_>>>()?;
        let numeric_from = hasher
            .params()
            .numeric
            .iter()
            .map(|c| {
                let col = find(c, RowType::Number)?;
                Some((col, scaled_cols.iter().position(|s| s == c)))
            })
            .collect::<Option<Vec<_>>>()?;
        let slots_from = hasher
            .slot_columns()
            .iter()
            .map(|c| find(c, RowType::Text).or_else(|| find(c, RowType::Flag)))
            .collect::<Option<Vec<_>>>()?;
        Some(RowPlan {
            names: columns.iter().map(|(n, _)| n.to_string()).collect(),
            types: columns.iter().map(|(_, t)| *t).collect(),
            affine: vec![(0.0, 1.0); scaled_from.len()],
            hashes: vec![None; slots_from.len()],
            scaled_from,
            numeric_from,
            slots_from,
            label,
        })
    }

    /// Folds one row into the steps' statistics, as [`update`](Pipeline::update) folds a
    /// one-row batch.
    pub fn update_row(&mut self, plan: &RowPlan, row: &(impl RowValues + ?Sized)) -> Result<()> {
        if let Some(scaler) = self.scaler_mut() {
            for (i, &col) in plan.scaled_from.iter().enumerate() {
                if let Some(x) = plan.number(row, col)? {
                    scaler.fold_value(i, x);
                }
            }
        }
        Ok(())
    }

    /// The features of one row into `out` (reused), as [`features`](Pipeline::features)
    /// writes them for a one-row batch.
    pub fn row_features(
        &self,
        plan: &mut RowPlan,
        row: &(impl RowValues + ?Sized),
        out: &mut Features,
    ) -> Result<()> {
        let Featurizer::Hasher(hasher) = &self.featurizer else {
            return Err(Error::param(
                "pipeline",
                "the row plan is for another pipeline",
            ));
        };
        if let Some(scaler) = self.scaler() {
            for (i, a) in plan.affine.iter_mut().enumerate() {
                *a = scaler.affine(i)?;
            }
        }
        // read every value first, so a mistyped one is refused before anything is written
        for &(col, _) in &plan.numeric_from {
            plan.number(row, col)?;
        }
        for &col in &plan.slots_from {
            plan.text(row, col)?;
        }
        let m = sparse_out(out, hasher.dim());
        let RowPlan {
            numeric_from,
            slots_from,
            affine,
            hashes,
            ..
        } = plan;
        let number = |i: usize| {
            let (col, scale) = numeric_from[i];
            let x = match row.value(col) {
                RowValue::Number(x) => x,
                _ => return None,
            };
            Some(match scale {
                Some(s) => scaled(x, affine[s].0, affine[s].1),
                None => x,
            })
        };
        let text = |s: usize| match row.value(slots_from[s]) {
            RowValue::Text(bytes) => Some(bytes),
            RowValue::Flag(true) => Some(&b"true"[..]),
            RowValue::Flag(false) => Some(&b"false"[..]),
            _ => None,
        };
        hasher.push_row(number, text, hashes, m);
        Ok(())
    }

    /// Online training on one row with label `y`: folds it in ([`update_row`](Self::update_row))
    /// and writes its example into `out` (reused) — what
    /// [`learn_examples_into`](Pipeline::learn_examples_into) does with a one-row batch.
    pub fn learn_row(
        &mut self,
        plan: &mut RowPlan,
        row: &(impl RowValues + ?Sized),
        y: f64,
        out: &mut Examples,
    ) -> Result<()> {
        // the batch path's order: fold, featurize, then read the label
        self.update_row(plan, row)?;
        self.row_features(plan, row, &mut out.features)?;
        let y = LabelSpec::checked(&plan.label.label, false, 0, Some(y))?;
        out.labels.clear();
        out.labels.push(y);
        out.weights = None;
        Ok(())
    }

    fn scaler(&self) -> Option<&StandardScaler> {
        self.steps.first()?.as_any()?.downcast_ref()
    }

    fn scaler_mut(&mut self) -> Option<&mut StandardScaler> {
        self.steps.first_mut()?.as_any_mut()?.downcast_mut()
    }
}

impl RowPlan {
    /// The number in column `col` (`None`: null), or an error naming it.
    fn number(&self, row: &(impl RowValues + ?Sized), col: usize) -> Result<Option<f64>> {
        match row.value(col) {
            RowValue::Null => Ok(None),
            RowValue::Number(x) => Ok(Some(x)),
            other => Err(self.mistyped(col, other)),
        }
    }

    /// Checks that column `col` holds text, a flag or a null.
    fn text(&self, row: &(impl RowValues + ?Sized), col: usize) -> Result<()> {
        match (row.value(col), self.types[col]) {
            (RowValue::Null, _)
            | (RowValue::Text(_), RowType::Text)
            | (RowValue::Flag(_), RowType::Flag) => Ok(()),
            (other, _) => Err(self.mistyped(col, other)),
        }
    }

    fn mistyped(&self, col: usize, found: RowValue<'_>) -> Error {
        let found = match found {
            RowValue::Null => "Null",
            RowValue::Number(_) => "Float64",
            RowValue::Text(_) => "Utf8",
            RowValue::Flag(_) => "Boolean",
        };
        let expected = match self.types[col] {
            RowType::Number => "Float64",
            RowType::Text => "Utf8",
            RowType::Flag => "Boolean",
        };
        Error::ColumnType {
            step: "row".into(),
            column: self.names[col].clone(),
            found: found.into(),
            expected: expected.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BooleanArray, Float64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::pipeline::StandardPipeline;

    /// One random row: numbers with nulls, NaN and repeats; strings with nulls; flags.
    #[derive(Debug, Clone)]
    struct Raw {
        f: Option<f64>,
        g: Option<f64>,
        c: Option<String>,
        b: Option<bool>,
        y: f64,
    }

    fn raw(rng: &mut impl Rng) -> Raw {
        let number = |rng: &mut dyn rand::RngCore| match rng.random_range(0..10) {
            0 => None,
            1 => Some(f64::NAN),
            2 => Some(0.0),
            _ => Some(rng.random_range(-50.0..50.0)),
        };
        Raw {
            f: number(rng),
            g: number(rng),
            c: (rng.random_range(0..6) != 0).then(|| format!("v{}", rng.random_range(0..9))),
            b: (rng.random_range(0..5) != 0).then(|| rng.random_bool(0.5)),
            y: f64::from(rng.random_range(0..2)),
        }
    }

    fn one_row_batch(r: &Raw) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("f", Arc::new(Float64Array::from(vec![r.f])) as ArrayRef),
            (
                "c",
                Arc::new(StringArray::from(vec![r.c.clone()])) as ArrayRef,
            ),
            ("g", Arc::new(Float64Array::from(vec![r.g])) as ArrayRef),
            ("b", Arc::new(BooleanArray::from(vec![r.b])) as ArrayRef),
            ("label", Arc::new(Float64Array::from(vec![r.y])) as ArrayRef),
        ])
        .unwrap()
    }

    fn values(r: &Raw) -> [RowValue<'_>; 4] {
        let num = |x: Option<f64>| x.map_or(RowValue::Null, RowValue::Number);
        [
            num(r.f),
            r.c.as_ref()
                .map_or(RowValue::Null, |c| RowValue::Text(c.as_bytes())),
            num(r.g),
            r.b.map_or(RowValue::Null, RowValue::Flag),
        ]
    }

    const LAYOUT: [(&str, RowType); 4] = [
        ("f", RowType::Number),
        ("c", RowType::Text),
        ("g", RowType::Number),
        ("b", RowType::Flag),
    ];

    fn standard(scale: bool) -> Pipeline {
        let schema = one_row_batch(&raw(&mut rand::rngs::StdRng::seed_from_u64(0))).schema();
        let kind = crate::learners::LearnerKind::Ftrl;
        let mut spec = StandardPipeline::for_schema(&schema, "label", kind, 12).unwrap();
        spec.scale = scale;
        spec.crosses = vec![vec!["c".into(), "b".into()], vec!["b".into(), "c".into()]];
        spec.build().unwrap()
    }

    fn scaler_bits(p: &Pipeline) -> Vec<(u64, u64, u64)> {
        p.scaler().map_or_else(Vec::new, |s| {
            s.stats()
                .iter()
                .map(|m| (m.count, m.mean.to_bits(), m.m2.to_bits()))
                .collect()
        })
    }

    #[test]
    fn a_learned_row_equals_a_one_row_batch_bit_for_bit() {
        for (seed, scale) in [(1, true), (2, true), (3, false)] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (mut by_batch, mut by_row) = (standard(scale), standard(scale));
            let mut plan = by_row
                .row_plan(&LAYOUT)
                .expect("a standard pipeline has a plan");
            let empty = || Examples::new(Features::Sparse(Default::default()), vec![], None);
            let (mut a, mut b) = (empty().unwrap(), empty().unwrap());
            let (mut served_a, mut served_b) = (
                Features::Sparse(Default::default()),
                Features::Sparse(Default::default()),
            );
            for i in 0..400 {
                let r = raw(&mut rng);
                let batch = one_row_batch(&r);
                let got_a = by_batch.learn_examples_into(&batch, &mut a);
                let got_b = by_row.learn_row(&mut plan, &values(&r)[..], r.y, &mut b);
                match (got_a, got_b) {
                    (Ok(()), Ok(())) => {
                        assert_eq!(a.features, b.features, "row {i}: {r:?}");
                        assert_eq!(a.labels, b.labels);
                        assert_eq!(a.weights, b.weights);
                    }
                    // a column with no finite value yet cannot be scaled: both refuse alike
                    (Err(ea), Err(eb)) => assert_eq!(ea.to_string(), eb.to_string()),
                    (x, y) => panic!("row {i}: batch {x:?}, row {y:?}"),
                }
                assert_eq!(scaler_bits(&by_batch), scaler_bits(&by_row), "row {i}");
                // serving: the same features for a row never learned
                let probe = raw(&mut rng);
                let fa = by_batch.features(&one_row_batch(&probe), &mut served_a);
                let fb = by_row.row_features(&mut plan, &values(&probe)[..], &mut served_b);
                assert_eq!(fa.is_ok(), fb.is_ok(), "row {i}");
                if fa.is_ok() {
                    assert_eq!(served_a, served_b, "served row {i}: {probe:?}");
                }
            }
            assert_eq!(by_batch, by_row);
        }
    }

    #[test]
    fn a_bad_label_is_refused_as_the_batch_path_refuses_it() {
        let (mut by_batch, mut by_row) = (standard(true), standard(true));
        let mut plan = by_row.row_plan(&LAYOUT).unwrap();
        let mut r = raw(&mut rand::rngs::StdRng::seed_from_u64(9));
        (r.f, r.g, r.y) = (Some(1.5), Some(-2.0), f64::INFINITY);
        let mut ex = Examples::new(Features::Sparse(Default::default()), vec![], None).unwrap();
        let ea = by_batch
            .learn_examples_into(&one_row_batch(&r), &mut ex)
            .unwrap_err();
        let eb = by_row
            .learn_row(&mut plan, &values(&r)[..], r.y, &mut ex)
            .unwrap_err();
        assert_eq!(ea.to_string(), eb.to_string());
        assert!(eb.to_string().contains("label"), "{eb}");
    }

    #[test]
    fn layouts_and_pipelines_without_a_per_row_form_have_no_plan() {
        let p = standard(true);
        // a column the pipeline reads is missing, or has another type
        assert!(p.row_plan(&LAYOUT[..3]).is_none());
        let mut mistyped = LAYOUT;
        mistyped[2].1 = RowType::Text;
        assert!(p.row_plan(&mistyped).is_none());
        // a dense (assembled) pipeline
        let schema = one_row_batch(&raw(&mut rand::rngs::StdRng::seed_from_u64(0))).schema();
        let kind = crate::learners::LearnerKind::StreamingKmeans;
        let dense = StandardPipeline::for_schema(&schema, "label", kind, 12)
            .unwrap()
            .build()
            .unwrap();
        assert!(dense.row_plan(&LAYOUT).is_none());
        // a value of another type than the layout's is refused, naming the column
        let mut plan = p.row_plan(&LAYOUT).unwrap();
        let wrong = [
            RowValue::Text(b"x"),
            RowValue::Null,
            RowValue::Null,
            RowValue::Null,
        ];
        let mut out = Features::Sparse(Default::default());
        let mut fitted = p.clone();
        fitted
            .update(&one_row_batch(&Raw {
                f: Some(1.0),
                g: Some(2.0),
                c: None,
                b: None,
                y: 0.0,
            }))
            .unwrap();
        let e = fitted
            .row_features(&mut plan, &wrong[..], &mut out)
            .unwrap_err();
        assert!(e.to_string().contains("`f`"), "{e}");
    }
}
