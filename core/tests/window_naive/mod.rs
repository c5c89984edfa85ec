//! A naive reference for the window operators: recomputes every aggregate from the list of rows
//! it covers, and simulates watermarks record by record. Shared by `window_props` and
//! `window_pipeline`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use arrow::record_batch::RecordBatch;
use eddy_core::window::Agg;

/// One input record; `seq` is its arrival number.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub seq: usize,
    pub key: String,
    pub ts: i64,
    pub v: i64,
    pub f: Option<i64>,
}

pub fn to_batch(recs: &[Rec]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("ts", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
        Field::new("f", DataType::Float64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                recs.iter()
                    .map(|r| Some(r.key.as_str()))
                    .collect::<StringArray>(),
            ) as ArrayRef,
            Arc::new(recs.iter().map(|r| Some(r.ts)).collect::<Int64Array>()),
            Arc::new(recs.iter().map(|r| Some(r.v)).collect::<Int64Array>()),
            Arc::new(
                recs.iter()
                    .map(|r| r.f.map(|f| f as f64))
                    .collect::<Float64Array>(),
            ),
        ],
    )
    .unwrap()
}

/// Records of a batch in `to_batch`'s schema (seq unknown: 0).
pub fn from_batch(b: &RecordBatch) -> Vec<Rec> {
    let k = b.column(0).as_string::<i32>();
    let ts = b.column(1).as_primitive::<Int64Type>();
    let v = b.column(2).as_primitive::<Int64Type>();
    let f = b.column(3).as_primitive::<Float64Type>();
    (0..b.num_rows())
        .map(|i| Rec {
            seq: 0,
            key: k.value(i).to_string(),
            ts: ts.value(i),
            v: v.value(i),
            f: f.is_valid(i).then(|| f.value(i) as i64),
        })
        .collect()
}

/// The aggregates every test computes, in this order.
pub fn aggs() -> Vec<Agg> {
    vec![
        Agg::count("n"),
        Agg::sum("v", "sum_v"),
        Agg::mean("f", "mean_f"),
        Agg::min("f", "min_f"),
        Agg::max("f", "max_f"),
        Agg::last("v", "last_v"),
        Agg::last("f", "last_f"),
        Agg::distinct_count("v", "distinct_v"),
    ]
}

/// An aggregate value.
#[derive(Debug, Clone, Copy)]
pub enum Val {
    I(Option<i64>),
    F(Option<f64>),
}

impl PartialEq for Val {
    fn eq(&self, o: &Val) -> bool {
        match (self, o) {
            (Val::I(a), Val::I(b)) => a == b,
            (Val::F(Some(a)), Val::F(Some(b))) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
            (Val::F(a), Val::F(b)) => a.is_none() && b.is_none(),
            _ => false,
        }
    }
}

/// `aggs()` over `rows` (any order; "last" is by arrival).
pub fn agg_values(rows: &[&Rec]) -> Vec<Val> {
    let fs: Vec<f64> = rows.iter().filter_map(|r| r.f.map(|f| f as f64)).collect();
    let latest_v = rows.iter().max_by_key(|r| r.seq).map(|r| r.v);
    let latest_f = rows
        .iter()
        .filter(|r| r.f.is_some())
        .max_by_key(|r| r.seq)
        .and_then(|r| r.f);
    let none_if_empty = |x: f64| (!fs.is_empty()).then_some(x);
    vec![
        Val::I(Some(rows.len() as i64)),
        Val::F((!rows.is_empty()).then(|| rows.iter().map(|r| r.v as f64).sum())),
        Val::F(none_if_empty(fs.iter().sum::<f64>() / fs.len() as f64)),
        Val::F(none_if_empty(
            fs.iter().cloned().fold(f64::INFINITY, f64::min),
        )),
        Val::F(none_if_empty(
            fs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        )),
        Val::I(latest_v),
        Val::F(latest_f.map(|f| f as f64)),
        Val::I(Some(
            rows.iter().map(|r| r.v).collect::<HashSet<_>>().len() as i64
        )),
    ]
}

