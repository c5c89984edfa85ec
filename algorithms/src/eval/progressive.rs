//! Progressive validation (test-then-train) of an online learner, with an optional label
//! delay, cumulative, per-window and tail metrics.
//!
//! ## Label delay
//! Number the examples of the stream `0, 1, 2, …` in arrival order. When example `i` arrives
//! the evaluator **predicts `i`, then learns example `i - delay`** (when `i >= delay`). So `i`
//! is predicted by the model that has learned exactly the examples `0 .. i - delay`: all but
//! the `delay` examples just before it. Example `j` is learned right after example
//! `j + delay` is predicted; [`finish`](ProgressiveValidation::finish) learns the last
//! `delay` examples (predicted, never yet learned) in order. With delay 0 this is
//! [`OnlineLearner::predict_learn`]: predict `i`, learn `i` — River's `progressive_val_score`
//! and the peers' protocol.
//!
//! Delay 0 costs one `predict_learn` call per batch. Delay `d > 0` costs a `predict` and a
//! `learn` call of one row each per example once `d` examples are pending (the interleaving
//! admits nothing coarser), and keeps the batches holding pending examples (at most `d` rows
//! plus one batch).
//!
//! ```
//! use eddy_algorithms::eval::{ProgressiveConfig, Tail};
//! use eddy_algorithms::features::{Examples, Features};
//! use eddy_algorithms::learner::{OnlineLearner, Predictor, Task};
//! use ndarray::Array2;
//!
//! /// Predicts the share of positive labels learned so far.
//! struct BaseRate { pos: f64, n: f64 }
//! impl Predictor for BaseRate {
//!     fn task(&self) -> Task { Task::BinaryClassification }
//!     fn predict(&self, x: &Features, out: &mut Vec<f32>) -> eddy_algorithms::Result<()> {
//!         out.clear();
//!         out.resize(x.rows(), ((self.pos + 1.0) / (self.n + 2.0)) as f32);
//!         Ok(())
//!     }
//! }
//! impl OnlineLearner for BaseRate {
//!     fn learn(&mut self, e: &Examples) -> eddy_algorithms::Result<()> {
//!         for &y in &e.labels { self.pos += f64::from(y); self.n += 1.0; }
//!         Ok(())
//!     }
//!     fn predict_learn(&mut self, e: &Examples, out: &mut Vec<f32>) -> eddy_algorithms::Result<()> {
//!         out.clear();
//!         for i in 0..e.len() {
//!             out.push(((self.pos + 1.0) / (self.n + 2.0)) as f32);
//!             self.learn(&e.slice(i, i + 1))?;
//!         }
//!         Ok(())
//!     }
//!     fn rows_seen(&self) -> u64 { self.n as u64 }
//! }
//!
//! let labels: Vec<f32> = (0..100).map(|i| (i % 3 == 0) as u8 as f32).collect();
//! let batch = Examples::new(Features::Dense(Array2::zeros((100, 1))), labels, None)?;
//! let config = ProgressiveConfig { delay: 5, window: Some(40), tail: Some(Tail::peers(100)), ..Default::default() };
//! let mut learner = BaseRate { pos: 0.0, n: 0.0 };
//! let (report, windows) = config.build(learner.task())?.run(&mut learner, [&batch])?;
//! assert_eq!(report.rows, 100);
//! assert_eq!(learner.rows_seen(), 100); // the last 5 are learned at the end
//! assert_eq!(windows.len(), 3); // rows 0..40, 40..80 and the partial 80..100
//! assert!(report.get("logloss_tail90").is_some());
//! println!("{}", report.to_json_line());
//! # Ok::<(), eddy_algorithms::Error>(())
//! ```

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::time::Instant;

use super::{MetricSet, MetricValues, Report, Tail, WindowReport};
use crate::error::{Error, Result};
use crate::features::Examples;
use crate::learner::OnlineLearner;
use crate::transform::Mergeable;

/// The window being filled.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Window {
    size: u64,
    start: u64,
    index: u64,
    metrics: MetricSet,
}

