//! Restore by operator id: maps the snapshots of a [`CompletedCheckpoint`] onto the tasks of a
//! job, at the parallelism it was taken at or another one (rescaling).
//!
//! A task whose name, subtask, parallelism and operator ids are those of a snapshot gets that
//! snapshot back unchanged (in-flight data and the finished flag included). Any other task is
//! assembled per operator id:
//!
//! - an operator the checkpoint does not know starts fresh (a new operator);
//! - at the parallelism it was checkpointed at, subtask `s` gets old subtask `s`'s state;
//! - at another parallelism, state that was `None` everywhere (a stateless operator) stays so,
//!   and otherwise the operator's [`Redistribution`] rule decides: key groups by ownership
//!   ([`keys::key_group_range`]), list round robin, union to every subtask, broadcast of
//!   subtask 0; [`Redistribution::Refuse`] (the default) is an error naming the operator.
//!
//! Refused, with an error naming what: a checkpoint of another key-group count; a source at
//! another parallelism (its read positions are not redistributable); a changed task whose
//! checkpoint holds in-flight data (unaligned) or a finished task; and state for an operator
//! id the job does not have (renamed? keep its id with `.uid(..)`). A restore that cannot be
//! mapped is refused, never silently wrong.

use std::collections::HashMap;

use super::parts::StateParts;
use super::{CompletedCheckpoint, TaskSnapshot};
use crate::error::{Error, Result};
use crate::keys::key_group_range;
use crate::operator::Redistribution;
use crate::source::SourcePosition;

/// One task of the job being restored: its name and where it sits.
#[derive(Debug, Clone)]
pub(crate) struct TaskSlot<'a> {
    pub(crate) name: &'a str,
    pub(crate) subtask: usize,
    pub(crate) parallelism: usize,
    pub(crate) source: Option<&'a str>,
    /// Operator ids of the chain stages with their redistribution rules.
    pub(crate) operators: Vec<(&'a str, Redistribution)>,
}

/// The snapshots of one operator id in a checkpoint, by old subtask.
struct Old<'c> {
    parallelism: usize,
    states: Vec<Option<Option<&'c [u8]>>>,
    positions: Vec<Option<&'c SourcePosition>>,
    finished: bool,
}

impl<'c> Old<'c> {
    fn new(parallelism: usize) -> Self {
        Old {
            parallelism,
            states: vec![None; parallelism],
            positions: vec![None; parallelism],
            finished: false,
        }
    }

    fn has_state(&self) -> bool {
        self.states.iter().any(|s| matches!(s, Some(Some(_))))
            || self.positions.iter().any(Option::is_some)
    }
}

