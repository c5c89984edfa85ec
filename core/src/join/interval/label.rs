//! The labelling output of the interval join ([`JoinOutput::Label`](crate::join::JoinOutput)):
//! each left row once, with its label and the event time it waited for it.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::IntervalJoinOperator;
use crate::error::{Error, Result};
use crate::join::{LABEL, LABEL_DELAY};
use crate::operator::Collector;

/// The output of a labelling join: the left columns, [`LABEL`] and [`LABEL_DELAY`].
pub(super) fn schema(operator: &str, left: &SchemaRef) -> Result<SchemaRef> {
    for name in [LABEL, LABEL_DELAY] {
        if left.index_of(name).is_ok() {
            return Err(Error::schema(
                operator,
                format!("the left input has a column `{name}` already"),
            ));
        }
    }
    let mut fields: Vec<Field> = left.fields().iter().map(|f| (**f).clone()).collect();
    fields.push(Field::new(LABEL, DataType::Int64, false));
    fields.push(Field::new(LABEL_DELAY, DataType::Int64, false));
    Ok(Arc::new(Schema::new(fields)))
}

impl IntervalJoinOperator {
    /// Labels with row `i` of side `s` (at `ts`, key `key`): an arriving left row is labelled
    /// 1 at once when a buffered right row is in its interval (the earliest gives the delay;
    /// returns true: it needs no buffering); an arriving right row labels 1 every buffered left
    /// row whose interval holds it, which leave the buffer.
    pub(super) fn label_row(&mut self, s: usize, i: usize, ts: i64, key: &[u8]) -> bool {
        let (lo, hi) = self.partners(s, ts);
        let Some(state) = self.state.get_mut(key) else {
            return false;
        };
        if s == 0 {
            let first = state.buffers[1]
                .iter()
                .map(|(t, _)| t)
                .filter(|t| (lo..=hi).contains(t))
                .min();
            if let Some(t) = first {
                self.matches.here.push(i as u32);
                self.matches.delays.push(t - ts);
                return true;
            }
            return false;
        }
        let waiting = &mut state.buffers[0];
        for (t, bytes) in waiting.iter() {
            if (lo..=hi).contains(&t) {
                self.matches.other.push(t, bytes);
                self.matches.delays.push(ts - t);
            }
        }
        waiting.retain(|t| !(lo..=hi).contains(&t));
        false
    }

    /// Emits the labels `join_batch` gave: the arriving left rows (side 0) or the buffered ones
    /// an arriving right row labelled (side 1), all with label 1.
    pub(super) fn emit_labels(
        &mut self,
        s: usize,
        batch: &RecordBatch,
        out: &mut Collector,
    ) -> Result<()> {
        if s == 1 {
            return self.emit_buffered_labels(1, out);
        }
        if self.matches.here.is_empty() {
            return Ok(());
        }
        let rows = take_record_batch(batch, &UInt32Array::from(self.matches.here.clone()))?;
        self.emit_labelled(rows.columns().to_vec(), 1, out)
    }

    /// Emits the buffered left rows collected in the scratch with `label`.
    pub(super) fn emit_buffered_labels(&mut self, label: i64, out: &mut Collector) -> Result<()> {
        if self.matches.other.is_empty() {
            return Ok(());
        }
        let left = self.sides[0].as_ref().expect("labelled rows have a side");
        let columns = left.columns(self.matches.other.iter().map(|(_, b)| b))?;
        self.emit_labelled(columns, label, out)
    }

    /// One output batch: `columns` of left rows, `label` and the scratch's delays.
    fn emit_labelled(
        &self,
        mut columns: Vec<ArrayRef>,
        label: i64,
        out: &mut Collector,
    ) -> Result<()> {
        let rows = columns.first().map_or(0, |c| c.len());
        columns.push(Arc::new(Int64Array::from(vec![label; rows])));
        columns.push(Arc::new(Int64Array::from(self.matches.delays.clone())));
        let schema = self.output.clone().expect("the left side is bound");
        out.emit(RecordBatch::try_new(schema, columns)?);
        Ok(())
    }
}
