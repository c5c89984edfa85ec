//! Barrier alignment of one task, aligned or unaligned, and nothing else.
//!
//! Each input channel is a [`Lane`]: messages are *taken* from the data lane into a small
//! queue (numbered by their position on the channel), then *processed* from the queue in
//! order. Barriers arrive on the priority lane with their position (see `inflight`), so a task
//! knows where a barrier sits in each input without reading up to it.
//!
//! - **Aligned**: a lane stops being processed once everything before its barrier was
//!   processed; when every lane is there (or ended, or down), the task snapshots.
//! - **Unaligned** (or aligned past `alignment_timeout`): the task snapshots at once. The
//!   messages before the barrier it had not processed — queued, or still on the channel —
//!   are its in-flight data: copied into the checkpoint's log as they are taken (the task
//!   takes them eagerly, without processing), and processed normally afterwards. The
//!   checkpoint is acknowledged once every lane was taken up to its barrier.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::dataflow::inflight::Positioned;
use crate::message::{Barrier, Message};

/// The state of one input channel of a task.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    /// Data-lane messages taken from the current channel.
    pub(crate) taken: u64,
    /// Position of the last processed message of the current channel.
    pub(crate) processed: u64,
    /// Taken, not yet processed; `None` positions are restored in-flight data.
    pub(crate) queue: VecDeque<(Option<u64>, Message)>,
    /// Barriers received on the priority lane, not yet placed.
    pub(crate) barriers: VecDeque<Positioned>,
    pub(crate) watermark: i64,
    /// `End` was processed.
    pub(crate) ended: bool,
    /// `End` was taken.
    pub(crate) end_taken: bool,
    /// The producer is down (approximate failover).
    pub(crate) down: bool,
    /// The priority lane closed (its producer is gone).
    pub(crate) prio_closed: bool,
}

impl Lane {
    pub(crate) fn new() -> Self {
        Lane {
            watermark: i64::MIN,
            ..Lane::default()
        }
    }

    /// The next message lies beyond a barrier that was received but not yet handled: the lane
    /// must wait until that barrier's checkpoint was taken. (In unaligned mode lanes run freely
    /// after a snapshot; without this, one could process past the *next* epoch's barrier while
    /// the current checkpoint waits for another input, and the next snapshot would contain
    /// records its producer replays after a restore.)
    pub(crate) fn beyond_next_barrier(&self) -> bool {
        match (self.queue.front(), self.barriers.front()) {
            (Some((Some(position), _)), Some(next)) => *position > next.position,
            _ => false,
        }
    }

    /// A fresh channel replaced the old one: positions start over.
    pub(crate) fn reconnected(&mut self) {
        self.taken = 0;
        self.processed = 0;
        self.down = false;
        self.end_taken = false;
        self.prio_closed = false;
        self.barriers.clear();
    }
}

/// A checkpoint being aligned (or captured, once unaligned).
#[derive(Debug)]
pub(crate) struct Alignment {
    pub(crate) barrier: Barrier,
    pub(crate) started: Instant,
    /// Where the barrier sits on each lane, once known.
    pub(crate) at: Vec<Option<u64>>,
    /// Operator states, once the snapshot was taken unaligned.
    pub(crate) states: Option<Vec<Option<Vec<u8>>>>,
    /// From the first barrier to the snapshot, once taken.
    pub(crate) alignment: Option<Duration>,
    /// The in-flight log being captured, per lane, with positions.
    logs: Vec<Vec<(Option<u64>, Message)>>,
}

impl Alignment {
    pub(crate) fn new(barrier: Barrier, lanes: usize) -> Self {
        Alignment {
            barrier,
            started: Instant::now(),
            at: vec![None; lanes],
            states: None,
            alignment: None,
            logs: vec![Vec::new(); lanes],
        }
    }

    /// The oldest barrier waiting on any lane, to align next.
    pub(crate) fn next(lanes: &[Lane]) -> Option<Barrier> {
        lanes
            .iter()
            .filter_map(|l| l.barriers.front().map(|p| p.barrier))
            .min_by_key(|b| b.epoch)
    }

