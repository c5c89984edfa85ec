//! The rows of one key and one side of a join that wait for a partner: their event times and
//! their bytes in the row format (`arrow::row`), kept in one arena so that buffering a row
//! allocates nothing once the arena has grown.

/// Rows of one key and side, in arrival order.
#[derive(Debug, Clone)]
pub(crate) struct RowBuffer {
    times: Vec<i64>,
    /// End offset of each row in `bytes`.
    ends: Vec<usize>,
    bytes: Vec<u8>,
    /// The earliest of `times` (`i64::MAX` when empty), kept as rows come and go so that
    /// expiry can pass over a buffer with nothing to drop without reading it.
    min: i64,
}

impl Default for RowBuffer {
    fn default() -> Self {
        RowBuffer {
            times: Vec::new(),
            ends: Vec::new(),
            bytes: Vec::new(),
            min: i64::MAX,
        }
    }
}

impl RowBuffer {
    /// Appends a row with event time `ts`.
    pub(crate) fn push(&mut self, ts: i64, row: &[u8]) {
        self.bytes.extend_from_slice(row);
        self.ends.push(self.bytes.len());
        self.times.push(ts);
        self.min = self.min.min(ts);
    }

    /// Removes every row, keeping the arena's capacity.
    pub(crate) fn clear(&mut self) {
        self.times.clear();
        self.ends.clear();
        self.bytes.clear();
        self.min = i64::MAX;
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    /// No rows.
    pub(crate) fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Row `i`: its event time and bytes.
    pub(crate) fn get(&self, i: usize) -> (i64, &[u8]) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        (self.times[i], &self.bytes[start..self.ends[i]])
    }

    /// The rows in arrival order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, &[u8])> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// The earliest event time among the rows.
    pub(crate) fn min_time(&self) -> Option<i64> {
        (!self.times.is_empty()).then_some(self.min)
    }

    /// Drops the rows older than `cutoff`; a buffer holding none costs one comparison.
    pub(crate) fn drop_before(&mut self, cutoff: i64) {
        if self.min < cutoff {
            self.retain(|ts| ts >= cutoff);
        }
    }

    /// Keeps the rows whose event time satisfies `keep`, compacting the arena in place.
    pub(crate) fn retain(&mut self, keep: impl Fn(i64) -> bool) {
        let (mut kept, mut write, mut start) = (0, 0, 0);
        let mut min = i64::MAX;
        for i in 0..self.times.len() {
            let end = self.ends[i];
            let ts = self.times[i];
            if keep(ts) {
                if write != start {
                    self.bytes.copy_within(start..end, write);
                }
                write += end - start;
                self.times[kept] = ts;
                self.ends[kept] = write;
                kept += 1;
                min = min.min(ts);
            }
            start = end;
        }
        self.times.truncate(kept);
        self.ends.truncate(kept);
        self.bytes.truncate(write);
        self.min = min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_compacts_and_keeps_rows_whole_and_in_order() {
        let mut b = RowBuffer::default();
        for (ts, row) in [(5, &b"aa"[..]), (1, b"b"), (7, b"cccc"), (2, b"")] {
            b.push(ts, row);
        }
        assert_eq!(b.min_time(), Some(1));
        b.retain(|ts| ts >= 2);
        let rows: Vec<(i64, Vec<u8>)> = b.iter().map(|(t, r)| (t, r.to_vec())).collect();
        assert_eq!(
            rows,
            vec![(5, b"aa".to_vec()), (7, b"cccc".to_vec()), (2, vec![])]
        );
        b.retain(|_| false);
        assert!(b.is_empty());
        assert_eq!(b.min_time(), None);
    }

    #[test]
    fn the_earliest_time_follows_pushes_drops_and_clears() {
        let mut b = RowBuffer::default();
        for (ts, row) in [(9, &b"x"[..]), (4, b"yy"), (6, b"z")] {
            b.push(ts, row);
        }
        assert_eq!(b.min_time(), Some(4));
        b.drop_before(4);
        assert_eq!(b.len(), 3, "nothing is older than 4");
        b.drop_before(5);
        assert_eq!(b.min_time(), Some(6), "the earliest after 4 left");
        let rows: Vec<(i64, Vec<u8>)> = b.iter().map(|(t, r)| (t, r.to_vec())).collect();
        assert_eq!(rows, vec![(9, b"x".to_vec()), (6, b"z".to_vec())]);
        b.push(2, b"w");
        assert_eq!(b.min_time(), Some(2));
        b.clear();
        assert_eq!(b.min_time(), None);
        b.push(3, b"v");
        assert_eq!(b.min_time(), Some(3), "a cleared buffer starts over");
    }
}
