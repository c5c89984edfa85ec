//! Raw TOML → checked [`Workflow`]: parse, then check each source, feature pipeline and node
//! on its own (kinds, keys per kind, values); `graph` then checks what spans sections.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::graph;
use super::locate::{closest, Locator};
use super::raw::{RawFeatures, RawSource, RawWorkflow, NODE_KEYS, S};
use super::schedule::parse_duration;
use super::{DelayedLabelsSpec, FeaturesSpec, FileFormat, SourceSpec, Workflow};
use crate::error::{Error, Result};
use eddy_core::source::kafka::KafkaUri;

const TOP_KEYS: &[&str] = &["workflow", "sources", "features", "nodes"];
const SOURCE_KEYS: &[&str] = &[
    "kind",
    "path",
    "format",
    "follow",
    "seed",
    "offset",
    "rows",
    "rows-per-second",
    "batch-rows",
    "history",
    "live",
    "address",
    "impressions",
    "clicks",
    "key",
    "time",
    "wait",
    "out-of-orderness",
    "parallelism",
];
const DELAYED_LABELS_KEYS: &[&str] = &[
    "impressions",
    "clicks",
    "key",
    "time",
    "wait",
    "out-of-orderness",
    "parallelism",
];
const FEATURE_KEYS: &[&str] = &[
    "label",
    "numeric",
    "categorical",
    "crosses",
    "hash-bits",
    "scale",
    "dense",
];
pub(super) const NODE_KINDS: &[&str] = &[
    "batch-train",
    "stream-train",
    "evaluate",
    "deploy",
    "serve",
    "command",
];
pub(super) const TRIGGER_KEYS: &[&str] = &[
    "kind",
    "after",
    "on-new-version",
    "every",
    "cron",
    "max-runs",
    "retries",
    "retry-backoff",
];

/// Parses and checks `text`, read from `file`.
pub(super) fn check(text: &str, file: &Path) -> Result<Workflow> {
    let loc = Locator::new(text, file);
    let raw: RawWorkflow = toml::from_str(text).map_err(|e| {
        let keys: Vec<&str> = [TOP_KEYS, SOURCE_KEYS, FEATURE_KEYS, NODE_KEYS].concat();
        loc.toml_error(&e, &keys)
    })?;
    let c = Checker { loc: &loc };
    let mut sources = BTreeMap::new();
    for (name, src) in &raw.sources {
        sources.insert(name.get_ref().clone(), c.source(name, src.get_ref(), file)?);
    }
    let mut features = BTreeMap::new();
    for (name, f) in &raw.features {
        features.insert(name.get_ref().clone(), c.features(name, f.get_ref())?);
    }
    let mut nodes = Vec::new();
    for (name, node) in &raw.nodes {
        nodes.push((name.clone(), c.node(name, node.get_ref())?));
    }
    let default_name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && *s != "workflow")
        .or_else(|| {
            file.parent()
                .and_then(|p| p.file_name())
                .and_then(|s| s.to_str())
        })
        .unwrap_or("workflow")
        .to_string();
    let header = raw.workflow.as_ref().map(|h| h.get_ref());
    if let Some(name) = header.and_then(|h| h.name.as_ref()) {
        // the name is the default run directory `eddy-runs/<name>`: one plain path component
        if let Some(reason) = unusable_name(name.get_ref()) {
            return Err(c.hinted(
                span(name),
                "workflow.name".into(),
                format!("`{}` is not a usable workflow name: {reason}", name.get_ref()),
                "it names the run directory eddy-runs/<name>: up to 128 ASCII letters, digits, `-`, `_` and `.`, not starting with `.`".into(),
            ));
        }
    }
    let base_dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    let mut wf = Workflow {
        name: header
            .and_then(|h| h.name.as_ref())
            .map_or(default_name, |n| n.get_ref().clone()),
        description: header
            .and_then(|h| h.description.as_ref())
            .map(|d| d.get_ref().clone()),
        sources,
        features,
        nodes: Vec::new(),
        base_dir,
    };
    graph::check_graph(&loc, &raw, &mut wf, nodes)?;
    Ok(wf)
}

pub(super) struct Checker<'a> {
    pub(super) loc: &'a Locator<'a>,
}

