//! Helpers shared by the numeric steps: column-list checks, the checked-params wrapper, `f64`
//! serde that keeps `±inf` (JSON has no infinities), columnar maps that keep the null mask,
//! and saving/loading step state.

use std::fmt::Display;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::Float64Type;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::transform::FeatureStep;

/// Declares `XxxValidParams`: a checked wrapper around `XxxParams` that only `check()` builds.
macro_rules! valid_params {
    ($(#[$m:meta])* $valid:ident($params:ident)) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(transparent)]
        pub struct $valid($params);

        impl std::ops::Deref for $valid {
            type Target = $params;
            fn deref(&self) -> &$params {
                &self.0
            }
        }

        impl $valid {
            /// The parameters as given (they passed `check`).
            pub fn params(&self) -> &$params {
                &self.0
            }
        }
    };
}

/// Implements [`FeatureStep`] for a step type with an associated `KIND` constant.
/// `online` steps forward `update` to their [`OnlineEstimator`](crate::transform::OnlineEstimator)
/// impl; `stateless` steps keep the default no-op.
macro_rules! feature_step {
    ($ty:ty, online) => {
        impl $crate::transform::FeatureStep for $ty {
            fn kind(&self) -> &'static str {
                <$ty>::KIND
            }
            fn save(&self) -> $crate::error::Result<serde_json::Value> {
                super::common::save_state(<$ty>::KIND, self)
            }
            fn update(
                &mut self,
                batch: &arrow::record_batch::RecordBatch,
            ) -> $crate::error::Result<()> {
                $crate::transform::OnlineEstimator::update(self, batch)
            }
            fn as_any(&self) -> Option<&dyn std::any::Any> {
                Some(self)
            }
            fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
                Some(self)
            }
            fn clone_box(&self) -> Box<dyn $crate::transform::FeatureStep> {
                Box::new(self.clone())
            }
        }
    };
    ($ty:ty, stateless) => {
        impl $crate::transform::FeatureStep for $ty {
            fn kind(&self) -> &'static str {
                <$ty>::KIND
            }
            fn save(&self) -> $crate::error::Result<serde_json::Value> {
                super::common::save_state(<$ty>::KIND, self)
            }
            fn clone_box(&self) -> Box<dyn $crate::transform::FeatureStep> {
                Box::new(self.clone())
            }
        }
    };
}

pub(crate) use {feature_step, valid_params};

/// Checks a step's `input_cols` / `output_cols`: at least one input, no empty or repeated
/// names, and (when given) exactly one output name per input.
pub(crate) fn check_cols(kind: &str, input: &[String], output: Option<&[String]>) -> Result<()> {
    check_names(kind, "input_cols", input)?;
    if input.is_empty() {
        return Err(Error::param(
            format!("{kind}.input_cols"),
            "must name at least one column",
        ));
    }
    if let Some(out) = output {
        check_names(kind, "output_cols", out)?;
        if out.len() != input.len() {
            return Err(Error::param(
                format!("{kind}.output_cols"),
                format!("has {} names for {} input columns", out.len(), input.len()),
            ));
        }
    }
    Ok(())
}

/// Checks a list of column names: none empty, none repeated.
pub(crate) fn check_names(kind: &str, field: &str, names: &[String]) -> Result<()> {
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(Error::param(
                format!("{kind}.{field}"),
                format!("name {i} is empty"),
            ));
        }
        if names[..i].contains(n) {
            return Err(Error::param(
                format!("{kind}.{field}"),
                format!("column `{n}` is listed twice"),
            ));
        }
    }
    Ok(())
}

/// The output column names: `output` when given, else the inputs (replaced in place).
pub(crate) fn outputs<'a>(input: &'a [String], output: &'a Option<Vec<String>>) -> &'a [String] {
    output.as_deref().unwrap_or(input)
}

/// Checks a sketch size (the per-level capacity `k` of [`QuantileSketch`](super::QuantileSketch)).
pub(crate) fn check_sketch_size(kind: &str, k: usize) -> Result<()> {
    use super::sketch::{MAX_SKETCH_SIZE, MIN_SKETCH_SIZE};
    if !(MIN_SKETCH_SIZE..=MAX_SKETCH_SIZE).contains(&k) || k % 2 != 0 {
        return Err(Error::param(
            format!("{kind}.sketch_size"),
            format!("must be even and in {MIN_SKETCH_SIZE}..={MAX_SKETCH_SIZE}, got {k}"),
        ));
    }
    Ok(())
}

/// `f(x)` for every slot of `arr` in one vectorizable pass; the null mask is kept as is.
/// Every input column of a step as `Float64`, in order; errors name the step and the column.
pub(crate) fn f64_inputs<'a>(
    batch: &'a arrow::record_batch::RecordBatch,
    kind: &str,
    columns: &[String],
) -> Result<Vec<std::borrow::Cow<'a, Float64Array>>> {
    columns
        .iter()
        .map(|c| crate::columns::f64_column(batch, kind, c))
        .collect()
}

pub(crate) fn map_values(arr: &Float64Array, f: impl Fn(f64) -> f64) -> ArrayRef {
    Arc::new(arr.unary::<_, Float64Type>(f))
}

