//! `kafka://HOST:PORT[,HOST:PORT…]/TOPIC[?KEY=VALUE&…]`: the one parser of Kafka addresses,
//! used by the CLI for `--data` and `--out` and by workflow sources.
//!
//! | key | for | values |
//! |---|---|---|
//! | `group` | source | consumer group the checkpointed offsets are committed to (lag) |
//! | `start` | source | `earliest` (default) or `latest` |
//! | `follow` | source | `true`: read until stopped; `false` (default): to the end seen at open |
//! | `format` | source | `json` (default) or `csv` |
//! | `partitions` | sink, `eddy gen` | partitions of the topic when it is created (default 1) |
//! | `key` | sink | column whose value is each message's key (default: no key) |
//! | `delivery` | sink | `at-least-once` (default) or `exactly-once` |

use crate::error::{Error, Result};

/// Where a Kafka source starts when it has no checkpointed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartOffset {
    /// The oldest message still in each partition.
    #[default]
    Earliest,
    /// The end of each partition at open: only messages produced later.
    Latest,
}

/// Payload format: one record per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaFormat {
    /// One JSON object per message.
    #[default]
    Json,
    /// One CSV record per message, no header (columns `column_1..n` unless a schema is given).
    Csv,
}

/// What a Kafka sink guarantees about its messages across failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaDelivery {
    /// Every row reaches the topic; a restart may write rows again.
    #[default]
    AtLeastOnce,
    /// Each row exactly once: an epoch's rows are staged and produced when its checkpoint
    /// completed, idempotently on restore (see [`KafkaSink`](crate::sink::kafka::KafkaSink)).
    ExactlyOnce,
}

/// A parsed `kafka://` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUri {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Consumer group offsets are committed under (lag monitoring); `None`: no commits.
    pub group: Option<String>,
    /// Where reading starts without a checkpoint. Default: earliest.
    pub start: StartOffset,
    /// Keep reading new messages (unbounded) instead of stopping at the end seen at open.
    pub follow: bool,
    /// Payload format. Default: JSON.
    pub format: KafkaFormat,
    /// Partitions of the topic when a sink or `eddy gen` creates it; `None`: 1.
    pub partitions: Option<i32>,
    /// The column a sink takes each message's key from; `None`: messages without a key.
    pub key: Option<String>,
    /// A sink's delivery guarantee. Default: at-least-once.
    pub delivery: KafkaDelivery,
}

impl KafkaUri {
    /// Whether `text` names a Kafka topic (starts with `kafka://`).
    pub fn is_kafka(text: &str) -> bool {
        text.starts_with("kafka://")
    }

