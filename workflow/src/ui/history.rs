//! The time series behind the plots: every [`SAMPLE_EVERY`](super::SAMPLE_EVERY) the sampler
//! renders the dashboard's `/metrics` text, parses it back and appends each sample to its
//! series (the last [`KEEP`] per series, at most [`MAX_SERIES`] series). Counters stay
//! counters: the page turns them into rates.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, Weak};

use serde::Serialize;

use super::{metrics, now_ms, Dashboard, SAMPLE_EVERY};

/// Samples kept per series (10 minutes at one a second).
pub const KEEP: usize = 600;

/// Series kept at most; samples of further series are not kept (counted:
/// [`History::dropped_samples`]).
pub const MAX_SERIES: usize = 4096;

/// One sampling: when, and every series' value then.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// When (ms since the Unix epoch).
    pub t: u64,
    /// Series (`name{labels}`) → value.
    pub values: BTreeMap<String, f64>,
}

/// The kept samples.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    series: BTreeMap<String, VecDeque<(u64, f64)>>,
    last: Sample,
    dropped_samples: u64,
}

impl History {
    /// Appends one sampling of `text` (Prometheus text) taken at `t`.
    pub fn record(&self, t: u64, text: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = Sample {
            t,
            values: BTreeMap::new(),
        };
        for (series, v) in metrics::parse(text) {
            if !v.is_finite() {
                continue;
            }
            last.values.insert(series.to_string(), v);
            if !inner.series.contains_key(series) && inner.series.len() >= MAX_SERIES {
                inner.dropped_samples += 1;
                continue;
            }
            let points = inner.series.entry(series.to_string()).or_default();
            if points.len() == KEEP {
                points.pop_front();
            }
            points.push_back((t, v));
        }
        inner.last = last;
    }

    /// The newest sampling.
    pub fn last(&self) -> Sample {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last
            .clone()
    }

    /// The kept points of every series whose name starts with `prefix`.
    pub fn series(&self, prefix: &str) -> BTreeMap<String, Vec<(u64, f64)>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .series
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.iter().copied().collect()))
            .collect()
    }

    /// Samples not kept because [`MAX_SERIES`] series were kept already.
    pub fn dropped_samples(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .dropped_samples
    }
}

/// Samples `dashboard` every [`SAMPLE_EVERY`] until it is dropped. The rendering (which may
/// list a registry directory) runs on a blocking thread.
pub async fn sample(dashboard: Weak<Dashboard>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(d) = dashboard.upgrade() else {
            return;
        };
        let took = tokio::task::spawn_blocking(move || {
            let mut text = String::with_capacity(8192);
            metrics::render(&d, &mut text);
            d.history.record(now_ms(), &text);
        })
        .await;
        if let Err(e) = took {
            tracing::warn!(error = %e, "dashboard sampler failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_samples_per_series_and_finds_them_by_prefix() {
        let h = History::default();
        for t in 0..(KEEP as u64 + 5) {
            h.record(t, &format!("a_total{{x=\"1\"}} {t}\nb 1\n"));
        }
        let a = h.series("a_");
        let points = &a["a_total{x=\"1\"}"];
        assert_eq!(points.len(), KEEP);
        assert_eq!(points[0], (5, 5.0));
        assert!(!a.contains_key("b"));
        assert_eq!(h.last().values["b"], 1.0);
        assert_eq!(h.dropped_samples(), 0);
    }
}
