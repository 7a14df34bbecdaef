//! [`KafkaOptions`]: where the broker is and how to talk to it.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::error::{Error, Result};

/// How to reach Kafka, for the sink and the worker. Start with
/// [`KafkaOptions::new`] or [`KafkaOptions::from_env`]; the defaults suit
/// production.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct KafkaOptions {
    pub(crate) brokers: String,
    pub(crate) topic: String,
    pub(crate) delivery_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) properties: BTreeMap<String, String>,
}

impl KafkaOptions {
    /// The default topic for order events.
    pub const DEFAULT_TOPIC: &'static str = "flashsale.orders";
    /// The variable [`from_env`](Self::from_env) reads the brokers from.
    pub const BROKERS_VAR: &'static str = "FLASHSALE_KAFKA_BROKERS";
    /// The variable [`from_env`](Self::from_env) reads the topic from.
    pub const TOPIC_VAR: &'static str = "FLASHSALE_KAFKA_TOPIC";

    /// The cluster behind `brokers`: bootstrap servers as `host:port`,
    /// comma-separated (prefer `127.0.0.1` to `localhost` on test machines).
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: Self::DEFAULT_TOPIC.to_owned(),
            delivery_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(5),
            properties: BTreeMap::new(),
        }
    }

    /// `FLASHSALE_KAFKA_BROKERS` (required) and `FLASHSALE_KAFKA_TOPIC`
    /// (default `flashsale.orders`). `Ok(None)` when no brokers are set.
    pub fn from_env() -> Result<Option<Self>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let Some(brokers) = var(Self::BROKERS_VAR) else {
            return Ok(None);
        };
        let mut opts = Self::new(brokers.trim());
        if let Some(topic) = var(Self::TOPIC_VAR) {
            opts = opts.topic(topic.trim());
        }
        opts.validate()?;
        Ok(Some(opts))
    }

    /// The topic order events go to (default `flashsale.orders`); dead
    /// letters go to `<topic>.dlq`.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// How long librdkafka keeps trying to deliver one message, retries
    /// included, before its delivery report is an error (default 60 s;
    /// librdkafka's `delivery.timeout.ms`). A submit the relay gave up on
    /// (its submit timeout, 10 s) leaves its messages queued here, still
    /// being delivered; the relay resends the batch and consumers dedupe.
    /// A message that times out makes the idempotent producer bump its
    /// epoch, a path some Kafka-API brokers handle badly (tansu 0.6
    /// panics), so keep this well above a slow broker's answer time.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// How long a metadata request (`ping`), a topic creation or a
    /// commit may take (default 5 s). Produce and fetch requests keep
    /// librdkafka's own `request.timeout.ms` and `socket.timeout.ms`
    /// (set them with [`set`](Self::set)).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets any librdkafka property (`security.protocol`, `client.id`,
    /// `linger.ms`, ...); it overrides this crate's defaults, except that
    /// the sink always keeps `enable.idempotence=true` (the order contract
    /// needs it).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The topic order events go to.
    pub fn topic_name(&self) -> &str {
        &self.topic
    }

    /// The dead-letter topic: `<topic>.dlq`.
    pub fn dead_letter_topic(&self) -> String {
        format!("{}.dlq", self.topic)
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.brokers.trim().is_empty() {
            return Err(Error::Config(format!(
                "{}: no Kafka brokers given; set host:port[,host:port...]",
                Self::BROKERS_VAR
            )));
        }
        let topic_ok = !self.topic.is_empty()
            && self.topic.len() <= 200
            && self
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !topic_ok {
            return Err(Error::Config(format!(
                "{}: {:?} is not a Kafka topic name (1 to 200 of A-Z a-z 0-9 . _ -)",
                Self::TOPIC_VAR,
                self.topic
            )));
        }
        Ok(())
    }

    /// The client configuration shared by producers and consumers: the
    /// brokers, then the user's properties.
    pub(crate) fn client_config(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            config.set(*k, v);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_brokers_and_topic_names() {
        assert!(KafkaOptions::new("127.0.0.1:9092").validate().is_ok());
        assert!(KafkaOptions::new(" ").validate().is_err());
        for bad in ["", "has space", "a/b", &"x".repeat(201)] {
            let err = KafkaOptions::new("h:1").topic(bad).validate().unwrap_err();
            assert!(err.to_string().contains("FLASHSALE_KAFKA_TOPIC"), "{err}");
        }
        let o = KafkaOptions::new("h:1").topic("shop.orders-v2_x");
        assert!(o.validate().is_ok());
        assert_eq!(o.dead_letter_topic(), "shop.orders-v2_x.dlq");
    }

    #[test]
    fn user_properties_override_defaults() {
        let o = KafkaOptions::new("h:1").set("linger.ms", "50");
        let c = o.client_config(&[("linger.ms", "5".into()), ("acks", "all".into())]);
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("bootstrap.servers"), Some("h:1"));
    }
}
