//! The state format of the window operators: a JSON envelope naming the format, its version and
//! the operator kind around the operator's own state. A snapshot of another kind or version is
//! refused with an error, never misread.
//!
//! Keyed operators write their state per key group ([`encode_groups`]): a
//! [`StateParts`] whose meta entry holds what is not per key (watermark, counters) and whose
//! parts hold, per key group, the entries of the keys in it, each in the envelope. So the
//! runtime can hand a rescaled subtask exactly the groups it owns ([`Redistribution::KeyGroups`]),
//! and [`decode_groups`] reads one subtask's snapshot or the union of several.
//!
//! [`Redistribution::KeyGroups`]: crate::operator::Redistribution::KeyGroups

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::StateParts;
use crate::error::{Error, Result};
use crate::operator::TaskInfo;

/// Format name written into every snapshot.
const FORMAT: &str = "eddy-window-state";
/// Current version of the format.
const VERSION: u32 = 2;

#[derive(Serialize, serde::Deserialize)]
struct Envelope<T> {
    format: String,
    version: u32,
    kind: String,
    state: T,
}

/// Serializes `state` of an operator of `kind`.
pub(crate) fn encode<T: Serialize>(kind: &str, state: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(&Envelope {
        format: FORMAT.to_string(),
        version: VERSION,
        kind: kind.to_string(),
        state,
    })
    .map_err(|e| Error::Internal(format!("cannot serialize {kind} state: {e}")))
}

/// Reads the state of an operator of `kind` (named `operator`) written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(kind: &str, operator: &str, bytes: &[u8]) -> Result<T> {
    let bad = |m: String| Error::config(format!("{operator}.state"), m);
    let env: Envelope<serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a window state: {e}")))?;
    if env.format != FORMAT || env.version != VERSION || env.kind != kind {
        return Err(bad(format!(
            "expected {FORMAT} v{VERSION} of a {kind} operator, found {} v{} of a {} operator",
            env.format, env.version, env.kind
        )));
    }
    serde_json::from_value(env.state).map_err(|e| bad(format!("corrupt {kind} state: {e}")))
}

/// Keyed state per key group: `meta` tagged with `subtask`, one part per group in `groups`.
pub(crate) fn encode_groups<M: Serialize, T: Serialize>(
    kind: &str,
    subtask: usize,
    meta: &M,
    groups: &BTreeMap<u32, T>,
) -> Result<Vec<u8>> {
    let mut parts = StateParts::default();
    parts.meta.push((subtask as u32, encode(kind, meta)?));
    for (&group, part) in groups {
        parts.parts.push((group, encode(kind, part)?));
    }
    Ok(parts.encode())
}

/// Meta entries (with the subtask that wrote each) and key-group parts, as read back.
pub(crate) type Groups<M, T> = (Vec<(u32, M)>, Vec<T>);

/// Reads state written by [`encode_groups`], possibly the key groups of several old subtasks:
/// the meta entries (with the subtask that wrote each) and the parts.
pub(crate) fn decode_groups<M: DeserializeOwned, T: DeserializeOwned>(
    kind: &str,
    operator: &str,
    bytes: &[u8],
) -> Result<Groups<M, T>> {
    let parts = StateParts::decode(bytes, operator)?;
    let meta = parts
        .meta
        .iter()
        .map(|(tag, b)| Ok((*tag, decode(kind, operator, b)?)))
        .collect::<Result<_>>()?;
    let groups = parts
        .parts
        .iter()
        .map(|(_, b)| decode(kind, operator, b))
        .collect::<Result<_>>()?;
    Ok((meta, groups))
}

/// The watermark and late-record count a keyed operator restores from the meta entries of
/// (possibly several) old subtasks, `read` giving an entry's pair: the oldest watermark (its
/// keys may come from any of them) and the late records of the entries dealt to `task`
/// ([`owns_meta`]).
pub(crate) fn restored_clock<M>(
    metas: &[(u32, M)],
    task: &TaskInfo,
    read: impl Fn(&M) -> (i64, u64),
) -> (i64, u64) {
    let watermark = metas.iter().map(|(_, m)| read(m).0).min();
    let late = metas
        .iter()
        .filter(|(tag, _)| owns_meta(*tag, task))
        .map(|(_, m)| read(m).1)
        .sum();
    (watermark.unwrap_or(i64::MIN), late)
}

/// Whether the meta entry written by old subtask `tag` counts on `task` for additive counters
/// (late records): dealt round robin, so that a rescale neither loses nor doubles them.
fn owns_meta(tag: u32, task: &TaskInfo) -> bool {
    tag as usize % task.parallelism.max(1) == task.subtask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_kind_or_garbage_is_refused() {
        let bytes = encode("a", &vec![1u32, 2]).unwrap();
        assert_eq!(decode::<Vec<u32>>("a", "op", &bytes).unwrap(), vec![1, 2]);
        let e = decode::<Vec<u32>>("b", "op", &bytes).unwrap_err();
        assert!(e.to_string().contains("op.state"), "{e}");
        assert!(decode::<Vec<u32>>("a", "op", b"\x00garbage").is_err());
    }
}
