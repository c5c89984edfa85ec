//! Checking one `[nodes.<name>]` table: its kind, the keys that kind takes, their values,
//! triggers and retries. (References to other sections are checked by `graph`.)

use std::ops::Range;

use super::check::unusable_name;
use super::check::{key, span, Checker, NODE_KINDS, TRIGGER_KEYS};
use super::locate::closest;
use super::raw::{RawNode, S};
use super::schedule::Cron;
use super::{
    CommandSpec, DeploySpec, EvaluateSpec, FailoverMode, LearnerKind, NodeKind, NodeSpec,
    RetryPolicy, Schedule, ServeSpec, TrainSpec, Triggers,
};
use crate::error::Result;
use crate::registry::Stage;

impl Checker<'_> {
    pub(super) fn node(&self, name: &S, n: &RawNode) -> Result<NodeSpec> {
        let text = name.get_ref();
        if let Some(reason) = unusable_name(text) {
            return Err(self.hinted(span(name), format!("nodes.{text}"), format!("`{text}` is not a usable node name: {reason}"),
                "node names name their models in the registry: up to 128 ASCII letters, digits, `-`, `_` and `.`, not starting with `.`".into()));
        }
        let kind = self.kind(&n.kind, name, "nodes", NODE_KINDS)?;
        let mut set: Vec<(&str, Range<usize>)> = Vec::new();
        macro_rules! mark { ($($f:ident => $k:literal),*) => { $( if let Some(v) = &n.$f { set.push(($k, v.span())); } )* } }
        mark!(source => "source", features => "features", learner => "learner", params => "params",
              epochs => "epochs", warm_start => "warm-start", publish_every => "publish-every",
              publish_rows => "publish-rows", failover => "failover",
              checkpoint_every => "checkpoint-every", parallelism => "parallelism",
              ps => "ps", consistency => "consistency", ps_existing => "ps-existing", processes => "processes", supervision => "supervision", model => "model",
              min_auc => "min-auc", max_logloss => "max-logloss", min_accuracy => "min-accuracy",
              stage => "stage", address => "address", program => "program", args => "args", timeout => "timeout");
        let k = kind.get_ref().as_str();
        let allowed: &[&str] = match k {
            "batch-train" => &[
                "source",
                "features",
                "learner",
                "params",
                "epochs",
                "warm-start",
            ],
            "stream-train" => &[
                "source",
                "features",
                "learner",
                "params",
                "warm-start",
                "publish-every",
                "publish-rows",
                "failover",
                "checkpoint-every",
                "parallelism",
                "ps",
                "consistency",
                "ps-existing",
                "processes",
                "supervision",
            ],
            "evaluate" => &["model", "source", "min-auc", "max-logloss", "min-accuracy"],
            "deploy" => &["model", "stage"],
            "serve" => &["model", "stage", "address"],
            _ => &["program", "args", "timeout"],
        };
        self.only("nodes", name, k, &set, &[TRIGGER_KEYS, allowed].concat())?;
        let what = format!("a `{k}` node");
        let kind = match k {
            "batch-train" | "stream-train" => {
                let train = self.train(name, n, &what, k == "stream-train")?;
                if k == "batch-train" {
                    NodeKind::BatchTrain(train)
                } else {
                    NodeKind::StreamTrain(train)
                }
            }
            "evaluate" => {
                let model = self.require(&n.model, name, "nodes", "model", &what)?;
                let source = self.require(&n.source, name, "nodes", "source", &what)?;
                let mut thresholds = Vec::new();
                for (k, v) in [
                    ("min-auc", &n.min_auc),
                    ("max-logloss", &n.max_logloss),
                    ("min-accuracy", &n.min_accuracy),
                ] {
                    if let Some(v) = v {
                        let x = *v.get_ref();
                        let ok = x.is_finite() && x >= 0.0 && (k == "max-logloss" || x <= 1.0);
                        if !ok {
                            return Err(self.err(
                                span(v),
                                key("nodes", name, k),
                                format!(
                                    "{x} is out of range ({})",
                                    if k == "max-logloss" {
                                        "a number >= 0"
                                    } else {
                                        "0..=1"
                                    }
                                ),
                            ));
                        }
                        thresholds.push(x);
                    }
                }
                if thresholds.is_empty() {
                    return Err(self.err(span(name), key("nodes", name, "min-auc"),
                        "an `evaluate` node needs a threshold: `min-auc`, `max-logloss` or `min-accuracy`"));
                }
                NodeKind::Evaluate(EvaluateSpec {
                    model: model.get_ref().clone(),
                    source: source.get_ref().clone(),
                    min_auc: n.min_auc.as_ref().map(|v| *v.get_ref()),
                    max_logloss: n.max_logloss.as_ref().map(|v| *v.get_ref()),
                    min_accuracy: n.min_accuracy.as_ref().map(|v| *v.get_ref()),
                })
            }
            "deploy" | "serve" => {
                let model = self.require(&n.model, name, "nodes", "model", &what)?;
                let stage = match &n.stage {
                    None => Stage::Production,
                    Some(s) => match s.get_ref().as_str() {
                        "candidate" => Stage::Candidate,
                        "validated" => Stage::Validated,
                        "production" => Stage::Production,
                        "archived" => Stage::Archived,
                        other => {
                            return Err(self.hinted(
                                span(s),
                                key("nodes", name, "stage"),
                                format!("unknown stage `{other}`"),
                                "candidate, validated, production or archived".into(),
                            ))
                        }
                    },
                };
                if k == "deploy" {
                    NodeKind::Deploy(DeploySpec {
                        model: model.get_ref().clone(),
                        stage,
                    })
                } else {
                    let address = match &n.address {
                        None => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                        Some(a) => a.get_ref().parse().map_err(|_| {
                            self.hinted(span(a), key("nodes", name, "address"), format!("`{}` is not a socket address", a.get_ref()),
                                "an IP address and a port, e.g. \"127.0.0.1:8080\" (port 0: any free port)".into())
                        })?,
                    };
                    NodeKind::Serve(ServeSpec {
                        model: model.get_ref().clone(),
                        stage,
                        address,
                    })
                }
            }
            _ => {
                let program = self.require(&n.program, name, "nodes", "program", &what)?;
                if program.get_ref().trim().is_empty() {
                    return Err(self.err(span(program), key("nodes", name, "program"), "is empty"));
                }
                NodeKind::Command(CommandSpec {
                    program: program.get_ref().clone(),
                    args: n.args.as_ref().map_or_else(Vec::new, |a| {
                        a.get_ref().iter().map(|s| s.get_ref().clone()).collect()
                    }),
                    timeout: match &n.timeout {
                        Some(t) => {
                            let d = self.duration(t, name, "timeout")?;
                            if d.is_zero() {
                                return Err(self.err(
                                    span(t),
                                    key("nodes", name, "timeout"),
                                    "must be longer than 0 (leave it out for no limit)",
                                ));
                            }
                            Some(d)
                        }
                        None => None,
                    },
                })
            }
        };
        Ok(NodeSpec {
            name: name.get_ref().clone(),
            kind,
            triggers: self.triggers(name, n)?,
            retry: RetryPolicy {
                retries: n.retries.as_ref().map_or(0, |r| *r.get_ref()),
                backoff: match &n.retry_backoff {
                    Some(b) => self.duration(b, name, "retry-backoff")?,
                    None => RetryPolicy::default().backoff,
                },
            },
        })
    }

    fn train(&self, name: &S, n: &RawNode, what: &str, stream: bool) -> Result<TrainSpec> {
        let source = self.require(&n.source, name, "nodes", "source", what)?;
        let features = self.require(&n.features, name, "nodes", "features", what)?;
        let learner_s = self.require(&n.learner, name, "nodes", "learner", what)?;
        let names: Vec<&str> = LearnerKind::ALL.iter().map(|k| k.name()).collect();
        let learner = learner_s.get_ref().parse::<LearnerKind>().map_err(|_| {
            let hint = match closest(learner_s.get_ref(), &names) {
                Some(c) => format!("did you mean `{c}`? learners: {}", names.join(", ")),
                None => format!("learners: {}", names.join(", ")),
            };
            self.hinted(
                span(learner_s),
                key("nodes", name, "learner"),
                format!("unknown learner `{}`", learner_s.get_ref()),
                hint,
            )
        })?;
        if stream && !learner.is_online() {
            let online: Vec<&str> = LearnerKind::ALL
                .iter()
                .filter(|k| k.is_online())
                .map(|k| k.name())
                .collect();
            return Err(self.hinted(
                span(learner_s),
                key("nodes", name, "learner"),
                format!(
                    "`{}` is a batch learner; a `stream-train` node needs an online learner",
                    learner.name()
                ),
                format!("online learners: {}", online.join(", ")),
            ));
        }
        let epochs = match &n.epochs {
            Some(e) if *e.get_ref() == 0 => {
                return Err(self.err(span(e), key("nodes", name, "epochs"), "must be at least 1"))
            }
            Some(e) => *e.get_ref(),
            None => 1,
        };
        if let Some(r) = &n.publish_rows {
            self.positive(r, name, "nodes", "publish-rows")?;
        }
        let publish_every = n
            .publish_every
            .as_ref()
            .map(|d| self.duration(d, name, "publish-every"))
            .transpose()?;
        if publish_every.is_some_and(|d| d.is_zero()) {
            return Err(self.err(
                span(n.publish_every.as_ref().expect("checked")),
                key("nodes", name, "publish-every"),
                "must be longer than 0",
            ));
        }
        let (parallelism, ps, consistency) = self.ps(name, n, learner)?;
        let ps_existing = self.ps_existing(name, n, ps.as_ref())?;
        let processes = self.processes(name, n, learner, parallelism, ps.as_ref())?;
        let external_workers = self.supervision(name, n, processes, ps.as_ref())?;
        let failover = self.failover(name, n, parallelism, processes)?;
        let checkpoint_every = match &n.checkpoint_every {
            Some(v) if v.get_ref() == "off" => None,
            Some(v) => Some(self.duration(v, name, "checkpoint-every")?).filter(|d| !d.is_zero()),
            None => Some(crate::train::DEFAULT_CHECKPOINT_INTERVAL),
        };
        if let (Some(_), None, Some(c)) = (processes, checkpoint_every, &n.checkpoint_every) {
            return Err(self.hinted(
                span(c),
                key("nodes", name, "checkpoint-every"),
                "worker processes need checkpoints",
                "a restarted worker resumes from its last checkpointed offsets; without \
                 checkpoints it would train its partitions again from the start"
                    .into(),
            ));
        }
        if let Some(p) = &n.params {
            if let Err(message) = learner_spec(learner, p.get_ref())
                .and_then(|s| s.check().map_err(|e| e.to_string()))
            {
                return Err(self.err(
                    span(p),
                    key("nodes", name, "params"),
                    format!("{message} (see the learner's parameters in docs/workflow.md)"),
                ));
            }
        }
        Ok(TrainSpec {
            source: source.get_ref().clone(),
            features: features.get_ref().clone(),
            learner,
            params: n
                .params
                .as_ref()
                .map_or_else(toml::Table::new, |p| p.get_ref().clone()),
            epochs,
            warm_start: n.warm_start.as_ref().map(|w| w.get_ref().clone()),
            publish_every,
            publish_rows: n.publish_rows.as_ref().map(|r| *r.get_ref()),
            failover,
            checkpoint_every,
            parallelism,
            ps,
            consistency,
            ps_existing,
            processes,
            external_workers,
        })
    }

    /// `failover = "exactly-once" | "approximate"` (default exactly-once; approximate with
    /// `parallelism` > 1, which cannot be exactly-once, and with `processes`, whose point is
    /// that a dead worker restarts alone).
    fn failover(
        &self,
        name: &S,
        n: &RawNode,
        parallelism: u32,
        processes: Option<u32>,
    ) -> Result<FailoverMode> {
        let Some(f) = &n.failover else {
            return Ok(if parallelism > 1 || processes.is_some() {
                FailoverMode::Approximate
            } else {
                FailoverMode::ExactlyOnce
            });
        };
        match f.get_ref().as_str() {
            "exactly-once" if parallelism > 1 => Err(self.hinted(
                span(f),
                key("nodes", name, "failover"),
                format!("parallelism {parallelism} cannot be exactly-once"),
                "several subtasks train one model in a parameter server, which no checkpoint \
                 captures at one consistent point: use failover = \"approximate\" (the \
                 default there), or parallelism = 1"
                    .into(),
            )),
            "exactly-once" => Ok(FailoverMode::ExactlyOnce),
            "approximate" => Ok(FailoverMode::Approximate),
            other => Err(self.hinted(
                span(f),
                key("nodes", name, "failover"),
                format!("unknown failover mode `{other}`"),
                "exactly-once (roll back to the last checkpoint) or approximate (restart the \
                 failed task alone); a restarted run always resumes from its checkpoints"
                    .into(),
            )),
        }
    }

    fn triggers(&self, name: &S, n: &RawNode) -> Result<Triggers> {
        let schedule = match (&n.every, &n.cron) {
            (Some(_), Some(c)) => {
                return Err(self.err(
                    span(c),
                    key("nodes", name, "cron"),
                    "give `every` or `cron`, not both",
                ))
            }
            (Some(e), None) => {
                let d = self.duration(e, name, "every")?;
                if d.is_zero() {
                    return Err(self.err(
                        span(e),
                        key("nodes", name, "every"),
                        "must be longer than 0",
                    ));
                }
                Some(Schedule::Every(d))
            }
            (None, Some(c)) => Some(Schedule::Cron(Cron::parse(c.get_ref()).map_err(|m| {
                self.hinted(
                    span(c),
                    key("nodes", name, "cron"),
                    format!("bad cron expression: {m}"),
                    "five fields: minute hour day-of-month month day-of-week, e.g. \"0 * * * *\""
                        .into(),
                )
            })?)),
            (None, None) => None,
        };
        if let (Some(_), Some(v)) = (&schedule, &n.on_new_version) {
            return Err(self.err(
                span(v),
                key("nodes", name, "on-new-version"),
                "a node runs on a schedule or on new versions, not both",
            ));
        }
        if let Some(m) = &n.max_runs {
            if *m.get_ref() == 0 {
                return Err(self.err(
                    span(m),
                    key("nodes", name, "max-runs"),
                    "must be at least 1",
                ));
            }
        }
        Ok(Triggers {
            after: n.after.as_ref().map_or_else(Vec::new, |a| {
                a.get_ref().iter().map(|s| s.get_ref().clone()).collect()
            }),
            on_new_version: n.on_new_version.as_ref().map(|v| v.get_ref().clone()),
            schedule,
            max_runs: n.max_runs.as_ref().map(|m| *m.get_ref()),
        })
    }
}

/// A node's `params` table as a learner spec of the registry.
pub(crate) fn learner_spec(
    learner: LearnerKind,
    params: &toml::Table,
) -> std::result::Result<eddy_algorithms::learners::LearnerSpec, String> {
    let json = serde_json::to_value(params).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(map) = json else {
        return Err("params must be a table".into());
    };
    Ok(eddy_algorithms::learners::LearnerSpec::with_params(
        learner, map,
    ))
}
