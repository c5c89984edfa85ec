//! The window-state part of `eddy bench checkpoint` (`"snapshot": "window"`): a keyed
//! tumbling-window operator (count and sum per key in one open hour window) holding `keys`
//! keys, driven directly through its [`Operator`] hooks. Reported: the time a synchronous
//! snapshot takes (what the barrier cost before the window table moved to copy-on-write pages),
//! the pause of the asynchronous one at the barrier (freezing the pages), its write off the
//! data path, and the next batch of `updates` rows right after the barrier (it copies the pages
//! it touches) and once more (nothing left to copy).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array};
use arrow::record_batch::RecordBatch;
use eddy_core::message::Epoch;
use eddy_core::operator::{Collector, Operator, StateSnapshot, TaskInfo, WriteContext};
use eddy_core::window::{Agg, EventWindowOperator, WindowSpec};

/// Rows per batch fed to the operator.
const BATCH: usize = 1 << 20;

fn batch(keys: impl Iterator<Item = i64>) -> anyhow::Result<RecordBatch> {
    let k: Vec<i64> = keys.collect();
    let ts: Vec<i64> = k.iter().map(|k| k % 1000).collect();
    Ok(RecordBatch::try_from_iter([
        ("k", Arc::new(Int64Array::from(k.clone())) as ArrayRef),
        ("ts", Arc::new(Int64Array::from(ts)) as ArrayRef),
        ("v", Arc::new(Int64Array::from(k)) as ArrayRef),
    ])?)
}

/// `n` keys among `keys`, a fixed xorshift64 sequence of keys already present.
fn sparse_keys(keys: usize, n: usize) -> impl Iterator<Item = i64> {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    (0..n).map(move |_| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % keys as u64) as i64
    })
}

/// Runs the window-state benchmark and prints its JSON line.
pub(super) fn window_state(keys: usize, updates: usize) -> anyhow::Result<()> {
    let spec = WindowSpec::tumbling(Duration::from_secs(3600)).time_column("ts");
    let mut op = EventWindowOperator::new(
        "window",
        &["k".to_string()],
        &spec,
        vec![Agg::count("n"), Agg::sum("v", "total")],
    )?;
    op.on_start(&TaskInfo::new("window", 0, 1))?;
    let mut out = Collector::default();
    let t = Instant::now();
    for start in (0..keys).step_by(BATCH) {
        let end = (start + BATCH).min(keys);
        op.process(0, batch(start as i64..end as i64)?, &mut out)?;
    }
    let fill_s = t.elapsed().as_secs_f64();
    // the synchronous snapshot (what a barrier cost before) ...
    let t = Instant::now();
    let full = op.snapshot(Epoch(1))?.map_or(0, |b| b.len());
    let sync_ms = t.elapsed().as_secs_f64() * 1e3;
    // ... against the pause of the asynchronous one, its write off the data path, and the
    // copy-on-write cost it moves into the next batch
    let t = Instant::now();
    let frozen = op.snapshot_async(Epoch(2))?;
    let pause_ms = t.elapsed().as_secs_f64() * 1e3;
    let touched = batch(sparse_keys(keys, updates))?;
    let t = Instant::now();
    op.process(0, touched.clone(), &mut out)?;
    let batch_after_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    op.process(0, touched, &mut out)?;
    let batch_again_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let written = match frozen {
        Some(StateSnapshot::Deferred(d)) => d.write(&WriteContext {
            epoch: Epoch(2),
            durable: Epoch(1),
            full: false,
        })?,
        Some(StateSnapshot::Ready(b)) => b,
        None => Vec::new(),
    };
    let write_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "{}",
        serde_json::json!({
            "bench": "state",
            "snapshot": "window",
            "keys": keys,
            "open_windows": op.open_windows(),
            "fill_s": fill_s,
            "sync_snapshot_ms": sync_ms,
            "pause_ms": pause_ms,
            "full_bytes": full,
            "write_off_path_ms": write_ms,
            "written_bytes": written.len(),
            "sparse_updates": updates,
            "batch_after_barrier_ms": batch_after_ms,
            "same_batch_again_ms": batch_again_ms,
        })
    );
    Ok(())
}
