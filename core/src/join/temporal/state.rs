//! The temporal join's checkpointed state, in the joins' format ([`crate::join`]'s `state`
//! module): per key group, the waiting left rows and the kept right versions; the watermark and
//! late count per subtask.

use super::{Meta, TemporalJoinOperator, KIND};
use crate::error::Result;
use crate::join::state::{decode, encode, insert_rows};
use crate::window::snapshot;

impl TemporalJoinOperator {
    /// The buffered rows per key group (Arrow IPC per side) and the clock.
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
            self.active.values().chain(self.table.values()),
        )
    }

    /// Reads back what [`snapshot_state`](Self::snapshot_state) wrote, possibly the key groups
    /// of several old subtasks. Every key starts active: the next watermark runs a pass, which
    /// settles them and recomputes when passes are due.
    pub(super) fn restore_state(&mut self, bytes: &[u8]) -> Result<()> {
        let (metas, batches) = decode::<Meta>(KIND, &self.name, bytes)?;
        (self.watermark, self.late) =
            snapshot::restored_clock(&metas, &self.task, |m| (m.watermark, m.late));
        self.active.clear();
        self.table.clear();
        (self.next_due, self.next_prune) = (i64::MIN, i64::MIN);
        for (s, batch) in batches {
            self.bind(s, &batch.schema())?;
            let side = self.sides[s].as_ref().expect("bound above");
            insert_rows(
                &mut self.active,
                s,
                side,
                &self.name,
                &batch,
                self.task.key_groups,
                (&mut self.times, &mut self.hashes),
                |_| {},
            )?;
        }
        Ok(())
    }
}
