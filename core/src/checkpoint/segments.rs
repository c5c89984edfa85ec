//! Segment files of chunked states ([`state::blob`](crate::state::blob)): the store side of
//! incremental checkpoints.
//!
//! A checkpoint directory `chk-<n>/` keeps only references; the chunks live next to it in
//! `segments/`: for each task and chain stage whose chunked state wrote chunks inline, one file
//! `<n>-<xxh3-64 of the task name>-<stage>.seg` holding the magic `EDDYSEG1` and those chunks
//! back to back, in the order the writer gave them their offsets. It is written once
//! (write-then-rename, one fsync) before the checkpoint's manifest, and referenced by every
//! later checkpoint of that task whose chunks are unchanged, as runs of *(epoch, offset,
//! length)*. Each manifest lists the segments it references with length and checksum, so
//! retention deletes a segment only when no retained checkpoint lists it. A savepoint
//! (`savepoints/<name>/`) references `savepoints/segments/`, which retention never touches. On
//! load every referenced segment is read back and its length and checksum checked; a missing
//! or damaged segment, or a reference past its end, refuses the checkpoint with an error
//! naming the file.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use super::format::{self, FileEntry};
use super::store::{corrupt, sync_dir, write_atomic};
use crate::error::{Error, Result};
use crate::state::blob::{declined_reason, is_chunked, BlobWriter, ChunkAt, ChunkedBlob};

/// The directory of segment files, next to the checkpoint directories.
pub(crate) const SEGMENTS: &str = "segments";

const MAGIC: &[u8; 8] = b"EDDYSEG1";

/// The file name of the segment checkpoint `epoch` wrote for stage `stage` of task `task`.
pub(crate) fn segment_name(epoch: u64, task: &str, stage: usize) -> String {
    format!("{epoch}-{:016x}-{stage}.seg", xxh3_64(task.as_bytes()))
}

/// The segment directory of the checkpoint (or savepoint) in `dir`: `dir/../segments`.
pub(crate) fn segment_dir_of(dir: &Path) -> PathBuf {
    dir.parent().unwrap_or(Path::new(".")).join(SEGMENTS)
}

/// What a checkpoint being written knows of the segments.
pub(crate) struct SegmentWrite<'a> {
    /// The segment directory (created with the first segment).
    pub(crate) dir: &'a Path,
    /// The checkpoint being written.
    pub(crate) epoch: u64,
    /// The segments the store's complete checkpoints list: what a reference may point at.
    pub(crate) known: &'a BTreeMap<String, FileEntry>,
    /// Fault injection: fail writing the first segment, half written.
    pub(crate) fail: bool,
}

/// The states of one task as the checkpoint keeps them: a chunked state's inline chunks are
/// written to its segment and replaced by references; every referenced segment must be known
/// and long enough. The segments are added to `used`. A declined state fails the write,
/// naming `task` and the reason.
pub(crate) fn externalize<'s>(
    w: &SegmentWrite<'_>,
    task: &str,
    states: &'s [Option<Vec<u8>>],
    used: &mut BTreeMap<String, FileEntry>,
) -> Result<Cow<'s, [Option<Vec<u8>>]>> {
    let special = |s: &Option<Vec<u8>>| {
        s.as_deref()
            .is_some_and(|b| is_chunked(b) || declined_reason(b).is_some())
    };
    if !states.iter().any(special) {
        return Ok(Cow::Borrowed(states));
    }
    let mut out = Vec::with_capacity(states.len());
    for (stage, state) in states.iter().enumerate() {
        let Some(bytes) = state.as_deref().filter(|_| special(state)) else {
            out.push(state.clone());
            continue;
        };
        if let Some(reason) = declined_reason(bytes) {
            return Err(Error::io(
                w.dir,
                io::Error::other(format!("task `{task}` could not write its state: {reason}")),
            ));
        }
        let what = format!("{task} stage {stage}");
        let blob = ChunkedBlob::parse(bytes, &what)?;
        if blob.chunks.iter().any(|c| c.bytes.is_some()) {
            let name = segment_name(w.epoch, task, stage);
            let entry = write_segment(w, &name, &blob)?;
            used.insert(name, entry);
        }
        check_references(w, task, stage, &blob, used)?;
        let mut writer = BlobWriter::new(blob.full, blob.head, 0);
        for c in &blob.chunks {
            let at = match c.bytes {
                Some(_) => ChunkAt {
                    epoch: w.epoch,
                    offset: c.at.offset,
                },
                None => c.at,
            };
            writer.reference(at, c.len);
        }
        out.push(Some(writer.finish()));
    }
    Ok(Cow::Owned(out))
}

