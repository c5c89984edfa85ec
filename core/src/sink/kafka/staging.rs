//! The staging file of one epoch of an exactly-once Kafka sink subtask: the epoch's messages
//! (partition, key, payload) in the order they were written, which is their sequence number.
//!
//! ```text
//! "EDDYKEO1"                                   magic
//! per message:  partition: i32 LE (≥ 0)
//!               key length: u32 LE (u32::MAX: no key), key bytes
//!               payload length: u32 LE, payload bytes
//! footer:       -1: i32 LE, message count: u64 LE, xxh3-64 of the messages' bytes: u64 LE,
//!               "EDDYKEOE"
//! ```
//!
//! The footer is written at `pre_commit`, before the file is sealed (fsynced, renamed). A file
//! whose footer, count or checksum does not match is refused as a whole before any message of
//! it is produced ([`Staged::parse`]): a corrupt staging file is never half-committed.

use std::io::Write;
use std::path::Path;

use xxhash_rust::xxh3::Xxh3Default;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"EDDYKEO1";
const END: &[u8; 8] = b"EDDYKEOE";
const FOOTER: usize = 4 + 8 + 8 + 8;
const NO_KEY: u32 = u32::MAX;

/// Writes one epoch's messages into a staging file (see [the module docs](self)).
#[derive(Default)]
pub(super) struct StageWriter {
    hash: Xxh3Default,
    count: u64,
}

impl std::fmt::Debug for StageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageWriter")
            .field("count", &self.count)
            .finish()
    }
}

impl StageWriter {
    /// Starts a file: writes the magic.
    pub(super) fn begin(out: &mut impl Write, path: &Path) -> Result<StageWriter> {
        out.write_all(MAGIC).map_err(|e| Error::io(path, e))?;
        Ok(StageWriter::default())
    }

    /// Appends one message.
    pub(super) fn push(
        &mut self,
        out: &mut impl Write,
        path: &Path,
        partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<()> {
        let too_long = |what: &str, n: usize| {
            Error::kafka(
                format!("staging file {}", path.display()),
                format!("a {what} of {n} bytes does not fit a Kafka message"),
            )
        };
        let key_len = match key {
            None => NO_KEY,
            Some(k) => u32::try_from(k.len())
                .ok()
                .filter(|n| *n != NO_KEY)
                .ok_or_else(|| too_long("key", k.len()))?,
        };
        let payload_len =
            u32::try_from(payload.len()).map_err(|_| too_long("payload", payload.len()))?;
        let mut write = |bytes: &[u8]| -> Result<()> {
            self.hash.update(bytes);
            out.write_all(bytes).map_err(|e| Error::io(path, e))
        };
        write(&partition.to_le_bytes())?;
        write(&key_len.to_le_bytes())?;
        write(key.unwrap_or_default())?;
        write(&payload_len.to_le_bytes())?;
        write(payload)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the footer; the file is complete.
    pub(super) fn finish(self, out: &mut impl Write, path: &Path) -> Result<()> {
        let mut footer = [0u8; FOOTER];
        footer[..4].copy_from_slice(&(-1i32).to_le_bytes());
        footer[4..12].copy_from_slice(&self.count.to_le_bytes());
        footer[12..20].copy_from_slice(&self.hash.digest().to_le_bytes());
        footer[20..].copy_from_slice(END);
        out.write_all(&footer).map_err(|e| Error::io(path, e))
    }
}

/// One staged message, borrowed from the file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StagedMessage<'a> {
    pub(super) partition: i32,
    pub(super) key: Option<&'a [u8]>,
    pub(super) payload: &'a [u8],
}

/// A verified staging file's messages.
#[derive(Debug)]
pub(super) struct Staged<'a> {
    body: &'a [u8],
    count: u64,
}