/// Why `name` cannot name a node (a registry model) or a workflow (a run directory), if it
/// cannot: the registry's rule for model names.
pub(super) fn unusable_name(name: &str) -> Option<&'static str> {
    match crate::registry::check_model_name(name) {
        Err(crate::error::Error::InvalidName { reason, .. }) => Some(reason),
        Err(_) => Some("it is not a usable name"),
        Ok(()) => None,
    }
}

pub(super) fn key(section: &str, name: &S, k: &str) -> String {
    format!("{section}.{}.{k}", name.get_ref())
}

pub(super) fn span<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

impl Checker<'_> {
    pub(super) fn err(&self, at: Range<usize>, key: String, msg: impl Into<String>) -> Error {
        self.loc.error(at, key, msg, None)
    }

    pub(super) fn hinted(
        &self,
        at: Range<usize>,
        key: String,
        msg: impl Into<String>,
        hint: String,
    ) -> Error {
        self.loc.error(at, key, msg, Some(hint))
    }

    pub(super) fn require<'v, T>(
        &self,
        v: &'v Option<T>,
        name: &S,
        section: &str,
        k: &str,
        what: &str,
    ) -> Result<&'v T> {
        v.as_ref().ok_or_else(|| {
            self.err(
                span(name),
                key(section, name, k),
                format!("{what} needs `{k}`"),
            )
        })
    }

    pub(super) fn positive(
        &self,
        v: &Spanned<u64>,
        name: &S,
        section: &str,
        k: &str,
    ) -> Result<u64> {
        if *v.get_ref() == 0 {
            return Err(self.err(span(v), key(section, name, k), "must be at least 1"));
        }
        Ok(*v.get_ref())
    }

    pub(super) fn duration(&self, v: &S, name: &S, k: &str) -> Result<std::time::Duration> {
        parse_duration(v.get_ref()).map_err(|m| {
            self.hinted(
                span(v),
                key("nodes", name, k),
                format!("bad duration: {m}"),
                "write a number and a unit: \"500ms\", \"10s\", \"5m\", \"2h\", \"1d\"".into(),
            )
        })
    }

    /// Refuses keys set on a source or node that its kind does not use.
    pub(super) fn only(
        &self,
        section: &str,
        name: &S,
        kind: &str,
        set: &[(&str, Range<usize>)],
        allowed: &[&str],
    ) -> Result<()> {
        for (k, at) in set {
            if !allowed.contains(k) {
                return Err(self.hinted(
                    at.clone(),
                    key(section, name, k),
                    format!(
                        "`{k}` does not apply to a `{kind}` {}",
                        &section[..section.len() - 1]
                    ),
                    format!(
                        "keys of a `{kind}` {}: {}",
                        &section[..section.len() - 1],
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn kind<'v>(
        &self,
        kind: &'v Option<S>,
        name: &S,
        section: &str,
        kinds: &[&str],
    ) -> Result<&'v S> {
        let kind = self
            .require(
                kind,
                name,
                section,
                "kind",
                &format!("`[{section}.{}]`", name.get_ref()),
            )
            .map_err(|e| match e {
                Error::Spec {
                    file,
                    line,
                    column,
                    key,
                    message,
                    ..
                } => Error::Spec {
                    file,
                    line,
                    column,
                    key,
                    message,
                    hint: Some(format!("kinds: {}", kinds.join(", "))),
                },
                e => e,
            })?;
        if !kinds.contains(&kind.get_ref().as_str()) {
            let hint = match closest(kind.get_ref(), kinds) {
                Some(c) => format!("did you mean `{c}`? kinds: {}", kinds.join(", ")),
                None => format!("kinds: {}", kinds.join(", ")),
            };
            return Err(self.hinted(
                span(kind),
                key(section, name, "kind"),
                format!("unknown kind `{}`", kind.get_ref()),
                hint,
            ));
        }
        Ok(kind)
    }

    fn source(&self, name: &S, s: &RawSource, file: &Path) -> Result<SourceSpec> {
        let kind = self.kind(
            &s.kind,
            name,
            "sources",
            &["file", "ctr", "hybrid", "kafka", "delayed-labels"],
        )?;
        let mut set: Vec<(&str, Range<usize>)> = Vec::new();
        macro_rules! mark { ($($f:ident => $k:literal),*) => { $( if let Some(v) = &s.$f { set.push(($k, v.span())); } )* } }
        mark!(path => "path", format => "format", follow => "follow", seed => "seed", offset => "offset", rows => "rows",
              rows_per_second => "rows-per-second", batch_rows => "batch-rows", history => "history", live => "live",
              address => "address", impressions => "impressions", clicks => "clicks", key => "key",
              time => "time", wait => "wait", out_of_orderness => "out-of-orderness", parallelism => "parallelism");
        let batch_rows = |default: u64| -> Result<usize> {
            Ok(match &s.batch_rows {
                Some(v) => self.positive(v, name, "sources", "batch-rows")? as usize,
                None => default as usize,
            })
        };
        let kind_name = kind.get_ref().as_str();
        match kind_name {
            "file" => {
                self.only(
                    "sources",
                    name,
                    kind_name,
                    &set,
                    &["path", "format", "follow", "batch-rows"],
                )?;
                let path = self.require(&s.path, name, "sources", "path", "a `file` source")?;
                let format = match &s.format {
                    None => None,
                    Some(f) => Some(match f.get_ref().as_str() {
                        "csv" => FileFormat::Csv,
                        "jsonl" => FileFormat::Jsonl,
                        "parquet" => FileFormat::Parquet,
                        other => {
                            return Err(self.hinted(
                                span(f),
                                key("sources", name, "format"),
                                format!("unknown format `{other}`"),
                                "csv, jsonl or parquet".into(),
                            ))
                        }
                    }),
                };
                let base = file.parent().unwrap_or(Path::new(""));
                Ok(SourceSpec::File {
                    path: base.join(path.get_ref()),
                    format,
                    batch_rows: batch_rows(4096)?,
                    follow: s.follow.as_ref().is_some_and(|f| *f.get_ref()),
                })
            }
            "ctr" => {
                self.only(
                    "sources",
                    name,
                    kind_name,
                    &set,
                    &["seed", "offset", "rows", "rows-per-second", "batch-rows"],
                )?;
                let rows = self.require(&s.rows, name, "sources", "rows", "a `ctr` source")?;
                let rows = self.positive(rows, name, "sources", "rows")?;
                let rows_per_second = match &s.rows_per_second {
                    Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
                        return Err(self.err(
                            span(r),
                            key("sources", name, "rows-per-second"),
                            "must be a number > 0",
                        ))
                    }
                    r => r.as_ref().map(|r| *r.get_ref()),
                };
                Ok(SourceSpec::Ctr {
                    seed: s
                        .seed
                        .as_ref()
                        .map_or(eddy_core::datagen::ctr::DEFAULT_SEED, |v| *v.get_ref()),
                    offset: s.offset.as_ref().map_or(0, |v| *v.get_ref()),
                    rows,
                    batch_rows: batch_rows(1000)?,
                    rows_per_second,
                })
            }
            "kafka" => {
                self.only(
                    "sources",
                    name,
                    kind_name,
                    &set,
                    &["address", "follow", "batch-rows"],
                )?;
                let address =
                    self.require(&s.address, name, "sources", "address", "a `kafka` source")?;
                let mut uri = KafkaUri::parse(address.get_ref()).map_err(|e| {
                    self.err(
                        span(address),
                        key("sources", name, "address"),
                        e.to_string(),
                    )
                })?;
                // a live topic by default: a stream-train node on it runs until stopped
                uri.follow = s.follow.as_ref().is_none_or(|f| *f.get_ref());
                Ok(SourceSpec::Kafka {
                    uri,
                    batch_rows: batch_rows(4096)?,
                })
            }
            "delayed-labels" => {
                self.only("sources", name, kind_name, &set, DELAYED_LABELS_KEYS)?;
                self.delayed_labels(name, s).map(SourceSpec::DelayedLabels)
            }
            _ => {
                self.only("sources", name, kind_name, &set, &["history", "live"])?;
                let history =
                    self.require(&s.history, name, "sources", "history", "a `hybrid` source")?;
                let live = self.require(&s.live, name, "sources", "live", "a `hybrid` source")?;
                Ok(SourceSpec::Hybrid {
                    history: history.get_ref().clone(),
                    live: live.get_ref().clone(),
                })
            }
        }
    }

    /// The keys of a `delayed-labels` source (which sources it joins are checked with the
    /// other references, in `graph`).
    fn delayed_labels(&self, name: &S, s: &RawSource) -> Result<DelayedLabelsSpec> {
        const WHAT: &str = "a `delayed-labels` source";
        let req = |v: &Option<S>, k: &str| -> Result<String> {
            let v = self.require(v, name, "sources", k, WHAT)?;
            if v.get_ref().is_empty() {
                return Err(self.err(span(v), key("sources", name, k), "must not be empty"));
            }
            Ok(v.get_ref().clone())
        };
        let impressions = req(&s.impressions, "impressions")?;
        let clicks = req(&s.clicks, "clicks")?;
        let time = req(&s.time, "time")?;
        let keys = self.require(&s.key, name, "sources", "key", WHAT)?;
        if keys.get_ref().is_empty() {
            return Err(self.err(
                span(keys),
                key("sources", name, "key"),
                "name at least one key column (the column an impression and its clicks share)",
            ));
        }
        let duration = |v: &S, k: &str| {
            parse_duration(v.get_ref()).map_err(|m| {
                self.hinted(
                    span(v),
                    key("sources", name, k),
                    format!("bad duration: {m}"),
                    "write a number and a unit: \"500ms\", \"30s\", \"5m\", \"1h\"".into(),
                )
            })
        };
        let wait_raw = self.require(&s.wait, name, "sources", "wait", WHAT)?;
        let wait = duration(wait_raw, "wait")?;
        if wait.as_millis() == 0 {
            return Err(self.err(
                span(wait_raw),
                key("sources", name, "wait"),
                "must be at least 1ms: an impression needs some time to be clicked",
            ));
        }
        let out_of_orderness = match &s.out_of_orderness {
            Some(v) => duration(v, "out-of-orderness")?,
            None => std::time::Duration::from_millis(500),
        };
        let parallelism = match &s.parallelism {
            Some(p) => u32::try_from(self.positive(p, name, "sources", "parallelism")?)
                .map_err(|_| self.err(span(p), key("sources", name, "parallelism"), "too large"))?,
            None => 1,
        };
        Ok(DelayedLabelsSpec {
            impressions,
            clicks,
            key: keys.get_ref().iter().map(|k| k.get_ref().clone()).collect(),
            time,
            wait,
            out_of_orderness,
            parallelism,
        })
    }

    fn features(&self, name: &S, f: &RawFeatures) -> Result<FeaturesSpec> {
        let label = self.require(&f.label, name, "features", "label", "a feature pipeline")?;
        let list = |v: &Option<Spanned<Vec<S>>>| -> Vec<String> {
            v.as_ref().map_or_else(Vec::new, |l| {
                l.get_ref().iter().map(|s| s.get_ref().clone()).collect()
            })
        };
        let numeric = list(&f.numeric);
        let categorical = list(&f.categorical);
        let dense = f.dense.as_ref().is_some_and(|d| *d.get_ref());
        if numeric.is_empty() && categorical.is_empty() {
            return Err(self.err(
                span(name),
                key("features", name, "numeric"),
                "a feature pipeline needs `numeric` or `categorical` columns",
            ));
        }
        let mut crosses = Vec::new();
        if let Some(c) = &f.crosses {
            for cross in c.get_ref() {
                if cross.len() < 2 {
                    return Err(self.err(
                        span(c),
                        key("features", name, "crosses"),
                        "each cross names two or more columns",
                    ));
                }
                for col in cross {
                    if !categorical.contains(col.get_ref()) {
                        return Err(self.err(
                            span(col),
                            key("features", name, "crosses"),
                            format!(
                                "`{}` is not one of the `categorical` columns",
                                col.get_ref()
                            ),
                        ));
                    }
                }
                crosses.push(cross.iter().map(|s| s.get_ref().clone()).collect());
            }
        }
        if dense {
            if let Some(c) = &f.categorical {
                if !c.get_ref().is_empty() {
                    return Err(self.err(
                        span(c),
                        key("features", name, "categorical"),
                        "dense features take numeric columns only",
                    ));
                }
            }
        }
        let hash_bits = match &f.hash_bits {
            Some(b) if !(1..=30).contains(b.get_ref()) => {
                return Err(self.err(
                    span(b),
                    key("features", name, "hash-bits"),
                    "must be in 1..=30",
                ))
            }
            Some(b) => *b.get_ref(),
            None => 18,
        };
        Ok(FeaturesSpec {
            label: label.get_ref().clone(),
            numeric,
            categorical,
            crosses,
            hash_bits,
            scale: f.scale.as_ref().is_none_or(|s| *s.get_ref()),
            dense,
        })
    }
}
