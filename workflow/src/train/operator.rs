//! The learner as a dataflow operator: set aside the rows it cannot learn from (dead letters),
//! featurize, predict-then-learn (progressive validation), publish when due; its whole state —
//! pipeline statistics, learner, evaluator, publication position — is its checkpointed
//! operator state.
//!
//! Data-parallel (or through a parameter server) the learner is the subtask's
//! [`SubtaskLearner`]: its weights are shared, and subtask 0's snapshot holds them too (the
//! other subtasks' hold their pipeline, evaluator and counts). Subtask 0 alone publishes: the
//! shared weights as a local model, with its own pipeline and metrics.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use eddy_algorithms::eval::ProgressiveValidation;
use eddy_algorithms::features::{Examples, Features};
use eddy_algorithms::learner::{OnlineLearner, Predictor};
use eddy_algorithms::online::linear::{FtrlLogisticRegression, FtrlShape};
use eddy_algorithms::pipeline::Pipeline;
use eddy_algorithms::trained::{OnlineModel, TrainedModel};
use eddy_core::error::ErrorDomain;
use eddy_core::message::Epoch;
use eddy_core::operator::{
    Collector, DeferredState, Operator, StateSnapshot, TaskInfo, WriteContext,
};
use eddy_core::source::Rejected;
use eddy_core::state::{BlobWriter, ChunkedBlob, TableSnapshot};

use super::ps::SubtaskLearner;
use super::{Finished, Shared, TrainEvent};
use crate::model_stream::{metric_map, ModelStream, StreamPosition};

/// The kind written in the header of a learner snapshot (a checksummed model-file frame).
pub(crate) const SNAPSHOT_KIND: &str = "eddy-learner-snapshot";

/// The kind of a data-parallel subtask's own model part: its pipeline alone.
const PIPELINE_KIND: &str = "eddy-subtask-pipeline";

/// What a snapshot holds (written from borrowed state, read back owned: the same encoding).
#[derive(serde::Serialize)]
struct SnapshotRef<'a> {
    /// The pipeline and learner, in the model-file format (data-parallel: the pipeline
    /// alone; the weights are in subtask 0's `store`).
    model: Vec<u8>,
    eval: &'a ProgressiveValidation,
    rows: u64,
    rejected: u64,
    stream: Option<StreamPosition>,
    /// The parameter store's tables (subtask 0 of a job training through one).
    store: Option<Vec<u8>>,
}

/// A snapshot read back (`Serialize` too: decoding walks it to refuse non-finite numbers).
#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    model: Vec<u8>,
    eval: ProgressiveValidation,
    rows: u64,
    rejected: u64,
    stream: Option<StreamPosition>,
    #[serde(default)]
    store: Option<Vec<u8>>,
}

/// The kind of the head of a chunked learner snapshot: an FTRL model's weights are in the
/// chunks, written off the data path and incrementally ([`eddy_core::state`]).
const CHUNKED_KIND: &str = "eddy-learner-snapshot-chunked";

/// The head of a chunked snapshot, written from borrowed state ([`ChunkedFrame`] read back).
#[derive(serde::Serialize)]
struct ChunkedFrameRef<'a> {
    pipeline: Vec<u8>,
    ftrl: FtrlShape,
    eval: &'a ProgressiveValidation,
    rows: u64,
    rejected: u64,
    stream: Option<StreamPosition>,
}

/// The head of a chunked snapshot: everything but the FTRL slots.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChunkedFrame {
    /// The pipeline ([`pipeline_bytes`]).
    pipeline: Vec<u8>,
    ftrl: FtrlShape,
    eval: ProgressiveValidation,
    rows: u64,
    rejected: u64,
    stream: Option<StreamPosition>,
}

/// An FTRL learner's slots frozen at a barrier, written by the task's background writer.
struct FtrlDeferred {
    head: Vec<u8>,
    slots: TableSnapshot<3>,
}

impl DeferredState for FtrlDeferred {
    fn write(self: Box<Self>, ctx: &WriteContext) -> eddy_core::Result<Vec<u8>> {
        let mut w = BlobWriter::new(ctx.full, &self.head, 0);
        self.slots.write(ctx, &mut w);
        Ok(w.finish())
    }
}