/// `f(row, x)` for every valid slot of `arr` (null slots stay null); the first error stops.
pub(crate) fn try_map_values(
    arr: &Float64Array,
    mut f: impl FnMut(usize, f64) -> Result<f64>,
) -> Result<ArrayRef> {
    let mut out = Vec::with_capacity(arr.len());
    match arr.nulls() {
        None => {
            for (i, &v) in arr.values().iter().enumerate() {
                out.push(f(i, v)?);
            }
        }
        Some(nulls) => {
            for (i, &v) in arr.values().iter().enumerate() {
                out.push(if nulls.is_valid(i) { f(i, v)? } else { 0.0 });
            }
        }
    }
    Ok(Arc::new(Float64Array::new(
        ScalarBuffer::from(out),
        arr.nulls().cloned(),
    )))
}

/// Calls `f` on every non-null, finite value of `arr` (what statistics are computed over).
pub(crate) fn for_each_finite(arr: &Float64Array, mut f: impl FnMut(f64)) {
    match arr.nulls() {
        None => arr
            .values()
            .iter()
            .filter(|v| v.is_finite())
            .for_each(|&v| f(v)),
        Some(nulls) => arr
            .values()
            .iter()
            .enumerate()
            .filter(|&(i, v)| nulls.is_valid(i) && v.is_finite())
            .for_each(|(_, &v)| f(v)),
    }
}

/// The error for a column that has no statistics yet.
pub(crate) fn not_fitted(kind: &str, column: &str) -> Error {
    Error::NotFitted(format!(
        "{kind} (column `{column}` has seen no finite value)"
    ))
}

/// The error for a saved state that does not describe a valid step.
pub(crate) fn corrupt(kind: &str, message: impl Display) -> Error {
    Error::ModelFile {
        path: format!("<{kind} state>"),
        message: message.to_string(),
    }
}

/// The error for merging two states fitted with different parameters.
pub(crate) fn merge_mismatch(kind: &str) -> Error {
    Error::param(
        format!("{kind}.params"),
        "cannot merge states fitted with different parameters",
    )
}

/// A step's state as JSON.
pub(crate) fn save_state<T: Serialize>(kind: &str, step: &T) -> Result<serde_json::Value> {
    serde_json::to_value(step).map_err(|e| corrupt(kind, e))
}

/// Loads a step of type `T` from its saved JSON; every inconsistency is an error.
pub(crate) fn load_as<T>(kind: &str, state: &serde_json::Value) -> Result<Box<dyn FeatureStep>>
where
    T: DeserializeOwned + FeatureStep + 'static,
{
    T::deserialize(state)
        .map(|t| Box::new(t) as Box<dyn FeatureStep>)
        .map_err(|e| corrupt(kind, e))
}

/// JSON form of an `f64` that may be infinite: finite values are numbers, infinities are the
/// strings `"inf"` / `"-inf"` (also accepted: `"+inf"`, `"infinity"`, `"-infinity"`, `"nan"`).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Num(f64),
    Text(String),
}

fn to_repr(v: f64) -> Repr {
    if v.is_finite() {
        Repr::Num(v)
    } else if v.is_nan() {
        Repr::Text("nan".into())
    } else if v > 0.0 {
        Repr::Text("inf".into())
    } else {
        Repr::Text("-inf".into())
    }
}

fn from_repr<E: serde::de::Error>(r: Repr) -> Result<f64, E> {
    match r {
        Repr::Num(v) => Ok(v),
        Repr::Text(s) => match s.to_ascii_lowercase().as_str() {
            "inf" | "+inf" | "infinity" | "+infinity" => Ok(f64::INFINITY),
            "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
            "nan" => Ok(f64::NAN),
            _ => Err(E::custom(format!("`{s}` is not a number"))),
        },
    }
}

/// `#[serde(with = "ext_f64")]` for an `f64` field that may be `±inf`.
pub(crate) mod ext_f64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        to_repr(*v).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        from_repr(Repr::deserialize(d)?)
    }
}

/// `#[serde(with = "ext_f64_lists")]` for a `Vec<Vec<f64>>` field whose values may be `±inf`.
pub(crate) mod ext_f64_lists {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[Vec<f64>], s: S) -> Result<S::Ok, S::Error> {
        let r: Vec<Vec<Repr>> = v
            .iter()
            .map(|l| l.iter().map(|&x| to_repr(x)).collect())
            .collect();
        r.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
        Vec::<Vec<Repr>>::deserialize(d)?
            .into_iter()
            .map(|l| l.into_iter().map(from_repr).collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct T {
        #[serde(with = "ext_f64")]
        x: f64,
        #[serde(with = "ext_f64_lists")]
        l: Vec<Vec<f64>>,
    }

    #[test]
    fn infinities_survive_json() {
        let t = T {
            x: f64::NEG_INFINITY,
            l: vec![vec![f64::NEG_INFINITY, 0.5, f64::INFINITY]],
        };
        let j = serde_json::to_value(&t).unwrap();
        assert_eq!(j["x"], "-inf");
        assert_eq!(serde_json::from_value::<T>(j).unwrap(), t);
        assert!(serde_json::from_str::<T>(r#"{"x":"oops","l":[]}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"x":true,"l":[]}"#).is_err());
    }

    #[test]
    fn column_lists_are_checked() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_cols("k", &s(&["a", "b"]), Some(&s(&["x", "y"]))).is_ok());
        let e = check_cols("k", &[], None).unwrap_err().to_string();
        assert!(e.contains("k.input_cols"), "{e}");
        let e = check_cols("k", &s(&["a", "a"]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        let e = check_cols("k", &s(&["a"]), Some(&s(&["x", "y"])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("k.output_cols"), "{e}");
        assert!(check_cols("k", &s(&[""]), None).is_err());
    }
}