/// Maps `checkpoint` onto `tasks` (every task of the job when `whole_job`, else a subset, as an
/// approximate restart of one task): one snapshot per task, `None` for a task with nothing to
/// restore. See [the module docs](self) for the rules and what is refused.
pub(crate) fn map_checkpoint(
    checkpoint: &CompletedCheckpoint,
    key_groups: u32,
    tasks: &[TaskSlot<'_>],
    whole_job: bool,
) -> Result<Vec<Option<TaskSnapshot>>> {
    let epoch = checkpoint.epoch;
    if checkpoint.key_groups != key_groups {
        return Err(Error::config(
            "key-groups",
            format!(
                "checkpoint {epoch} was taken with {} key groups, the job has {key_groups}: \
                 the number of key groups cannot change across a restore",
                checkpoint.key_groups
            ),
        ));
    }
    let (ops, sources) = index(checkpoint)?;
    let by_name: HashMap<&str, &TaskSnapshot> = checkpoint
        .tasks
        .iter()
        .map(|t| (t.task.as_str(), t))
        .collect();
    let changed = tasks
        .iter()
        .any(|t| !by_name.get(t.name).is_some_and(|old| same_layout(old, t)))
        || (whole_job && checkpoint.tasks.len() != tasks.len());
    if let Some(t) = checkpoint.tasks.iter().find(|t| t.inflight.is_some()) {
        if changed {
            // in-flight data belongs to the channels of the old topology
            return Err(Error::config(
                format!("{}.restore", t.task),
                format!(
                    "checkpoint {epoch} holds in-flight data of unaligned snapshots (task `{}`), \
                     which cannot be restored onto a changed topology or parallelism: restore \
                     from an aligned checkpoint or savepoint",
                    t.task
                ),
            ));
        }
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Some(old) = by_name.get(task.name).filter(|old| same_layout(old, task)) {
            out.push(Some((*old).clone()));
            continue;
        }
        out.push(assemble(checkpoint, key_groups, task, &ops, &sources)?);
    }
    if whole_job {
        refuse_orphans(checkpoint, tasks, &ops, &sources)?;
    }
    Ok(out)
}

fn same_layout(old: &TaskSnapshot, task: &TaskSlot<'_>) -> bool {
    old.subtask == task.subtask
        && old.parallelism == task.parallelism
        && old.source.as_deref() == task.source
        && old.operators.len() == task.operators.len()
        && old
            .operators
            .iter()
            .zip(&task.operators)
            .all(|(a, (b, _))| a == b)
}

type Index<'c> = HashMap<&'c str, Old<'c>>;

/// The checkpoint's state by operator id (operators, sources), checked for consistency.
fn index(checkpoint: &CompletedCheckpoint) -> Result<(Index<'_>, Index<'_>)> {
    let epoch = checkpoint.epoch;
    let corrupt = |m: String| Error::config(format!("checkpoint.{epoch}"), m);
    let mut ops: Index<'_> = HashMap::new();
    let mut sources: Index<'_> = HashMap::new();
    for t in &checkpoint.tasks {
        let stages = t.operators.iter().enumerate().map(|(i, id)| (Some(i), id));
        for (stage, id) in t.source.iter().map(|id| (None, id)).chain(stages) {
            let map = if stage.is_some() {
                &mut ops
            } else {
                &mut sources
            };
            let old = map
                .entry(id.as_str())
                .or_insert_with(|| Old::new(t.parallelism));
            if old.parallelism != t.parallelism || t.subtask >= t.parallelism {
                return Err(corrupt(format!(
                    "operator `{id}` appears at parallelism {} and {} (subtask {})",
                    old.parallelism, t.parallelism, t.subtask
                )));
            }
            if old.states[t.subtask].is_some() {
                return Err(corrupt(format!(
                    "operator `{id}` subtask {} appears twice",
                    t.subtask
                )));
            }
            old.finished |= t.finished;
            old.states[t.subtask] = Some(stage.and_then(|i| t.states.get(i)?.as_deref()));
            if stage.is_none() {
                old.positions[t.subtask] = t.position.as_ref();
            }
        }
    }
    Ok((ops, sources))
}

/// The snapshot of a task whose layout changed, assembled per operator id.
fn assemble(
    checkpoint: &CompletedCheckpoint,
    key_groups: u32,
    task: &TaskSlot<'_>,
    ops: &Index<'_>,
    sources: &Index<'_>,
) -> Result<Option<TaskSnapshot>> {
    let epoch = checkpoint.epoch;
    let (s, p) = (task.subtask, task.parallelism);
    let mut snapshot = TaskSnapshot {
        subtask: s,
        parallelism: p,
        source: task.source.map(str::to_string),
        ..TaskSnapshot::new(task.name)
    };
    let mut any = false;
    let check = |id: &str, old: &Old<'_>| -> Result<()> {
        if old.finished {
            return Err(Error::config(
                format!("{id}.restore"),
                format!(
                    "operator `{id}` had finished in checkpoint {epoch}: a finished task cannot \
                     be restored onto a changed topology or parallelism"
                ),
            ));
        }
        if checkpoint.tasks.iter().any(|t| t.inflight.is_some()) {
            return Err(Error::config(
                format!("{id}.restore"),
                format!(
                    "checkpoint {epoch} holds in-flight data of unaligned snapshots, which cannot \
                     be restored onto a changed topology or parallelism (operator `{id}`): \
                     restore from an aligned checkpoint or savepoint"
                ),
            ));
        }
        Ok(())
    };
    if let Some(id) = task.source {
        if let Some(old) = sources.get(id) {
            check(id, old)?;
            if old.parallelism != p && old.has_state() {
                return Err(Error::config(
                    format!("{id}.parallelism"),
                    format!(
                        "source `{id}` was checkpointed at parallelism {} (checkpoint {epoch}), \
                         the job runs it at {p}: its read positions cannot be redistributed",
                        old.parallelism
                    ),
                ));
            }
            snapshot.position = old.positions.get(s).copied().flatten().cloned();
            any |= snapshot.position.is_some();
        }
    }
    for &(id, rule) in &task.operators {
        snapshot.operators.push(id.to_string());
        let Some(old) = ops.get(id) else {
            snapshot.states.push(None);
            continue;
        };
        check(id, old)?;
        let state = if old.parallelism == p {
            old.states
                .get(s)
                .copied()
                .flatten()
                .flatten()
                .map(<[u8]>::to_vec)
        } else if !old.has_state() {
            None
        } else {
            Some(redistribute(id, rule, old, s, p, key_groups, epoch)?)
        };
        any |= state.is_some();
        snapshot.states.push(state);
    }
    Ok(any.then_some(snapshot))
}

