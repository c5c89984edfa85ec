//! Push stamps on the client: per-shard sequence numbers whose in-flight span stays inside the
//! shard's dedup window.
//!
//! Sequence number `n` is handed out only while every push still in flight to the shard has a
//! number above `n − PUSH_WINDOW`, so the shard can always tell whether a live attempt (first
//! or retry) was applied: it never falls below the shard's window (see
//! [`local::dedup`](crate::local::dedup)). A push that would widen the span waits for the
//! oldest in-flight push to finish, which only happens when one push is stuck in retries
//! while `PUSH_WINDOW − 1` later ones to the same shard complete.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::local::dedup::PUSH_WINDOW;

/// One shard's sequence numbers.
#[derive(Debug)]
pub(super) struct Sequencer {
    state: Mutex<State>,
    released: Notify,
}

#[derive(Debug)]
struct State {
    next: u64,
    in_flight: BTreeSet<u64>,
}

/// A sequence number in flight: released (and waiters woken) when dropped, whether the push
/// succeeded, failed or was cancelled.
#[derive(Debug)]
pub(super) struct Seq<'a> {
    pub(super) seq: u64,
    owner: &'a Sequencer,
}

impl Sequencer {
    pub(super) fn new() -> Self {
        Sequencer {
            state: Mutex::new(State {
                next: 1,
                in_flight: BTreeSet::new(),
            }),
            released: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next sequence number, once it is within `PUSH_WINDOW` of the oldest in flight.
    pub(super) async fn acquire(&self) -> Seq<'_> {
        loop {
            // Registered before the check, so a release between the check and the wait wakes it.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut s = self.state();
                let oldest = s.in_flight.first().copied().unwrap_or(s.next);
                if s.next - oldest < PUSH_WINDOW {
                    let seq = s.next;
                    s.next += 1;
                    s.in_flight.insert(seq);
                    return Seq { seq, owner: self };
                }
            }
            released.await;
        }
    }
}

impl Drop for Seq<'_> {
    fn drop(&mut self) {
        self.owner.state().in_flight.remove(&self.seq);
        self.owner.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_stuck_push_holds_back_only_numbers_outside_the_window() {
        let s = Sequencer::new();
        let stuck = s.acquire().now_or_never().unwrap();
        assert_eq!(stuck.seq, 1);
        // later pushes come and go; the span from the stuck one may reach PUSH_WINDOW − 1
        for want in 2..=PUSH_WINDOW {
            let seq = s.acquire().now_or_never().unwrap();
            assert_eq!(seq.seq, want);
        }
        let mut waiting = Box::pin(s.acquire());
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "PUSH_WINDOW + 1 would leave the stuck push below the shard's window"
        );
        drop(stuck);
        let next = waiting.now_or_never().expect("released by the stuck push");
        assert_eq!(next.seq, PUSH_WINDOW + 1);
    }
}
