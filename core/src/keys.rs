//! Stable row hashing for keyed streams and partitioning.
//!
//! Hashes are xxh3 over the value bytes, so they are the same on every machine and in every
//! process (workers of one job must agree on where a key goes). Keys map to one of
//! [`KEY_GROUPS`] key groups, and key groups to subtasks in contiguous ranges (as in Flink), so
//! that a later rescale moves whole key groups.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{Error, Result};

/// Number of key groups: the most subtasks a keyed operator can be scaled to.
pub const KEY_GROUPS: u64 = 4096;

const NULL_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn mix(h: u64, v: u64) -> u64 {
    // Boost-style combine on 64 bits, then a final avalanche (splitmix64 finalizer).
    let mut x = h ^ v
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(h << 6)
        .wrapping_add(h >> 2);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

macro_rules! hash_primitive {
    ($array:expr, $ty:ty, $out:expr, $first:expr) => {{
        let a = $array.as_primitive::<$ty>();
        for (i, h) in $out.iter_mut().enumerate() {
            let v = if a.is_null(i) {
                NULL_HASH
            } else {
                xxh3_64_with_seed(&a.value(i).to_le_bytes(), 0)
            };
            *h = if $first { v } else { mix(*h, v) };
        }
    }};
}

/// Hashes one column into `out` (which must have the column's length); `first` overwrites,
/// otherwise the column's hash is combined into what is there.
pub fn hash_column(array: &ArrayRef, out: &mut [u64], first: bool) -> Result<()> {
    match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            for (i, h) in out.iter_mut().enumerate() {
                let v = if a.is_null(i) {
                    NULL_HASH
                } else {
                    xxh3_64_with_seed(a.value(i).as_bytes(), 0)
                };
                *h = if first { v } else { mix(*h, v) };
            }
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            for (i, h) in out.iter_mut().enumerate() {
                let v = if a.is_null(i) {
                    NULL_HASH
                } else {
                    xxh3_64_with_seed(a.value(i).as_bytes(), 0)
                };
                *h = if first { v } else { mix(*h, v) };
            }
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            for (i, h) in out.iter_mut().enumerate() {
                let v = if a.is_null(i) {
                    NULL_HASH
                } else {
                    xxh3_64_with_seed(&[a.value(i) as u8], 0)
                };
                *h = if first { v } else { mix(*h, v) };
            }
        }
        DataType::Int8 => hash_primitive!(array, Int8Type, out, first),
        DataType::Int16 => hash_primitive!(array, Int16Type, out, first),
        DataType::Int32 => hash_primitive!(array, Int32Type, out, first),
        DataType::Int64 => hash_primitive!(array, Int64Type, out, first),
        DataType::UInt8 => hash_primitive!(array, UInt8Type, out, first),
        DataType::UInt16 => hash_primitive!(array, UInt16Type, out, first),
        DataType::UInt32 => hash_primitive!(array, UInt32Type, out, first),
        DataType::UInt64 => hash_primitive!(array, UInt64Type, out, first),
        DataType::Float32 => hash_primitive!(array, Float32Type, out, first),
        DataType::Float64 => hash_primitive!(array, Float64Type, out, first),
        other => {
            return Err(Error::schema(
                "key hashing",
                format!("cannot use a column of type {other} as a key"),
            ))
        }
    }
    Ok(())
}

/// Hashes the rows of `columns` into `out` (cleared and resized to the row count).
pub fn hash_rows(columns: &[ArrayRef], out: &mut Vec<u64>) -> Result<()> {
    let rows = columns.first().map_or(0, |c| c.len());
    out.clear();
    out.resize(rows, 0);
    for (i, c) in columns.iter().enumerate() {
        hash_column(c, out, i == 0)?;
    }
    Ok(())
}

/// The subtask (of `parallelism`) that owns the key with hash `hash`.
#[inline]
pub fn subtask_for_hash(hash: u64, parallelism: usize) -> usize {
    let group = hash % KEY_GROUPS;
    (group * parallelism as u64 / KEY_GROUPS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn equal_keys_hash_equal_and_stable() {
        let a: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "x"]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1, 1, 1]));
        let mut h = Vec::new();
        hash_rows(&[a, b], &mut h).unwrap();
        assert_eq!(h[0], h[2]);
        assert_ne!(h[0], h[1]);
        // Pinned value: hashes must not change across releases (multi-process jobs rely on it).
        let one: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let mut h1 = Vec::new();
        hash_rows(&[one], &mut h1).unwrap();
        assert_eq!(h1[0], xxh3_64_with_seed(b"x", 0));
    }

    #[test]
    fn key_groups_cover_all_subtasks_in_order() {
        for p in 1..=16 {
            let mut seen = vec![false; p];
            let mut last = 0;
            for g in 0..KEY_GROUPS {
                let s = subtask_for_hash(g, p);
                assert!(s >= last && s < p);
                last = s;
                seen[s] = true;
            }
            assert!(seen.iter().all(|&x| x));
        }
    }
}
