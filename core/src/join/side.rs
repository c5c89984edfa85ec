//! What every two-input join knows of its inputs: each side's schema, event-time column and key
//! columns, read from its first batch, and how its rows and keys are turned into the row format
//! (`arrow::row`) and back; the key types both sides must share and the pair output schema.

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};

use super::{LATE_LEFT, LATE_RIGHT};
use crate::error::{Error, Result};
use crate::keys::hash_rows;
use crate::operator::Collector;
use crate::window::timestamps::{read_event_times, time_column};

/// The sides' names, by input index.
pub(crate) const SIDES: [&str; 2] = ["left", "right"];

/// One input's schema and how its rows are read.
pub(crate) struct Side {
    pub(crate) schema: SchemaRef,
    pub(crate) time: usize,
    pub(crate) keys: Vec<usize>,
    pub(crate) rows: RowConverter,
    pub(crate) key_rows: RowConverter,
}

impl Side {
    /// Side `s` of join `operator` with `schema`: its event-time column (`time`, or the one
    /// `assign_timestamps` marked) and its key columns `keys`, which must all be there.
    pub(crate) fn bind(
        operator: &str,
        s: usize,
        schema: &SchemaRef,
        time: Option<&str>,
        keys: &[String],
    ) -> Result<Side> {
        let time = time_column(schema, time, operator)?;
        let keys = keys
            .iter()
            .map(|k| {
                schema.index_of(k).map_err(|_| {
                    Error::schema(
                        operator,
                        format!("key column `{k}` is not in the {} input", SIDES[s]),
                    )
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let sort = |i: &usize| SortField::new(schema.field(*i).data_type().clone());
        let all: Vec<usize> = (0..schema.fields().len()).collect();
        Ok(Side {
            schema: schema.clone(),
            time,
            rows: RowConverter::new(all.iter().map(sort).collect())?,
            key_rows: RowConverter::new(keys.iter().map(sort).collect())?,
            keys,
        })
    }

    /// Errs unless `schema` is the one this side was bound to.
    pub(crate) fn check(&self, operator: &str, s: usize, schema: &SchemaRef) -> Result<()> {
        if self.schema.fields() != schema.fields() {
            return Err(Error::schema(
                operator,
                format!("the {} input's schema changed", SIDES[s]),
            ));
        }
        Ok(())
    }

    /// Reads `batch`: event times into `times`, key hashes into `hashes`, and the keys and
    /// whole rows in the row format.
    pub(crate) fn read(
        &self,
        operator: &str,
        batch: &RecordBatch,
        times: &mut Vec<i64>,
        hashes: &mut Vec<u64>,
    ) -> Result<(Rows, Rows)> {
        read_event_times(batch, self.time, operator, times)?;
        let key_columns: Vec<ArrayRef> =
            self.keys.iter().map(|&k| batch.column(k).clone()).collect();
        hash_rows(&key_columns, hashes)?;
        let keys = self.key_rows.convert_columns(&key_columns)?;
        let rows = self.rows.convert_columns(batch.columns())?;
        Ok((keys, rows))
    }

    /// The columns of rows in this side's row format.
    pub(crate) fn columns<'a>(
        &self,
        rows: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Vec<ArrayRef>> {
        let parser = self.rows.parser();
        Ok(self.rows.convert_rows(rows.map(|b| parser.parse(b)))?)
    }
}

/// Errs unless the key columns of both sides have the same types, in order.
pub(crate) fn check_key_types(operator: &str, left: &Side, right: &Side) -> Result<()> {
    for (&l, &r) in left.keys.iter().zip(&right.keys) {
        let (lf, rf) = (left.schema.field(l), right.schema.field(r));
        if lf.data_type() != rf.data_type() {
            return Err(Error::schema(
                operator,
                format!(
                    "key `{}` is {} on the left and `{}` is {} on the right",
                    lf.name(),
                    lf.data_type(),
                    rf.name(),
                    rf.data_type()
                ),
            ));
        }
    }
    Ok(())
}

/// The fields of a pair: the left ones, then the right ones (nullable when `right_nullable`),
/// a right name the left side has already prefixed with `prefix`, then `extra` fields (never
/// renamed); a name that still occurs twice is an error.
pub(crate) fn pair_fields(
    operator: &str,
    left: &Side,
    right: &Side,
    prefix: &str,
    right_nullable: bool,
    extra: &[Field],
) -> Result<Vec<Field>> {
    let mut fields: Vec<Field> = left.schema.fields().iter().map(|f| (**f).clone()).collect();
    let right_fields = right.schema.fields().iter().map(|f| {
        let f = (**f).clone();
        if right_nullable {
            f.with_nullable(true)
        } else {
            f
        }
    });
    for (i, mut f) in right_fields.chain(extra.iter().cloned()).enumerate() {
        let is_right = i < right.schema.fields().len();
        if is_right && fields.iter().any(|g| g.name() == f.name()) {
            let renamed = format!("{prefix}{}", f.name());
            f = f.with_name(renamed);
        }
        if fields.iter().any(|g| g.name() == f.name()) {
            return Err(Error::schema(
                operator,
                format!(
                    "output column `{}` twice: choose another right prefix",
                    f.name()
                ),
            ));
        }
        fields.push(f);
    }
    Ok(fields)
}

/// Refuses an input index other than 0 (left) and 1 (right).
pub(crate) fn check_input(operator: &str, input: usize) -> Result<()> {
    if input > 1 {
        return Err(Error::Internal(format!("{operator}: input {input} of 2")));
    }
    Ok(())
}

/// Sends the rows `late_rows` of `batch` (from input `input`) to the side output of that
/// side's late rows, adds them to `late`, and empties `late_rows`.
pub(crate) fn set_late_aside(
    input: usize,
    batch: &RecordBatch,
    late_rows: &mut Vec<u32>,
    late: &mut u64,
    out: &mut Collector,
) -> Result<()> {
    if late_rows.is_empty() {
        return Ok(());
    }
    *late += late_rows.len() as u64;
    let idx = UInt32Array::from(std::mem::take(late_rows));
    out.emit_side(
        [LATE_LEFT, LATE_RIGHT][input],
        take_record_batch(batch, &idx)?,
    );
    Ok(())
}
