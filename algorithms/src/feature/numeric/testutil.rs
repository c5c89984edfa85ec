//! Test helpers shared by the numeric steps: batch builders, float comparisons, and the
//! conformance checks every step passes (one-row == N-row, save/load, corrupt state refused).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::compute::concat_batches;
use arrow::datatypes::Float64Type;
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;
use serde_json::Value;

use crate::feature::load_step;
use crate::transform::{FeatureStep, Transformer};

/// A batch of nullable `Float64` columns.
pub(crate) fn batch(cols: &[(&str, Vec<Option<f64>>)]) -> RecordBatch {
    RecordBatch::try_from_iter(
        cols.iter()
            .map(|(n, v)| (*n, Arc::new(Float64Array::from(v.clone())) as ArrayRef)),
    )
    .expect("valid test batch")
}

/// A batch of non-null `Float64` columns.
pub(crate) fn dense(cols: &[(&str, Vec<f64>)]) -> RecordBatch {
    let c: Vec<_> = cols
        .iter()
        .map(|(n, v)| (*n, v.iter().map(|&x| Some(x)).collect()))
        .collect();
    batch(&c)
}

/// Column `name` of `b` as `Option<f64>`s.
pub(crate) fn col(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    b.column_by_name(name)
        .expect("column present")
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

/// Whether two values agree: both null, both NaN, or within `tol` (relative above 1).
pub(crate) fn close(a: Option<f64>, b: Option<f64>, tol: f64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) if x.is_nan() || y.is_nan() => x.is_nan() && y.is_nan(),
        (Some(x), Some(y)) if x == y => true,
        (Some(x), Some(y)) => (x - y).abs() <= tol * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// Asserts two batches have the same columns with values [`close`] within `tol`.
pub(crate) fn assert_batches_close(a: &RecordBatch, b: &RecordBatch, tol: f64) {
    assert_eq!(a.schema(), b.schema());
    for (i, f) in a.schema().fields().iter().enumerate() {
        let (x, y) = (a.column(i), b.column(i));
        if f.data_type() == &arrow::datatypes::DataType::Float64 {
            let (x, y) = (
                x.as_primitive::<Float64Type>(),
                y.as_primitive::<Float64Type>(),
            );
            for (r, (p, q)) in x.iter().zip(y.iter()).enumerate() {
                assert!(
                    close(p, q, tol),
                    "column {} row {r}: {p:?} vs {q:?}",
                    f.name()
                );
            }
        } else {
            assert_eq!(x.to_data(), y.to_data(), "column {}", f.name());
        }
    }
}

/// Transforming `b` at once equals concatenating its one-row transforms (bit for bit); an
/// error at once means some row errs.
pub(crate) fn check_one_row_equals_batch(
    step: &dyn Transformer,
    b: &RecordBatch,
) -> Result<(), TestCaseError> {
    let whole = step.transform(b);
    let rows: Result<Vec<_>, _> = (0..b.num_rows())
        .map(|i| step.transform(&b.slice(i, 1)))
        .collect();
    match (whole, rows) {
        (Ok(w), Ok(rows)) => {
            let schema = w.schema();
            let joined =
                concat_batches(&schema, &rows).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(w.num_rows(), joined.num_rows());
            for i in 0..w.num_columns() {
                let (x, y) = (w.column(i), joined.column(i));
                prop_assert_eq!(x.nulls(), y.nulls());
                if let (Some(x), Some(y)) = (
                    x.as_primitive_opt::<Float64Type>(),
                    y.as_primitive_opt::<Float64Type>(),
                ) {
                    for (p, q) in x.iter().zip(y.iter()) {
                        prop_assert_eq!(p.map(f64::to_bits), q.map(f64::to_bits));
                    }
                } else {
                    prop_assert_eq!(x.to_data(), y.to_data());
                }
            }
        }
        (Err(_), Err(_)) => {}
        (w, r) => prop_assert!(false, "batch ok: {}, rows ok: {}", w.is_ok(), r.is_ok()),
    }
    Ok(())
}

/// `save()` → `load(kind, json)` gives a step with bit-identical transform output on `b`, and a
/// second save of the loaded step equals the first.
pub(crate) fn check_save_load(step: &dyn FeatureStep, b: &RecordBatch) {
    let json = step.save().expect("save");
    let loaded = load_step(step.kind(), json.clone()).expect("loads");
    assert_eq!(loaded.kind(), step.kind());
    assert_eq!(loaded.save().expect("save again"), json);
    match (step.transform(b), loaded.transform(b)) {
        (Ok(x), Ok(y)) => assert_batches_close(&x, &y, 0.0),
        (Err(_), Err(_)) => {}
        (x, y) => panic!("original ok: {}, loaded ok: {}", x.is_ok(), y.is_ok()),
    }
    check_corrupt_refused(step.kind(), &json, b);
}

/// Every leaf of `json` swapped to another JSON type is refused with an error; every other
/// mutation (values negated, zeroed, made huge; arrays shortened; keys dropped) loads or errs
/// but never panics, and a step that loads transforms `b` without panicking.
fn check_corrupt_refused(kind: &str, json: &Value, b: &RecordBatch) {
    for bad in [
        Value::Null,
        Value::from(42),
        Value::from("state"),
        Value::Array(vec![]),
    ] {
        assert!(load_step(kind, bad).is_err());
    }
    let mut paths = Vec::new();
    leaves(json, &mut Vec::new(), &mut paths);
    for path in &paths {
        let leaf = get(json, path);
        let swapped = match leaf {
            // `"inf"` stands for a number (see `common::ext_f64`): swap it to a bool
            Value::String(s) if ["inf", "-inf", "nan"].contains(&s.as_str()) => Value::from(true),
            Value::String(_) => Value::from(1.5),
            Value::Null => Value::from(true),
            _ => Value::from("corrupt"),
        };
        let mutated = set(json, path, swapped.clone());
        let r = load_step(kind, mutated);
        assert!(r.is_err(), "{kind}: {path:?} = {swapped} was accepted");
        for m in [
            Value::from(-1),
            Value::from(0),
            Value::from(1e300),
            Value::Null,
        ] {
            if let Ok(step) = load_step(kind, set(json, path, m)) {
                let _ = step.transform(b);
            }
        }
    }
    for path in containers(json) {
        for shrunk in shrink(get(json, &path)) {
            if let Ok(step) = load_step(kind, set(json, &path, shrunk)) {
                let _ = step.transform(b);
            }
        }
    }
}

type Path = Vec<Result<usize, String>>;

fn leaves(v: &Value, here: &mut Path, out: &mut Vec<Path>) {
    match v {
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
            here.push(Ok(i));
            leaves(x, here, out);
            here.pop();
        }),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            here.push(Err(k.clone()));
            leaves(x, here, out);
            here.pop();
        }),
        _ => out.push(here.clone()),
    }
}

