//! Shared chunk files of chunked states ([`state::blob`](crate::state::blob)): the store side of
//! incremental checkpoints.
//!
//! A checkpoint directory `chk-<n>/` keeps only references; the chunks live next to it in
//! `chunks/<xxh3-128 hex>.chunk`, written once (write-then-rename, fsynced) and shared by every
//! checkpoint that references them. Each manifest lists the chunk files it references with
//! length and hash, so retention deletes a chunk file only when no retained checkpoint lists
//! it. A savepoint (`savepoints/<name>/`) references `savepoints/chunks/`, which retention
//! never touches. On load every referenced chunk is read back and its length and hash checked;
//! a missing or damaged chunk refuses the checkpoint with an error naming the file.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::format::FileEntry;
use super::store::{corrupt, sync_dir, write_atomic};
use crate::error::{Error, Result};
use crate::state::blob::{chunk_hash, declined_reason, is_chunked, ChunkedBlob};

/// The directory of shared chunk files, next to the checkpoint directories.
pub(crate) const CHUNKS: &str = "chunks";

/// The file name of the chunk with hash `hash`.
pub(crate) fn chunk_name(hash: u128) -> String {
    format!("{hash:032x}.chunk")
}

/// The chunk directory of the checkpoint (or savepoint) in `dir`: `dir/../chunks`.
pub(crate) fn chunk_dir_of(dir: &Path) -> PathBuf {
    dir.parent().unwrap_or(Path::new(".")).join(CHUNKS)
}

/// The states of one task as the checkpoint keeps them: a chunked state's inline chunks are
/// written to `chunk_dir` (created with the first chunked state; unless a file of that hash is there already; a full snapshot
/// rewrites it) and replaced by references; every referenced chunk must exist. The chunk
/// files are added to `used`. A declined state fails the write, naming `task` and the reason.
pub(crate) fn externalize<'a>(
    chunk_dir: &Path,
    task: &str,
    states: &'a [Option<Vec<u8>>],
    used: &mut BTreeMap<String, FileEntry>,
) -> Result<Cow<'a, [Option<Vec<u8>>]>> {
    let special = |s: &Option<Vec<u8>>| {
        s.as_deref()
            .is_some_and(|b| is_chunked(b) || declined_reason(b).is_some())
    };
    if !states.iter().any(special) {
        return Ok(Cow::Borrowed(states));
    }
    fs::create_dir_all(chunk_dir).map_err(|e| Error::io(chunk_dir, e))?;
    let mut out = Vec::with_capacity(states.len());
    for (stage, state) in states.iter().enumerate() {
        let Some(bytes) = state.as_deref().filter(|_| special(state)) else {
            out.push(state.clone());
            continue;
        };
        if let Some(reason) = declined_reason(bytes) {
            return Err(Error::io(
                chunk_dir,
                io::Error::other(format!("task `{task}` could not write its state: {reason}")),
            ));
        }
        let what = format!("{task} stage {stage}");
        let blob = ChunkedBlob::parse(bytes, &what)?;
        for c in &blob.chunks {
            let name = chunk_name(c.hash);
            let path = chunk_dir.join(&name);
            match c.bytes {
                Some(b) => {
                    let present = !blob.full
                        && (used.contains_key(&name)
                            || fs::metadata(&path).is_ok_and(|m| m.len() == b.len() as u64));
                    if !present {
                        write_atomic(chunk_dir, &name, b)?;
                    }
                }
                None => {
                    let len = fs::metadata(&path).map(|m| m.len()).ok();
                    if len != Some(c.len) {
                        return Err(corrupt(
                            path,
                            format!(
                                "{what} references chunk {name} of {} bytes, which is not in the \
                                 store ({len:?})",
                                c.len
                            ),
                        ));
                    }
                }
            }
            used.insert(
                name.clone(),
                FileEntry {
                    name,
                    len: c.len,
                    xxh3: format!("{:032x}", c.hash),
                },
            );
        }
        out.push(Some(blob.encode_with(false, |_, _| None)));
    }
    Ok(Cow::Owned(out))
}

/// A state as the operator restores it: a chunked state's references are read from
/// `chunk_dir` and checked (length and hash); any other state is returned as it is.
pub(crate) fn resolve(chunk_dir: &Path, state: Vec<u8>, what: &str) -> Result<Vec<u8>> {
    if !is_chunked(&state) {
        return Ok(state);
    }
    let blob = ChunkedBlob::parse(&state, what)?;
    let mut files = Vec::with_capacity(blob.chunks.len());
    for c in &blob.chunks {
        let path = chunk_dir.join(chunk_name(c.hash));
        let bytes = match c.bytes {
            Some(b) => b.to_vec(),
            None => fs::read(&path).map_err(|e| {
                Error::io(
                    &path,
                    io::Error::new(
                        e.kind(),
                        format!("chunk of {what} missing or unreadable: {e}"),
                    ),
                )
            })?,
        };
        if bytes.len() as u64 != c.len || chunk_hash(&bytes) != c.hash {
            return Err(corrupt(
                path,
                format!(
                    "chunk of {what} is damaged: {} bytes hashing to {:032x}, expected {} bytes \
                     hashing to {:032x}",
                    bytes.len(),
                    chunk_hash(&bytes),
                    c.len,
                    c.hash
                ),
            ));
        }
        files.push(bytes);
    }
    Ok(blob.encode_with(blob.full, |i, _| Some(files[i].as_slice())))
}

/// Deletes every file in `chunk_dir` not in `keep` (chunks no retained checkpoint references,
/// and leftovers of interrupted writes). Returns how many it deleted.
pub(crate) fn collect_garbage(chunk_dir: &Path, keep: &HashSet<String>) -> Result<usize> {
    let entries = match fs::read_dir(chunk_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(chunk_dir, e)),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(chunk_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_dir(chunk_dir)?;
    }
    Ok(deleted)
}

/// Makes the chunks `files` of a checkpoint available in `target` (a savepoint's chunk
/// directory): hard links where possible, copies otherwise, fsynced.
pub(crate) fn share(from: &Path, target: &Path, files: &[FileEntry]) -> Result<()> {
    fs::create_dir_all(target).map_err(|e| Error::io(target, e))?;
    for f in files {
        let (src, dst) = (from.join(&f.name), target.join(&f.name));
        if fs::metadata(&dst).is_ok_and(|m| m.len() == f.len) {
            continue;
        }
        if fs::hard_link(&src, &dst).is_err() {
            let bytes = fs::read(&src).map_err(|e| Error::io(&src, e))?;
            write_atomic(target, &f.name, &bytes)?;
        }
    }
    sync_dir(target)
}