/// Writes the inline chunks of `blob` as the segment `name` (one fsync).
fn write_segment(w: &SegmentWrite<'_>, name: &str, blob: &ChunkedBlob<'_>) -> Result<FileEntry> {
    let data: usize = blob.inline_bytes().map(<[u8]>::len).sum();
    let mut bytes = Vec::with_capacity(MAGIC.len() + data);
    bytes.extend_from_slice(MAGIC);
    blob.inline_bytes().for_each(|b| bytes.extend_from_slice(b));
    fs::create_dir_all(w.dir).map_err(|e| Error::io(w.dir, e))?;
    if w.fail {
        let tmp = w.dir.join(format!(".tmp-{name}"));
        fs::write(&tmp, &bytes[..bytes.len() / 2]).map_err(|e| Error::io(&tmp, e))?;
        return Err(Error::io(
            w.dir,
            io::Error::other("injected fault writing the checkpoint's first segment"),
        ));
    }
    write_atomic(w.dir, name, &bytes)?;
    Ok(FileEntry {
        name: name.to_string(),
        len: bytes.len() as u64,
        xxh3: format::checksum(&bytes),
    })
}

/// Every reference of `blob` (stage `stage` of `task`) points into a segment the store keeps,
/// within its length; the segments are added to `used`.
fn check_references(
    w: &SegmentWrite<'_>,
    task: &str,
    stage: usize,
    blob: &ChunkedBlob<'_>,
    used: &mut BTreeMap<String, FileEntry>,
) -> Result<()> {
    // the end of the data of each referenced segment, by epoch
    let mut ends: HashMap<u64, u64> = HashMap::new();
    for c in blob.chunks.iter().filter(|c| c.bytes.is_none()) {
        let end = match ends.get(&c.at.epoch) {
            Some(&end) => end,
            None => {
                let name = segment_name(c.at.epoch, task, stage);
                let path = w.dir.join(&name);
                let entry = w.known.get(&name).filter(|e| {
                    c.at.epoch < w.epoch && fs::metadata(&path).is_ok_and(|m| m.len() == e.len)
                });
                let Some(entry) = entry else {
                    return Err(corrupt(
                        path,
                        format!(
                            "{task} stage {stage} references segment {name} of checkpoint {}, \
                             which is not in the store",
                            c.at.epoch
                        ),
                    ));
                };
                used.insert(name, entry.clone());
                let end = entry.len.saturating_sub(MAGIC.len() as u64);
                ends.insert(c.at.epoch, end);
                end
            }
        };
        if c.at.offset.checked_add(c.len).is_none_or(|e| e > end) {
            return Err(corrupt(
                w.dir.join(segment_name(c.at.epoch, task, stage)),
                format!(
                    "{task} stage {stage} references {} bytes at {} of a segment of {end} bytes",
                    c.len, c.at.offset
                ),
            ));
        }
    }
    Ok(())
}

/// A state as the operator restores it: a chunked state's references (stage `stage` of
/// `task`) are read from the segments in `dir` that `listed` names, each checked (length and
/// checksum) once; any other state is returned as it is.
pub(crate) fn resolve(
    dir: &Path,
    listed: &[FileEntry],
    task: &str,
    stage: usize,
    state: Vec<u8>,
) -> Result<Vec<u8>> {
    if !is_chunked(&state) {
        return Ok(state);
    }
    let what = format!("{task} stage {stage}");
    let blob = ChunkedBlob::parse(&state, &what)?;
    let mut segments: HashMap<u64, Vec<u8>> = HashMap::new();
    for c in blob.chunks.iter().filter(|c| c.bytes.is_none()) {
        if let std::collections::hash_map::Entry::Vacant(slot) = segments.entry(c.at.epoch) {
            let name = segment_name(c.at.epoch, task, stage);
            slot.insert(read_segment(dir, listed, &name, &what)?);
        }
    }
    // room for what was read (a damaged state's claimed sizes are not trusted)
    let size = state.len() + segments.values().map(Vec::len).sum::<usize>();
    let mut out = BlobWriter::new(blob.full, blob.head, size);
    for c in &blob.chunks {
        let bytes = match c.bytes {
            Some(b) => b,
            None => {
                let data = segments.get(&c.at.epoch).map_or(&[][..], Vec::as_slice);
                let range = usize::try_from(c.at.offset)
                    .ok()
                    .zip(usize::try_from(c.len).ok())
                    .and_then(|(at, len)| {
                        let start = at.checked_add(MAGIC.len())?;
                        data.get(start..start.checked_add(len)?)
                    });
                range.ok_or_else(|| {
                    corrupt(
                        dir.join(segment_name(c.at.epoch, task, stage)),
                        format!(
                            "{what} references {} bytes at {} of a segment of {} bytes",
                            c.len,
                            c.at.offset,
                            data.len().saturating_sub(MAGIC.len())
                        ),
                    )
                })?
            }
        };
        out.inline(bytes);
    }
    Ok(out.finish())
}

