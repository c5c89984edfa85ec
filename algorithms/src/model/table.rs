//! Weight tables: written sparse when most rows are zero, and checked while they decode.
//!
//! A learner's weight table (4 M `[w, z, n]` slots for a 2^22-weight FTRL model, 50 MB) is
//! nearly all of a model file, and after a million click rows only ~5% of its slots have moved
//! from zero. `#[serde(with = "crate::model::table")]` on a `Vec<T>` field of floats (`f32`,
//! `f64`, `[f32; N]`) writes the table in whichever of two forms is smaller:
//!
//! ```text
//! dense   u64 len,           len × row               (the bytes of a plain Vec<T>)
//! sparse  u64 len | 1<<63,   u64 nnz,   nnz × (u32 index, row)   indices strictly increasing
//! ```
//!
//! (bincode's fixed-width encoding; the top bit of the first word tells them apart, so every
//! file written before sparse tables existed still reads). Rows that are all zero bits are
//! left out of the sparse form and come back as zero; `-0.0` is not zero bits and is kept.
//!
//! On decode it
//! - allocates the table once (a sparse one as zero pages the kernel maps lazily), after a
//!   fallible reservation, so an absurd length from a crafted file is an error, not an abort;
//! - refuses the first non-finite number, an index past the end or out of order, naming it;
//! - marks the table as checked, so the generic finiteness walk (`finite`) skips it.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeTuple, Serializer};

/// The newtype name the finiteness walk recognises as already checked on decode.
pub(crate) const CHECKED_ON_DECODE: &str = "eddy::model::table";

/// The bit of the first word that marks the sparse form.
const SPARSE: u64 = 1 << 63;

/// A row of a weight table: one float or a fixed group of them.
pub trait Floats: Copy {
    /// The all-zero row.
    const ZERO: Self;
    /// Whether every number in the row is finite.
    fn all_finite(&self) -> bool;
    /// Whether every number in the row is `+0.0` (all bits zero).
    fn is_zero(&self) -> bool;
}

impl Floats for f32 {
    const ZERO: Self = 0.0;
    fn all_finite(&self) -> bool {
        self.is_finite()
    }
    fn is_zero(&self) -> bool {
        self.to_bits() == 0
    }
}

impl Floats for f64 {
    const ZERO: Self = 0.0;
    fn all_finite(&self) -> bool {
        self.is_finite()
    }
    fn is_zero(&self) -> bool {
        self.to_bits() == 0
    }
}

impl<const N: usize> Floats for [f32; N] {
    const ZERO: Self = [0.0; N];
    fn all_finite(&self) -> bool {
        self.iter().all(|v| v.is_finite())
    }
    fn is_zero(&self) -> bool {
        self.iter().all(|v| v.to_bits() == 0)
    }
}

/// Serializes `table` in its smaller form (see the [module docs](self)).
pub fn serialize<T: Floats + Serialize, S: Serializer>(
    table: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    serialize_indexed(table.len(), |i| table[i], s)
}

/// Serializes `len` rows produced by `row(i)` exactly as [`serialize`] writes a table of them
/// (for tables read in place, such as shared weights, without copying them out first). Each
/// pass reads a row once to find the non-zero ones and once more to write them: a row that
/// another thread makes non-zero in between is left out (it is zero in the snapshot).
pub fn serialize_indexed<T, F, S>(len: usize, row: F, s: S) -> Result<S::Ok, S::Error>
where
    T: Floats + Serialize,
    F: Fn(usize) -> T,
    S: Serializer,
{
    s.serialize_newtype_struct(CHECKED_ON_DECODE, &Rows(len, row))
}

/// Deserializes a table written by [`serialize`] (either form, or a plain `Vec<T>` in
/// bincode), refusing non-finite numbers and impossible indices.
pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
where
    T: Floats + Deserialize<'de>,
    D: Deserializer<'de>,
{
    DecodedTable::deserialize(d)?.into_vec()
}

/// Rows `0..len` made by a function.
struct Rows<F>(usize, F);

