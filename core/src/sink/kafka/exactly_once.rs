//! The exactly-once Kafka sink's staging and idempotent commit (see [the sink's
//! docs](super)): rows of an epoch are staged in a file of the subtask ([`EpochParts`]), and
//! produced only when the epoch's checkpoint completed.
//!
//! Files of subtask `s` in the staging directory `DIR/<sink>/`:
//!
//! - `.inprogress-<s>.eo` — the messages since the last barrier ([`staging`](super::staging)
//!   format);
//! - `.pending-<s>-<epoch>.eo` — sealed by `pre_commit` (footer, fsync, rename);
//! - `part-<s>-<epoch>.eo` — the checkpoint of `epoch` completed: `commit` renamed it and is
//!   producing it (or a crash interrupted that);
//! - `.offsets-<s>-<epoch>` — each partition's start offset, written (fsynced) before the
//!   first message of the epoch is produced.
//!
//! Committing a part: with no offsets file, record one and produce every message; with one
//! (an earlier attempt began producing), read the partitions back from the recorded offsets
//! and produce only the messages whose identity headers are not there. Once every message is
//! acknowledged, the part and then its offsets file are deleted. A restore reconciles the
//! files as the file sinks do (pending epochs up to the restored checkpoint become parts,
//! later ones are deleted: replay writes them again), then the recovery commit produces every
//! part left.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;

use super::readback::{self, MessageId};
use super::staging::{StageWriter, Staged};
use super::writer::KafkaWriter;
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::operator::TaskInfo;
use crate::sink::epoch_parts::EpochParts;
use crate::sink::file_target::{sync_dir, FileTarget};
use crate::source::kafka::KafkaSourceOptions;

/// Where a [`CommitFault`] fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFaultPoint {
    /// At the start of the subtask's `after_commits + 1`-th commit that has staged rows to
    /// produce: the checkpoint completed, nothing of the epoch was produced.
    BeforeProducing {
        /// Commits with staged rows that succeed first.
        after_commits: u64,
    },
    /// Once `after_messages` messages of the subtask's commits were produced and
    /// acknowledged (so they are in the topic), before the next one.
    BetweenProduces {
        /// Messages produced first.
        after_messages: u64,
    },
}

/// An injected failure inside an exactly-once commit, for fault tests: subtask `subtask` fails
/// its commit at `point`, once per value (clones share `fired`, so every attempt of a job
/// sees the same fault).
#[derive(Debug, Clone)]
pub struct CommitFault {
    /// The sink subtask that fails.
    pub subtask: usize,
    /// Where it fails.
    pub point: CommitFaultPoint,
    /// Whether it fired (shared by every attempt of the job).
    pub fired: Arc<AtomicBool>,
}

impl CommitFault {
    /// Subtask `subtask` fails its commit at `point`.
    pub fn new(subtask: usize, point: CommitFaultPoint) -> Self {
        CommitFault {
            subtask,
            point,
            fired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether it fired.
    pub fn has_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Whether it is due now (and, if so, marks it fired): `commits` commits with staged rows
    /// began and `produced` messages were produced by subtask `subtask`, `starting` at the
    /// start of a commit with staged rows.
    fn due(&self, subtask: usize, commits: u64, produced: u64, starting: bool) -> bool {
        let at = match self.point {
            CommitFaultPoint::BeforeProducing { after_commits } => {
                starting && commits > after_commits
            }
            CommitFaultPoint::BetweenProduces { after_messages } => {
                !starting && produced >= after_messages
            }
        };
        subtask == self.subtask && at && !self.fired.swap(true, Ordering::SeqCst)
    }
}

/// One subtask's staged epochs and commits.
pub(super) struct ExactlyOnce {
    parts: EpochParts<FileTarget>,
    stage: Option<StageWriter>,
    sink: Arc<str>,
    subtask: usize,
    /// Reads start offsets and read-backs (created on first use).
    probe: Option<BaseConsumer>,
    probe_options: KafkaSourceOptions,
    /// A staged file being committed (reused).
    bytes: Vec<u8>,
    /// Which messages of the epoch being re-committed are in the topic (reused).
    present: Vec<bool>,
    fault: Option<CommitFault>,
    /// Messages produced by this subtask's commits (the fault counts them).
    produced: u64,
    /// Commits that had staged rows to produce (the fault counts them).
    commits: u64,
    timeout: Duration,
}

impl std::fmt::Debug for ExactlyOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactlyOnce")
            .field("parts", &self.parts)
            .field("produced", &self.produced)
            .finish()
    }
}