/// Drives an [`OnlineLearner`] test-then-train over a stream of batches (see the module docs).
///
/// The clock starts at the first [`process`](Self::process) call and stops at
/// [`finish`](Self::finish). If the learner errors, the run stops: the error is returned and
/// the evaluator's state is not meant to be continued.
///
/// It serializes (serde) to its running state — metrics, row counts and the examples still
/// waiting for their delayed labels — so a training job can checkpoint and restore it; the
/// clock and the window reports not yet taken are not part of that state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ProgressiveValidation {
    delay: usize,
    cumulative: MetricSet,
    window: Option<Window>,
    /// First tail row, name suffix, metrics.
    tail: Option<(u64, String, MetricSet)>,
    /// Rows predicted (and recorded in the metrics) so far.
    rows: u64,
    /// Batches holding examples predicted but not learned, with the next row to learn.
    pending: VecDeque<(Examples, usize)>,
    pending_rows: usize,
    #[serde(skip)]
    preds: Vec<f32>,
    #[serde(skip)]
    part: Vec<f32>,
    #[serde(skip)]
    started: Option<Instant>,
    #[serde(skip)]
    windows: Vec<WindowReport>,
}

impl ProgressiveValidation {
    /// A fresh evaluator; `ProgressiveConfig::build` checks the arguments.
    pub(super) fn new(
        delay: usize,
        set: MetricSet,
        window: Option<u64>,
        tail: Option<Tail>,
    ) -> Self {
        ProgressiveValidation {
            delay,
            window: window.map(|size| Window {
                size,
                start: 0,
                index: 0,
                metrics: set.clone(),
            }),
            tail: tail.map(|t| (t.start_row(), t.suffix(), set.clone())),
            cumulative: set,
            rows: 0,
            pending: VecDeque::new(),
            pending_rows: 0,
            preds: Vec::new(),
            part: Vec::new(),
            started: None,
            windows: Vec::new(),
        }
    }

    /// Rows predicted so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Examples predicted but not yet learned (at most the delay).
    pub fn pending_rows(&self) -> usize {
        self.pending_rows
    }

    /// Predicts every example of `batch` and learns (per the delay), then updates the metrics.
    pub fn process<L: OnlineLearner + ?Sized>(
        &mut self,
        learner: &mut L,
        batch: &Examples,
    ) -> Result<()> {
        let n = batch.len();
        if n == 0 {
            return Ok(());
        }
        self.started.get_or_insert_with(Instant::now);
        let mut preds = std::mem::take(&mut self.preds);
        if self.delay == 0 {
            learner.predict_learn(batch, &mut preds)?;
        } else {
            self.predict_delayed(learner, batch, &mut preds)?;
        }
        if preds.len() != n {
            return Err(Error::Shape(format!(
                "the learner gave {} predictions for {n} rows",
                preds.len()
            )));
        }
        self.record(&preds, &batch.labels, batch.weights.as_deref())?;
        self.preds = preds;
        Ok(())
    }

    fn predict_delayed<L: OnlineLearner + ?Sized>(
        &mut self,
        learner: &mut L,
        batch: &Examples,
        preds: &mut Vec<f32>,
    ) -> Result<()> {
        preds.clear();
        self.pending.push_back((batch.clone(), 0));
        let n = batch.len();
        let mut i = 0;
        while i < n {
            // Rows that arrive while fewer than `delay` are pending trigger no learning, so
            // they are predicted together.
            let free = self.delay.saturating_sub(self.pending_rows).min(n - i);
            let k = free.max(1);
            if k == n {
                learner.predict(&batch.features, &mut self.part)?;
            } else {
                learner.predict(&batch.features.slice_rows(i, i + k), &mut self.part)?;
            }
            if self.part.len() != k {
                return Err(Error::Shape(format!(
                    "the learner gave {} predictions for {k} rows",
                    self.part.len()
                )));
            }
            preds.extend_from_slice(&self.part);
            self.pending_rows += k;
            i += k;
            if free == 0 {
                self.learn_oldest(learner)?;
            }
        }
        Ok(())
    }

    /// Learns the oldest pending example.
    fn learn_oldest<L: OnlineLearner + ?Sized>(&mut self, learner: &mut L) -> Result<()> {
        if let Some((b, next)) = self.pending.front_mut() {
            learner.learn(&b.slice(*next, *next + 1))?;
            *next += 1;
            self.pending_rows -= 1;
            if *next == b.len() {
                self.pending.pop_front();
            }
        }
        Ok(())
    }