impl<'a> Staged<'a> {
    /// Checks `bytes` (a whole staging file read from `path`): magic, footer, checksum and
    /// message count. Any mismatch is an error naming the file and what is wrong.
    pub(super) fn parse(bytes: &'a [u8], path: &Path) -> Result<Staged<'a>> {
        let corrupt = |what: &str| {
            Error::kafka(
                format!("staging file {}", path.display()),
                format!("corrupt, refused before producing any of it: {what}"),
            )
        };
        if bytes.len() < MAGIC.len() + FOOTER || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("no staging header or footer (truncated?)"));
        }
        let (body, footer) = bytes[MAGIC.len()..].split_at(bytes.len() - MAGIC.len() - FOOTER);
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&footer[at..at + 8]);
            u64::from_le_bytes(b)
        };
        if footer[..4] != (-1i32).to_le_bytes() || &footer[20..] != END {
            return Err(corrupt("no footer (truncated?)"));
        }
        if xxhash_rust::xxh3::xxh3_64(body) != word(12) {
            return Err(corrupt("checksum mismatch"));
        }
        let staged = Staged {
            body,
            count: word(4),
        };
        let mut n = 0u64;
        for m in staged.iter() {
            m.map_err(|e| corrupt(&e))?;
            n += 1;
        }
        if n != staged.count {
            return Err(corrupt(&format!(
                "{n} messages for a footer count of {}",
                staged.count
            )));
        }
        Ok(staged)
    }

    /// The message count.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// The messages in sequence order.
    pub(super) fn iter(
        &self,
    ) -> impl Iterator<Item = std::result::Result<StagedMessage<'a>, String>> {
        let mut rest = self.body;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            Some(next(&mut rest))
        })
    }
}

/// Splits `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
    if rest.len() < n {
        return Err(format!("a message's {what} runs past the end"));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn u32_at(rest: &mut &[u8], what: &str) -> std::result::Result<u32, String> {
    let mut b = [0u8; 4];
    b.copy_from_slice(take(rest, 4, what)?);
    Ok(u32::from_le_bytes(b))
}

fn next<'a>(rest: &mut &'a [u8]) -> std::result::Result<StagedMessage<'a>, String> {
    let partition = u32_at(rest, "partition")? as i32;
    if partition < 0 {
        return Err(format!("partition {partition}"));
    }
    let key = match u32_at(rest, "key length")? {
        NO_KEY => None,
        n => Some(take(rest, n as usize, "key")?),
    };
    let n = u32_at(rest, "payload length")? as usize;
    let payload = take(rest, n, "payload")?;
    Ok(StagedMessage {
        partition,
        key,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(messages: &[StagedMessage<'_>]) -> Vec<u8> {
        let path = Path::new("t");
        let mut out = Vec::new();
        let mut w = StageWriter::begin(&mut out, path).unwrap();
        for m in messages {
            w.push(&mut out, path, m.partition, m.key, m.payload)
                .unwrap();
        }
        w.finish(&mut out, path).unwrap();
        out
    }

    fn m<'a>(partition: i32, key: Option<&'a [u8]>, payload: &'a [u8]) -> StagedMessage<'a> {
        StagedMessage {
            partition,
            key,
            payload,
        }
    }

    #[test]
    fn messages_come_back_in_order() {
        let want = [
            m(0, Some(b"k1"), b"{}"),
            m(2, None, b""),
            m(1, Some(b""), b"x"),
        ];
        let bytes = file(&want);
        let staged = Staged::parse(&bytes, Path::new("t")).unwrap();
        let got: Vec<_> = staged.iter().map(|m| m.unwrap()).collect();
        assert_eq!(staged.count(), 3);
        assert_eq!(got, want);
    }

    #[test]
    fn a_damaged_file_is_refused_whole() {
        let bytes = file(&[m(0, Some(b"k1"), b"{\"a\":1}"), m(1, None, b"{}")]);
        let path = Path::new("stage/.pending-00000-0000000003.eo");
        // truncated: no footer
        let err = Staged::parse(&bytes[..bytes.len() - 3], path).unwrap_err();
        assert!(
            err.to_string().contains(".pending-00000-0000000003.eo"),
            "{err}"
        );
        // one payload byte flipped: the checksum
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        let err = Staged::parse(&flipped, path).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        // no magic
        assert!(Staged::parse(&bytes[1..], path).is_err());
    }
}
