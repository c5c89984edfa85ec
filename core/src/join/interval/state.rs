//! The interval join's checkpointed state, in the joins' format ([`crate::join`]'s `state`
//! module): per key group, each side's buffered rows; the watermark and late count per subtask.

use super::{IntervalJoinOperator, Meta, KIND};
use crate::error::Result;
use crate::join::state::{decode, encode, insert_rows};
use crate::window::snapshot;

impl IntervalJoinOperator {
    /// The buffered rows per key group (Arrow IPC per side) and the clock, as
    /// [`StateParts`](crate::checkpoint::StateParts).
    pub(super) fn snapshot_state(&self) -> Result<Vec<u8>> {
        let meta = Meta {
            watermark: self.watermark,
            late: self.late,
        };
        encode(
            KIND,
            self.task.subtask,
            &meta,
            &self.sides,
            self.state.values(),
        )
    }

    /// Reads back what [`snapshot_state`](Self::snapshot_state) wrote, possibly the key groups
    /// of several old subtasks.
    pub(super) fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        let (metas, batches) = decode::<Meta>(KIND, &self.name, bytes)?;
        (self.watermark, self.late) =
            snapshot::restored_clock(&metas, &self.task, |m| (m.watermark, m.late));
        self.state.clear();
        self.next_expiry = i64::MAX;
        for (s, batch) in batches {
            self.bind(s, &batch.schema())?;
            let side = self.sides[s].as_ref().expect("bound above");
            let (lower, upper) = (self.spec.lower_ms, self.spec.upper_ms);
            let next = &mut self.next_expiry;
            insert_rows(
                &mut self.state,
                s,
                side,
                &self.name,
                &batch,
                self.task.key_groups,
                (&mut self.times, &mut self.hashes),
                |ts| *next = (*next).min(super::expiry(s, ts, lower, upper)),
            )?;
        }
        Ok(())
    }
}