    /// Updates the metrics with predictions of the next rows, splitting at window and tail
    /// boundaries.
    fn record(&mut self, preds: &[f32], labels: &[f32], weights: Option<&[f32]>) -> Result<()> {
        let n = preds.len();
        let mut i = 0;
        while i < n {
            let mut end = n;
            if let Some(w) = &self.window {
                end = end.min(i + (w.start + w.size - self.rows) as usize);
            }
            if let Some((start, _, _)) = &self.tail {
                if self.rows < *start {
                    end = end.min(i + (*start - self.rows) as usize);
                }
            }
            let (p, y, w) = (&preds[i..end], &labels[i..end], weights.map(|w| &w[i..end]));
            self.cumulative.update_batch(p, y, w)?;
            if let Some(win) = &mut self.window {
                win.metrics.update_batch(p, y, w)?;
            }
            if let Some((start, _, metrics)) = &mut self.tail {
                if self.rows >= *start {
                    metrics.update_batch(p, y, w)?;
                }
            }
            self.rows += (end - i) as u64;
            if self
                .window
                .as_ref()
                .is_some_and(|w| self.rows == w.start + w.size)
            {
                self.close_window();
            }
            i = end;
        }
        Ok(())
    }

    fn elapsed(&self) -> f64 {
        self.started.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    fn close_window(&mut self) {
        let seconds = self.elapsed();
        let Some(w) = &mut self.window else { return };
        self.windows.push(WindowReport {
            index: w.index,
            start_row: w.start,
            end_row: self.rows,
            seconds,
            window: w.metrics.values(),
            cumulative: self.cumulative.values(),
        });
        w.metrics.reset();
        w.start = self.rows;
        w.index += 1;
    }

    /// Merges `other` — an evaluator of the same configuration that scored other rows, as each
    /// subtask of data-parallel training does — into this one: rows, cumulative and tail
    /// metrics add up (the tail is each evaluator's own last rows), and `other`'s completed
    /// window reports follow this one's. Both must have finished (no examples pending a
    /// delayed label); the open windows are not merged.
    pub fn merge(&mut self, other: &ProgressiveValidation) -> Result<()> {
        if self.pending_rows > 0 || other.pending_rows > 0 {
            return Err(Error::Shape(
                "merging evaluators with examples still pending their labels".into(),
            ));
        }
        self.cumulative.merge(&other.cumulative)?;
        if let (Some((_, _, mine)), Some((_, _, theirs))) = (&mut self.tail, &other.tail) {
            mine.merge(theirs)?;
        }
        self.rows += other.rows;
        self.windows.extend(other.windows.iter().cloned());
        self.started = match (self.started, other.started) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }

    /// The cumulative metrics over the rows predicted so far.
    pub fn cumulative(&mut self) -> MetricValues {
        self.cumulative.values()
    }

    /// The window reports completed since the last call, oldest first.
    pub fn take_windows(&mut self) -> Vec<WindowReport> {
        std::mem::take(&mut self.windows)
    }

    /// Ends the stream: learns the pending (delayed) examples in order, closes a partly filled
    /// window (its report is then available from [`take_windows`](Self::take_windows)), and
    /// returns the report: cumulative metrics, then tail metrics (NaN where the tail is empty).
    pub fn finish<L: OnlineLearner + ?Sized>(&mut self, learner: &mut L) -> Result<Report> {
        while let Some((b, next)) = self.pending.pop_front() {
            if next == 0 {
                learner.learn(&b)?;
            } else if next < b.len() {
                learner.learn(&b.slice(next, b.len()))?;
            }
        }
        self.pending_rows = 0;
        if self.window.as_ref().is_some_and(|w| self.rows > w.start) {
            self.close_window();
        }
        let seconds = self.elapsed();
        let mut metrics = self.cumulative.values();
        if let Some((_, suffix, set)) = &mut self.tail {
            set.values_into(suffix, &mut metrics);
        }
        Ok(Report::new(self.rows, seconds, metrics))
    }

    /// Processes every batch, then [`finish`](Self::finish)es: the report and every window
    /// report.
    pub fn run<L, I, B>(
        mut self,
        learner: &mut L,
        batches: I,
    ) -> Result<(Report, Vec<WindowReport>)>
    where
        L: OnlineLearner + ?Sized,
        I: IntoIterator<Item = B>,
        B: Borrow<Examples>,
    {
        for b in batches {
            self.process(learner, b.borrow())?;
        }
        let report = self.finish(learner)?;
        Ok((report, self.take_windows()))
    }
}
