//! [`PyPipeline`] (`eddy.Pipeline`, also `eddy.Model`): a feature pipeline and a learner of the
//! registry as one River-style model — `learn_one` / `predict_one` / `predict_proba_one` on
//! dicts, `learn_batch` / `predict_batch` on Arrow data, `save` / `load` of the model files
//! `eddy learn --save` writes and `eddy predict` reads.
//!
//! It is the engine's own pieces, not a copy: the pipeline is the library's
//! [`StandardPipeline`] for the rows' schema (what `eddy learn` builds for a file), a row is
//! featurized by the pipeline's per-row path ([`RowPlan`]: no record batch, no allocation,
//! the batch path's own per-value code; pipelines without a per-row form featurize a one-row
//! batch with [`Pipeline::learn_examples_into`]) and learned by the registry's
//! [`OnlineModel`] exactly as the training engine's learner operator learns a one-row
//! micro-batch, and a model is a [`TrainedModel`]. Large batches are cut into the engine's micro-batches
//! (the dataflow's default `max_rows`), so learning a file's rows in one `learn_batch` call
//! folds the pipeline's running statistics as `eddy learn` does. The GIL is released while a
//! batch is featurized, learned or scored.

use arrow::record_batch::RecordBatch;
use eddy_algorithms::feature::categorical::Featurizer;
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::{OnlineLearner, Predictor, Task};
use eddy_algorithms::learners::LearnerSpec;
use eddy_algorithms::pipeline::{RowPlan, StandardPipeline};
use eddy_algorithms::trained::TrainedModel;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use crate::arrow_io;
use crate::error::eddy_err;
use crate::learner::PyLearner;
use crate::rows::RowLayout;

/// How a pipeline is built for the first rows it sees.
#[derive(Clone)]
pub struct Recipe {
    spec: LearnerSpec,
    numeric: Option<Vec<String>>,
    categorical: Option<Vec<String>>,
    crosses: Vec<Vec<String>>,
    cross_all: bool,
    scale: bool,
    hash_bits: u32,
}

/// Buffers reused call after call (no allocation per row once warm).
pub(crate) struct Work {
    pub(crate) examples: Examples,
    /// The buffers the learner reads while the next micro-batch is featurized
    /// ([`crate::batches`]).
    pub(crate) spare: [Examples; 2],
    features: Features,
    out: Vec<f32>,
}

impl Default for Work {
    fn default() -> Self {
        let examples = || Examples {
            features: Features::Sparse(Default::default()),
            labels: Vec::new(),
            weights: None,
        };
        Work {
            examples: examples(),
            spare: [examples(), examples()],
            features: Features::Sparse(Default::default()),
            out: Vec::new(),
        }
    }
}

/// A feature pipeline plus a learner: River's protocol and Arrow batch calls.
#[pyclass(module = "eddy._eddy", name = "Pipeline")]
pub struct PyPipeline {
    recipe: Option<Recipe>,
    label: String,
    trained: Option<TrainedModel>,
    rows: Option<RowLayout>,
    /// The pipeline's per-row plan for `rows` (made with the first row; `Some(None)`: the
    /// pipeline has no per-row form, rows go as one-row batches).
    plan: Option<Option<RowPlan>>,
    work: Work,
    /// Whether the labels learned so far were Python bools (predict_one answers in kind).
    bool_labels: bool,
    /// Whether the pipeline's statistics have seen rows (learned or loaded).
    fitted: bool,
}

impl PyPipeline {
    /// A pipeline around an already trained model.
    pub fn of(trained: TrainedModel) -> PyPipeline {
        let label = trained
            .pipeline
            .label()
            .map_or_else(|| "label".to_string(), |l| l.label.clone());
        PyPipeline {
            recipe: None,
            label,
            trained: Some(trained),
            rows: None,
            plan: None,
            work: Work::default(),
            bool_labels: true,
            fitted: true,
        }
    }

    /// The trained model, if any rows were seen.
    pub fn trained(&self) -> PyResult<&TrainedModel> {
        self.trained
            .as_ref()
            .ok_or_else(|| eddy_err("the pipeline has seen no rows yet: nothing to save"))
    }

