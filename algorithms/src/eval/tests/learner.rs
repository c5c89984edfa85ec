//! A tiny deterministic learner that records what it is asked, so tests can see exactly which
//! examples were learned before each prediction.

use std::sync::Mutex;

use crate::error::Result;
use crate::features::{Examples, FeatureRow, Features};
use crate::learner::{OnlineLearner, Predictor, Task};

/// What the learner was asked, in order. Example ids are the value of feature 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Event {
    /// Example `id` was predicted when `learned` examples had been learned.
    Predict { id: u32, learned: u64 },
    /// Example `id` was learned.
    Learn { id: u32 },
}

/// Predicts the smoothed running mean of the labels learned so far, `(Σy + 1) / (n + 2)`.
#[derive(Debug)]
pub(super) struct RunningMean {
    pub task: Task,
    sum: f64,
    n: u64,
    pub log: Mutex<Vec<Event>>,
    /// Predict this many rows too few (to test that the evaluator checks).
    pub short: usize,
}

impl RunningMean {
    pub fn new(task: Task) -> Self {
        RunningMean {
            task,
            sum: 0.0,
            n: 0,
            log: Mutex::new(Vec::new()),
            short: 0,
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn push(&self, e: Event) {
        if let Ok(mut l) = self.log.lock() {
            l.push(e);
        }
    }

    fn current(&self) -> f32 {
        ((self.sum + 1.0) / (self.n as f64 + 2.0)) as f32
    }
}

fn id_of(x: &Features, i: usize) -> u32 {
    match x.row(i) {
        FeatureRow::Dense(r) => r[0] as u32,
        FeatureRow::Sparse { values, .. } => values[0] as u32,
    }
}

impl Predictor for RunningMean {
    fn task(&self) -> Task {
        self.task
    }

    fn predict(&self, x: &Features, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        for i in 0..x.rows().saturating_sub(self.short) {
            self.push(Event::Predict {
                id: id_of(x, i),
                learned: self.n,
            });
            out.push(self.current());
        }
        Ok(())
    }
}

impl OnlineLearner for RunningMean {
    fn learn(&mut self, examples: &Examples) -> Result<()> {
        for i in 0..examples.len() {
            self.push(Event::Learn {
                id: id_of(&examples.features, i),
            });
            self.sum += f64::from(examples.labels[i]);
            self.n += 1;
        }
        Ok(())
    }

    fn predict_learn(&mut self, examples: &Examples, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        let mut one = Vec::new();
        for i in 0..examples.len() {
            let row = examples.slice(i, i + 1);
            self.predict(&row.features, &mut one)?;
            out.extend_from_slice(&one);
            self.learn(&row)?;
        }
        Ok(())
    }

    fn rows_seen(&self) -> u64 {
        self.n
    }
}
