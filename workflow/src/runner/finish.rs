//! The scheduler's bookkeeping: schedules firing, failure propagation, and deciding when a
//! node can no longer run (so the run can end).

use std::time::Duration;

use tokio::time::Instant;

use super::scheduler::{Mode, Scheduler};
use super::{now_unix, NodeStatus};
use crate::spec::{Cron, Schedule};

impl Scheduler {
    pub(super) fn fail_dependents(&mut self, failed: &str, cause: &str) {
        let dependents: Vec<String> = self
            .wf
            .nodes
            .iter()
            .filter(|n| {
                self.wf.waits_for(n).iter().any(|d| d == failed)
                    || n.triggers.on_new_version.as_deref() == Some(failed)
            })
            .map(|n| n.name.clone())
            .collect();
        for d in dependents {
            let st = self.state.nodes.get(&d).cloned().unwrap_or_default();
            let rt = &self.rt[&d];
            if rt.finished
                || rt.running
                || st.status == NodeStatus::Failed
                || (st.succeeded_once && !rt.queue.is_empty())
            {
                continue;
            }
            if st.succeeded_once {
                continue;
            }
            let msg = format!("upstream node `{failed}` failed: {cause}");
            let n = self.node(&d);
            n.status = NodeStatus::Failed;
            n.error = Some(msg.clone());
            let rt = self.rt.get_mut(&d).expect("known node");
            rt.queue.clear();
            rt.next_tick = None;
            rt.finished = true;
            self.fail_dependents(&d, &msg);
        }
    }

    pub(super) fn on_ticks(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .rt
            .iter()
            .filter(|(_, r)| r.next_tick.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for name in due {
            let Mode::Schedule(schedule) = self.mode(&name) else {
                continue;
            };
            let runs = self.state.nodes.get(&name).map_or(0, |n| n.runs);
            let max = self.spec(&name).triggers.max_runs;
            let rt = self.rt.get_mut(&name).expect("known node");
            let queued = rt.queue.len() as u32 + u32::from(rt.running);
            if max.is_none_or(|m| runs + queued < m) && rt.queue.is_empty() {
                rt.queue.push_back(None);
            }
            rt.next_tick = match schedule {
                Schedule::Every(d) => Some(now + d),
                Schedule::Cron(c) => next_cron_tick(&c, now),
            };
        }
    }

    /// Marks the nodes that can no longer run as finished, until nothing changes (a node
    /// finishing can finish the nodes waiting for it).
    pub(super) fn update_finished(&mut self) {
        loop {
            let before = self.rt.values().filter(|r| r.finished).count();
            self.update_finished_once();
            if self.rt.values().filter(|r| r.finished).count() == before {
                return;
            }
        }
    }

    pub(super) fn update_finished_once(&mut self) {
        let names: Vec<String> = self.rt.keys().cloned().collect();
        // unscheduled nodes first: schedules end when they have all finished
        for pass in 0..2 {
            for name in &names {
                let scheduled = matches!(self.mode(name), Mode::Schedule(_));
                if scheduled != (pass == 1) {
                    continue;
                }
                let rt = &self.rt[name];
                if rt.finished || rt.running || !rt.queue.is_empty() {
                    continue;
                }
                let st = self.state.nodes.get(name).cloned().unwrap_or_default();
                let deps = self.wf.waits_for(self.spec(name));
                let deps_finished = deps.iter().all(|d| self.rt[d].finished);
                let finished = st.status == NodeStatus::Failed
                    || match self.mode(name) {
                        Mode::Once => st.succeeded_once,
                        Mode::Service => {
                            st.runs > rt.service_runs_from || deps_finished && !self.gate_open(name)
                        }
                        Mode::After => {
                            deps_finished && (st.succeeded_once || !self.gate_open(name))
                        }
                        Mode::NewVersion(src) => self.rt[&src].finished && deps_finished,
                        Mode::Schedule(_) => {
                            let max_reached = self
                                .spec(name)
                                .triggers
                                .max_runs
                                .is_some_and(|m| st.runs >= m);
                            let others: Vec<&String> = names
                                .iter()
                                .filter(|n| {
                                    !matches!(self.mode(n), Mode::Schedule(_) | Mode::Service)
                                })
                                .collect();
                            let others_done =
                                !others.is_empty() && others.iter().all(|n| self.rt[*n].finished);
                            max_reached || others_done || (deps_finished && !self.gate_open(name))
                        }
                    };
                if finished {
                    let never_ran =
                        st.status == NodeStatus::Pending && !st.succeeded_once && st.runs == 0;
                    let rt = self.rt.get_mut(name).expect("known node");
                    rt.finished = true;
                    rt.next_tick = None;
                    if never_ran {
                        let n = self.node(name);
                        n.status = NodeStatus::Skipped;
                        n.message = Some("never triggered".into());
                    }
                }
            }
        }
    }

    /// Whether every node but the serving ones has finished.
    pub(super) fn settled(&self) -> bool {
        self.rt
            .iter()
            .all(|(name, r)| r.finished || matches!(self.mode(name), Mode::Service))
    }
}

/// The first tick of a schedule whose gate just opened: an interval runs at once, a cron
/// expression at the next minute it names.
pub(super) fn first_tick(schedule: &Schedule, now: Instant) -> Option<Instant> {
    match schedule {
        Schedule::Every(_) => Some(now),
        Schedule::Cron(c) => next_cron_tick(c, now),
    }
}

/// The next minute `cron` names after now, as an instant (`None`: never again).
fn next_cron_tick(cron: &Cron, now: Instant) -> Option<Instant> {
    let unix = now_unix();
    cron.next_after(unix)
        .map(|at| now + Duration::from_secs(at.saturating_sub(unix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_ticks_at_once_a_cron_at_the_next_minute_it_names() {
        let now = Instant::now();
        assert_eq!(
            first_tick(&Schedule::Every(Duration::from_secs(60)), now),
            Some(now)
        );
        let leap_day = Schedule::Cron(Cron::parse("0 0 29 2 *").unwrap());
        let tick = first_tick(&leap_day, now).unwrap();
        assert!(
            tick > now,
            "a cron schedule does not fire when its gate opens"
        );
        let every_minute = Schedule::Cron(Cron::parse("* * * * *").unwrap());
        let tick = first_tick(&every_minute, now).unwrap();
        assert!(tick > now && tick <= now + Duration::from_secs(60));
    }
}