impl<T: Floats + Serialize, F: Fn(usize) -> T> Serialize for Rows<F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Rows(len, row) = self;
        let width = std::mem::size_of::<T>();
        let sparse_max = (*len * width).saturating_sub(16) / (4 + width);
        let nonzero: Option<Vec<u32>> = (*len <= u32::MAX as usize + 1)
            .then(|| {
                let mut at = Vec::new();
                for i in 0..*len {
                    if !row(i).is_zero() {
                        if at.len() == sparse_max {
                            return None;
                        }
                        at.push(i as u32);
                    }
                }
                Some(at)
            })
            .flatten();
        match nonzero {
            Some(at) => {
                let mut t = s.serialize_tuple(2 + at.len())?;
                t.serialize_element(&(*len as u64 | SPARSE))?;
                t.serialize_element(&(at.len() as u64))?;
                for i in at {
                    t.serialize_element(&(i, row(i as usize)))?;
                }
                t.end()
            }
            None => {
                let mut t = s.serialize_tuple(1 + *len)?;
                t.serialize_element(&(*len as u64))?;
                for i in 0..*len {
                    t.serialize_element(&row(i))?;
                }
                t.end()
            }
        }
    }
}

/// A table as it was decoded: every row (the dense form) or only the non-zero ones (the
/// sparse form), checked either way. For a learner that keeps its weights in a container of
/// its own: it copies the non-zero rows ([`DecodedTable::for_each_nonzero`]) instead of
/// receiving a `Vec` of every row first (a 2^22-slot FTRL table is 50 MB of mostly zeros).
#[derive(Debug, Clone, PartialEq)]
pub enum DecodedTable<T> {
    /// Every row.
    Dense(Vec<T>),
    /// `len` rows, zero except `rows` (indices strictly increasing, below `len`).
    Sparse {
        /// The number of rows.
        len: usize,
        /// The non-zero rows by index.
        rows: Vec<(u32, T)>,
    },
}

impl<T: Floats> DecodedTable<T> {
    /// The number of rows.
    pub fn len(&self) -> usize {
        match self {
            DecodedTable::Dense(rows) => rows.len(),
            DecodedTable::Sparse { len, .. } => *len,
        }
    }

    /// Calls `f(index, row)` for every row that is not all zero bits, in index order.
    pub fn for_each_nonzero(&self, mut f: impl FnMut(usize, T)) {
        match self {
            DecodedTable::Dense(rows) => rows
                .iter()
                .enumerate()
                .filter(|(_, row)| !row.is_zero())
                .for_each(|(i, row)| f(i, *row)),
            DecodedTable::Sparse { rows, .. } => {
                rows.iter().for_each(|(i, row)| f(*i as usize, *row))
            }
        }
    }

    /// Every row (zeros filled in), allocated once; an error names a table too large.
    fn into_vec<E: de::Error>(self) -> Result<Vec<T>, E> {
        match self {
            DecodedTable::Dense(rows) => Ok(rows),
            DecodedTable::Sparse { len, rows } => {
                let mut table = zeros(len as u64)?;
                for (i, row) in rows {
                    table[i as usize] = row;
                }
                Ok(table)
            }
        }
    }
}

impl<'de, T: Floats + Deserialize<'de>> Deserialize<'de> for DecodedTable<T> {
    /// Reads a table written by [`serialize`] (either form, or a plain `Vec<T>` in bincode),
    /// refusing non-finite numbers and impossible indices.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(CHECKED_ON_DECODE, TableVisitor(PhantomData))
    }
}

struct TableVisitor<T>(PhantomData<T>);

impl<'de, T: Floats + Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
    type Value = DecodedTable<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a weight table of finite numbers")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_tuple(usize::MAX, self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let head: u64 = next(&mut seq, "its length")?;
        if head & SPARSE == 0 {
            return dense(seq, head).map(DecodedTable::Dense);
        }
        let len = head & !SPARSE;
        let nnz: u64 = next(&mut seq, "its count of non-zero rows")?;
        if nnz > len {
            return Err(de::Error::custom(format!(
                "a weight table of {len} rows holds {nnz} non-zero rows"
            )));
        }
        // a length that could not be allocated as a plain table is refused here, as the dense
        // form is, rather than left to abort whoever allocates for it (the test reservation
        // is address space only, given back at once)
        reserve::<T, A::Error>(&mut Vec::new(), len)?;
        let mut rows = Vec::new();
        reserve(&mut rows, nnz)?;
        let mut last = None;
        for _ in 0..nnz {
            let (i, row): (u32, T) = next(&mut seq, "a non-zero row")?;
            if last.is_some_and(|l| i <= l) || i as u64 >= len {
                return Err(de::Error::custom(format!(
                    "row index {i} of a weight table of {len} rows is out of range or order"
                )));
            }
            rows.push((i, finite(row, i as usize)?));
            last = Some(i);
        }
        Ok(DecodedTable::Sparse {
            len: len as usize,
            rows,
        })
    }
}