    /// Parses a `kafka://` address; the error names the part at fault.
    pub fn parse(text: &str) -> Result<KafkaUri> {
        let bad = |message: String| Error::config(text.to_string(), message);
        let rest = text
            .strip_prefix("kafka://")
            .ok_or_else(|| bad("a Kafka address starts with kafka://".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (brokers, topic) = path
            .split_once('/')
            .ok_or_else(|| bad("expected kafka://HOST:PORT/TOPIC".into()))?;
        if brokers.is_empty() {
            return Err(bad("no broker address before the topic".into()));
        }
        for broker in brokers.split(',') {
            let port = broker.rsplit_once(':').map(|(_, p)| p);
            if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                return Err(bad(format!("broker `{broker}` is not HOST:PORT")));
            }
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(valid) {
            return Err(bad(format!(
                "topic `{topic}`: 1 to 249 characters of a-z, A-Z, 0-9, `.`, `_`, `-`"
            )));
        }
        let mut uri = KafkaUri {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group: None,
            start: StartOffset::default(),
            follow: false,
            format: KafkaFormat::default(),
            partitions: None,
            key: None,
            delivery: KafkaDelivery::default(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("query `{pair}` is not KEY=VALUE")))?;
            match key {
                "group" if !value.is_empty() => uri.group = Some(value.to_string()),
                "start" => {
                    uri.start = match value {
                        "earliest" => StartOffset::Earliest,
                        "latest" => StartOffset::Latest,
                        _ => return Err(bad(format!("start={value}: earliest or latest"))),
                    }
                }
                "follow" => {
                    uri.follow = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(format!("follow={value}: true or false"))),
                    }
                }
                "format" => {
                    uri.format = match value {
                        "json" | "jsonl" => KafkaFormat::Json,
                        "csv" => KafkaFormat::Csv,
                        _ => return Err(bad(format!("format={value}: json or csv"))),
                    }
                }
                "partitions" => {
                    let n = value.parse::<i32>().ok().filter(|n| *n >= 1);
                    let n = n.ok_or_else(|| {
                        bad(format!("partitions={value}: a whole number of at least 1"))
                    })?;
                    uri.partitions = Some(n);
                }
                "key" if !value.is_empty() => uri.key = Some(value.to_string()),
                "delivery" => {
                    uri.delivery = match value {
                        "at-least-once" => KafkaDelivery::AtLeastOnce,
                        "exactly-once" => KafkaDelivery::ExactlyOnce,
                        _ => {
                            return Err(bad(format!(
                                "delivery={value}: at-least-once or exactly-once"
                            )))
                        }
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "unknown or empty query key `{key}` (group, start, follow, format, \
                         partitions, key, delivery)"
                    )))
                }
            }
        }
        Ok(uri)
    }
}

impl std::fmt::Display for KafkaUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kafka://{}/{}", self.brokers, self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part() -> Result<()> {
        let u = KafkaUri::parse(
            "kafka://127.0.0.1:9092,h2:9093/clicks.v1?group=g&start=latest&follow=true&format=csv",
        )?;
        assert_eq!(u.brokers, "127.0.0.1:9092,h2:9093");
        assert_eq!(u.topic, "clicks.v1");
        assert_eq!(u.group.as_deref(), Some("g"));
        assert_eq!(u.start, StartOffset::Latest);
        assert!(u.follow);
        assert_eq!(u.format, KafkaFormat::Csv);
        let s = KafkaUri::parse("kafka://h:1/out?partitions=4&key=user&delivery=exactly-once")?;
        assert_eq!(s.partitions, Some(4));
        assert_eq!(s.key.as_deref(), Some("user"));
        assert_eq!(s.delivery, KafkaDelivery::ExactlyOnce);
        let d = KafkaUri::parse("kafka://localhost:9092/t")?;
        assert_eq!(
            (d.group, d.start, d.follow, d.format),
            (None, StartOffset::Earliest, false, KafkaFormat::Json)
        );
        assert_eq!(
            (d.partitions, d.key, d.delivery),
            (None, None, KafkaDelivery::AtLeastOnce)
        );
        Ok(())
    }

    #[test]
    fn errors_name_the_part_at_fault() {
        let cases = [
            ("kafka://h:1", "HOST:PORT/TOPIC"),
            ("kafka:///t", "no broker"),
            ("kafka://h/t", "not HOST:PORT"),
            ("kafka://h:x/t", "not HOST:PORT"),
            ("kafka://h:1/a b", "topic `a b`"),
            ("kafka://h:1/", "topic ``"),
            ("kafka://h:1/t?start=middle", "start=middle"),
            ("kafka://h:1/t?follow=yes", "follow=yes"),
            ("kafka://h:1/t?format=xml", "format=xml"),
            ("kafka://h:1/t?colour=red", "`colour`"),
            ("kafka://h:1/t?group", "KEY=VALUE"),
            ("kafka://h:1/t?partitions=0", "partitions=0"),
            ("kafka://h:1/t?partitions=x", "partitions=x"),
            ("kafka://h:1/t?delivery=once", "delivery=once"),
            ("kafka://h:1/t?key=", "`key`"),
            ("file://x", "kafka://"),
        ];
        for (text, expected) in cases {
            let err = KafkaUri::parse(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
