//! Reading a spec's source as record batches on the calling (blocking) thread, for nodes that
//! score rather than train (`evaluate`, the `serve` node's example request): the same core
//! sources the training job reads ([`flow_source`]: files, `ctr` rows, hybrids), driven by
//! hand instead of by a dataflow. (A `delayed-labels` source is a join, read only by training
//! nodes; the serve node's example request reads its impressions.)

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use eddy_core::datagen::ctr::CtrGenerator;
use eddy_core::source::{Source, SourceContext, SourcePoll};

use super::sources::flow_source;
use crate::error::Result;
use crate::spec::{SourceSpec, Workflow};

/// The click generators of a run by seed, shared by every reader: building one and
/// generating its 50 000-row chunks is the expensive part, and the generator keeps its last
/// chunk.
pub(crate) type Generators = Arc<Mutex<BTreeMap<u64, Arc<CtrGenerator>>>>;

pub(crate) fn generator(generators: &Generators, seed: u64) -> Arc<CtrGenerator> {
    let mut g = generators.lock().unwrap_or_else(|p| p.into_inner());
    g.entry(seed)
        .or_insert_with(|| Arc::new(CtrGenerator::new(seed, false)))
        .clone()
}

/// A short description of a source, for lineage.
pub(crate) fn describe(wf: &Workflow, name: &str) -> String {
    match wf.sources.get(name) {
        Some(SourceSpec::File { path, .. }) => format!("{name}: {}", path.display()),
        Some(SourceSpec::Ctr {
            seed, offset, rows, ..
        }) => {
            format!("{name}: ctr seed {seed} rows {offset}..{}", offset + rows)
        }
        Some(SourceSpec::Hybrid { history, live }) => format!("{name}: {history} then {live}"),
        Some(SourceSpec::Kafka { uri, .. }) => format!("{name}: {uri}"),
        Some(SourceSpec::DelayedLabels(d)) => format!(
            "{name}: {} labelled by {} within {:?} on {}",
            describe(wf, &d.impressions),
            describe(wf, &d.clicks),
            d.wait,
            d.key.join(", ")
        ),
        None => name.to_string(),
    }
}

/// The batches of one source, in order.
pub(crate) struct SourceReader {
    source: Box<dyn Source>,
    ctx: SourceContext,
    stop: Arc<AtomicBool>,
}

impl SourceReader {
    /// Opens source `name` of `wf` (of a `delayed-labels` source, its impressions: the rows
    /// as a request carries them, unlabelled); `stop` ends a paced or followed stream early.
    pub(crate) fn open(
        wf: &Workflow,
        name: &str,
        stop: Arc<AtomicBool>,
        generators: &Generators,
    ) -> Result<Self> {
        let name = match wf.sources.get(name) {
            Some(SourceSpec::DelayedLabels(d)) => d.impressions.as_str(),
            _ => name,
        };
        let flow = flow_source(wf, name, generators)?;
        let mut ctx = SourceContext::standalone(name);
        ctx.bounds.max_rows = flow.batch_rows;
        let mut source = (flow.factory)(&ctx.task)?;
        source.open(&ctx)?;
        Ok(SourceReader { source, ctx, stop })
    }

    /// The next batch, or `None` at the end (or once stopped while the source waits).
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            match self.source.poll_next(&self.ctx)? {
                SourcePoll::Batch(b) => return Ok(Some(b)),
                SourcePoll::Watermark(_) => {}
                SourcePoll::Idle if self.stop.load(Ordering::Relaxed) => return Ok(None),
                SourcePoll::Idle => std::thread::sleep(Duration::from_millis(5)),
                SourcePoll::End => return Ok(None),
            }
        }
    }
}
