//! Byte-range splits of one file for parallel reading, and the snapshot of a growing directory
//! that the hybrid source starts from.
//!
//! Subtask `i` of `p` owns the records that *start* in `[i*len/p, (i+1)*len/p)`. Where records
//! start is decided by the [framing](super::framing) rules from the file's first byte (a CSV
//! quoted field may hold newlines, so a byte in the middle of a file cannot tell), so each
//! subtask scans the file up to its range start, counting lines on the way: line numbers stay
//! exact. It reads through the record that crosses its range end.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use super::framing::{Framing, Scanner};
use super::reader::{terminator_of, ReadPos, Root, StopAt};
use crate::error::{Error, Result};

const SCAN_CHUNK: usize = 1 << 20;

/// Scans the first `limit` bytes of `path` record by record: after each record terminator,
/// `on_record(next_start, lines_before_it)`; the scan stops when that returns `false`.
/// Records that end before byte `skip_below - 1` are only counted, not reported: a stretch of
/// whole records without a quote byte is skipped at memchr speed (its records are its lines).
/// Returns the lines before the end of the last complete record scanned.
fn walk(
    path: &Path,
    framing: Framing,
    limit: u64,
    skip_below: u64,
    mut on_record: impl FnMut(u64, u64) -> bool,
) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut scanner = Scanner::new(framing);
    let (mut at, mut lines) = (0u64, 0u64);
    // whether the scanner stands at the start of a record
    let mut fresh = true;
    while at < limit {
        let want = ((limit - at) as usize).min(buf.len());
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        let mut i = 0;
        // bytes `..skippable` lie before `skip_below - 1`: records ending there start < skip_below
        let skippable = (skip_below.saturating_sub(1).saturating_sub(at)).min(n as u64) as usize;
        if fresh && skippable > 0 {
            let stretch = &buf[..skippable];
            let unquoted = framing
                .csv
                .is_none_or(|(q, _)| memchr::memchr(q, stretch).is_none());
            if let (true, Some(last)) = (unquoted, memchr::memrchr(framing.term, stretch)) {
                lines += memchr::memchr_iter(framing.term, &stretch[..=last]).count() as u64;
                i = last + 1;
            }
        }
        while let Some(j) = scanner.feed(&buf[i..n]) {
            lines += scanner.lines();
            scanner.reset();
            i += j + 1;
            if !on_record(at + i as u64, lines) {
                return Ok(lines);
            }
        }
        fresh = i == n;
        at += n as u64;
    }
    Ok(lines)
}

/// The first record start at or after `target` in `path` (the file length when none), and
/// the lines before it.
pub(crate) fn record_start_from(path: &Path, framing: Framing, target: u64) -> Result<(u64, u64)> {
    if target == 0 {
        return Ok((0, 0));
    }
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let mut found = None;
    let lines = walk(path, framing, len, target, |next, lines| {
        if next >= target {
            found = Some((next, lines));
            return false;
        }
        true
    })?;
    Ok(found.unwrap_or((len, lines)))
}

/// The end of the last complete record in the first `size` bytes of `path` (0 when there is
/// none) and the lines before it: where a file that may be half-way through a write is cut.
pub(crate) fn last_record_end(path: &Path, framing: Framing, size: u64) -> Result<(u64, u64)> {
    let mut last = (0, 0);
    walk(path, framing, size, 0, |next, lines| {
        last = (next, lines);
        true
    })?;
    Ok(last)
}

