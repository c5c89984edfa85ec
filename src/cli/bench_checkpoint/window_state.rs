//! The window-state part of `eddy bench checkpoint` (`"snapshot": "window"`): a keyed
//! tumbling-window operator (count and sum per key in one open hour window) holding `keys`
//! keys, driven directly through its [`Operator`] hooks. Reported: the time its snapshot takes
//! at the barrier (the pause on the data path: the window operators snapshot synchronously),
//! the snapshot's bytes, and the bytes of the next snapshot after `updates` more rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array};
use arrow::record_batch::RecordBatch;
use eddy_core::message::Epoch;
use eddy_core::operator::{Collector, Operator, TaskInfo};
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
    let t = Instant::now();
    let full = op.snapshot(Epoch(1))?.map_or(0, |b| b.len());
    let pause = t.elapsed().as_secs_f64();
    // xorshift64: a fixed sequence of keys already present
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let touched = (0..updates).map(|_| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % keys as u64) as i64
    });
    op.process(0, batch(touched)?, &mut out)?;
    let t = Instant::now();
    let next = op.snapshot(Epoch(2))?.map_or(0, |b| b.len());
    let next_pause = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bench": "state",
            "snapshot": "window",
            "keys": keys,
            "open_windows": op.open_windows(),
            "fill_s": fill_s,
            "pause_ms": pause * 1e3,
            "full_bytes": full,
            "sparse_updates": updates,
            "next_pause_ms": next_pause * 1e3,
            "next_bytes": next,
        })
    );
    Ok(())
}
