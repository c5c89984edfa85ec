//! `learn_batch`'s loop: the rows cut into the engine's micro-batches, each featurized by the
//! pipeline ([`Pipeline::learn_examples_into`]) and learned by the learner, in order — with
//! featurizing and learning on two threads, so micro-batch `k + 1` is featurized while `k`
//! is learned (what the training engine's dataflow does with its featurize and learner
//! tasks).
//!
//! The result is the sequential loop's, bit for bit: the pipeline sees the micro-batches in
//! order and the learner learns each one's examples in order; only the two overlap. Three
//! example buffers circulate between the threads ([`Work`]'s `examples` and `spare`), so
//! nothing is allocated per micro-batch once they have grown. On an error the learner stops
//! at the failed micro-batch, while the pipeline may have folded in the (at most two)
//! micro-batches after it.
//!
//! [`Pipeline::learn_examples_into`]: eddy_algorithms::pipeline::Pipeline::learn_examples_into

use std::sync::mpsc::sync_channel;

use arrow::record_batch::RecordBatch;
use eddy_algorithms::features::Examples;
use eddy_algorithms::learner::OnlineLearner;
use eddy_algorithms::trained::TrainedModel;

use crate::model::Work;

/// `batches` as micro-batches of at most `max_rows` rows (zero-copy slices), in order.
fn micro_batches(
    batches: &[RecordBatch],
    max_rows: usize,
) -> impl Iterator<Item = RecordBatch> + '_ {
    let max_rows = max_rows.max(1);
    batches.iter().flat_map(move |b| {
        (0..b.num_rows())
            .step_by(max_rows)
            .map(move |start| b.slice(start, max_rows.min(b.num_rows() - start)))
    })
}

/// Learns every row of `batches` in order, in micro-batches of `max_rows`.
pub fn learn(
    t: &mut TrainedModel,
    work: &mut Work,
    batches: &[RecordBatch],
    max_rows: usize,
) -> eddy_algorithms::Result<()> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let TrainedModel { pipeline, model } = t;
    if rows <= max_rows {
        // one micro-batch: nothing to overlap
        for part in micro_batches(batches, max_rows) {
            pipeline.learn_examples_into(&part, &mut work.examples)?;
            model.learn(&work.examples)?;
        }
        return Ok(());
    }
    let [a, b] = &mut work.spare;
    let buffers = [&mut work.examples, a, b];
    // featurized buffers go to the learner; learned ones come back to be refilled
    let (full_tx, full_rx) = sync_channel::<&mut Examples>(buffers.len());
    let (empty_tx, empty_rx) = sync_channel::<&mut Examples>(buffers.len());
    for buffer in buffers {
        // the channel holds every buffer: these sends cannot block or fail
        let _ = empty_tx.send(buffer);
    }
    std::thread::scope(|s| {
        let featurizer = s.spawn(move || {
            for part in micro_batches(batches, max_rows) {
                // the learner hung up: it failed, and says why
                let Ok(buffer) = empty_rx.recv() else {
                    return Ok(());
                };
                pipeline.learn_examples_into(&part, buffer)?;
                if full_tx.send(buffer).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        let mut learned = Ok(());
        for buffer in full_rx.iter() {
            learned = model.learn(buffer);
            if learned.is_err() {
                break;
            }
            // the featurizer may be done and gone: the buffer is not needed then
            let _ = empty_tx.send(buffer);
        }
        drop(empty_tx);
        drop(full_rx);
        let featurized = featurizer.join().unwrap_or_else(|_| {
            Err(eddy_algorithms::Error::param(
                "learn_batch",
                "the featurizing thread panicked",
            ))
        });
        // the learner's error comes first: it is of an earlier micro-batch
        learned.and(featurized)
    })
}
