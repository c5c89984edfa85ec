//! The model file: one format for every learner and pipeline, on disk and in memory.
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"EDDYMODL"
//! 8       4     format version, u32 little-endian (this build writes FORMAT_VERSION)
//! 12      4     kind length k, u32 LE
//! 16      k     kind, UTF-8 (e.g. "ftrl-logistic-regression")
//! 16+k    8     payload length p, u64 LE
//! 24+k    p     payload: bincode 1 (fixed-width little-endian) of the serde value
//! 24+k+p  8     xxh3-64 of every byte before it, u64 LE
//! ```
//!
//! Bincode writes a 4 M-float weight vector as 16 MB of raw floats, so saving and loading
//! are bounded by memory bandwidth and disk; learners' weight tables go through `table`,
//! which writes only their non-zero rows when that is smaller (a 2^22-slot FTRL model trained
//! on 1 M click rows: 3 MB instead of 50 MB). [`save_model`] writes a temporary file beside the
//! target, fsyncs it, renames it over the target and fsyncs the directory, so a reader sees the
//! old file or the new one, never half of one. [`load_model`] and [`decode`] refuse, with
//! [`Error::ModelFile`] naming the file and the problem: a wrong magic, a newer format version
//! ("written by a newer eddy"), a truncated or over-long file, a checksum mismatch, a different
//! kind, and a payload that does not decode as the expected type.
//!
//! A valid checksum only says the bytes are the ones written, so decoding also refuses
//! impossible contents, for every model type and every caller: payload bytes left over after
//! the value, a NaN or ±inf number anywhere in the value (`finite`), and a
//! [`TrainedModel`](crate::trained::TrainedModel) whose learner does not accept the features
//! its own pipeline makes, such as a hasher of more bits than the learner has weights (`fit`).
//!
//! ## Modules
//! | module | what |
//! |---|---|
//! | this one | [`encode`] / [`decode`] (bytes), [`save_model`] / [`load_model`] (files), [`read_header`] |
//! | `finite` | every float of a decoded value is finite (a walk through its `Serialize`) |
//! | `fit` | a trained model's learner accepts its pipeline's features (one probe row) |
//! | `table` | `#[serde(with)]` for weight tables: sparse when smaller, finiteness checked while decoding |
//! | `params_json` | learner params as a JSON string inside the payload (bincode cannot read internally tagged enums) |
//! | `tests` | one test per refusal |

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use std::any::Any;

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

mod finite;
mod fit;
pub(crate) mod params_json;
pub(crate) mod table;

/// The first bytes of every model file.
pub const MAGIC: [u8; 8] = *b"EDDYMODL";

/// The format version this build writes, and the newest it reads. Version 2 added sparse
/// weight tables (`table`); version 1 files read unchanged.
pub const FORMAT_VERSION: u32 = 2;

/// The name used in errors for in-memory models.
const MEMORY: &str = "<in-memory model>";

/// Bytes before the kind: magic, version, kind length.
const PREFIX: usize = 16;

/// What a model file says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelHeader {
    /// The format version it was written with.
    pub version: u32,
    /// The model kind, e.g. `"ftrl-logistic-regression"`.
    pub kind: String,
    /// Payload bytes.
    pub payload_len: u64,
}

fn refuse(source: &str, message: impl Into<String>) -> Error {
    Error::ModelFile {
        path: source.to_string(),
        message: message.into(),
    }
}

/// Encodes `value` as a model of `kind`.
pub fn encode<T: Serialize + ?Sized>(kind: &str, value: &T) -> Result<Vec<u8>> {
    let payload = bincode::serialize(value)
        .map_err(|e| refuse(MEMORY, format!("cannot encode the {kind} payload: {e}")))?;
    let kind_len = u32::try_from(kind.len())
        .map_err(|_| refuse(MEMORY, "the kind name is longer than 4 GiB"))?;
    let mut out = Vec::with_capacity(PREFIX + kind.len() + 8 + payload.len() + 8);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&kind_len.to_le_bytes());
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    Ok(out)
}

