//! What a worker process tells its supervisor: one JSON object per line on its stdout.
//!
//! ```text
//! {"event":"started","worker":1,"pid":4242}
//! {"event":"restored","rows":52224}          (resumed from a checkpoint holding that many rows)
//! {"event":"rows","rows":53248}              (after every trained micro-batch: rows so far)
//! {"event":"finished","rows":100000,"records_lost":0,"records_replayed":0,"restarts":0,"metrics":{"logloss":0.41}}
//! ```
//!
//! `rows` counts on across restarts: a restored process starts from the checkpoint's count,
//! so the supervisor knows from the dead process's last `rows` line and the new one's
//! `restored` line exactly how many rows are trained twice. Lines are written (and flushed)
//! as the events happen, so what a process said before a `kill -9` is still in the pipe.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

/// One line of the worker protocol (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case", deny_unknown_fields)]
pub enum WorkerLine {
    /// The process started as worker `worker`.
    Started {
        /// The worker's index in the job.
        worker: usize,
        /// Its process id.
        pid: u32,
    },
    /// The learner restored a checkpoint holding `rows` trained rows.
    Restored {
        /// Rows trained at the checkpoint.
        rows: u64,
    },
    /// Rows trained so far (the checkpoint's included), after a micro-batch.
    Rows {
        /// The running count.
        rows: u64,
    },
    /// The worker's input ended (or it was stopped) and its final report.
    Finished {
        /// Rows in the final model's progressive evaluation.
        rows: u64,
        /// Rows lost inside the process (an in-process approximate restart).
        records_lost: u64,
        /// Rows replayed inside the process.
        records_replayed: u64,
        /// In-process task restarts.
        restarts: u64,
        /// The final progressive metrics.
        metrics: BTreeMap<String, f64>,
    },
}

impl WorkerLine {
    /// Writes the line and flushes it (errors are the caller's: a closed pipe means the
    /// supervisor is gone).
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut text = serde_json::to_string(self).map_err(std::io::Error::other)?;
        text.push('\n');
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// Parses one line; `None` for a line that is not the protocol's (the supervisor passes
    /// it on to its own stderr).
    pub fn parse(line: &str) -> Option<WorkerLine> {
        serde_json::from_str(line.trim()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_other_text_is_not_a_line() {
        let lines = [
            WorkerLine::Started { worker: 1, pid: 9 },
            WorkerLine::Restored { rows: 5 },
            WorkerLine::Rows { rows: 7 },
            WorkerLine::Finished {
                rows: 7,
                records_lost: 0,
                records_replayed: 2,
                restarts: 1,
                metrics: [("logloss".to_string(), 0.5)].into(),
            },
        ];
        for line in lines {
            let mut out = Vec::new();
            line.write_to(&mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
            assert_eq!(WorkerLine::parse(&text), Some(line));
        }
        assert_eq!(WorkerLine::parse("resuming from checkpoint 3"), None);
        assert_eq!(WorkerLine::parse(r#"{"event":"rows"}"#), None);
        assert_eq!(
            WorkerLine::parse(r#"{"event":"rows","rows":1,"x":2}"#),
            None
        );
    }
}