/// The path [`EpochParts`] takes for sink `sink` under `dir` (the name made file-safe): its
/// files live in `dir/<sink>/` and end in `.eo`.
fn sink_dir(dir: &Path, sink: &str) -> PathBuf {
    let safe: String = sink
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect();
    dir.join(format!("{safe}.eo"))
}

impl ExactlyOnce {
    /// Opens subtask `task`'s staging under `dir`, reconciled with `restored`. Staged epochs
    /// of subtasks the parallelism no longer has are refused (they could not be committed).
    pub(super) fn open(
        dir: &Path,
        task: &TaskInfo,
        restored: Option<Epoch>,
        probe_options: KafkaSourceOptions,
        fault: Option<CommitFault>,
        timeout: Duration,
    ) -> Result<Self> {
        let parts = EpochParts::open(&sink_dir(dir, &task.operator), task.subtask, restored)?;
        check_no_orphans(parts.dir(), task.parallelism)?;
        remove_stale_offsets(&parts, task.subtask)?;
        Ok(ExactlyOnce {
            parts,
            stage: None,
            sink: task.operator.clone(),
            subtask: task.subtask,
            probe: None,
            probe_options,
            bytes: Vec::new(),
            present: Vec::new(),
            fault,
            produced: 0,
            commits: 0,
            timeout,
        })
    }

    /// Stages one message of the current epoch.
    pub(super) fn stage(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        payload: &[u8],
    ) -> Result<()> {
        let (file, fresh) = self.parts.writer()?;
        let path = file.path().to_path_buf();
        if fresh {
            self.stage = Some(StageWriter::begin(file.writer(), &path)?);
        }
        match &mut self.stage {
            Some(stage) => stage.push(file.writer(), &path, partition, key, payload),
            None => Err(Error::Internal("kafka staging without a writer".into())),
        }
    }

    /// Completes the in-progress file (footer) and seals it as `epoch`.
    pub(super) fn pre_commit(&mut self, epoch: Epoch) -> Result<()> {
        self.finish_stage()?;
        self.parts.pre_commit(epoch)
    }

    fn finish_stage(&mut self) -> Result<()> {
        if let (Some(stage), Some(file)) = (self.stage.take(), self.parts.in_progress()) {
            let path = file.path().to_path_buf();
            stage.finish(file.writer(), &path)?;
        }
        Ok(())
    }

    /// Produces every staged epoch up to `epoch` (the checkpoint completed), idempotently.
    pub(super) fn commit(&mut self, epoch: Epoch, out: &mut KafkaWriter) -> Result<()> {
        if self.parts.sealed_upto(epoch) {
            self.commits += 1;
            let (commits, produced) = (self.commits, self.produced);
            if let Some(f) = self
                .fault
                .as_ref()
                .filter(|f| f.due(self.subtask, commits, produced, true))
            {
                return Err(out.err(format!(
                    "injected fault at the start of the commit of epoch {} ({f:?})",
                    epoch.0
                )));
            }
        }
        self.parts.commit(epoch)?;
        for e in self.parts.published()? {
            if e <= epoch.0 {
                self.produce_part(e, out)?;
            }
        }
        Ok(())
    }

    /// The input ended: the rows since the last barrier become the next epoch's part, and
    /// every part is produced.
    pub(super) fn close(&mut self, out: &mut KafkaWriter) -> Result<()> {
        self.finish_stage()?;
        self.parts.close()?;
        self.commit(Epoch(u64::MAX), out)
    }

    fn offsets_path(&self, epoch: u64) -> PathBuf {
        self.parts
            .dir()
            .join(format!(".offsets-{:05}-{epoch:010}", self.subtask))
    }

    fn probe(&mut self) -> Result<&BaseConsumer> {
        match self.probe {
            Some(ref p) => Ok(p),
            None => Ok(self.probe.insert(readback::probe(&self.probe_options)?)),
        }
    }