/// A subtask's pipeline and what it learns with (one per subtask: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Learner {
    /// The pipeline and the subtask's own model (one subtask, no parameter server).
    Own(TrainedModel),
    /// Data-parallel or through a parameter server: the subtask's pipeline, and its learner
    /// on the shared weights (no local copy of them: subtask 0 reads them back to publish).
    Parallel {
        pipeline: Pipeline,
        learner: SubtaskLearner,
    },
}

impl Learner {
    fn pipeline(&self) -> &Pipeline {
        match self {
            Learner::Own(t) => &t.pipeline,
            Learner::Parallel { pipeline, .. } => pipeline,
        }
    }

    fn pipeline_mut(&mut self) -> &mut Pipeline {
        match self {
            Learner::Own(t) => &mut t.pipeline,
            Learner::Parallel { pipeline, .. } => pipeline,
        }
    }

    /// The learner to predict and learn with.
    fn online(&mut self) -> &mut dyn OnlineLearner {
        match self {
            Learner::Own(t) => &mut t.model,
            Learner::Parallel { learner, .. } => learner.learner(),
        }
    }
}

/// The state of one attempt.
struct State {
    learner: Learner,
    eval: ProgressiveValidation,
    /// Rows learned.
    rows: u64,
    /// Rows sent to the dead-letter sink (a bad label): with `rows`, the stream position.
    rejected: u64,
    stream: Option<ModelStream>,
    /// Reused featurization buffer.
    examples: Examples,
    /// Reused buffer of the rows a batch cannot be learned from.
    invalid: Vec<(usize, String)>,
}

/// The online learner operator (see the [module docs](self)).
pub(crate) struct LearnOperator {
    shared: Arc<Shared>,
    name: String,
    subtask: usize,
    /// Built in `on_start` (errors have a place to go there).
    state: Option<State>,
}

impl LearnOperator {
    /// A fresh attempt.
    pub(crate) fn new(shared: Arc<Shared>, name: &str) -> Self {
        LearnOperator {
            shared,
            name: name.to_string(),
            subtask: 0,
            state: None,
        }
    }

    fn error(&self, e: impl std::fmt::Display, domain: ErrorDomain) -> eddy_core::Error {
        eddy_core::Error::Operator {
            operator: self.name.clone(),
            subtask: self.subtask,
            message: e.to_string(),
            domain,
        }
    }

    fn algo_error(&self, e: eddy_algorithms::Error) -> eddy_core::Error {
        let domain = e.domain();
        self.error(e, domain)
    }

    fn publish_error(&self, e: crate::Error) -> eddy_core::Error {
        self.error(format!("publishing: {e}"), ErrorDomain::External)
    }

    /// An error of the training engine's own (the parameter store): retried.
    fn train_error(&self, e: crate::Error) -> eddy_core::Error {
        self.error(e, ErrorDomain::External)
    }

    /// The starting state: the shared pipeline, a copy of the starting model (or, in parallel,
    /// a learner on the shared weights), a fresh evaluator.
    fn initial_state(&self) -> eddy_core::Result<State> {
        let model = self.shared.model.as_ref().ok_or_else(|| {
            self.error(
                "an online learner needs a starting model",
                ErrorDomain::Internal,
            )
        })?;
        let eval = self.shared.eval.build(model.task());
        let eval = eval.map_err(|e| self.algo_error(e))?;
        let examples = Examples::new(Features::Sparse(Default::default()), Vec::new(), None);
        let examples = examples.map_err(|e| self.algo_error(e))?;
        let pipeline = self.shared.pipeline.clone();
        let learner = match &self.shared.backend {
            Some(b) => Learner::Parallel {
                pipeline,
                learner: b.learner(self.subtask).map_err(|e| self.train_error(e))?,
            },
            None => Learner::Own(TrainedModel {
                pipeline,
                model: model.clone(),
            }),
        };
        let stream = match self.shared.publish.as_ref().filter(|_| self.subtask == 0) {
            Some(p) => Some(
                ModelStream::new(
                    p.registry.clone(),
                    p.name.clone(),
                    p.every,
                    p.template.clone(),
                )
                .map_err(|e| self.publish_error(e))?,
            ),
            None => None,
        };
        Ok(State {
            learner,
            eval,
            rows: 0,
            rejected: 0,
            stream,
            examples,
            invalid: Vec::new(),
        })
    }