/// Little-endian integer at `at`, if the bytes are there.
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Checks the magic, version, lengths and checksum; returns the header and the payload.
fn parse<'a>(bytes: &'a [u8], source: &str) -> Result<(ModelHeader, &'a [u8])> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(refuse(source, "not an eddy model file (wrong magic bytes)"));
    }
    let truncated = |what: &str| {
        refuse(
            source,
            format!("truncated: the file ends inside the {what}"),
        )
    };
    let version = read_u32(bytes, 8).ok_or_else(|| truncated("header"))?;
    if version > FORMAT_VERSION {
        return Err(refuse(
            source,
            format!(
                "written by a newer eddy (format {version}, this build reads up to \
                 {FORMAT_VERSION})"
            ),
        ));
    }
    if version == 0 {
        return Err(refuse(source, "format version 0 does not exist"));
    }
    let kind_len = read_u32(bytes, 12).ok_or_else(|| truncated("header"))? as usize;
    let kind_end = PREFIX
        .checked_add(kind_len)
        .ok_or_else(|| truncated("kind"))?;
    let kind_bytes = bytes
        .get(PREFIX..kind_end)
        .ok_or_else(|| truncated("kind"))?;
    let payload_len = read_u64(bytes, kind_end).ok_or_else(|| truncated("header"))?;
    let payload_start = kind_end + 8;
    let expected = usize::try_from(payload_len)
        .ok()
        .and_then(|p| p.checked_add(payload_start + 8))
        .ok_or_else(|| truncated("payload"))?;
    if bytes.len() < expected {
        return Err(refuse(
            source,
            format!(
                "truncated: {} bytes, the header promises {expected}",
                bytes.len()
            ),
        ));
    }
    if bytes.len() > expected {
        return Err(refuse(
            source,
            format!(
                "{} bytes, the header promises {expected} (trailing data)",
                bytes.len()
            ),
        ));
    }
    let body = &bytes[..expected - 8];
    let stored = read_u64(bytes, expected - 8).ok_or_else(|| truncated("checksum"))?;
    let actual = xxh3_64(body);
    if stored != actual {
        return Err(refuse(
            source,
            format!("checksum mismatch (stored {stored:016x}, computed {actual:016x}): the file is corrupt"),
        ));
    }
    let kind = std::str::from_utf8(kind_bytes)
        .map_err(|_| refuse(source, "the kind is not UTF-8"))?
        .to_string();
    let header = ModelHeader {
        version,
        kind,
        payload_len,
    };
    Ok((header, &body[payload_start..]))
}

/// Reads and checks the header (and checksum) of an encoded model, without decoding it.
pub fn read_header(bytes: &[u8]) -> Result<ModelHeader> {
    parse(bytes, MEMORY).map(|(h, _)| h)
}

fn decode_from<T: DeserializeOwned + Serialize + 'static>(
    bytes: &[u8],
    expected_kind: &str,
    source: &str,
) -> Result<T> {
    let (header, payload) = parse(bytes, source)?;
    if header.kind != expected_kind {
        return Err(refuse(
            source,
            format!(
                "holds a `{}` model, expected `{expected_kind}`",
                header.kind
            ),
        ));
    }
    // The options of `bincode::deserialize`, except that bytes after the value are refused.
    let value: T = bincode::options()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .deserialize(payload)
        .map_err(|e| {
            refuse(
                source,
                format!("the `{expected_kind}` payload does not decode: {e}"),
            )
        })?;
    check_contents(&value).map_err(|m| refuse(source, m))?;
    Ok(value)
}

/// The checks of a decoded value that its checksum cannot make: finite numbers, and (for a
/// trained model) a learner that accepts its pipeline's features.
fn check_contents<T: Serialize + 'static>(value: &T) -> std::result::Result<(), String> {
    finite::check_finite(value)?;
    if let Some(trained) = (value as &dyn Any).downcast_ref::<crate::trained::TrainedModel>() {
        fit::check_trained(trained)?;
    }
    Ok(())
}

/// Decodes a model of `expected_kind` from bytes made by [`encode`] (or read from a file),
/// refusing impossible contents (see the module docs).
pub fn decode<T: DeserializeOwned + Serialize + 'static>(
    bytes: &[u8],
    expected_kind: &str,
) -> Result<T> {
    decode_from(bytes, expected_kind, MEMORY)
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `value` as a model of `kind` to `path`, atomically: a temporary file in the same
/// directory, fsync, rename over `path`, fsync of the directory.
pub fn save_model<T: Serialize + ?Sized>(path: &Path, kind: &str, value: &T) -> Result<()> {
    let bytes = encode(kind, value)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| refuse(&path.display().to_string(), "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    // Make the rename durable; a directory that cannot be opened or synced (some platforms)
    // does not undo a completed rename, so that failure is ignored.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads a model of `expected_kind` from `path`, refusing anything but an intact file of that
/// kind written by this format version or an older one, with possible contents.
pub fn load_model<T: DeserializeOwned + Serialize + 'static>(
    path: &Path,
    expected_kind: &str,
) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| io(path, e))?;
    decode_from(&bytes, expected_kind, &path.display().to_string())
}

/// Reads and checks the header of the model file at `path` (for `eddy inspect`).
pub fn read_file_header(path: &Path) -> Result<ModelHeader> {
    let bytes = fs::read(path).map_err(|e| io(path, e))?;
    parse(&bytes, &path.display().to_string()).map(|(h, _)| h)
}

#[cfg(test)]
mod tests;
