//! Arrow in and out of Python: record batches from pyarrow (`RecordBatch`, `Table`,
//! `RecordBatchReader`) and pandas (`DataFrame`) through the Arrow C data interface —
//! zero-copy, the buffers stay pyarrow's — and predictions back as a pyarrow array over the
//! Rust buffer, viewed by numpy without a copy.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float32Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use pyo3::prelude::*;

use crate::error::eddy_err;

/// The batches of `data`: a pyarrow `RecordBatch` (one batch), anything exporting an Arrow
/// stream (`pyarrow.Table`, `RecordBatchReader`, a pandas ≥ 2.2 `DataFrame`), or another
/// pandas `DataFrame` (converted by `pyarrow.RecordBatch.from_pandas`).
pub fn batches(data: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    let py = data.py();
    if data.hasattr("__arrow_c_array__")? {
        return Ok(vec![RecordBatch::from_pyarrow_bound(data)?]);
    }
    if data.hasattr("__arrow_c_stream__")? {
        let reader = arrow::array::ffi_stream::RecordBatchStreamReader::from_pyarrow_bound(data)?;
        return reader.collect::<Result<Vec<_>, _>>().map_err(eddy_err);
    }
    let pandas_frame = py
        .import("sys")?
        .getattr("modules")?
        .get_item("pandas")
        .ok()
        .map(|pd| pd.getattr("DataFrame"))
        .transpose()?;
    if pandas_frame.is_some_and(|f| data.is_instance(&f).unwrap_or(false)) {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("preserve_index", false)?;
        let batch = py.import("pyarrow")?.getattr("RecordBatch")?.call_method(
            "from_pandas",
            (data,),
            Some(&kwargs),
        )?;
        return Ok(vec![RecordBatch::from_pyarrow_bound(&batch)?]);
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "expected a pyarrow.RecordBatch, pyarrow.Table or pandas.DataFrame, not {}",
        data.get_type().name()?
    )))
}

/// Labels given beside the data (a numpy array, pyarrow array, pandas Series or list) as a
/// `Float64` array of `rows` values.
pub fn label_array(labels: &Bound<'_, PyAny>, rows: usize) -> PyResult<ArrayRef> {
    let py = labels.py();
    let pa = py.import("pyarrow")?;
    let array = if labels.hasattr("__arrow_c_array__")? {
        labels.clone()
    } else {
        pa.call_method1("array", (labels,))?
    };
    let data = arrow::array::ArrayData::from_pyarrow_bound(&array)?;
    let array = arrow::array::make_array(data);
    let array = match array.data_type() {
        DataType::Boolean | DataType::Float64 => cast(&array, &DataType::Float64),
        t if t.is_numeric() => cast(&array, &DataType::Float64),
        other => {
            return Err(eddy_err(format!(
                "label: the labels have type {other}, expected numbers or booleans"
            )))
        }
    }
    .map_err(eddy_err)?;
    if array.len() != rows {
        return Err(eddy_err(format!(
            "label: {} labels for {rows} rows",
            array.len()
        )));
    }
    Ok(array)
}

/// The batches with `labels` appended as the column `name`, cut at the same rows.
pub fn with_labels(
    batches: Vec<RecordBatch>,
    labels: ArrayRef,
    name: &str,
) -> PyResult<Vec<RecordBatch>> {
    let mut offset = 0;
    batches
        .into_iter()
        .map(|b| {
            if b.schema().index_of(name).is_ok() {
                return Err(eddy_err(format!(
                    "label: the data already has a column `{name}`; pass label=\"{name}\" to use it"
                )));
            }
            let mut fields: Vec<Arc<Field>> = b.schema().fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new(name, DataType::Float64, true)));
            let mut columns = b.columns().to_vec();
            columns.push(labels.slice(offset, b.num_rows()));
            offset += b.num_rows();
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(eddy_err)
        })
        .collect()
}

/// `values` as a numpy `float32` array over the same buffer (`as_arrow`: the pyarrow array).
pub fn to_python(py: Python<'_>, values: Vec<f32>, as_arrow: bool) -> PyResult<Bound<'_, PyAny>> {
    let array = Float32Array::from(values);
    let arrow = array.into_data().to_pyarrow(py)?;
    if as_arrow {
        return Ok(arrow);
    }
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("zero_copy_only", true)?;
    arrow.call_method("to_numpy", (), Some(&kwargs))
}
