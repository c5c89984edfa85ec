//! [`TrainFeed`]: what a training job reports through its events ([`TrainEvent`]) — rows
//! learned, versions published and the progressive metrics at each — kept for `/metrics` and
//! the dashboard. The listener does an atomic store per `Rows` event and takes a lock only
//! when a version is published.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::train::{TrainEvent, TrainEvents};

/// A training job's rows and progressive metrics, fed by its events.
#[derive(Debug, Default)]
pub struct TrainFeed {
    rows: AtomicU64,
    versions: AtomicU64,
    metrics: Mutex<BTreeMap<String, f64>>,
}

impl TrainFeed {
    /// A listener to set as the job's `TrainConfig::events`, calling `next` (the events
    /// listener that was there) after it.
    pub fn listener(self: &Arc<Self>, next: Option<TrainEvents>) -> TrainEvents {
        let feed = self.clone();
        Arc::new(move |event: &TrainEvent| {
            feed.on_event(event);
            if let Some(next) = &next {
                next(event);
            }
        })
    }

    /// Takes one event.
    pub fn on_event(&self, event: &TrainEvent) {
        match event {
            TrainEvent::Rows(rows) => self.rows.store(*rows, Ordering::Relaxed),
            TrainEvent::Published { rows, metrics, .. } => {
                self.rows.fetch_max(*rows, Ordering::Relaxed);
                self.versions.fetch_add(1, Ordering::Relaxed);
                let mut m = self.metrics.lock().unwrap_or_else(|p| p.into_inner());
                m.clone_from(metrics);
            }
            TrainEvent::Restored { .. } => {}
        }
    }

    /// Rows predicted-then-learned so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Versions published so far.
    pub fn versions(&self) -> u64 {
        self.versions.load(Ordering::Relaxed)
    }

    /// The progressive metrics at the last published version.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_rows_and_the_last_published_metrics_and_calls_the_next_listener() {
        let feed = Arc::new(TrainFeed::default());
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let next: TrainEvents = Arc::new(move |_| {
            s.fetch_add(1, Ordering::Relaxed);
        });
        let listen = feed.listener(Some(next));
        listen(&TrainEvent::Rows(10));
        let metrics = BTreeMap::from([("logloss".to_string(), 0.5)]);
        listen(&TrainEvent::Published {
            version: 1,
            rows: 12,
            metrics: metrics.clone(),
        });
        assert_eq!(feed.rows(), 12);
        assert_eq!(feed.versions(), 1);
        assert_eq!(feed.metrics(), metrics);
        assert_eq!(seen.load(Ordering::Relaxed), 2);
    }
}