    /// Builds the pipeline and a fresh learner for rows of `schema` (once).
    fn ensure_built(&mut self, schema: &arrow::datatypes::Schema) -> PyResult<()> {
        if self.trained.is_some() {
            return Ok(());
        }
        let recipe = self
            .recipe
            .as_ref()
            .ok_or_else(|| eddy_err("a loaded pipeline has no recipe"))?;
        let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
        if schema.index_of(&self.label).is_err() {
            // scoring before any learning: the label column is not among the features
            let label = arrow::datatypes::Field::new(
                &self.label,
                arrow::datatypes::DataType::Float64,
                true,
            );
            fields.push(std::sync::Arc::new(label));
        }
        let schema = arrow::datatypes::Schema::new(fields);
        let mut standard =
            StandardPipeline::for_schema(&schema, &self.label, recipe.spec.kind, recipe.hash_bits)
                .map_err(eddy_err)?;
        if let Some(numeric) = &recipe.numeric {
            standard.numeric = numeric.clone();
        }
        if let Some(categorical) = &recipe.categorical {
            standard.categorical = categorical.clone();
        }
        standard.scale = recipe.scale;
        if !standard.dense {
            standard.crosses = recipe.crosses.clone();
            if recipe.cross_all {
                let c = &standard.categorical;
                for i in 0..c.len() {
                    for j in i + 1..c.len() {
                        standard.crosses.push(vec![c[i].clone(), c[j].clone()]);
                    }
                }
            }
        }
        let pipeline = standard.build().map_err(eddy_err)?;
        let dense = matches!(pipeline.featurizer(), Featurizer::Assembler(_));
        let model = recipe
            .spec
            .online(pipeline.dim(), dense)
            .map_err(eddy_err)?;
        self.trained = Some(TrainedModel { pipeline, model });
        Ok(())
    }

    /// Reads `x` into the row layout (fixed by the first row), builds the pipeline for it
    /// (once) and makes the pipeline's per-row plan (once).
    fn read_row(&mut self, x: &Bound<'_, PyDict>, labelled: bool) -> PyResult<()> {
        if self.rows.is_none() {
            self.rows = Some(RowLayout::of(x, &self.label)?);
        }
        let rows = self
            .rows
            .as_mut()
            .ok_or_else(|| eddy_err("no row layout"))?;
        rows.read(x)?;
        let schema = rows.schema(labelled).clone();
        self.ensure_built(&schema)?;
        if self.plan.is_none() {
            let (Some(t), Some(rows)) = (&self.trained, &self.rows) else {
                return Err(eddy_err("the pipeline is not built"));
            };
            self.plan = Some(t.pipeline.row_plan(&rows.columns()));
        }
        Ok(())
    }

    /// Scores of one row: the prediction, or one probability per class (multiclass).
    fn scores_one(&mut self, x: &Bound<'_, PyDict>) -> PyResult<(Task, &[f32])> {
        self.read_row(x, false)?;
        let py = x.py();
        let (Some(t), Some(rows), Some(plan), work) = (
            self.trained.as_ref(),
            self.rows.as_ref(),
            self.plan.as_mut(),
            &mut self.work,
        ) else {
            return Err(eddy_err("the pipeline is not built"));
        };
        let features = &mut work.features;
        let done = match (plan, self.fitted) {
            (Some(plan), true) => t.pipeline.row_features(plan, &rows.values(py), features),
            (Some(plan), false) => {
                // before the first row is learned, the row is featurized as the engine's
                // progressive validation featurizes a first batch: with statistics that
                // include it
                let mut pipeline = t.pipeline.clone();
                pipeline
                    .update_row(plan, &rows.values(py))
                    .and_then(|()| pipeline.row_features(plan, &rows.values(py), features))
            }
            (None, true) => t.pipeline.features(&rows.batch(py, None)?, features),
            (None, false) => {
                let batch = rows.batch(py, None)?;
                let mut pipeline = t.pipeline.clone();
                pipeline
                    .update(&batch)
                    .and_then(|()| pipeline.features(&batch, features))
            }
        };
        done.map_err(eddy_err)?;
        t.model
            .predict_scores(&work.features, &mut work.out)
            .map_err(eddy_err)?;
        Ok((t.model.task(), &work.out))
    }
}

/// Predictions of every row of `batches`, as `eddy predict`'s `prediction` column.
fn predict_batches(
    t: &TrainedModel,
    work: &mut Work,
    batches: &[RecordBatch],
) -> eddy_algorithms::Result<Vec<f32>> {
    let mut all = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        t.predict_batch(batch, &mut work.features, &mut work.out)?;
        all.extend_from_slice(&work.out);
    }
    Ok(all)
}