    fn state(&mut self) -> eddy_core::Result<&mut State> {
        match self.state {
            Some(ref mut s) => Ok(s),
            None => Err(eddy_core::Error::Internal(format!(
                "{}[{}] used before on_start",
                self.name, self.subtask
            ))),
        }
    }

    fn emit(&self, event: TrainEvent) {
        if let Some(events) = &self.shared.events {
            events(&event);
        }
    }

    /// Learns one batch and publishes a version when one is due.
    fn learn(&mut self, batch: &RecordBatch) -> Result<Option<TrainEvent>, LearnError> {
        let shared = self.shared.clone();
        let s = self.state().map_err(LearnError::Core)?;
        s.learner
            .pipeline_mut()
            .learn_examples_into(batch, &mut s.examples)
            .map_err(LearnError::Algorithms)?;
        s.eval
            .process(s.learner.online(), &s.examples)
            .map_err(LearnError::Algorithms)?;
        let n = batch.num_rows() as u64;
        s.rows += n;
        let rows = shared.rows_learned(s.rows, n);
        let Some(stream) = s.stream.as_mut().filter(|st| st.due(rows)) else {
            return Ok(None);
        };
        let cumulative = s.eval.cumulative();
        if let Some(why) = super::diverged(&cumulative, rows) {
            return Err(LearnError::Diverged(why));
        }
        let metrics = metric_map(&cumulative);
        let published = match &s.learner {
            Learner::Own(trained) => stream.publish(trained, rows, metrics.clone()),
            Learner::Parallel { pipeline, .. } => shared.shared_model().and_then(|model| {
                let trained = TrainedModel {
                    pipeline: pipeline.clone(),
                    model,
                };
                stream.publish(&trained, rows, metrics.clone())
            }),
        };
        let meta = published.map_err(LearnError::Publish)?;
        Ok(Some(TrainEvent::Published {
            version: meta.version,
            rows,
            metrics,
        }))
    }
}

impl LearnOperator {
    /// Restores a snapshot of [`snapshot_async`](Operator::snapshot_async).
    fn restore_chunked(&mut self, bytes: &[u8]) -> eddy_core::Result<()> {
        let refused = |e: &dyn std::fmt::Display| {
            self.error(
                format!("learner snapshot refused: {e}"),
                ErrorDomain::Internal,
            )
        };
        let blob = ChunkedBlob::parse(bytes, &self.name).map_err(|e| refused(&e))?;
        let frame: ChunkedFrame =
            eddy_algorithms::model::decode(blob.head, CHUNKED_KIND).map_err(|e| refused(&e))?;
        let pipeline = pipeline_from(&frame.pipeline).map_err(|e| refused(&e))?;
        let ftrl = FtrlLogisticRegression::from_parts(frame.ftrl, &blob.chunks, &self.name)
            .map_err(|e| refused(&e))?;
        self.emit(TrainEvent::Restored {
            subtask: self.subtask,
            rows: frame.rows,
        });
        let s = self.state()?;
        s.learner = Learner::Own(TrainedModel {
            pipeline,
            model: OnlineModel::Ftrl(ftrl),
        });
        s.eval = frame.eval;
        s.rows = frame.rows;
        s.rejected = frame.rejected;
        if let (Some(stream), Some(position)) = (s.stream.as_mut(), frame.stream) {
            stream.restore_position(position);
        }
        Ok(())
    }