/// Values of the aggregate columns (from `first` on) of row `i`.
pub fn row_values(b: &RecordBatch, first: usize, i: usize) -> Vec<Val> {
    b.columns()[first..]
        .iter()
        .map(|c| match c.data_type() {
            DataType::Float64 => {
                let a = c.as_primitive::<Float64Type>();
                Val::F(a.is_valid(i).then(|| a.value(i)))
            }
            _ => {
                let a = c.as_primitive::<Int64Type>();
                Val::I(a.is_valid(i).then(|| a.value(i)))
            }
        })
        .collect()
}

/// (key, window start, window end).
pub type WinKey = (String, i64, i64);

/// Last emitted values and number of emissions per (key, window), from window output batches.
pub fn collect_output(batches: &[RecordBatch]) -> BTreeMap<WinKey, (Vec<Val>, usize)> {
    let mut m: BTreeMap<WinKey, (Vec<Val>, usize)> = BTreeMap::new();
    for b in batches {
        let k = b.column(0).as_string::<i32>();
        let s = b.column(1).as_primitive::<Int64Type>();
        let e = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let entry = m
                .entry((k.value(i).to_string(), s.value(i), e.value(i)))
                .or_insert((Vec::new(), 0));
            entry.0 = row_values(b, 3, i);
            entry.1 += 1;
        }
    }
    m
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Fixed { size: i64, slide: i64 },
    Session { gap: i64 },
}

/// The windows `[s, s + size)` (s a multiple of `slide`) containing `ts`, by brute force.
fn fixed_windows(size: i64, slide: i64, ts: i64) -> Vec<(i64, i64)> {
    let mut s = (ts - size).div_euclid(slide) * slide;
    let mut v = Vec::new();
    while s <= ts {
        if ts < s + size {
            v.push((s, s + size));
        }
        s += slide;
    }
    v
}

/// Every record at once, grouped per (key, window): what a batch job computes.
pub fn batch_compute(kind: Kind, recs: &[Rec]) -> BTreeMap<WinKey, Vec<Val>> {
    let mut groups: BTreeMap<WinKey, Vec<&Rec>> = BTreeMap::new();
    match kind {
        Kind::Fixed { size, slide } => {
            for r in recs {
                for (s, e) in fixed_windows(size, slide, r.ts) {
                    groups.entry((r.key.clone(), s, e)).or_default().push(r);
                }
            }
        }
        Kind::Session { gap } => {
            let mut by_key: BTreeMap<&str, Vec<&Rec>> = BTreeMap::new();
            for r in recs {
                by_key.entry(&r.key).or_default().push(r);
            }
            for (k, mut rs) in by_key {
                rs.sort_by_key(|r| r.ts);
                let mut cur: Vec<&Rec> = Vec::new();
                let (mut start, mut end) = (0, 0);
                for r in rs {
                    if !cur.is_empty() && r.ts < end {
                        end = end.max(r.ts + gap);
                    } else {
                        if !cur.is_empty() {
                            groups.insert((k.to_string(), start, end), std::mem::take(&mut cur));
                        }
                        (start, end) = (r.ts, r.ts + gap);
                    }
                    cur.push(r);
                }
                if !cur.is_empty() {
                    groups.insert((k.to_string(), start, end), cur);
                }
            }
        }
    }
    groups
        .into_iter()
        .map(|(k, rows)| (k, agg_values(&rows)))
        .collect()
}

struct Win {
    key: String,
    start: i64,
    end: i64,
    rows: Vec<Rec>,
    fired: bool,
    dirty: bool,
}

/// What a watermark-driven run emits: last values and emissions per window, and late records.
pub struct Sim {
    pub emitted: BTreeMap<WinKey, (Vec<Val>, usize)>,
    pub late: Vec<Rec>,
}