fn containers(v: &Value) -> Vec<Path> {
    fn walk(v: &Value, here: &mut Path, out: &mut Vec<Path>) {
        match v {
            Value::Array(a) => {
                out.push(here.clone());
                a.iter().enumerate().for_each(|(i, x)| {
                    here.push(Ok(i));
                    walk(x, here, out);
                    here.pop();
                })
            }
            Value::Object(o) => {
                out.push(here.clone());
                o.iter().for_each(|(k, x)| {
                    here.push(Err(k.clone()));
                    walk(x, here, out);
                    here.pop();
                })
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// Variants of a container with one element or key removed.
fn shrink(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => (0..a.len())
            .map(|i| {
                let mut a = a.clone();
                a.remove(i);
                Value::Array(a)
            })
            .collect(),
        Value::Object(o) => o
            .keys()
            .map(|k| {
                let mut o = o.clone();
                o.remove(k);
                Value::Object(o)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn get<'a>(v: &'a Value, path: &Path) -> &'a Value {
    path.iter().fold(v, |v, p| match p {
        Ok(i) => &v[*i],
        Err(k) => &v[k.as_str()],
    })
}

fn set(v: &Value, path: &Path, new: Value) -> Value {
    let mut out = v.clone();
    let mut cur = &mut out;
    for p in path {
        cur = match p {
            Ok(i) => &mut cur[*i],
            Err(k) => &mut cur[k.as_str()],
        };
    }
    *cur = new;
    out
}

/// Nullable values mixing ordinary numbers with NaN, ±inf and nulls.
pub(crate) fn messy_values(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Option<f64>>> {
    prop::collection::vec(
        prop_oneof![
            8 => (-1e3f64..1e3).prop_map(Some),
            1 => Just(None),
            1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0])
                .prop_map(Some),
        ],
        len,
    )
}