    /// Places the barrier on every lane whose priority lane delivered it. A lane whose
    /// producer skipped this epoch (restarted alone) is placed at its next barrier.
    pub(crate) fn place(&mut self, lanes: &mut [Lane]) {
        for (at, lane) in self.at.iter_mut().zip(lanes.iter_mut()) {
            if at.is_some() {
                continue;
            }
            while let Some(p) = lane.barriers.front().copied() {
                if p.barrier.epoch < self.barrier.epoch {
                    lane.barriers.pop_front();
                    continue;
                }
                *at = Some(p.position);
                if p.barrier.epoch == self.barrier.epoch {
                    lane.barriers.pop_front();
                }
                break;
            }
        }
    }

    pub(crate) fn unaligned(&self) -> bool {
        self.states.is_some()
    }

    /// Aligned mode: lane `i` has processed everything before the barrier and must wait.
    pub(crate) fn holds(&self, i: usize, lane: &Lane) -> bool {
        !self.unaligned()
            && matches!(self.at[i], Some(s) if lane.processed >= s)
            && !matches!(lane.queue.front(), Some((None, _)))
    }

    /// Every lane is at its barrier (aligned) or gone.
    pub(crate) fn aligned(&self, lanes: &[Lane]) -> bool {
        lanes
            .iter()
            .enumerate()
            .all(|(i, l)| l.ended || l.down || self.holds(i, l))
    }

    /// Lane `i` reconnected to a restarted producer (approximate failover): where the barrier
    /// sat on the old channel means nothing on the new one, whose positions start over. The
    /// lane is placed again at the first barrier the new channel delivers (the restarted
    /// producer announces the epochs it skipped at position 0, see `announce_skipped`). What
    /// was taken from the old channel stays in the in-flight log.
    pub(crate) fn lane_reconnected(&mut self, i: usize) {
        self.at[i] = None;
        for entry in &mut self.logs[i] {
            entry.0 = None;
        }
    }

    /// The snapshot was taken unaligned: what is queued is in flight.
    pub(crate) fn snapshot_taken(&mut self, states: Vec<Option<Vec<u8>>>, lanes: &[Lane]) {
        for (log, lane) in self.logs.iter_mut().zip(lanes) {
            log.extend(
                lane.queue
                    .iter()
                    .filter(|(_, m)| matches!(m, Message::Data(_) | Message::Watermark(_)))
                    .cloned(),
            );
        }
        self.states = Some(states);
        self.alignment = Some(self.started.elapsed());
    }

    /// A message was taken from lane `i` at `position` after an unaligned snapshot.
    pub(crate) fn taken(&mut self, i: usize, position: u64, message: &Message) {
        if self.unaligned() && matches!(message, Message::Data(_) | Message::Watermark(_)) {
            self.logs[i].push((Some(position), message.clone()));
        }
    }

    /// Lane `i` must still be taken from (eagerly) to reach its barrier.
    pub(crate) fn wants(&self, i: usize, lane: &Lane) -> bool {
        self.unaligned()
            && !lane.end_taken
            && !lane.down
            && matches!(self.at[i], Some(s) if lane.taken < s)
    }

    /// Every lane was taken up to its barrier (or ended, or is down).
    pub(crate) fn captured(&self, lanes: &[Lane]) -> bool {
        lanes.iter().enumerate().all(|(i, l)| {
            l.ended || l.end_taken || l.down || matches!(self.at[i], Some(s) if l.taken >= s)
        })
    }

