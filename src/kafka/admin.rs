//! Topic setup: [`ensure_topics`].

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::{KafkaOptions, backend_err};
use crate::error::{Error, Result};

/// Creates each of `topics` with `partitions` partitions (replication
/// factor 1 on a one-broker cluster, else the broker's default), leaving
/// topics that already exist as they are. For test kits and first starts;
/// production clusters usually create topics through their own tooling.
pub async fn ensure_topics(opts: &KafkaOptions, topics: &[&str], partitions: i32) -> Result<()> {
    const OP: &str = "create topics";
    if partitions < 1 {
        return Err(Error::Config(format!(
            "a topic needs at least one partition, not {partitions}"
        )));
    }
    let admin: AdminClient<DefaultClientContext> = opts
        .client_config(&[])
        .create()
        .map_err(|e| Error::Config(format!("Kafka admin client: {e}")))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let admin_opts = AdminOptions::new()
        .request_timeout(Some(opts.request_timeout))
        .operation_timeout(Some(opts.request_timeout));
    let results = admin
        .create_topics(new.iter(), &admin_opts)
        .await
        .map_err(backend_err(OP))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::backend(
                    crate::kafka::BACKEND,
                    OP,
                    format!("could not create topic {topic:?}: {code}"),
                ));
            }
        }
    }
    Ok(())
}