/// The next element, or an error naming `what` is missing.
fn next<'de, A: SeqAccess<'de>, V: Deserialize<'de>>(
    seq: &mut A,
    what: &str,
) -> Result<V, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::custom(format!("a weight table ends before {what}")))
}

/// `row` if it is finite; the error names `entry`.
fn finite<T: Floats, E: de::Error>(row: T, entry: usize) -> Result<T, E> {
    match row.all_finite() {
        true => Ok(row),
        false => Err(E::custom(format!(
            "entry {entry} of a weight table is not finite: a model holds finite numbers only"
        ))),
    }
}

/// The dense form's `len` rows.
fn dense<'de, T: Floats + Deserialize<'de>, A: SeqAccess<'de>>(
    mut seq: A,
    len: u64,
) -> Result<Vec<T>, A::Error> {
    let mut table = Vec::new();
    reserve(&mut table, len)?;
    for entry in 0..len as usize {
        table.push(finite(next(&mut seq, "its last row")?, entry)?);
    }
    Ok(table)
}

/// `len` zero rows, refused (not aborted) when they cannot be allocated.
fn zeros<T: Floats, E: de::Error>(len: u64) -> Result<Vec<T>, E> {
    // the reservation is the fallible test; `vec!` then takes zeroed pages, untouched
    reserve::<T, E>(&mut Vec::new(), len)?;
    Ok(vec![T::ZERO; len as usize])
}

fn reserve<T, E: de::Error>(table: &mut Vec<T>, len: u64) -> Result<(), E> {
    usize::try_from(len)
        .ok()
        .and_then(|n| table.try_reserve_exact(n).ok())
        .ok_or_else(|| E::custom(format!("a table of {len} entries does not fit in memory")))
}

#[cfg(test)]
mod tests {
    use bincode::Options;

    use super::*;

    /// A table serialized with this module, as a model field is.
    struct Table<'a>(&'a [f32]);

    impl Serialize for Table<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, s)
        }
    }

    fn bytes(table: &[f32]) -> Vec<u8> {
        bincode::options()
            .with_fixint_encoding()
            .serialize(&Table(table))
            .unwrap()
    }

    fn decoded(bytes: &[u8]) -> bincode::Result<DecodedTable<f32>> {
        bincode::options().with_fixint_encoding().deserialize(bytes)
    }

    /// The non-zero rows `for_each_nonzero` gives, by index.
    fn nonzero(table: &DecodedTable<f32>) -> Vec<(usize, f32)> {
        let mut rows = Vec::new();
        table.for_each_nonzero(|i, row| rows.push((i, row)));
        rows
    }

    #[test]
    fn a_decoded_table_gives_the_non_zero_rows_of_either_form() {
        let mut sparse = vec![0.0f32; 1000];
        sparse[3] = 1.5;
        sparse[999] = -2.0;
        sparse[500] = -0.0; // not zero bits: kept
        let dense: Vec<f32> = (0..40).map(|i| (i % 5) as f32).collect();
        for table in [&sparse, &dense] {
            let got = decoded(&bytes(table)).unwrap();
            assert_eq!(got.len(), table.len());
            let want: Vec<(usize, f32)> = table
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, v)| v.to_bits() != 0)
                .collect();
            assert_eq!(nonzero(&got), want);
            assert_eq!(got.into_vec::<bincode::Error>().unwrap(), *table);
        }
        assert!(matches!(
            decoded(&bytes(&sparse)).unwrap(),
            DecodedTable::Sparse { .. }
        ));
        assert!(matches!(
            decoded(&bytes(&dense)).unwrap(),
            DecodedTable::Dense(_)
        ));
    }

    #[test]
    fn a_decoded_sparse_table_of_an_absurd_length_is_refused() {
        let mut crafted = ((1u64 << 61) | SPARSE).to_le_bytes().to_vec();
        crafted.extend_from_slice(&0u64.to_le_bytes());
        let e = decoded(&crafted).unwrap_err().to_string();
        assert!(e.contains("does not fit in memory"), "{e}");
    }
}
