//! Connection slots and the eviction queue: a semaphore of `max` permits, one per open
//! connection, and the connections that hold one while still waiting for their first byte,
//! oldest first. At the limit the accept loop takes the slot of the oldest waiting connection
//! ([`Slots::evict_oldest`]), which closes it; a connection that has sent a byte has left the
//! queue ([`FirstByte::arrived`]) and is never evicted.
//!
//! Per connection this costs one lock, one map insert and one removal, and a oneshot; per
//! request nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::serving::metrics::ConnectionMetrics;

/// The open-connection slots of one server.
pub(super) struct Slots {
    permits: Arc<Semaphore>,
    max: u32,
    waiting: Mutex<Waiting>,
    metrics: Arc<ConnectionMetrics>,
}

/// Connections waiting for their first byte, by arrival number (so the first is the oldest).
#[derive(Default)]
struct Waiting {
    next: u64,
    queue: BTreeMap<u64, Entry>,
}

/// A waiting connection's slot, and the sender whose drop tells it it was evicted.
struct Entry {
    slot: OwnedSemaphorePermit,
    _evict: oneshot::Sender<()>,
}

impl Slots {
    /// `max` slots (clamped to 1..=2^30, so [`Slots::drained`] can take them all back at once).
    pub(super) fn new(max: usize, metrics: Arc<ConnectionMetrics>) -> Self {
        let max = max.clamp(1, 1 << 30);
        metrics.set_limit(max);
        Slots {
            permits: Arc::new(Semaphore::new(max)),
            max: max as u32,
            waiting: Mutex::new(Waiting::default()),
            metrics,
        }
    }

    /// A free slot now, if any.
    pub(super) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// A slot, once one is free (`None` only if the semaphore were closed, which it never is).
    pub(super) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().acquire_owned().await.ok()
    }

    /// Whether some connection holding a slot has not sent its first byte.
    pub(super) fn has_waiting(&self) -> bool {
        !self.lock().queue.is_empty()
    }

    /// Closes the connection that has waited longest for its first byte and returns its slot;
    /// `None` when every connection has sent a byte.
    pub(super) fn evict_oldest(&self) -> Option<OwnedSemaphorePermit> {
        let entry = {
            let mut waiting = self.lock();
            let entry = waiting.queue.pop_first().map(|(_, e)| e);
            self.metrics.set_waiting(waiting.queue.len());
            entry
        }?;
        self.metrics.on_evict();
        // Dropping the sender wakes the evicted connection, which closes its socket.
        Some(entry.slot)
    }

    /// Puts a new connection holding `slot` at the back of the eviction queue.
    pub(super) fn wait_first_byte(self: &Arc<Self>, slot: OwnedSemaphorePermit) -> FirstByte {
        let (evict, evicted) = oneshot::channel();
        let id = {
            let mut waiting = self.lock();
            let id = waiting.next;
            waiting.next += 1;
            waiting.queue.insert(
                id,
                Entry {
                    slot,
                    _evict: evict,
                },
            );
            self.metrics.set_waiting(waiting.queue.len());
            id
        };
        FirstByte {
            id,
            evicted,
            slots: self.clone(),
        }
    }

    /// Waits until every slot is back: every connection has ended.
    pub(super) async fn drained(&self) {
        let _ = self.permits.acquire_many(self.max).await;
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing panics while the lock is held; a poisoned queue is still consistent.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes connection `id` from the queue, returning its slot if it was still there.
    fn remove(&self, id: u64) -> Option<OwnedSemaphorePermit> {
        let mut waiting = self.lock();
        let entry = waiting.queue.remove(&id);
        self.metrics.set_waiting(waiting.queue.len());
        entry.map(|e| e.slot)
    }
}

/// A connection's place in the eviction queue. Dropping it (timeout, shutdown) gives its slot
/// back.
pub(super) struct FirstByte {
    id: u64,
    evicted: oneshot::Receiver<()>,
    slots: Arc<Slots>,
}

impl FirstByte {
    /// Completes when the accept loop has evicted this connection.
    pub(super) async fn evicted(&mut self) {
        let _ = (&mut self.evicted).await;
    }

    /// The first byte is here: leaves the queue and returns the slot, or `None` if the
    /// connection was evicted just before (it must then close).
    pub(super) fn arrived(self) -> Option<OwnedSemaphorePermit> {
        self.slots.remove(self.id)
    }
}

impl Drop for FirstByte {
    fn drop(&mut self) {
        // A no-op after `arrived` or an eviction; else the slot goes back.
        drop(self.slots.remove(self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(max: usize) -> (Arc<Slots>, Arc<ConnectionMetrics>) {
        let metrics = Arc::new(ConnectionMetrics::default());
        (Arc::new(Slots::new(max, metrics.clone())), metrics)
    }

    /// Fails unless `conn` has been told it is evicted.
    async fn told(conn: &mut FirstByte) {
        let told = tokio::time::timeout(std::time::Duration::from_secs(5), conn.evicted());
        told.await.expect("the evicted connection was not told");
    }

    #[tokio::test]
    async fn the_oldest_waiting_connection_is_evicted_and_an_active_one_never() {
        let (slots, metrics) = slots(3);
        let mut oldest = slots.wait_first_byte(slots.try_acquire().unwrap());
        let active = slots.wait_first_byte(slots.try_acquire().unwrap());
        let mut newer = slots.wait_first_byte(slots.try_acquire().unwrap());
        assert!(slots.try_acquire().is_none(), "3 slots, 3 taken");
        let active_slot = active.arrived().expect("not evicted");
        assert_eq!(metrics.waiting(), 2);

        let slot = slots.evict_oldest().expect("two are waiting");
        told(&mut oldest).await;
        assert!(
            oldest.arrived().is_none(),
            "an evicted connection has no slot"
        );
        assert_eq!(metrics.evicted_total(), 1);

        let second = slots.evict_oldest().expect("one is waiting");
        told(&mut newer).await;
        drop(newer);
        assert!(
            slots.evict_oldest().is_none(),
            "the active connection is not evictable"
        );
        assert_eq!((metrics.evicted_total(), metrics.waiting()), (2, 0));
        drop((slot, second, active_slot));
        assert!(slots.try_acquire().is_some(), "the slots came back");
    }

    #[tokio::test]
    async fn a_connection_that_gives_up_waiting_returns_its_slot() {
        let (slots, metrics) = slots(1);
        let waiting = slots.wait_first_byte(slots.try_acquire().unwrap());
        assert!(slots.has_waiting() && slots.try_acquire().is_none());
        drop(waiting);
        assert!(!slots.has_waiting());
        assert_eq!((metrics.waiting(), metrics.evicted_total()), (0, 0));
        let slot = slots.try_acquire().expect("given back");
        drop(slot);
        slots.drained().await;
    }
}
