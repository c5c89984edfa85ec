//! Weight tables that check their own numbers while they decode.
//!
//! A learner's weight table (4 M `[w, z, n]` slots for a 2^22-weight FTRL model) is nearly all
//! of a model file. Decoding it through serde's generic `Vec` visitor grows the vector by
//! doubling from a capped guess, and the generic finiteness walk (`finite`) then visits every
//! float again through dynamic calls; together they made loading a 50 MB model take ~0.4 s.
//!
//! `#[serde(with = "crate::model::table")]` on a `Vec<T>` field of floats (`f32`, `f64`,
//! `[f32; N]`) keeps the bytes exactly as a plain `Vec<T>` (bincode and JSON treat the newtype
//! wrapper as transparent, so files written before stay readable), and on decode:
//! - reserves the announced length once (with `try_reserve_exact`, so an absurd length from a
//!   crafted file is an error, not an abort),
//! - refuses the first non-finite number, naming its entry,
//! - marks the table as checked, so the finiteness walk skips it.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};

/// The newtype name the finiteness walk recognises as already checked on decode.
pub(crate) const CHECKED_ON_DECODE: &str = "eddy::model::table";

/// A row of a weight table: one float or a fixed group of them.
pub trait Floats: Copy {
    /// Whether every number in the row is finite.
    fn all_finite(&self) -> bool;
}

impl Floats for f32 {
    fn all_finite(&self) -> bool {
        self.is_finite()
    }
}

impl Floats for f64 {
    fn all_finite(&self) -> bool {
        self.is_finite()
    }
}

impl<const N: usize> Floats for [f32; N] {
    fn all_finite(&self) -> bool {
        self.iter().all(|v| v.is_finite())
    }
}

/// Serializes `table` as a plain sequence inside the checked-on-decode newtype.
pub fn serialize<T: Serialize, S: Serializer>(table: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_newtype_struct(CHECKED_ON_DECODE, &Rows(table))
}

/// Deserializes a table written by [`serialize`] (or as a plain `Vec<T>`), refusing
/// non-finite numbers.
pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
where
    T: Floats + Deserialize<'de>,
    D: Deserializer<'de>,
{
    d.deserialize_newtype_struct(CHECKED_ON_DECODE, TableVisitor(PhantomData))
}

/// Serializes `len` rows produced by `row(i)` exactly as [`serialize`] writes a table of them
/// (for tables read in place, such as shared weights, without copying them out first).
pub fn serialize_indexed<T, F, S>(len: usize, row: F, s: S) -> Result<S::Ok, S::Error>
where
    T: Serialize,
    F: Fn(usize) -> T,
    S: Serializer,
{
    s.serialize_newtype_struct(CHECKED_ON_DECODE, &Indexed(len, row))
}

/// Rows `0..len` made by a function, as a sequence.
struct Indexed<F>(usize, F);

impl<T: Serialize, F: Fn(usize) -> T> Serialize for Indexed<F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((0..self.0).map(&self.1))
    }
}

/// The rows as a sequence (what `Vec<T>` would write).
struct Rows<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for Rows<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0)
    }
}

struct TableVisitor<T>(PhantomData<T>);

impl<'de, T: Floats + Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table of finite numbers")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut table = Vec::new();
        if let Some(len) = seq.size_hint() {
            table.try_reserve_exact(len).map_err(|_| {
                de::Error::custom(format!("a table of {len} entries does not fit in memory"))
            })?;
        }
        while let Some(row) = seq.next_element::<T>()? {
            if !row.all_finite() {
                return Err(de::Error::custom(format!(
                    "entry {} of a weight table is not finite: a model holds finite numbers only",
                    table.len()
                )));
            }
            table.push(row);
        }
        Ok(table)
    }
}