/// The state of new subtask `s` of `p` under `rule`, from every old subtask's.
fn redistribute(
    id: &str,
    rule: Redistribution,
    old: &Old<'_>,
    s: usize,
    p: usize,
    key_groups: u32,
    epoch: crate::message::Epoch,
) -> Result<Vec<u8>> {
    let olds = || old.states.iter().map(|x| x.flatten());
    let parts = || -> Result<Vec<StateParts>> {
        olds()
            .flatten()
            .map(|b| StateParts::decode(b, id))
            .collect()
    };
    let mut out = StateParts::default();
    match rule {
        Redistribution::Refuse => {
            return Err(Error::config(
                format!("{id}.parallelism"),
                format!(
                    "operator `{id}` was checkpointed at parallelism {} (checkpoint {epoch}), the \
                     job runs it at {p}, and its state declares no redistribution rule \
                     (key groups, list, union or broadcast): restore it at parallelism {}",
                    old.parallelism, old.parallelism
                ),
            ))
        }
        Redistribution::Broadcast => {
            return olds().next().flatten().map(<[u8]>::to_vec).ok_or_else(|| {
                Error::config(
                    format!("{id}.restore"),
                    format!("checkpoint {epoch} has no state of subtask 0 of `{id}` to broadcast"),
                )
            })
        }
        Redistribution::KeyGroups => {
            let owned = key_group_range(s, p, key_groups);
            for mut part in parts()? {
                out.meta.append(&mut part.meta);
                for (group, bytes) in part.parts {
                    if group >= key_groups {
                        return Err(Error::config(
                            format!("{id}.state"),
                            format!("key group {group} out of range 0..{key_groups} in checkpoint {epoch}"),
                        ));
                    }
                    if owned.contains(&group) {
                        out.parts.push((group, bytes));
                    }
                }
            }
        }
        Redistribution::List | Redistribution::Union => {
            let mut index = 0usize;
            for mut part in parts()? {
                out.meta.append(&mut part.meta);
                for element in part.parts {
                    if rule == Redistribution::Union || index % p == s {
                        out.parts.push(element);
                    }
                    index += 1;
                }
            }
        }
    }
    Ok(out.encode())
}

