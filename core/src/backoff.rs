//! Retry backoff with jitter: the one helper every retry loop uses (the parameter-server
//! client between attempts, the failover supervisor between restarts).
//!
//! Attempt `n` (0-based) waits a random time in `[c/2, c]`, where the ceiling
//! `c = min(initial · 2ⁿ, max)` ("equal jitter"): the wait still grows exponentially and never
//! exceeds `max`, but clients that failed together — every worker of a job when a shard
//! restarts — spread their retries instead of arriving in lockstep.
//!
//! ```
//! use std::time::Duration;
//! use eddy_core::backoff::Backoff;
//!
//! let b = Backoff::new(Duration::from_millis(20), Duration::from_secs(1));
//! assert_eq!(b.ceiling(3), Duration::from_millis(160));
//! let wait = b.delay(3);
//! assert!(wait >= Duration::from_millis(80) && wait <= Duration::from_millis(160));
//! assert_eq!(b.ceiling(40), Duration::from_secs(1));
//! ```

use std::time::Duration;

/// Exponential backoff with equal jitter (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub initial: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// Backoff starting at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The ceiling of wait `attempt` (0-based): `min(initial · 2^attempt, max)`, without jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << attempt.min(31))
            .min(self.max)
    }

    /// Wait `attempt` (0-based): uniformly random in `[ceiling/2, ceiling]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        jitter(self.ceiling(attempt))
    }
}

/// A uniformly random duration in `[ceiling/2, ceiling]`.
pub fn jitter(ceiling: Duration) -> Duration {
    let half = ceiling / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_delays_stay_within_them() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(250));
        let ceilings: Vec<u128> = (0..4).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 250, 250]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_millis(250));
        let mut distinct = std::collections::BTreeSet::new();
        for attempt in 0..4 {
            for _ in 0..200 {
                let d = b.delay(attempt);
                let c = b.ceiling(attempt);
                assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
                distinct.insert(d);
            }
        }
        assert!(
            distinct.len() > 100,
            "jittered: {} distinct waits",
            distinct.len()
        );
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
