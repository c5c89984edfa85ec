//! Schema inference from a topic's first messages, by the file sources' rules
//! (`source::file::infer`): the oldest messages of every partition, up to
//! [`infer_messages`](super::KafkaSourceOptions::infer_messages) in all.

use std::time::Instant;

use arrow::datatypes::SchemaRef;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use super::options::{consumer_config, KafkaSourceOptions};
use super::uri::KafkaFormat;
use crate::error::{Error, Result};
use crate::source::file::infer::infer_from_records;

/// Samples the topic and infers the payload schema.
pub(crate) fn infer_schema(options: &KafkaSourceOptions) -> Result<SchemaRef> {
    let context = options.context();
    let err =
        |what: &str, e: &dyn std::fmt::Display| Error::kafka(&context, format!("{what}: {e}"));
    let consumer: BaseConsumer = consumer_config(&options.uri)
        .create()
        .map_err(|e| err("consumer", &e))?;
    let topic = &options.uri.topic;
    let timeout = options.request_timeout;
    let meta = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| err("metadata", &e))?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(err(
            "metadata",
            &"the topic does not exist or has no partitions",
        ));
    }
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0usize;
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| err("watermarks", &e))?;
        if high > low {
            remaining += 1;
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| err("assign", &e))?;
        }
    }
    consumer.assign(&tpl).map_err(|e| err("assign", &e))?;
    let mut sample: Vec<Vec<u8>> = Vec::new();
    let started = Instant::now();
    while remaining > 0 && sample.len() < options.infer_messages && started.elapsed() < timeout {
        let Some(polled) = consumer.poll(std::time::Duration::from_millis(50)) else {
            continue;
        };
        match polled {
            Ok(msg) => sample.extend(msg.payload().map(<[u8]>::to_vec)),
            // the end of a partition's log (its high watermark is not reliable on tansu)
            Err(KafkaError::PartitionEOF(_)) => remaining = remaining.saturating_sub(1),
            Err(e) => return Err(err("fetch", &e)),
        }
    }
    let csv = match options.format() {
        KafkaFormat::Json => None,
        KafkaFormat::Csv => Some((b',', b'"')),
    };
    infer_from_records(
        csv,
        sample.iter().map(Vec::as_slice),
        &format!("kafka source {context}"),
    )
}
