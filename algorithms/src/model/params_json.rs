//! Serde adapter that stores a learner's params as a JSON string inside the binary payload.
//!
//! Learner params hold internally tagged enums (`RuleParams`, k-means `Decay` / `KMeansInit`,
//! `{ kind = "adagrad", … }` in TOML and JSON). Bincode is not self-describing and cannot read
//! internally tagged enums back, so a learner whose params contain one would save but never
//! load. Params are a few hundred bytes, so they travel as their JSON document — the same
//! text a user writes — while the weight arrays stay raw bincode floats.
//!
//! Use `#[serde(serialize_with = "crate::model::params_json::serialize")]` on the learner's
//! params field and `#[serde(deserialize_with = "crate::model::params_json::deserialize")]`
//! on the matching field of its snapshot struct.

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

/// Writes `value` as a JSON string.
pub(crate) fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    let json = serde_json::to_string(value).map_err(serde::ser::Error::custom)?;
    s.serialize_str(&json)
}

/// Reads a value written by [`serialize`].
pub(crate) fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
    d: D,
) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    serde_json::from_str(&text).map_err(serde::de::Error::custom)
}
