//! Reconnecting a restarted task to peers that kept running (approximate failover).
//!
//! A failed task's channels die with it: its producers' sends fail (`Closed`) and its
//! consumers see their input close without `End`. When the supervisor restarts the task it
//! makes fresh channels for every edge of the task and leaves the far ends here: a producer
//! whose send failed looks for a new sender for that (edge, target) before it counts the
//! records as lost; a consumer whose input closed looks for a new receiver, and is woken when
//! one arrives. A producer that finished normally is remembered, so a task restarted after it
//! still gets its `End` — after an empty batch of the schema the producer sent on that edge,
//! since operators that learn their inputs' schemas from the first batch (the joins) would
//! otherwise never learn it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::mpsc::{
    channel, unbounded_channel, Receiver, Sender, UnboundedReceiver, UnboundedSender,
};
use tokio::sync::Notify;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::dataflow::inflight::Positioned;
use crate::dataflow::plan::Task;
use crate::message::{Message, MAX_WATERMARK};

/// (producer task, output edge, target).
pub(crate) type SenderKey = (usize, usize, usize);
/// (consumer task, input index).
pub(crate) type ReceiverKey = (usize, usize);

/// The producer's end of a fresh channel: data lane and priority lane.
pub(crate) type Outlet = (Sender<Message>, UnboundedSender<Positioned>);
/// The consumer's end of a fresh channel.
pub(crate) type Inlet = (Receiver<Message>, UnboundedReceiver<Positioned>);

#[derive(Default)]
struct Slots {
    senders: HashMap<SenderKey, Outlet>,
    receivers: HashMap<ReceiverKey, Inlet>,
    finished: HashSet<usize>,
    /// The schema each (producer task, output edge) sent.
    schemas: HashMap<(usize, usize), SchemaRef>,
}

/// The switchboard of one job in approximate mode.
pub(crate) struct Rewire {
    slots: Mutex<Slots>,
    wake: Vec<Notify>,
    capacity: usize,
}

impl Rewire {
    pub(crate) fn new(tasks: usize, capacity: usize) -> Self {
        Rewire {
            slots: Mutex::default(),
            wake: (0..tasks).map(|_| Notify::new()).collect(),
            // room for a finished producer's schema, last watermark and `End`
            capacity: capacity.max(3),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new sender for a producer whose channel closed, if its consumer was restarted.
    pub(crate) fn take_sender(&self, key: SenderKey) -> Option<Outlet> {
        self.slots().senders.remove(&key)
    }

    /// Leaves a fresh channel's producer end for `key`, as [`reconnect`](Rewire::reconnect)
    /// does for a restarted consumer.
    #[cfg(test)]
    pub(crate) fn offer_sender(&self, key: SenderKey, outlet: Outlet) {
        self.slots().senders.insert(key, outlet);
    }

    /// A new receiver for a consumer whose input closed, if its producer was restarted.
    pub(crate) fn take_receiver(&self, key: ReceiverKey) -> Option<Inlet> {
        self.slots().receivers.remove(&key)
    }

    /// Wakes when a new receiver may be waiting for task `task`.
    pub(crate) fn woken(&self, task: usize) -> tokio::sync::futures::Notified<'_> {
        self.wake[task].notified()
    }

    /// Task `task` sends batches of `schema` on output edge `edge`.
    pub(crate) fn note_schema(&self, (task, edge): (usize, usize), schema: SchemaRef) {
        self.slots().schemas.insert((task, edge), schema);
    }

    /// Task `task` finished its stream: consumers restarted later get `End` from it directly.
    pub(crate) fn finished(&self, task: usize) {
        let mut slots = self.slots();
        slots.finished.insert(task);
        let mine: Vec<SenderKey> = slots
            .senders
            .keys()
            .filter(|k| k.0 == task)
            .copied()
            .collect();
        for k in mine {
            if let Some((tx, _)) = slots.senders.remove(&k) {
                end(&tx, slots.schemas.get(&(k.0, k.1)));
            }
        }
    }

    /// Gives the restarted task `index` fresh channels and leaves their far ends for its peers.
    pub(crate) fn reconnect(&self, index: usize, task: &mut Task) {
        let mut slots = self.slots();
        for input in &mut task.inputs {
            let (tx, rx) = channel(self.capacity);
            let (prio_tx, prio_rx) = unbounded_channel();
            input.rx = rx;
            input.prio = prio_rx;
            if slots.finished.contains(&input.from.0) {
                end(&tx, slots.schemas.get(&(input.from.0, input.from.1)));
            } else {
                slots.senders.insert(input.from, (tx, prio_tx));
            }
        }
        let mut woken = Vec::new();
        for out in &mut task.chain.outputs {
            for target in 0..out.senders.len() {
                let (tx, rx) = channel(self.capacity);
                let (prio_tx, prio_rx) = unbounded_channel();
                out.senders[target] = tx;
                out.prio[target] = prio_tx;
                out.sent[target] = 0;
                slots.receivers.insert(out.to[target], (rx, prio_rx));
                woken.push(out.to[target].0);
            }
        }
        drop(slots);
        tracing::debug!(task = index, "restarted task reconnected");
        for t in woken {
            if let Some(w) = self.wake.get(t) {
                w.notify_one();
            }
        }
    }
}

/// Ends a fresh channel: the producer finished while its consumer was down. It first sends an
/// empty batch of the schema the producer sent, if it sent any.
fn end(tx: &Sender<Message>, schema: Option<&SchemaRef>) {
    // a fresh channel has room for all three
    if let Some(schema) = schema {
        let _ = tx.try_send(Message::Data(RecordBatch::new_empty(schema.clone())));
    }
    let _ = tx.try_send(Message::Watermark(MAX_WATERMARK));
    let _ = tx.try_send(Message::End);
}
