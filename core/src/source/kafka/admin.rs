//! Topic administration: [`ensure_topic`] creates a topic that does not exist yet (the Kafka
//! sink and `eddy gen` writing to a new topic).

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::uri::KafkaUri;
use crate::error::{Error, Result};

/// The number of partitions of `uri`'s topic, `None` when the broker does not know it.
pub fn topic_partitions(uri: &KafkaUri, timeout: Duration) -> Result<Option<usize>> {
    let err = |e: &dyn std::fmt::Display| Error::kafka(uri.to_string(), format!("metadata: {e}"));
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &uri.brokers)
        .set("allow.auto.create.topics", "false")
        .set("log_level", "3")
        .create()
        .map_err(|e| err(&e))?;
    let meta = client
        .fetch_metadata(Some(&uri.topic), timeout)
        .map_err(|e| err(&e))?;
    let Some(topic) = meta.topics().iter().find(|t| t.name() == uri.topic) else {
        return Ok(None);
    };
    match topic.error() {
        None if !topic.partitions().is_empty() => Ok(Some(topic.partitions().len())),
        None => Ok(None),
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Ok(None)
        }
        Some(e) => Err(err(&format!("{e:?}"))),
    }
}

/// Serializes [`ensure_topic`] within the process. tansu 0.6.0 lists a new topic in its
/// metadata before it has reset the new partitions' offsets (`create_topic` in tansu-storage's
/// dynostore), so a writer that saw the topic and produced in that window could have its batch
/// overlapped by the offsets given out after the reset. The subtasks of one sink open at once;
/// with this lock each returns only after a creation under way has completed. Writers in
/// separate processes can still meet that window: create the topic before starting them. (This
/// closes one race read in tansu's source; concurrent writers to one new partition have still
/// lost a batch now and then, see `kafka_sink::writers_creating_a_topic_at_once_lose_no_message`.)
static CREATING: Mutex<()> = Mutex::new(());

/// Creates `uri`'s topic with `uri.partitions` partitions (default 1) when the broker does not
/// have it; returns its partition count. A topic created meanwhile by another client is fine;
/// within one process a caller returns only once a creation under way has completed.
pub fn ensure_topic(uri: &KafkaUri, timeout: Duration) -> Result<usize> {
    let _one_at_a_time = CREATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(n) = topic_partitions(uri, timeout)? {
        return Ok(n);
    }
    let want = uri.partitions.unwrap_or(1);
    let err = |e: &dyn std::fmt::Display| {
        Error::kafka(
            uri.to_string(),
            format!("creating the topic ({want} partitions): {e}"),
        )
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &uri.brokers)
        .set("log_level", "3")
        .create()
        .map_err(|e| err(&e))?;
    let new = NewTopic::new(&uri.topic, want, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    // the admin future is completed by rdkafka's own thread; a private current-thread runtime
    // on a scoped thread waits for it, so this works inside or outside a tokio runtime
    let results = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| err(&e))?;
            rt.block_on(admin.create_topics([&new], &opts))
                .map_err(|e| err(&e))
        })
        .join()
        .map_err(|_| Error::Internal("the topic-creation thread panicked".into()))?
    })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(err(&code)),
        }
    }
    topic_partitions(uri, timeout)?
        .ok_or_else(|| err(&"the broker does not list it after creation"))
}
