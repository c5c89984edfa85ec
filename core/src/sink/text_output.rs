//! Where a text file sink (CSV, JSON lines) writes: one file per subtask, or — in a
//! checkpointed job — epoch parts published on commit (see [the sink docs](super#two-phase-file-output)).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::epoch_parts::EpochParts;
use super::file_target::{subtask_path, FileTarget};
use crate::error::{Error, Result};
use crate::message::Epoch;
use crate::operator::TaskInfo;

/// Which subtasks' files a text sink (CSV, JSON lines) fsyncs at pre-commit and close, in a
/// job without checkpoints (with checkpoints, epoch parts are always made durable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durable {
    /// Every subtask's file.
    #[default]
    Every,
    /// Subtask 0's only: the files are parts that
    /// [`SplitParts`](super::split_parts::SplitParts) joins into subtask 0's file and syncs
    /// there, so syncing the others first would write them to disk twice.
    FirstOnly,
}

/// The output of one text sink subtask.
#[derive(Debug)]
pub(crate) struct TextOutput {
    /// The sink's configured path.
    path: PathBuf,
    durable: Durable,
    /// Set by [`on_checkpointing`](Self::on_checkpointing): write epoch parts, reconciled
    /// with this checkpoint.
    checkpointing: Option<Option<Epoch>>,
    /// The one file of a job without checkpoints, and whether anything was written to it.
    file: Option<(FileTarget, bool)>,
    /// Whether that file is synced (by `durable`, for this subtask).
    sync: bool,
    parts: Option<EpochParts>,
}

impl Clone for TextOutput {
    /// A clone is unopened, with the same path.
    fn clone(&self) -> Self {
        TextOutput::new(self.path.clone(), self.durable)
    }
}

impl TextOutput {
    /// An unopened output for a sink writing `path`.
    pub(crate) fn new(path: PathBuf, durable: Durable) -> Self {
        TextOutput {
            path,
            durable,
            checkpointing: None,
            file: None,
            sync: true,
            parts: None,
        }
    }

    /// The job takes checkpoints: write epoch parts (see [`Sink::on_checkpointing`](super::Sink::on_checkpointing)).
    pub(crate) fn on_checkpointing(&mut self, restored: Option<Epoch>) {
        self.checkpointing = Some(restored);
    }

    /// Creates the subtask's file, or opens its epoch parts.
    pub(crate) fn open(&mut self, task: &TaskInfo) -> Result<()> {
        match self.checkpointing {
            Some(restored) => {
                self.parts = Some(EpochParts::open(&self.path, task.subtask, restored)?);
            }
            None => {
                self.file = Some((FileTarget::create(subtask_path(&self.path, task))?, false));
                self.sync = self.durable == Durable::Every || task.subtask == 0;
            }
        }
        Ok(())
    }

    /// The file to write the next batch to, and whether nothing was written to it yet (a CSV
    /// sink writes its header then). `sink` names the sink in the error of a use before open.
    pub(crate) fn target(&mut self, sink: &str) -> Result<(&mut FileTarget, bool)> {
        if let Some(parts) = self.parts.as_mut() {
            return parts.writer();
        }
        match self.file.as_mut() {
            Some((file, written)) => Ok((file, !std::mem::replace(written, true))),
            None => Err(Error::Internal(format!("{sink} sink used before open"))),
        }
    }

    /// Seals epoch `epoch` (parts) or makes the file durable.
    pub(crate) fn pre_commit(&mut self, epoch: Epoch) -> Result<()> {
        match (self.parts.as_mut(), self.file.as_mut()) {
            (Some(parts), _) => parts.pre_commit(epoch),
            (None, Some((file, _))) => file.finish(self.sync),
            (None, None) => Ok(()),
        }
    }

    /// Publishes the sealed epochs up to `epoch`.
    pub(crate) fn commit(&mut self, epoch: Epoch) -> Result<()> {
        match self.parts.as_mut() {
            Some(parts) => parts.commit(epoch),
            None => Ok(()),
        }
    }

    /// The input ended: publishes what is left, or makes the file durable.
    pub(crate) fn close(&mut self) -> Result<()> {
        if let Some(mut parts) = self.parts.take() {
            return parts.close();
        }
        match self.file.take() {
            Some((mut file, _)) => file.finish(self.sync),
            None => Ok(()),
        }
    }
}
