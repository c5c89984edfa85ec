//! Nexmark events as CSV files that any engine can read, and the sources that read them back.
//!
//! [`write_csv`] writes the first `events` events of a [`NexmarkGenerator`] under a directory:
//!
//! ```text
//! DIR/nexmark.json                 the manifest: events, generator settings, rows and checksum per kind
//! DIR/person/part-00000.csv …      one directory per kind; part k holds the kind's rows of events
//! DIR/auction/part-00000.csv …     [k × part_events, (k + 1) × part_events), in event-time order
//! DIR/bid/part-00000.csv …
//! ```
//!
//! The files have no header; the columns are those of [`NexmarkGenerator::schema`], in that
//! order, times (`date_time`, `expires`) as epoch milliseconds. Each part is written under a
//! `.tmp` name and renamed when complete, so a reader never sees half a part. Reading a kind's
//! directory in name order gives its rows in event-time order; a parallel reader deals the parts
//! to its subtasks in turn (part `k` to subtask `k % p`), so each subtask reads its rows in
//! event-time order and the subtasks stay within a part of each other.
//!
//! The checksum of a kind is the XXH3-64 of its CSV bytes, parts in order: two directories with
//! equal manifests hold the same events, byte for byte.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use super::generator::{NexmarkConfig, NexmarkGenerator, NexmarkKind, SPLIT_ROWS};
use crate::error::{Error, Result};
use crate::source::file::{CsvOptions, CsvSource};
use crate::source::SourceFactory;

/// The manifest's file name in a Nexmark directory.
pub const MANIFEST: &str = "nexmark.json";

/// Default events per part file (every kind is split at the same event numbers).
pub const DEFAULT_PART_EVENTS: u64 = 500_000;

/// What a Nexmark directory holds (its `nexmark.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NexmarkManifest {
    /// Events in the stream (people, auctions and bids together).
    pub events: u64,
    /// The generator's seed.
    pub seed: u64,
    /// Event time of event 0, epoch milliseconds.
    pub base_time_ms: i64,
    /// Events per second of event time.
    pub rate: u64,
    /// Events per part file.
    pub part_events: u64,
    /// One entry per kind, in [`NexmarkKind::ALL`] order.
    pub kinds: Vec<KindFiles>,
}

/// The files of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindFiles {
    /// `person`, `auction` or `bid`: also the directory's name.
    pub kind: String,
    /// Rows over all parts.
    pub rows: u64,
    /// Part files.
    pub parts: u64,
    /// XXH3-64 of the CSV bytes, parts in order, as 16 hex digits.
    pub checksum: String,
}

impl NexmarkManifest {
    /// Reads `dir`'s manifest, refusing one that does not match its kinds' row counts.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let manifest: NexmarkManifest = serde_json::from_str(&text).map_err(|e| {
            Error::config(path.display().to_string(), format!("not a manifest: {e}"))
        })?;
        for kind in NexmarkKind::ALL {
            let rows = manifest.kind(kind).map(|k| k.rows);
            if rows != Some(kind.count(manifest.events)) {
                return Err(Error::config(
                    path.display().to_string(),
                    format!(
                        "{} events hold {} {} rows, the manifest says {rows:?}",
                        manifest.events,
                        kind.count(manifest.events),
                        kind.name()
                    ),
                ));
            }
        }
        Ok(manifest)
    }

    /// The generator settings the files were written with.
    pub fn config(&self) -> NexmarkConfig {
        NexmarkConfig {
            seed: self.seed,
            base_time_ms: self.base_time_ms,
            rate: self.rate,
        }
    }

    /// The entry of `kind`.
    pub fn kind(&self, kind: NexmarkKind) -> Option<&KindFiles> {
        self.kinds.iter().find(|k| k.kind == kind.name())
    }
}

/// A directory of Nexmark CSV files, opened by its manifest.
#[derive(Debug, Clone)]
pub struct NexmarkFiles {
    dir: PathBuf,
    manifest: NexmarkManifest,
}