/// A Python label as a number (bools as 0/1).
fn label_value(y: &Bound<'_, PyAny>) -> PyResult<(f64, bool)> {
    if let Ok(b) = y.cast::<PyBool>() {
        return Ok((f64::from(u8::from(b.is_true())), true));
    }
    let v: f64 = y.extract().map_err(|_| {
        eddy_err(format!(
            "y is a {}: a label is a bool, int or float",
            y.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    Ok((v, false))
}

#[pymethods]
impl PyPipeline {
    /// A pipeline of `learner` (an `eddy.learner(...)` or a learner name) over the rows'
    /// columns: numbers standardized with running statistics, strings and booleans hashed into
    /// `2**hash_bits` slots — what `eddy learn` builds for a file. The columns are those of
    /// the first row or batch seen unless `numeric` / `categorical` name them.
    #[new]
    #[pyo3(signature = (learner, *, label = "label", numeric = None, categorical = None, crosses = Vec::new(), cross_all = false, scale = true, hash_bits = 22))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        learner: &Bound<'_, PyAny>,
        label: &str,
        numeric: Option<Vec<String>>,
        categorical: Option<Vec<String>>,
        crosses: Vec<Vec<String>>,
        cross_all: bool,
        scale: bool,
        hash_bits: u32,
    ) -> PyResult<Self> {
        let spec = match learner.cast::<PyLearner>() {
            Ok(l) => l.get().spec.clone(),
            Err(_) => crate::params::learner_spec(&learner.extract::<String>()?, None)?,
        };
        if !spec.kind.is_online() {
            return Err(eddy_err(format!(
                "`{}` is a batch learner: a Pipeline trains online learners (fit batch learners with eddy.run or `eddy learn`)",
                spec.kind
            )));
        }
        Ok(PyPipeline {
            recipe: Some(Recipe {
                spec,
                numeric,
                categorical,
                crosses,
                cross_all,
                scale,
                hash_bits,
            }),
            label: label.to_string(),
            trained: None,
            rows: None,
            plan: None,
            work: Work::default(),
            bool_labels: false,
            fitted: false,
        })
    }

    /// Learns one row `x` (a dict of feature → value) with label `y` (bool, int or float).
    #[pyo3(signature = (x, y, w = None))]
    fn learn_one(
        &mut self,
        x: &Bound<'_, PyDict>,
        y: &Bound<'_, PyAny>,
        w: Option<f64>,
    ) -> PyResult<()> {
        if w.is_some_and(|w| w != 1.0) {
            return Err(eddy_err("w: per-row weights are not supported by learn_one; use a weight column with learn_batch"));
        }
        let (y, is_bool) = label_value(y)?;
        self.bool_labels = is_bool;
        self.read_row(x, true)?;
        let py = x.py();
        let (Some(t), Some(rows), Some(plan), work) = (
            self.trained.as_mut(),
            self.rows.as_ref(),
            self.plan.as_mut(),
            &mut self.work,
        ) else {
            return Err(eddy_err("the pipeline is not built"));
        };
        let examples = &mut work.examples;
        match plan {
            Some(plan) => t.pipeline.learn_row(plan, &rows.values(py), y, examples),
            None => t
                .pipeline
                .learn_examples_into(&rows.batch(py, Some(y))?, examples),
        }
        .map_err(eddy_err)?;
        self.fitted = true;
        t.model.learn(&work.examples).map_err(eddy_err)
    }

    /// The prediction for `x`: the class (a bool for binary models whose labels were bools,
    /// else the class index), the value (regression) or the cluster.
    fn predict_one<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let bools = self.bool_labels || self.recipe.is_none();
        let (task, scores) = self.scores_one(x)?;
        let first = scores.first().copied().unwrap_or(f32::NAN);
        Ok(match task {
            Task::BinaryClassification if bools => {
                PyBool::new(py, first >= 0.5).to_owned().into_any()
            }
            Task::BinaryClassification => i64::from(first >= 0.5).into_pyobject(py)?.into_any(),
            Task::Regression => f64::from(first).into_pyobject(py)?.into_any(),
            Task::Multiclass { .. } => argmax(scores).into_pyobject(py)?.into_any(),
            Task::Clustering { .. } => (first as i64).into_pyobject(py)?.into_any(),
        })
    }

    /// Class probabilities for `x`: `{False: 1 - p, True: p}` for a binary model, `{i: p_i}`
    /// for a multiclass one (River's `predict_proba_one`).
    fn predict_proba_one<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (task, scores) = self.scores_one(x)?;
        let out = PyDict::new(py);
        match task {
            Task::BinaryClassification => {
                let p = f64::from(scores.first().copied().unwrap_or(f32::NAN));
                out.set_item(false, 1.0 - p)?;
                out.set_item(true, p)?;
            }
            Task::Multiclass { .. } => {
                for (class, p) in scores.iter().enumerate() {
                    out.set_item(class, f64::from(*p))?;
                }
            }
            other => {
                return Err(eddy_err(format!(
                "predict_proba_one: a {other:?} model predicts no probabilities (use predict_one)"
            )))
            }
        }
        Ok(out)
    }

    /// Learns every row of `data` (a pyarrow `RecordBatch` / `Table` or a pandas
    /// `DataFrame`), in order. `label`: the label column's name (default: the pipeline's
    /// `label`), or the labels themselves (numpy / pyarrow array, pandas Series, list).
    /// The GIL is released while the rows are featurized and learned.
    #[pyo3(signature = (data, label = None))]
    fn learn_batch(
        &mut self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        label: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut batches = arrow_io::batches(data)?;
        match label {
            None => {}
            Some(l) if l.is_instance_of::<pyo3::types::PyString>() => {
                let name: String = l.extract()?;
                if name != self.label {
                    if self.trained.is_some() {
                        return Err(eddy_err(format!(
                            "label: the pipeline learns the column `{}`, not `{name}`",
                            self.label
                        )));
                    }
                    self.label = name;
                }
            }
            Some(l) => {
                let rows = batches.iter().map(RecordBatch::num_rows).sum();
                let labels = arrow_io::label_array(l, rows)?;
                batches = arrow_io::with_labels(batches, labels, &self.label)?;
            }
        }
        let Some(first) = batches.first() else {
            return Ok(());
        };
        self.ensure_built(&first.schema())?;
        let max_rows = eddy_core::dataflow::DataflowConfig::default()
            .bounds
            .max_rows
            .max(1);
        let (Some(t), work) = (self.trained.as_mut(), &mut self.work) else {
            return Err(eddy_err("the pipeline is not built"));
        };
        self.fitted = true;
        py.detach(|| crate::batches::learn(t, work, &batches, max_rows))
            .map_err(eddy_err)
    }

    /// Predictions for every row of `data`, as `eddy predict` writes them in its `prediction`
    /// column (P(1) for a binary model, the value, the class index or the cluster): a numpy
    /// `float32` array, or a pyarrow array with `arrow=True` (zero-copy either way). The GIL
    /// is released while the rows are featurized and scored.
    #[pyo3(signature = (data, arrow = false))]
    fn predict_batch<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        arrow: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let batches = arrow_io::batches(data)?;
        if let Some(first) = batches.first() {
            self.ensure_built(&first.schema())?;
        }
        let (Some(t), work) = (self.trained.as_ref(), &mut self.work) else {
            return arrow_io::to_python(py, Vec::new(), arrow);
        };
        let values = py
            .detach(|| predict_batches(t, work, &batches))
            .map_err(eddy_err)?;
        arrow_io::to_python(py, values, arrow)
    }

    /// Writes the model file `eddy learn --save` writes (`eddy predict --model` reads it):
    /// temp file, fsync, rename.
    fn save(&self, path: std::path::PathBuf) -> PyResult<()> {
        self.trained()?.save(&path).map_err(eddy_err)
    }

    /// Reads a model file written by `save` or `eddy learn --save`; a corrupt, truncated or
    /// foreign file is refused.
    #[staticmethod]
    fn load(path: std::path::PathBuf) -> PyResult<PyPipeline> {
        TrainedModel::load(&path)
            .map(PyPipeline::of)
            .map_err(eddy_err)
    }

    /// The learner's registry name (`"ftrl"`, …).
    #[getter]
    fn learner(&self) -> String {
        match (&self.trained, &self.recipe) {
            (Some(t), _) => t.model.name().to_string(),
            (None, Some(r)) => r.spec.kind.name().to_string(),
            (None, None) => String::new(),
        }
    }

    /// The label column.
    #[getter]
    fn label(&self) -> String {
        self.label.clone()
    }

    /// Rows learned so far.
    #[getter]
    fn rows_learned(&self) -> u64 {
        self.trained.as_ref().map_or(0, |t| t.model.rows_seen())
    }

    /// River's flag: a supervised model learns from labels (every learner but clustering).
    #[getter]
    fn _supervised(&self) -> bool {
        let kind = self.recipe.as_ref().map(|r| r.spec.kind);
        !kind.is_some_and(|k| k.is_clustering())
            && !matches!(
                self.trained.as_ref().map(|t| t.model.task()),
                Some(Task::Clustering { .. })
            )
    }

    fn __repr__(&self) -> String {
        format!(
            "eddy.Pipeline(learner={:?}, label={:?}, rows_learned={})",
            self.learner(),
            self.label,
            self.rows_learned()
        )
    }
}

/// The index of the largest score.
fn argmax(scores: &[f32]) -> i64 {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best as i64
}