    /// `batch` without the rows it cannot learn from (a missing, non-finite or out-of-range
    /// label or weight), which go to the dead-letter sink numbered by their record in the
    /// stream; `None` when no row is left.
    fn learnable(
        &mut self,
        batch: RecordBatch,
        out: &Collector,
    ) -> eddy_core::Result<Option<RecordBatch>> {
        let name = self.name.clone();
        let s = self.state()?;
        let Some(spec) = s.learner.pipeline().label().cloned() else {
            return Ok(Some(batch));
        };
        let task = s.learner.online().task();
        let checked = spec.invalid_rows(&batch, task, &mut s.invalid);
        if let Err(e) = checked {
            return Err(self.algo_error(e));
        }
        let s = self.state()?;
        if s.invalid.is_empty() {
            return Ok(Some(batch));
        }
        let first = s.rows + s.rejected + 1;
        let column = batch.schema().index_of(&spec.label).map_or(0, |i| i + 1);
        let mut keep = vec![true; batch.num_rows()];
        for (row, reason) in &s.invalid {
            keep[*row] = false;
            out.reject(Rejected {
                source: format!("{name} (record {} of its input)", first + *row as u64),
                line: first + *row as u64,
                column,
                raw: Rejected::row_json(&batch, *row),
                reason: reason.clone(),
            })?;
        }
        s.rejected += s.invalid.len() as u64;
        let mask = arrow::array::BooleanArray::from(keep);
        let kept = arrow::compute::filter_record_batch(&batch, &mask)
            .map_err(|e| eddy_core::Error::Internal(format!("dropping rejected rows: {e}")))?;
        Ok((kept.num_rows() > 0).then_some(kept))
    }
}

/// A pipeline as a checksummed frame holding its versioned JSON document.
fn pipeline_bytes(pipeline: &Pipeline) -> eddy_algorithms::Result<Vec<u8>> {
    let document = pipeline.to_json()?.to_string();
    eddy_algorithms::model::encode(PIPELINE_KIND, &document)
}

/// Reads [`pipeline_bytes`].
fn pipeline_from(bytes: &[u8]) -> eddy_algorithms::Result<Pipeline> {
    let document: String = eddy_algorithms::model::decode(bytes, PIPELINE_KIND)?;
    let value = serde_json::from_str(&document).map_err(|e| {
        eddy_algorithms::Error::Shape(format!("{PIPELINE_KIND}: not a JSON document: {e}"))
    })?;
    Pipeline::from_json(value)
}

/// The ways learning a batch fails.
enum LearnError {
    Core(eddy_core::Error),
    Algorithms(eddy_algorithms::Error),
    Publish(crate::Error),
    /// The model's predictions are no longer finite: nothing is published.
    Diverged(String),
}