    /// The in-flight log: per lane, what precedes the barrier.
    pub(crate) fn into_logs(self) -> Vec<Vec<Message>> {
        let at = self.at;
        self.logs
            .into_iter()
            .zip(at)
            .map(|(log, at)| {
                log.into_iter()
                    .filter(|(pos, _)| match (pos, at) {
                        (Some(p), Some(s)) => *p <= s,
                        _ => true,
                    })
                    .map(|(_, m)| m)
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Epoch;

    fn positioned(epoch: u64, position: u64) -> Positioned {
        Positioned {
            barrier: Barrier {
                epoch: Epoch(epoch),
            },
            position,
        }
    }

    #[test]
    fn aligned_lanes_hold_at_their_barrier_and_restored_data_goes_first() {
        let mut lanes = vec![Lane::new(), Lane::new()];
        lanes[0].barriers.push_back(positioned(3, 2));
        lanes[1].queue.push_back((None, Message::Watermark(1)));
        lanes[1].barriers.push_back(positioned(3, 0));
        let b = Alignment::next(&lanes).unwrap();
        let mut a = Alignment::new(b, 2);
        a.place(&mut lanes);
        assert_eq!(a.at, vec![Some(2), Some(0)]);
        assert!(!a.holds(0, &lanes[0]));
        assert!(
            !a.holds(1, &lanes[1]),
            "restored data precedes every barrier"
        );
        lanes[1].queue.clear();
        lanes[0].processed = 2;
        assert!(a.aligned(&lanes));
    }

    /// A lane placed on its old channel and reconnected to a restarted producer is placed
    /// again on the fresh channel, at the barrier the producer announces there; kept at its
    /// old position it waited for as many messages on the new channel, holding its peers.
    #[test]
    fn a_lane_reconnected_during_an_alignment_is_placed_again() {
        let mut lanes = vec![Lane::new(), Lane::new()];
        lanes[0].barriers.push_back(positioned(5, 30));
        let mut a = Alignment::new(Alignment::next(&lanes).unwrap(), 2);
        a.place(&mut lanes);
        lanes[0].processed = 30;
        assert!(a.holds(0, &lanes[0]));
        // the producer of lane 0 fails and comes back having skipped epoch 5
        lanes[0].reconnected();
        a.lane_reconnected(0);
        lanes[0].barriers.push_back(positioned(6, 0));
        a.place(&mut lanes);
        assert_eq!(a.at[0], Some(0));
        assert!(
            a.holds(0, &lanes[0]),
            "aligned on the fresh channel at once"
        );
    }

    #[test]
    fn a_lane_waits_at_a_barrier_received_but_not_yet_handled() {
        // epoch 1 is captured unaligned and waits for lane 1; lane 0 already delivered the
        // barrier of epoch 2 at position 3: it may process up to 3, not beyond
        let mut lanes = vec![Lane::new(), Lane::new()];
        lanes[0].barriers.push_back(positioned(1, 1));
        lanes[0].barriers.push_back(positioned(2, 3));
        let mut a = Alignment::new(Alignment::next(&lanes).unwrap(), 2);
        a.place(&mut lanes);
        a.snapshot_taken(vec![], &lanes);
        for position in 1..=4 {
            lanes[0]
                .queue
                .push_back((Some(position), Message::Watermark(0)));
        }
        let mut processed = 0;
        while !lanes[0].beyond_next_barrier() {
            lanes[0].queue.pop_front();
            processed += 1;
        }
        assert_eq!(processed, 3);
        assert!(!lanes[1].beyond_next_barrier(), "no barrier: no limit");
        // restored in-flight data has no position and precedes every barrier
        lanes[0].queue.push_front((None, Message::Watermark(0)));
        assert!(!lanes[0].beyond_next_barrier());
    }

    #[test]
    fn unaligned_logs_keep_only_what_precedes_each_barrier() {
        let mut lanes = vec![Lane::new(), Lane::new()];
        lanes[0].barriers.push_back(positioned(1, 1));
        lanes[0].taken = 3;
        lanes[0].queue.push_back((Some(1), Message::Watermark(10)));
        lanes[0].queue.push_back((Some(2), Message::Watermark(20)));
        let mut a = Alignment::new(Alignment::next(&lanes).unwrap(), 2);
        a.place(&mut lanes);
        a.snapshot_taken(vec![None], &lanes);
        assert!(!a.captured(&lanes), "lane 1 has no barrier yet");
        lanes[1].taken = 1;
        a.taken(1, 1, &Message::Watermark(5));
        lanes[1].barriers.push_back(positioned(1, 2));
        a.place(&mut lanes);
        assert!(a.wants(1, &lanes[1]));
        lanes[1].taken = 2;
        a.taken(1, 2, &Message::Watermark(6));
        assert!(a.captured(&lanes));
        let logs = a.into_logs();
        assert!(matches!(logs[0][..], [Message::Watermark(10)]));
        assert!(matches!(
            logs[1][..],
            [Message::Watermark(5), Message::Watermark(6)]
        ));
    }
}