    /// Produces the part of `epoch`: every message, or (after an interrupted attempt) those not
    /// found in the topic; then deletes the part and its offsets.
    fn produce_part(&mut self, epoch: u64, out: &mut KafkaWriter) -> Result<()> {
        let path = self.parts.part_path(epoch);
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        let read = fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
            .map_err(|e| Error::io(&path, e));
        let result = read.and_then(|_| self.produce_staged(epoch, &path, &bytes, out));
        self.bytes = bytes;
        result?;
        fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        let offsets = self.offsets_path(epoch);
        fs::remove_file(&offsets).map_err(|e| Error::io(&offsets, e))?;
        sync_dir(&path)
    }

    fn produce_staged(
        &mut self,
        epoch: u64,
        path: &Path,
        bytes: &[u8],
        out: &mut KafkaWriter,
    ) -> Result<()> {
        let staged = Staged::parse(bytes, path)?;
        let offsets = self.offsets_path(epoch);
        let (name, subtask) = (self.sink.clone(), self.subtask as u64);
        let sink: &[u8] = name.as_bytes();
        let id = move |seq| MessageId {
            sink,
            subtask,
            epoch,
            seq,
        };
        let mut present = std::mem::take(&mut self.present);
        present.clear();
        present.resize(staged.count() as usize, false);
        let found = match readback::read_start(&offsets)? {
            // an earlier attempt began producing this epoch: what landed is not produced again
            Some(start) => {
                let (options, timeout) = (self.probe_options.clone(), self.timeout);
                let probe = self.probe()?;
                readback::read_back(&options, probe, &start, id(0), &mut present, timeout)
            }
            None => {
                let options = self.probe_options.clone();
                let partitions = out.partitions();
                let probe = self.probe()?;
                readback::record_start(&options, probe, partitions, &offsets)
            }
        };
        let result = found.and_then(|()| {
            for (seq, message) in staged.iter().enumerate() {
                if present[seq] {
                    continue;
                }
                let m = message.map_err(|e| Error::Internal(format!("verified staging: {e}")))?;
                out.send_to(
                    Some(m.partition),
                    m.key,
                    m.payload,
                    Some(id(seq as u64).headers()),
                )?;
                self.produced += 1;
                self.maybe_fail(epoch, out)?;
            }
            out.flush(&format!("commit of epoch {epoch}"))
        });
        self.present = present;
        result
    }

    /// The injected [`CommitFault`] between produces, when due: what was sent is flushed (in
    /// the topic), then the commit fails.
    fn maybe_fail(&mut self, epoch: u64, out: &KafkaWriter) -> Result<()> {
        let (commits, produced) = (self.commits, self.produced);
        match &self.fault {
            Some(f) if f.due(self.subtask, commits, produced, false) => {
                out.flush("the injected commit fault")?;
                Err(out.err(format!(
                    "injected fault in the commit of epoch {epoch}, after {produced} messages"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// Deletes subtask `subtask`'s offsets files whose part is gone (committed: a crash came
/// between the two deletions) and unfinished offsets writes.
fn remove_stale_offsets(parts: &EpochParts<FileTarget>, subtask: usize) -> Result<()> {
    let dir = parts.dir();
    let prefix = format!(".offsets-{subtask:05}-");
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let stale = match rest.parse::<u64>() {
            Ok(epoch) => !parts.part_path(epoch).exists(),
            Err(_) => rest.ends_with(".tmp"),
        };
        if stale {
            let p = entry.path();
            fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

/// Refuses a staging directory holding files of subtasks `parallelism` and above: their staged
/// epochs would never be committed (a gap) at this parallelism.
fn check_no_orphans(dir: &Path, parallelism: usize) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rest = ["part-", ".pending-", ".offsets-"]
            .iter()
            .find_map(|p| name.strip_prefix(p));
        let subtask = rest
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(s) = subtask.filter(|s| *s >= parallelism) {
            return Err(Error::config(
                format!("kafka sink staging {}", dir.display()),
                format!(
                    "{name} is staged output of subtask {s}, which a sink of parallelism \
                     {parallelism} does not have: restore at the parallelism it was written \
                     with, so that its epochs are committed"
                ),
            ));
        }
    }
    Ok(())
}
