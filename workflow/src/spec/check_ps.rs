//! Checking a `stream-train` node's parameter-server keys: `parallelism`, `ps`,
//! `consistency` (see [`PsSpec`]), `ps-existing` and `processes`, and what they rule out
//! (`warm-start`, learners without a gradient form).

use super::check::{key, span, Checker};
use super::raw::{RawNode, S};
use super::{Consistency, JobPolicy, LearnerKind, PsSpec};
use crate::error::Result;

const PS_HINT: &str = "ps = \"local\", ps = [\"HOST:PORT\", ...] (one address per running shard) \
                       or ps = { shards = N } (N shards started in process)";

impl Checker<'_> {
    /// `(parallelism, ps, consistency)` of a training node. `parallelism > 1` without `ps`
    /// trains FTRL on weights shared in memory and FM through the in-process store; a
    /// `consistency` bound there means `ps = "local"` (the bound is the store's clocks).
    pub(super) fn ps(
        &self,
        name: &S,
        n: &RawNode,
        learner: LearnerKind,
    ) -> Result<(u32, Option<PsSpec>, Consistency)> {
        let parallelism = match &n.parallelism {
            Some(p) if *p.get_ref() == 0 => {
                return Err(self.err(
                    span(p),
                    key("nodes", name, "parallelism"),
                    "must be at least 1",
                ))
            }
            Some(p) => *p.get_ref(),
            None => 1,
        };
        let mut ps = match &n.ps {
            Some(v) => Some(self.ps_value(name, v)?),
            None => None,
        };
        let consistency = match &n.consistency {
            None => Consistency::Async,
            Some(c) if ps.is_none() && parallelism == 1 => {
                return Err(self.hinted(
                    span(c),
                    key("nodes", name, "consistency"),
                    "`consistency` needs a parameter server",
                    "set `ps` or `parallelism` > 1".into(),
                ))
            }
            Some(c) => c.get_ref().parse::<Consistency>().map_err(|_| {
                self.hinted(
                    span(c),
                    key("nodes", name, "consistency"),
                    format!("unknown consistency `{}`", c.get_ref()),
                    "async, bounded:S (S clocks of staleness, e.g. bounded:2) or sync".into(),
                )
            })?,
        };
        if ps.is_none() && consistency != Consistency::Async {
            ps = Some(PsSpec::Local);
        }
        if ps.is_none() && parallelism == 1 {
            return Ok((parallelism, ps, consistency));
        }
        // where to point: the key that asked for a parameter server
        let (at, k) = match (&n.ps, &n.parallelism) {
            (Some(v), _) => (span(v), "ps"),
            (None, Some(p)) => (span(p), "parallelism"),
            (None, None) => unreachable!("a parameter server without `ps` or `parallelism`"),
        };
        if !matches!(learner, LearnerKind::Ftrl | LearnerKind::Fm) {
            return Err(self.hinted(
                at,
                key("nodes", name, k),
                format!(
                    "data-parallel training and parameter servers train `ftrl` or `fm`, not \
                     `{}`",
                    learner.name()
                ),
                "set `learner = \"ftrl\"` or `\"fm\"`, or train with `parallelism = 1` and no \
                 `ps`"
                    .into(),
            ));
        }
        if let (Some(w), Some(_)) = (&n.warm_start, &ps) {
            return Err(self.hinted(
                span(w),
                key("nodes", name, "warm-start"),
                "`warm-start` cannot be combined with a parameter server",
                "the store applies the learner's updates to its rows and cannot be seeded with \
                 weights; \
                 drop `warm-start`, or `ps` and `parallelism`"
                    .into(),
            ));
        }
        Ok((parallelism, ps, consistency))
    }

    /// `processes = N`: worker processes training through shard processes (`ps` absent:
    /// the node starts them) or running shards (`ps = [...]`), one learner each (no
    /// `parallelism`), `ftrl` or `fm`, starting from the shards' tables (no `warm-start`).
    /// That the source is a Kafka topic is checked with the references.
    pub(super) fn processes(
        &self,
        name: &S,
        n: &RawNode,
        learner: LearnerKind,
        parallelism: u32,
        ps: Option<&PsSpec>,
    ) -> Result<Option<u32>> {
        let Some(p) = &n.processes else {
            return Ok(None);
        };
        let at = key("nodes", name, "processes");
        let count = *p.get_ref();
        if count == 0 {
            return Err(self.err(span(p), at, "must be at least 1"));
        }
        let refuse = |k: &str, msg: &str, hint: &str| {
            Err(self.hinted(
                span(p),
                at.clone(),
                format!("`processes` {msg} `{k}`"),
                hint.into(),
            ))
        };
        if !matches!(learner, LearnerKind::Ftrl | LearnerKind::Fm) {
            return refuse(
                "learner",
                &format!(
                    "trains `ftrl` or `fm` through shards, not `{}` with",
                    learner.name()
                ),
                "set `learner = \"ftrl\"` or `\"fm\"`, or drop `processes`",
            );
        }
        if parallelism > 1 {
            return refuse(
                "parallelism",
                "runs one learner per process: drop",
                "more workers are more processes: raise `processes`",
            );
        }
        if matches!(ps, Some(PsSpec::Local | PsSpec::Spawn(_))) {
            return refuse(
                "ps",
                "share the model through shard processes, not an in-process",
                "set `ps = [\"HOST:PORT\", ...]` (running shards), or drop `ps`: the node \
                 starts one shard process per worker",
            );
        }
        if n.warm_start.is_some() {
            return refuse(
                "warm-start",
                "start from the shards' tables: drop",
                "the store applies the learner's updates to its rows and cannot be seeded \
                 with weights",
            );
        }
        Ok(Some(count))
    }

    /// `supervision = "node" | "external"` (whether the node's worker processes are someone
    /// else's): only with `processes`, running shards and approximate failover.
    pub(super) fn supervision(
        &self,
        name: &S,
        n: &RawNode,
        processes: Option<u32>,
        ps: Option<&PsSpec>,
    ) -> Result<bool> {
        let Some(v) = &n.supervision else {
            return Ok(false);
        };
        let at = key("nodes", name, "supervision");
        let external = match v.get_ref().as_str() {
            "node" => false,
            "external" => true,
            other => {
                return Err(self.hinted(
                    span(v),
                    at,
                    format!("unknown supervision `{other}`"),
                    "\"node\" (the node starts and restarts its worker processes) or \
                     \"external\" (e.g. a Kubernetes StatefulSet of `eddy node-worker`)"
                        .into(),
                ))
            }
        };
        let refuse =
            |msg: &str, hint: &str| Err(self.hinted(span(v), at.clone(), msg, hint.into()));
        if processes.is_none() {
            return refuse("`supervision` needs `processes`", "set `processes = N`");
        }
        if external && !matches!(ps, Some(PsSpec::Remote(_))) {
            return refuse(
                "external workers need running shards",
                "set `ps = [\"HOST:PORT\", ...]`: nobody starts shards for them",
            );
        }
        let exactly_once = n
            .failover
            .as_ref()
            .is_some_and(|f| f.get_ref() == "exactly-once");
        if external && exactly_once {
            return refuse(
                "external workers fail over approximately",
                "rolling every worker back to a job-wide epoch needs the node's supervisor: \
                 drop `failover`, or `supervision`",
            );
        }
        Ok(external)
    }

    /// `ps-existing = "refuse" | "resume" | "fresh"`: only with running shards.
    pub(super) fn ps_existing(
        &self,
        name: &S,
        n: &RawNode,
        ps: Option<&PsSpec>,
    ) -> Result<JobPolicy> {
        let Some(v) = &n.ps_existing else {
            return Ok(JobPolicy::Refuse);
        };
        let at = key("nodes", name, "ps-existing");
        if !matches!(ps, Some(PsSpec::Remote(_))) {
            return Err(self.hinted(
                span(v),
                at,
                "`ps-existing` needs running shards",
                "set `ps = [\"HOST:PORT\", ...]`; other stores start empty for each run".into(),
            ));
        }
        match v.get_ref().as_str() {
            "refuse" => Ok(JobPolicy::Refuse),
            "resume" => Ok(JobPolicy::Resume),
            "fresh" => Ok(JobPolicy::Fresh),
            other => Err(self.hinted(
                span(v),
                at,
                format!("unknown `ps-existing` `{other}`"),
                "\"refuse\", \"resume\" or \"fresh\"".into(),
            )),
        }
    }

    fn ps_value(&self, name: &S, v: &toml::Spanned<toml::Value>) -> Result<PsSpec> {
        let bad = |msg: String| self.hinted(span(v), key("nodes", name, "ps"), msg, PS_HINT.into());
        match v.get_ref() {
            toml::Value::String(s) if s == "local" => Ok(PsSpec::Local),
            toml::Value::String(s) => Err(bad(format!("unknown parameter server `{s}`"))),
            toml::Value::Array(items) if items.is_empty() => {
                Err(bad("the list of shard addresses is empty".into()))
            }
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item.as_str() {
                    Some(a) if is_address(a) => Ok(a.to_string()),
                    Some(a) => Err(bad(format!("`{a}` is not a shard address (HOST:PORT)"))),
                    None => Err(bad(format!("shard addresses are strings, not `{item}`"))),
                })
                .collect::<Result<Vec<_>>>()
                .map(PsSpec::Remote),
            toml::Value::Table(t) => {
                if let Some(k) = t.keys().find(|k| k.as_str() != "shards") {
                    return Err(bad(format!("unknown key `{k}` in `ps`")));
                }
                match t.get("shards").and_then(toml::Value::as_integer) {
                    Some(s) if (1..=64).contains(&s) => Ok(PsSpec::Spawn(s as u32)),
                    Some(s) => Err(bad(format!("{s} shards is out of range (1..=64)"))),
                    None => Err(bad("`ps = { ... }` needs `shards`, an integer".into())),
                }
            }
            other => Err(bad(format!("`{other}` is not a parameter server"))),
        }
    }
}

/// `HOST:PORT` or `http://HOST:PORT`, with a non-empty host and a port number.
fn is_address(a: &str) -> bool {
    let a = a.strip_prefix("http://").unwrap_or(a);
    match a.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_addresses() {
        assert!(is_address("127.0.0.1:7001"));
        assert!(is_address("http://ps-0.internal:7001"));
        assert!(!is_address("127.0.0.1"));
        assert!(!is_address(":7001"));
        assert!(!is_address("host:port"));
    }
}