/// Subtask `i` of `p` over the single file `path`: where it starts and where it stops.
/// `csv` is the `(quote, delimiter)` of a CSV file, `None` for JSON lines.
pub(crate) fn file_split(
    path: &Path,
    csv: Option<(u8, u8)>,
    i: usize,
    p: usize,
) -> Result<(ReadPos, Option<StopAt>)> {
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
    let framing = Framing {
        term: terminator_of(path)?,
        csv,
    };
    let (p64, i64_) = (p.max(1) as u64, i as u64);
    let (start, line) = record_start_from(path, framing, i64_ * len / p64)?;
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
/// the end of its last complete record. Returns the position just after it (file, offset,
/// line), where a follower takes over. `None` when there are no files yet.
pub(crate) fn snapshot_end(root: &Root, csv: Option<(u8, u8)>) -> Result<Option<ReadPos>> {
    let Some(last) = root.list(true)?.pop() else {
        return Ok(None);
    };
    let path = root.path_of(&last);
    let size = std::fs::metadata(&path)
        .map_err(|e| Error::io(&path, e))?
        .len();
    let framing = Framing {
        term: terminator_of(&path)?,
        csv,
    };
    let (offset, line) = last_record_end(&path, framing, size)?;
    Ok(Some(ReadPos {
        file: last,
        offset,
        line,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LF: Framing = Framing {
        term: b'\n',
        csv: Some((b'"', b',')),
    };

    #[test]
    fn record_starts_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"ab\ncd\nef").unwrap();
        assert_eq!(record_start_from(&p, LF, 0).unwrap(), (0, 0));
        assert_eq!(record_start_from(&p, LF, 1).unwrap(), (3, 1));
        assert_eq!(
            record_start_from(&p, LF, 3).unwrap(),
            (3, 1),
            "a record starting on the boundary"
        );
        assert_eq!(record_start_from(&p, LF, 4).unwrap(), (6, 2));
        assert_eq!(record_start_from(&p, LF, 7).unwrap(), (8, 2));
        assert_eq!(last_record_end(&p, LF, 8).unwrap(), (6, 2));
        assert_eq!(last_record_end(&p, LF, 6).unwrap(), (6, 2));
        assert_eq!(last_record_end(&p, LF, 2).unwrap(), (0, 0));
        let end = snapshot_end(&Root::new(dir.path()), Some((b'"', b',')))
            .unwrap()
            .unwrap();
        assert_eq!((end.file.as_str(), end.offset, end.line), ("f", 6, 2));
    }

    /// `record_start_from` without the fast path: every record reported.
    fn record_start_slow(p: &Path, framing: Framing, target: u64) -> (u64, u64) {
        let len = std::fs::metadata(p).unwrap().len();
        let mut found = None;
        let lines = walk(p, framing, len, 0, |next, lines| {
            found = Some((next, lines)).filter(|_| next >= target);
            found.is_none()
        })
        .unwrap();
        found.unwrap_or((len, lines))
    }

    #[test]
    fn skipping_unquoted_stretches_finds_the_same_record_starts_and_lines() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.csv");
        for seed in 0..3u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            // ~2.5 MB over three scan chunks; quoted fields with newlines in some stretches only
            let mut text = Vec::new();
            while text.len() < 5 * SCAN_CHUNK / 2 {
                let quoted = (text.len() / (SCAN_CHUNK / 3)) % 2 == 1 && rng.random_bool(0.05);
                match quoted {
                    true => text.extend_from_slice(b"1,\"x\ny,\"\"z\",2\n"),
                    false => text.extend_from_slice(
                        format!(
                            "{},v{}\n",
                            rng.random_range(0..99),
                            rng.random_range(0..9999)
                        )
                        .as_bytes(),
                    ),
                }
            }
            std::fs::write(&p, &text).unwrap();
            for framing in [
                LF,
                Framing {
                    term: b'\n',
                    csv: None,
                },
            ] {
                for _ in 0..25 {
                    let target = rng.random_range(1..text.len() as u64 + 2);
                    assert_eq!(
                        record_start_from(&p, framing, target).unwrap(),
                        record_start_slow(&p, framing, target),
                        "seed {seed}, target {target}, {framing:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_split_never_starts_inside_a_quoted_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.csv");
        std::fs::write(&p, b"h\n\"a\nb\nc\"\nd\n").unwrap();
        // bytes 3..=8 lie inside the quoted field that starts at 2
        for target in 3..=9 {
            assert_eq!(record_start_from(&p, LF, target).unwrap(), (10, 4));
        }
        assert_eq!(last_record_end(&p, LF, 8).unwrap(), (2, 1));
    }
}