/// Reads segment `name` and checks it against its manifest entry.
fn read_segment(dir: &Path, listed: &[FileEntry], name: &str, what: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    let entry = listed.iter().find(|f| f.name == name).ok_or_else(|| {
        corrupt(
            path.clone(),
            format!("segment of {what} is not listed in the manifest"),
        )
    })?;
    let bytes = fs::read(&path).map_err(|e| {
        Error::io(
            &path,
            io::Error::new(
                e.kind(),
                format!("segment of {what} missing or unreadable: {e}"),
            ),
        )
    })?;
    let actual = format::checksum(&bytes);
    if bytes.len() as u64 != entry.len || actual != entry.xxh3 || !bytes.starts_with(MAGIC) {
        return Err(corrupt(
            path,
            format!(
                "segment of {what} is damaged: {} bytes with checksum {actual}, expected {} \
                 bytes with checksum {}",
                bytes.len(),
                entry.len,
                entry.xxh3
            ),
        ));
    }
    Ok(bytes)
}

/// Deletes every file in `dir` not in `keep` (segments no retained checkpoint references, and
/// leftovers of interrupted writes). Returns how many it deleted.
pub(crate) fn collect_garbage(dir: &Path, keep: &HashSet<String>) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            deleted += 1;
        }
    }
    if deleted > 0 {
        sync_dir(dir)?;
    }
    Ok(deleted)
}

/// Makes the segments `files` of a checkpoint available in `target` (a savepoint's segment
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::store::WriteFault;
    use crate::checkpoint::{CheckpointStore, CompletedCheckpoint, TaskSnapshot};
    use crate::message::Epoch;
    use crate::operator::WriteContext;
    use crate::state::ChunkedTable;

    fn checkpoint(table: &mut ChunkedTable<1>, epoch: u64) -> CompletedCheckpoint {
        let ctx = WriteContext {
            epoch: Epoch(epoch),
            durable: Epoch(epoch - 1),
            full: false,
        };
        let mut w = BlobWriter::new(false, b"h", 0);
        table.snapshot().write(&ctx, &mut w);
        let task = TaskSnapshot {
            operators: vec!["t".into()],
            states: vec![Some(w.finish())],
            ..TaskSnapshot::new("t[0]")
        };
        CompletedCheckpoint::new(Epoch(epoch), vec![task])
    }

    fn restored(store: &CheckpointStore, epoch: u64) -> Result<ChunkedTable<1>> {
        let chk = store.load(Epoch(epoch))?;
        let state = chk.tasks[0].states[0].clone().unwrap_or_default();
        ChunkedTable::restore(64, 8, &ChunkedBlob::parse(&state, "t")?.chunks, "t")
    }

    #[test]
    fn a_checkpoint_whose_segment_write_fails_is_never_visible() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = CheckpointStore::open(tmp.path(), 2)?;
        let mut t = ChunkedTable::<1>::new(64, 8);
        t.set(1, [1]);
        store.write(&checkpoint(&mut t, 1))?;
        t.set(2, [2]);
        let failed = store.write_faulty(&checkpoint(&mut t, 2), Some(WriteFault::Segment));
        assert!(failed.is_err());
        // the segment was never durable: no manifest, checkpoint 1 is what a restart finds
        assert_eq!(store.list()?, vec![Epoch(1)]);
        let latest = store.latest()?.map(|c| c.epoch);
        assert_eq!(latest, Some(Epoch(1)));
        assert_eq!(restored(&store, 1)?.get(1), [1]);
        Ok(())
    }

    #[test]
    fn a_reference_past_the_end_of_its_segment_is_refused() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = CheckpointStore::open(tmp.path(), 2)?;
        let mut t = ChunkedTable::<1>::new(64, 8);
        store.write(&checkpoint(&mut t, 1))?;
        let mut w = BlobWriter::new(false, b"h", 0);
        w.reference(
            ChunkAt {
                epoch: 1,
                offset: 7 * 32 + 4,
            },
            32,
        );
        let task = TaskSnapshot {
            operators: vec!["t".into()],
            states: vec![Some(w.finish())],
            ..TaskSnapshot::new("t[0]")
        };
        let e = store
            .write(&CompletedCheckpoint::new(Epoch(2), vec![task]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("32 bytes at 228 of a segment of 256 bytes"),
            "{e}"
        );
        assert!(e.contains(&segment_name(1, "t[0]", 0)), "{e}");
        Ok(())
    }
}
