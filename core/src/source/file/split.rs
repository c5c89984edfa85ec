//! Byte-range splits of one file for parallel reading, and the snapshot of a growing directory
//! that the hybrid source starts from.
//!
//! Subtask `i` of `p` owns the records that *start* in `[i*len/p, (i+1)*len/p)`. It begins at
//! the first line start at or after its range start (scanning from the byte before it, so a
//! line that starts exactly on the boundary is not lost) and reads through the record that
//! crosses its range end. Line numbers stay exact: the newlines before a split's first byte
//! are counted. Splits assume records do not span lines (no quoted newlines in CSV).

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

use memchr::{memchr, memchr_iter, memrchr};

use super::reader::{ReadPos, Root, StopAt};
use crate::error::{Error, Result};

const SCAN_CHUNK: usize = 1 << 20;

fn read_at(file: &mut File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<usize> {
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(path, e))?;
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
}

/// Newlines in the first `upto` bytes of `path`.
pub(crate) fn count_newlines(path: &Path, upto: u64) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; SCAN_CHUNK];
    let (mut at, mut count) = (0u64, 0u64);
    while at < upto {
        let want = ((upto - at) as usize).min(buf.len());
        let n = read_at(&mut file, path, at, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        count += memchr_iter(b'\n', &buf[..n]).count() as u64;
        at += n as u64;
    }
    Ok(count)
}

/// The first line start at or after `start`: 0 for 0, else just past the first newline at or
/// after `start - 1` (the file length when there is none).
pub(crate) fn line_start_from(path: &Path, start: u64) -> Result<u64> {
    if start == 0 {
        return Ok(0);
    }
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = start - 1;
    loop {
        let n = read_at(&mut file, path, at, &mut buf)?;
        if n == 0 {
            return Ok(at);
        }
        if let Some(i) = memchr(b'\n', &buf[..n]) {
            return Ok(at + i as u64 + 1);
        }
        at += n as u64;
    }
}

/// Just past the last newline before `size` (0 when there is none): the end of the last
/// complete line of a file that may be half-way through a write.
pub(crate) fn last_line_end(path: &Path, size: u64) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = size;
    while end > 0 {
        let from = end.saturating_sub(buf.len() as u64);
        let want = (end - from) as usize;
        let n = read_at(&mut file, path, from, &mut buf[..want])?;
        if let Some(i) = memrchr(b'\n', &buf[..n.min(want)]) {
            return Ok(from + i as u64 + 1);
        }
        end = from;
    }
    Ok(0)
}

/// Subtask `i` of `p` over the single file `path`: where it starts and where it stops.
pub(crate) fn file_split(path: &Path, i: usize, p: usize) -> Result<(ReadPos, Option<StopAt>)> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let name = match Root::new(path).list(false)?.pop() {
        Some(n) => n,
        None => {
            return Err(Error::config(
                "path",
                format!("{} is empty", path.display()),
            ))
        }
    };
    let (p64, i64_) = (p.max(1) as u64, i as u64);
    let start = line_start_from(path, i64_ * len / p64)?;
    let line = count_newlines(path, start)?;
    let stop = (i + 1 < p).then(|| StopAt {
        file: name.clone(),
        offset: (i64_ + 1) * len / p64,
    });
    Ok((
        ReadPos {
            file: name,
            offset: start,
            line,
        },
        stop,
    ))
}

/// What a growing input holds now: every file in full except the last, which is cut back to
/// its last complete line. Returns the position just after it (file, offset, line), where a
/// follower takes over. `None` when there are no files yet.
pub(crate) fn snapshot_end(root: &Root) -> Result<Option<ReadPos>> {
    let Some(last) = root.list(true)?.pop() else {
        return Ok(None);
    };
    let path = root.path_of(&last);
    let size = std::fs::metadata(&path)
        .map_err(|e| Error::io(&path, e))?
        .len();
    let offset = last_line_end(&path, size)?;
    let line = count_newlines(&path, offset)?;
    Ok(Some(ReadPos {
        file: last,
        offset,
        line,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_starts_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"ab\ncd\nef").unwrap();
        assert_eq!(line_start_from(&p, 0).unwrap(), 0);
        assert_eq!(line_start_from(&p, 1).unwrap(), 3);
        assert_eq!(
            line_start_from(&p, 3).unwrap(),
            3,
            "a line starting on the boundary"
        );
        assert_eq!(line_start_from(&p, 4).unwrap(), 6);
        assert_eq!(line_start_from(&p, 7).unwrap(), 8);
        assert_eq!(last_line_end(&p, 8).unwrap(), 6);
        assert_eq!(last_line_end(&p, 6).unwrap(), 6);
        assert_eq!(last_line_end(&p, 2).unwrap(), 0);
        assert_eq!(count_newlines(&p, 6).unwrap(), 2);
        let end = snapshot_end(&Root::new(dir.path())).unwrap().unwrap();
        assert_eq!((end.file.as_str(), end.offset, end.line), ("f", 6, 2));
    }
}