/// Simulates the operator record by record: watermark `max - bound - 1` after each batch,
/// Flink's firing and lateness rules, sessions merged by overlap.
pub fn simulate(kind: Kind, lateness: i64, bound: i64, batches: &[Vec<Rec>]) -> Sim {
    let mut wins: Vec<Win> = Vec::new();
    let mut sim = Sim {
        emitted: BTreeMap::new(),
        late: Vec::new(),
    };
    let mut wm = i64::MIN;
    let mut max_seen: Option<i64> = None;
    let emit = |sim: &mut Sim, w: &Win| {
        let rows: Vec<&Rec> = w.rows.iter().collect();
        let e = sim
            .emitted
            .entry((w.key.clone(), w.start, w.end))
            .or_insert((Vec::new(), 0));
        e.0 = agg_values(&rows);
        e.1 += 1;
    };
    let live = |w: &Win, wm: i64| (w.end - 1).saturating_add(lateness) > wm;
    for batch in batches {
        for r in batch {
            let mut placed = false;
            match kind {
                Kind::Fixed { size, slide } => {
                    for (s, e) in fixed_windows(size, slide, r.ts) {
                        if (e - 1).saturating_add(lateness) <= wm {
                            continue;
                        }
                        placed = true;
                        let i = match wins.iter().position(|w| w.key == r.key && w.start == s) {
                            Some(i) => i,
                            None => {
                                wins.push(Win {
                                    key: r.key.clone(),
                                    start: s,
                                    end: e,
                                    rows: vec![],
                                    fired: false,
                                    dirty: false,
                                });
                                wins.len() - 1
                            }
                        };
                        wins[i].rows.push(r.clone());
                        wins[i].dirty |= e - 1 <= wm;
                    }
                }
                Kind::Session { gap } => {
                    let (mut s, mut e) = (r.ts, r.ts + gap);
                    let overlap = |w: &Win| w.key == r.key && w.start < r.ts + gap && r.ts < w.end;
                    for w in wins.iter().filter(|w| overlap(w)) {
                        (s, e) = (s.min(w.start), e.max(w.end));
                    }
                    if (e - 1).saturating_add(lateness) > wm {
                        placed = true;
                        let mut rows = vec![r.clone()];
                        for w in wins.iter().filter(|w| overlap(w)) {
                            rows.extend(w.rows.iter().cloned());
                        }
                        wins.retain(|w| !overlap(w));
                        wins.push(Win {
                            key: r.key.clone(),
                            start: s,
                            end: e,
                            rows,
                            fired: false,
                            dirty: e - 1 <= wm,
                        });
                    }
                }
            }
            if !placed {
                sim.late.push(r.clone());
            }
        }
        for w in wins.iter_mut().filter(|w| w.dirty) {
            emit(&mut sim, w);
            (w.dirty, w.fired) = (false, true);
        }
        if let Some(m) = batch.iter().map(|r| r.ts).max() {
            max_seen = Some(max_seen.map_or(m, |x: i64| x.max(m)));
        }
        let new_wm = max_seen.map_or(i64::MIN, |m| m - bound - 1);
        if new_wm > wm {
            wm = new_wm;
            fire(&mut wins, &mut sim, wm, &emit);
            wins.retain(|w| live(w, wm));
        }
    }
    fire(&mut wins, &mut sim, i64::MAX, &emit);
    sim
}

fn fire(wins: &mut [Win], sim: &mut Sim, wm: i64, emit: &dyn Fn(&mut Sim, &Win)) {
    for w in wins.iter_mut().filter(|w| !w.fired && w.end - 1 <= wm) {
        emit(sim, w);
        w.fired = true;
    }
}

/// Over windows recomputed per row: the last `rows` rows of the key, or (with `time`) the rows
/// whose clamped time (running max per key) is within `time` of the row's clamped time.
pub fn over_naive(recs: &[Rec], rows: Option<usize>, time: Option<i64>) -> Vec<Vec<Val>> {
    let mut clamped: BTreeMap<&str, i64> = BTreeMap::new();
    let eff: Vec<i64> = recs
        .iter()
        .map(|r| {
            let c = clamped.entry(&r.key).or_insert(i64::MIN);
            *c = (*c).max(r.ts);
            *c
        })
        .collect();
    (0..recs.len())
        .map(|i| {
            let mut window: Vec<&Rec> = (0..=i)
                .filter(|&j| recs[j].key == recs[i].key)
                .filter(|&j| time.is_none_or(|t| eff[j] > eff[i] - t))
                .map(|j| &recs[j])
                .collect();
            if let Some(n) = rows {
                let skip = window.len().saturating_sub(n);
                window.drain(..skip);
            }
            agg_values(&window)
        })
        .collect()
}
