//! The state format of the window operators: a JSON envelope naming the format, its version and
//! the operator kind around the operator's own state. A snapshot of another kind or version is
//! refused with an error, never misread.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Format name written into every snapshot.
const FORMAT: &str = "eddy-window-state";
/// Current version of the format.
const VERSION: u32 = 1;

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
