//! [`StateParts`]: operator state cut into tagged parts, the form the runtime can redistribute
//! when a job is restored at another parallelism ([`Redistribution`]).
//!
//! A keyed operator writes one part per key group (tag = the group) and one meta entry for
//! what is not per key (tag = its subtask); a list-state operator writes one part per element.
//! Layout (little endian): magic `EDDYPRT1`, `u32` meta count, the meta entries, `u32` part
//! count, the parts; each entry is a `u32` tag, a `u64` length and the bytes.
//!
//! ```
//! use eddy_core::checkpoint::StateParts;
//!
//! let mut parts = StateParts::default();
//! parts.meta.push((0, b"watermark".to_vec()));
//! parts.parts.push((17, b"key group 17".to_vec()));
//! let bytes = parts.encode();
//! assert_eq!(StateParts::decode(&bytes, "counts")?, parts);
//! # Ok::<(), eddy_core::Error>(())
//! ```
//!
//! [`Redistribution`]: crate::operator::Redistribution

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"EDDYPRT1";

/// Operator state as tagged parts (see [the module docs](self)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateParts {
    /// State that is not per part (keyed operators: watermark, counters), tagged with the
    /// subtask that wrote it. After a key-group rescale a subtask gets every old subtask's.
    pub meta: Vec<(u32, Vec<u8>)>,
    /// The parts: (key group, state) for keyed state, (index, element) for list state.
    pub parts: Vec<(u32, Vec<u8>)>,
}

impl StateParts {
    /// The bytes of these parts.
    pub fn encode(&self) -> Vec<u8> {
        let payload: usize = self
            .meta
            .iter()
            .chain(&self.parts)
            .map(|(_, b)| b.len() + 12)
            .sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 8 + payload);
        out.extend_from_slice(MAGIC);
        for list in [&self.meta, &self.parts] {
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for (tag, bytes) in list {
                out.extend_from_slice(&tag.to_le_bytes());
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
        out
    }

    /// Parses bytes written by [`encode`](StateParts::encode); the error names `operator`'s
    /// state and what is wrong.
    pub fn decode(bytes: &[u8], operator: &str) -> Result<Self> {
        let bad = |m: String| Error::config(format!("{operator}.state"), m);
        let mut rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not a state in parts (bad magic)".into()))?;
        let mut lists = [Vec::new(), Vec::new()];
        for (which, list) in ["meta", "part"].iter().zip(lists.iter_mut()) {
            let count = u32::from_le_bytes(take::<4>(&mut rest).map_err(|m| bad(m.into()))?);
            for i in 0..count {
                let what = |m: &str| bad(format!("{which} {i}: {m}"));
                let tag = u32::from_le_bytes(take::<4>(&mut rest).map_err(what)?);
                let len = u64::from_le_bytes(take::<8>(&mut rest).map_err(what)?);
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= rest.len())
                    .ok_or_else(|| what(&format!("{len} bytes, only {} left", rest.len())))?;
                let (part, tail) = rest.split_at(len);
                list.push((tag, part.to_vec()));
                rest = tail;
            }
        }
        if !rest.is_empty() {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        }
        let [meta, parts] = lists;
        Ok(StateParts { meta, parts })
    }
}

/// The next `N` bytes of `rest`, which moves past them; `"truncated"` when fewer are left.
pub(crate) fn take<const N: usize>(rest: &mut &[u8]) -> std::result::Result<[u8; N], &'static str> {
    if rest.len() < N {
        return Err("truncated");
    }
    let (head, tail) = rest.split_at(N);
    *rest = tail;
    let mut out = [0u8; N];
    out.copy_from_slice(head);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_every_cut_and_trailing_bytes() -> Result<()> {
        let parts = StateParts {
            meta: vec![(1, vec![9])],
            parts: vec![(0, vec![]), (127, vec![1, 2, 3])],
        };
        let bytes = parts.encode();
        assert_eq!(StateParts::decode(&bytes, "op")?, parts);
        for cut in 0..bytes.len() {
            assert!(
                StateParts::decode(&bytes[..cut], "op").is_err(),
                "cut {cut}"
            );
        }
        let mut long = bytes;
        long.push(0);
        let e = StateParts::decode(&long, "op").err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("op.state") && e.contains("trailing")));
        Ok(())
    }
}
