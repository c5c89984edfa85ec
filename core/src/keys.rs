//! Stable row hashing for keyed streams and partitioning, and key groups.
//!
//! Hashes are xxh3 over the value bytes, so they are the same on every machine and in every
//! process (workers of one job must agree on where a key goes).
//!
//! **Key groups** (as in Flink): a key with hash `h` belongs to key group `h % key_groups`,
//! where `key_groups` is fixed per job ([`DataflowConfig::key_groups`], default
//! [`DEFAULT_KEY_GROUPS`]) and recorded in every checkpoint. Subtask `s` of `p` owns the
//! contiguous range [`key_group_range`]`(s, p)`; [`subtask_for_key_group`] is its inverse. The
//! keyed exchange routes by key group ([`subtask_for_hash`]) and keyed operators write their
//! state per key group, so a restore at another parallelism hands every new subtask exactly the
//! groups it owns, read from every old subtask's snapshot. `key_groups` is therefore the most
//! subtasks a keyed operator can run on, and it cannot change across a restore.
//!
//! [`DataflowConfig::key_groups`]: crate::dataflow::DataflowConfig::key_groups

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use std::ops::Range;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{Error, Result};

/// Default number of key groups of a job: the most subtasks a keyed operator can be scaled to.
pub const DEFAULT_KEY_GROUPS: u32 = 128;

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

/// The key group (of `key_groups`) of the key with hash `hash`.
#[inline]
pub fn key_group(hash: u64, key_groups: u32) -> u32 {
    (hash % u64::from(key_groups.max(1))) as u32
}

/// The subtask (of `parallelism`) that owns key group `group` (of `key_groups`).
#[inline]
pub fn subtask_for_key_group(group: u32, parallelism: usize, key_groups: u32) -> usize {
    (u64::from(group) * parallelism as u64 / u64::from(key_groups.max(1))) as usize
}

/// The key groups subtask `subtask` of `parallelism` owns: a contiguous range, the inverse of
/// [`subtask_for_key_group`] (empty when `parallelism` exceeds `key_groups`).
pub fn key_group_range(subtask: usize, parallelism: usize, key_groups: u32) -> Range<u32> {
    let (kg, p) = (u64::from(key_groups), parallelism.max(1) as u64);
    let first = |s: u64| (s * kg).div_ceil(p) as u32;
    first(subtask as u64)..first(subtask as u64 + 1)
}

/// The subtask (of `parallelism`) that owns the key with hash `hash`, through its key group.
#[inline]
pub fn subtask_for_hash(hash: u64, parallelism: usize, key_groups: u32) -> usize {
    subtask_for_key_group(key_group(hash, key_groups), parallelism, key_groups)
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
        for kg in [1u32, 7, 128, 4096] {
            for p in 1..=16usize.min(kg as usize) {
                let mut seen = vec![false; p];
                let mut last = 0;
                for g in 0..kg {
                    let s = subtask_for_hash(u64::from(g), p, kg);
                    assert!(s >= last && s < p);
                    last = s;
                    seen[s] = true;
                }
                assert!(seen.iter().all(|&x| x), "kg {kg} p {p}");
            }
        }
    }

    #[test]
    fn ranges_are_the_inverse_of_the_owner_and_tile_all_groups() {
        for kg in [1u32, 5, 128, 1000] {
            for p in 1..=12usize.min(kg as usize) {
                let mut next = 0;
                for s in 0..p {
                    let r = key_group_range(s, p, kg);
                    assert_eq!(r.start, next, "kg {kg} p {p} s {s}");
                    assert!(!r.is_empty());
                    for g in r.clone() {
                        assert_eq!(subtask_for_key_group(g, p, kg), s, "kg {kg} p {p} g {g}");
                    }
                    next = r.end;
                }
                assert_eq!(next, kg);
            }
        }
        assert_eq!(key_group(130, 128), 2);
    }
}