impl Operator for LearnOperator {
    fn on_start(&mut self, task: &TaskInfo) -> eddy_core::Result<()> {
        self.subtask = task.subtask;
        self.state = Some(self.initial_state()?);
        Ok(())
    }

    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Collector,
    ) -> eddy_core::Result<()> {
        let Some(batch) = self.learnable(batch, out)? else {
            return Ok(());
        };
        match self.learn(&batch) {
            Ok(published) => {
                let mine = self.state()?.rows;
                let rows = self.shared.rows_so_far(mine);
                self.emit(TrainEvent::Rows(rows));
                if let Some(event) = published {
                    self.emit(event);
                }
                Ok(())
            }
            Err(LearnError::Core(e)) => Err(e),
            Err(LearnError::Algorithms(e)) => Err(self.algo_error(e)),
            Err(LearnError::Publish(e)) => Err(self.publish_error(e)),
            Err(LearnError::Diverged(why)) => Err(self.error(why, ErrorDomain::User)),
        }
    }

    fn snapshot(&mut self, epoch: Epoch) -> eddy_core::Result<Option<Vec<u8>>> {
        let store = match (&self.shared.backend, self.subtask) {
            (Some(backend), 0) => backend.snapshot(epoch.0).map_err(|e| self.train_error(e))?,
            _ => None,
        };
        let s = self.state()?;
        // data-parallel, the weights are the backend's (in subtask 0's `store`): the
        // subtask's own part is its pipeline
        let model = match &s.learner {
            Learner::Parallel { pipeline, .. } => pipeline_bytes(pipeline),
            Learner::Own(trained) => trained.to_bytes(),
        };
        let snapshot = model.and_then(|model| {
            let frame = SnapshotRef {
                model,
                eval: &s.eval,
                rows: s.rows,
                rejected: s.rejected,
                stream: s.stream.as_ref().map(ModelStream::position),
                store,
            };
            eddy_algorithms::model::encode(SNAPSHOT_KIND, &frame)
        });
        snapshot.map(Some).map_err(|e| self.algo_error(e))
    }

    /// The subtask's own FTRL model (no parameter server, one subtask) snapshots its slots
    /// asynchronously and incrementally; everything else is the synchronous [`snapshot`].
    ///
    /// [`snapshot`]: Operator::snapshot
    fn snapshot_async(&mut self, epoch: Epoch) -> eddy_core::Result<Option<StateSnapshot>> {
        let chunked = self.shared.backend.is_none()
            && matches!(
                self.state.as_ref().map(|s| &s.learner),
                Some(Learner::Own(TrainedModel {
                    model: OnlineModel::Ftrl(_),
                    ..
                }))
            );
        if !chunked {
            return Ok(self.snapshot(epoch)?.map(StateSnapshot::Ready));
        }
        let s = self.state()?;
        let Learner::Own(TrainedModel {
            pipeline,
            model: OnlineModel::Ftrl(ftrl),
        }) = &mut s.learner
        else {
            return Err(eddy_core::Error::Internal("learner changed kind".into()));
        };
        let head = pipeline_bytes(pipeline).and_then(|pipeline| {
            let frame = ChunkedFrameRef {
                pipeline,
                ftrl: ftrl.shape(),
                eval: &s.eval,
                rows: s.rows,
                rejected: s.rejected,
                stream: s.stream.as_ref().map(ModelStream::position),
            };
            eddy_algorithms::model::encode(CHUNKED_KIND, &frame)
        });
        let slots = ftrl.slot_snapshot();
        let head = head.map_err(|e| self.algo_error(e))?;
        Ok(Some(StateSnapshot::Deferred(Box::new(FtrlDeferred {
            head,
            slots,
        }))))
    }

    fn restore(&mut self, bytes: &[u8]) -> eddy_core::Result<()> {
        if eddy_core::state::blob::is_chunked(bytes) {
            return self.restore_chunked(bytes);
        }
        let decoded =
            eddy_algorithms::model::decode::<Snapshot>(bytes, SNAPSHOT_KIND).and_then(|snapshot| {
                let s = self.state.as_mut().ok_or_else(|| {
                    eddy_algorithms::Error::Shape("restored before on_start".into())
                })?;
                match &mut s.learner {
                    Learner::Own(own) => *own = TrainedModel::from_bytes(&snapshot.model)?,
                    Learner::Parallel { pipeline, .. } => {
                        *pipeline = pipeline_from(&snapshot.model)?
                    }
                }
                Ok(snapshot)
            });
        let snapshot = decoded.map_err(|e| {
            self.error(
                format!("learner snapshot refused: {e}"),
                ErrorDomain::Internal,
            )
        })?;
        if let (Some(backend), Some(tables)) = (&self.shared.backend, &snapshot.store) {
            backend
                .restore(tables, self.shared.exactly_once)
                .map_err(|e| self.train_error(e))?;
        }
        self.emit(TrainEvent::Restored {
            subtask: self.subtask,
            rows: snapshot.rows,
        });
        let s = self.state()?;
        s.eval = snapshot.eval;
        s.rows = snapshot.rows;
        s.rejected = snapshot.rejected;
        if let (Some(stream), Some(position)) = (s.stream.as_mut(), snapshot.stream) {
            stream.restore_position(position);
        }
        Ok(())
    }

    /// Learns the examples still waiting for their (delayed) labels, leaves the gathered
    /// clocks (through a parameter server), and hands the state to the job.
    fn on_end(&mut self, _out: &mut Collector) -> eddy_core::Result<()> {
        let mut s = match self.state.take() {
            Some(s) => s,
            None => return Err(eddy_core::Error::Internal("learner ended twice".into())),
        };
        s.eval
            .finish(s.learner.online())
            .map_err(|e| self.algo_error(e))?;
        let (pipeline, model) = match s.learner {
            Learner::Own(trained) => (trained.pipeline, Some(trained.model)),
            Learner::Parallel { pipeline, learner } => {
                learner.finish().map_err(|e| self.train_error(e))?;
                if let Some(backend) = &self.shared.backend {
                    backend.finish_barrier().map_err(|e| self.train_error(e))?;
                }
                (pipeline, None)
            }
        };
        let finished = Finished {
            subtask: self.subtask,
            pipeline,
            model,
            eval: Some(s.eval),
            metrics: Default::default(),
            rows: s.rows,
            stream: s.stream,
        };
        self.shared
            .result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(finished);
        Ok(())
    }
}
