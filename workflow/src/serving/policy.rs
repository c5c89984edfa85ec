//! Which version of a model to serve: [`VersionPolicy`], and [`ModelSelector`] — a model name
//! with its policy, written `name`, `name@latest`, `name@7`, `name@pinned` or `name@production`
//! (any stage).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::registry::{Registry, Stage};

/// Which version of a model is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionPolicy {
    /// The newest version that loads (the default).
    #[default]
    Latest,
    /// The version named by the model's `PIN` file ([`Registry::pin`]); it follows the pin.
    Pinned,
    /// Exactly this version.
    Version(u64),
    /// The newest version in this stage that loads.
    Stage(Stage),
}

impl VersionPolicy {
    /// The versions to try, best first: the server serves the first that loads. Corrupt
    /// versions are skipped by the caller, so a bad newest version leaves the previous one
    /// serving.
    pub fn candidates(&self, registry: &Registry, model: &str) -> Result<Vec<u64>> {
        Ok(match self {
            VersionPolicy::Latest => registry
                .versions(model)?
                .iter()
                .rev()
                .map(|m| m.version)
                .collect(),
            VersionPolicy::Pinned => registry.pinned(model)?.into_iter().collect(),
            VersionPolicy::Version(v) => vec![*v],
            VersionPolicy::Stage(stage) => registry
                .by_stage(model, *stage)?
                .iter()
                .rev()
                .map(|m| m.version)
                .collect(),
        })
    }
}

impl fmt::Display for VersionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionPolicy::Latest => f.write_str("latest"),
            VersionPolicy::Pinned => f.write_str("pinned"),
            VersionPolicy::Version(v) => write!(f, "version {v}"),
            VersionPolicy::Stage(s) => write!(f, "stage {}", stage_name(*s)),
        }
    }
}

/// The registry's spelling of a stage (`candidate`, `validated`, `production`, `archived`).
pub fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Candidate => "candidate",
        Stage::Validated => "validated",
        Stage::Production => "production",
        Stage::Archived => "archived",
    }
}

/// Parses a stage name.
pub fn parse_stage(text: &str) -> Option<Stage> {
    Some(match text {
        "candidate" => Stage::Candidate,
        "validated" => Stage::Validated,
        "production" => Stage::Production,
        "archived" => Stage::Archived,
        _ => return None,
    })
}

/// A served model: its name and version policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSelector {
    /// The model name in the registry.
    pub name: String,
    /// Which version to serve.
    pub policy: VersionPolicy,
}

impl ModelSelector {
    /// `name` at its newest version.
    pub fn latest(name: impl Into<String>) -> Self {
        ModelSelector {
            name: name.into(),
            policy: VersionPolicy::Latest,
        }
    }
}

/// Written back the way it parses: `name@latest`, `name@7`, `name@pinned`, `name@production`.
impl fmt::Display for ModelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.policy {
            VersionPolicy::Latest => write!(f, "{}@latest", self.name),
            VersionPolicy::Pinned => write!(f, "{}@pinned", self.name),
            VersionPolicy::Version(v) => write!(f, "{}@{v}", self.name),
            VersionPolicy::Stage(s) => write!(f, "{}@{}", self.name, stage_name(s)),
        }
    }
}

impl FromStr for ModelSelector {
    type Err = Error;

    /// `name`, `name@latest`, `name@<version>`, `name@pinned` or `name@<stage>`.
    fn from_str(s: &str) -> Result<Self> {
        let (name, policy) = match s.split_once('@') {
            None => (s, VersionPolicy::Latest),
            Some((name, "latest")) => (name, VersionPolicy::Latest),
            Some((name, "pinned")) => (name, VersionPolicy::Pinned),
            Some((name, rest)) => {
                let policy = if let Ok(v) = rest.parse::<u64>() {
                    VersionPolicy::Version(v)
                } else if let Some(stage) = parse_stage(rest) {
                    VersionPolicy::Stage(stage)
                } else {
                    return Err(Error::InvalidArgument(format!(
                        "model `{s}`: after `@` expected a version number, `latest`, `pinned` or a stage (candidate, validated, production, archived), found `{rest}`"
                    )));
                };
                (name, policy)
            }
        };
        if name.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "model `{s}`: the name is empty"
            )));
        }
        Ok(ModelSelector {
            name: name.to_string(),
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        let p = |s: &str| s.parse::<ModelSelector>().map(|m| (m.name, m.policy));
        assert_eq!(p("ctr").unwrap(), ("ctr".into(), VersionPolicy::Latest));
        assert_eq!(
            p("ctr@7").unwrap(),
            ("ctr".into(), VersionPolicy::Version(7))
        );
        assert_eq!(p("ctr@pinned").unwrap().1, VersionPolicy::Pinned);
        assert_eq!(
            p("ctr@production").unwrap().1,
            VersionPolicy::Stage(Stage::Production)
        );
        assert!(p("ctr@nope").unwrap_err().to_string().contains("nope"));
        assert!(p("@3").is_err());
    }
}