impl NexmarkFiles {
    /// Opens `dir` (see [the module docs](self)).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = NexmarkManifest::read(&dir)?;
        Ok(NexmarkFiles { dir, manifest })
    }

    /// The manifest.
    pub fn manifest(&self) -> &NexmarkManifest {
        &self.manifest
    }

    /// The directory of `kind`'s parts.
    pub fn kind_dir(&self, kind: NexmarkKind) -> PathBuf {
        self.dir.join(kind.name())
    }

    /// A source factory reading `kind`'s parts (parts dealt to subtasks in turn); a malformed
    /// line is a dead letter with its file and line.
    pub fn source(&self, kind: NexmarkKind) -> SourceFactory {
        CsvSource::factory(
            CsvOptions::new(self.kind_dir(kind))
                .with_header(false)
                .with_schema(NexmarkGenerator::schema(kind)),
        )
    }
}

/// Writes the first `events` events of `generator` under `dir` in parts of `part_events` events
/// (see [the module docs](self)); returns the manifest, also written to `dir`. Refuses a `dir`
/// whose kind directories already hold files.
pub fn write_csv(
    generator: &NexmarkGenerator,
    events: u64,
    part_events: u64,
    dir: &Path,
) -> Result<NexmarkManifest> {
    if part_events == 0 {
        return Err(Error::config("part-events", "at least 1 event per part"));
    }
    let mut kinds = Vec::new();
    for kind in NexmarkKind::ALL {
        kinds.push(write_kind(generator, kind, events, part_events, dir)?);
    }
    let config = generator.config();
    let manifest = NexmarkManifest {
        events,
        seed: config.seed,
        base_time_ms: config.base_time_ms,
        rate: config.rate,
        part_events,
        kinds,
    };
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::Internal(format!("manifest: {e}")))?;
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))?;
    Ok(manifest)
}

/// Writes `kind`'s parts under `dir/<kind>`.
fn write_kind(
    generator: &NexmarkGenerator,
    kind: NexmarkKind,
    events: u64,
    part_events: u64,
    dir: &Path,
) -> Result<KindFiles> {
    let kind_dir = dir.join(kind.name());
    std::fs::create_dir_all(&kind_dir).map_err(|e| Error::io(&kind_dir, e))?;
    let existing = std::fs::read_dir(&kind_dir)
        .map_err(|e| Error::io(&kind_dir, e))?
        .next()
        .is_some();
    if existing {
        return Err(Error::config(
            "out",
            format!(
                "{} already holds files: write to an empty directory",
                kind_dir.display()
            ),
        ));
    }
    let mut hash = Xxh3::new();
    let parts = events.div_ceil(part_events);
    for part in 0..parts {
        let start = kind.count(part * part_events);
        let end = kind.count(((part + 1) * part_events).min(events));
        let path = kind_dir.join(format!("part-{part:05}.csv"));
        write_part(generator, kind, start..end, &path, &mut hash)?;
    }
    Ok(KindFiles {
        kind: kind.name().to_string(),
        rows: kind.count(events),
        parts,
        checksum: format!("{:016x}", hash.digest()),
    })
}

/// Writes `kind`'s rows `rows` to `path` (through `path.tmp`), hashing the bytes.
fn write_part(
    generator: &NexmarkGenerator,
    kind: NexmarkKind,
    rows: std::ops::Range<u64>,
    path: &Path,
    hash: &mut Xxh3,
) -> Result<()> {
    let tmp = path.with_extension("csv.tmp");
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash,
    };
    let mut csv = arrow::csv::WriterBuilder::new()
        .with_header(false)
        .build(out);
    let mut at = rows.start;
    while at < rows.end {
        let len = (rows.end - at).min(SPLIT_ROWS as u64) as usize;
        csv.write(&generator.batch(kind, at, len)?)?;
        at += len as u64;
    }
    let mut out = csv.into_inner();
    out.inner.flush().map_err(|e| Error::io(&tmp, e))?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// A writer that hashes what it writes.
struct Hashing<'a, W> {
    inner: W,
    hash: &'a mut Xxh3,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