/// Refuses a checkpoint holding state of an operator id that no task of the job has.
fn refuse_orphans(
    checkpoint: &CompletedCheckpoint,
    tasks: &[TaskSlot<'_>],
    ops: &Index<'_>,
    sources: &Index<'_>,
) -> Result<()> {
    let known = |id: &str| {
        tasks
            .iter()
            .any(|t| t.source == Some(id) || t.operators.iter().any(|(o, _)| *o == id))
    };
    for (id, old) in ops.iter().chain(sources.iter()) {
        if !known(id) && old.has_state() && !old.finished {
            return Err(Error::config(
                format!("{id}.restore"),
                format!(
                    "checkpoint {} has state of operator `{id}`, which this job does not have \
                     (renamed? keep its id with `.uid(\"{id}\")`)",
                    checkpoint.epoch
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Epoch;

    /// A checkpoint of operator `op` at parallelism `p`, subtask `s` holding `state(s)`.
    fn checkpoint(p: usize, state: impl Fn(usize) -> Option<Vec<u8>>) -> CompletedCheckpoint {
        let tasks = (0..p)
            .map(|s| TaskSnapshot {
                subtask: s,
                parallelism: p,
                operators: vec!["op".into()],
                states: vec![state(s)],
                ..TaskSnapshot::new(format!("op[{s}]"))
            })
            .collect();
        CompletedCheckpoint::new(Epoch(5), tasks)
    }

    fn list(elements: &[u32]) -> Vec<u8> {
        StateParts {
            meta: vec![],
            parts: elements.iter().map(|&e| (e, vec![e as u8])).collect(),
        }
        .encode()
    }

    /// Maps `chk` onto `p` subtasks of `op` with `rule`: each subtask's part tags.
    fn mapped(chk: &CompletedCheckpoint, p: usize, rule: Redistribution) -> Result<Vec<Vec<u32>>> {
        let names: Vec<String> = (0..p).map(|s| format!("op[{s}]")).collect();
        let slots: Vec<TaskSlot<'_>> = (0..p)
            .map(|s| TaskSlot {
                name: &names[s],
                subtask: s,
                parallelism: p,
                source: None,
                operators: vec![("op", rule)],
            })
            .collect();
        let out = map_checkpoint(chk, 128, &slots, true)?;
        out.into_iter()
            .map(|snap| match snap.and_then(|s| s.states[0].clone()) {
                None => Ok(Vec::new()),
                Some(state) => Ok(StateParts::decode(&state, "op")?
                    .parts
                    .into_iter()
                    .map(|(t, _)| t)
                    .collect()),
            })
            .collect()
    }

    #[test]
    fn list_state_is_dealt_round_robin_and_union_goes_everywhere() -> Result<()> {
        let chk = checkpoint(2, |s| Some(list(&[s as u32 * 10, s as u32 * 10 + 1])));
        let dealt = mapped(&chk, 3, Redistribution::List)?;
        assert_eq!(dealt, vec![vec![0, 11], vec![1], vec![10]]);
        let union = mapped(&chk, 3, Redistribution::Union)?;
        assert!(union.iter().all(|u| *u == vec![0, 1, 10, 11]));
        Ok(())
    }

    #[test]
    fn broadcast_gives_subtask_0_and_key_groups_follow_ownership() -> Result<()> {
        let chk = checkpoint(2, |s| Some(list(&[s as u32 * 100])));
        let names = [
            "op[0]".to_string(),
            "op[1]".to_string(),
            "op[2]".to_string(),
        ];
        let slots: Vec<TaskSlot<'_>> = (0..3)
            .map(|s| TaskSlot {
                name: &names[s],
                subtask: s,
                parallelism: 3,
                source: None,
                operators: vec![("op", Redistribution::Broadcast)],
            })
            .collect();
        for snap in map_checkpoint(&chk, 128, &slots, true)? {
            assert_eq!(snap.and_then(|s| s.states[0].clone()), Some(list(&[0])));
        }
        // groups 0 and 100 of 128: at 3 subtasks [0, 43) [43, 86) [86, 128)
        let groups = mapped(&chk, 3, Redistribution::KeyGroups)?;
        assert_eq!(groups, vec![vec![0], vec![], vec![100]]);
        Ok(())
    }

    #[test]
    fn unmappable_restores_are_refused_naming_the_operator() {
        let chk = checkpoint(2, |s| Some(vec![s as u8]));
        let e = mapped(&chk, 3, Redistribution::Refuse)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("`op`") && e.contains("no redistribution rule")));
        // stateless everywhere: rescales freely
        assert!(mapped(&checkpoint(2, |_| None), 3, Redistribution::Refuse).is_ok());
        let mut unaligned = checkpoint(2, |s| Some(list(&[s as u32])));
        unaligned.tasks[0].inflight = Some(vec![1]);
        let e = mapped(&unaligned, 3, Redistribution::KeyGroups)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("in-flight")));
        let mut finished = checkpoint(2, |s| Some(list(&[s as u32])));
        finished.tasks[1].finished = true;
        let e = mapped(&finished, 3, Redistribution::KeyGroups)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("had finished")));
        let mut other = checkpoint(2, |_| None);
        other.key_groups = 64;
        let e = mapped(&other, 2, Redistribution::KeyGroups)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("64 key groups")));
    }
}
