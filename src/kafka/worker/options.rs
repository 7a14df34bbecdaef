//! [`WorkerOptions`], the retry [`Backoff`] and the worker's counters.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::kafka::KafkaOptions;

/// How an [`OrderWorker`](super::OrderWorker) consumes. Start with
/// [`WorkerOptions::new`]; the defaults suit production.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct WorkerOptions {
    pub(crate) group: String,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_batch: usize,
    pub(crate) batch_wait: Duration,
    pub(crate) progress_interval: Duration,
    pub(crate) commit_interval: Duration,
    pub(crate) properties: BTreeMap<String, String>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerOptions {
    /// The default consumer group.
    pub const DEFAULT_GROUP: &'static str = "flashsale-order-worker";

    /// The defaults: group `flashsale-order-worker`, backoff from 100 ms
    /// doubling to 5 s (with jitter), batches of up to 500 events (split
    /// after 5 transient failures in a row), a progress line every 30 s,
    /// stored offsets committed every 5 s.
    pub fn new() -> Self {
        Self {
            group: Self::DEFAULT_GROUP.to_owned(),
            max_attempts: 5,
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
            max_batch: 500,
            batch_wait: Duration::ZERO,
            progress_interval: Duration::from_secs(30),
            commit_interval: Duration::from_secs(5),
            properties: BTreeMap::new(),
        }
    }

    /// The consumer group (default `flashsale-order-worker`). Workers of
    /// one group share the topic's partitions; each group reads every
    /// event.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// How many times a batch failing transiently is tried before its
    /// events are handed over one at a time (default 5; at least 1).
    ///
    /// Transient failures are never dead-lettered: the worker pauses
    /// consumption and retries until the handler succeeds (see
    /// [`OrderWorker`](super::OrderWorker)); the batch split needs no
    /// tuning, so the option will go.
    #[deprecated(
        note = "transient failures are no longer dead-lettered (the worker pauses and retries \
                until the handler succeeds); this now only sets after how many transient \
                failures a batch is split into single events, and will be removed"
    )]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The pause before retry `n` is `initial * 2^(n-1)`, at most `max`,
    /// of which a random part up to half is taken off (jitter). Default:
    /// 100 ms to 5 s.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff { initial, max };
        self
    }

    /// The most messages handed to the handler at once (default 500).
    ///
    /// The consumer is not polled while the handler runs: a handler call
    /// must finish well within librdkafka's `max.poll.interval.ms` (300 s
    /// by default; see [`set`](Self::set)), or the worker drops out of the
    /// group and the batch is delivered again to the next owner of its
    /// partitions. Between retries it is polled (with its partitions
    /// paused), so an outage of any length keeps it in the group; after
    /// one, the batch may be handled one event at a time, i.e. `max_batch`
    /// calls in a row.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n;
        self
    }

    /// How long to wait for more messages once one has arrived, to fill a
    /// batch (default zero: take what is already fetched, wait for none).
    pub fn batch_wait(mut self, wait: Duration) -> Self {
        self.batch_wait = wait;
        self
    }

    /// How often a progress line (events/s, consumer lag) is logged at
    /// `info` (default 30 s).
    pub fn progress_interval(mut self, every: Duration) -> Self {
        self.progress_interval = every;
        self
    }

    /// How often the offsets of processed messages are committed (default
    /// 5 s; librdkafka's `auto.commit.interval.ms`). They are also
    /// committed when the worker stops. A crash re-delivers at most this
    /// much work.
    pub fn commit_interval(mut self, every: Duration) -> Self {
        self.commit_interval = every;
        self
    }

    /// Sets a librdkafka property of the worker's consumer only (e.g.
    /// `session.timeout.ms`, `max.poll.interval.ms`); it overrides the
    /// [`KafkaOptions`] properties. `group.id`, `enable.auto.commit` and
    /// `enable.auto.offset.store` are the worker's and cannot be set.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The consumer group.
    pub fn group_name(&self) -> &str {
        &self.group
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("order worker: {what}")));
        if self.group.trim().is_empty() {
            return bad("the consumer group name is empty");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1");
        }
        if self.max_batch == 0 {
            return bad("max_batch must be at least 1");
        }
        if self.backoff.initial.is_zero() || self.backoff.max < self.backoff.initial {
            return bad("backoff needs 0 < initial <= max");
        }
        if self.progress_interval.is_zero() || self.commit_interval.is_zero() {
            return bad("progress and commit intervals must be above zero");
        }
        Ok(())
    }

    /// The consumer configuration for `group`: this crate's defaults, the
    /// user's [`KafkaOptions`] properties, ours, and what cannot change.
    pub(crate) fn consumer_config(
        &self,
        opts: &KafkaOptions,
        group: &str,
    ) -> rdkafka::ClientConfig {
        let defaults = [
            // A new group reads the topic from its start: no order skipped.
            ("auto.offset.reset", "earliest".to_owned()),
        ];
        let mut config = opts.client_config(&defaults);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
            .set("group.id", group)
            .set("enable.partition.eof", "false")
            .set("enable.auto.commit", "true")
            .set(
                "auto.commit.interval.ms",
                self.commit_interval.as_millis().max(1).to_string(),
            )
            .set("enable.auto.offset.store", "false");
        config
    }
}

/// Capped exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The longest pause before retry `retry` (1 = the first retry):
    /// `initial * 2^(retry-1)`, at most `max`.
    pub(crate) fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(30);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The pause before retry `retry`: the ceiling less up to half of it,
    /// `jitter` in `[0, 1)` saying how much.
    pub(crate) fn jittered(&self, retry: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        ceiling.saturating_sub(ceiling.mul_f64(jitter.clamp(0.0, 1.0) / 2.0))
    }

    /// [`jittered`](Self::jittered) with a random jitter.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        let r = std::collections::hash_map::RandomState::new().hash_one(retry);
        self.jittered(retry, (r >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// What an [`OrderWorker`](super::OrderWorker) has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Events the handler processed (`Ok`), duplicates included: telling
    /// them apart is the handler's business.
    pub handled: u64,
    /// Messages written to the dead-letter topic (and acknowledged).
    pub dead_lettered: u64,
    /// Handler calls that were retries of a failed call.
    pub retries: u64,
    /// Batches of messages processed.
    pub batches: u64,
    /// Times the worker paused consumption because the handler failed
    /// transiently (its database was down), each time until the handler
    /// answered again or the worker stopped.
    pub stalls: u64,
}

/// Live counters of a running [`OrderWorker`](super::OrderWorker), from
/// [`OrderWorker::stats_handle`](super::OrderWorker::stats_handle): cheap
/// to read from any thread.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub(super) handled: AtomicU64,
    pub(super) dead_lettered: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) stalls: AtomicU64,
    stalled_since: Mutex<Option<Instant>>,
}

impl WorkerCounters {
    /// The counts at this moment.
    pub fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            handled: self.handled.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
        }
    }

    /// How long consumption has been paused, if it is paused now: the
    /// handler keeps failing transiently (its database is down) and the
    /// worker retries the same batch, reading nothing further, until it
    /// succeeds. `None` while the worker consumes. Alert on it when it
    /// stays `Some` for long.
    pub fn stalled_for(&self) -> Option<Duration> {
        self.stalled_since.lock().map(|since| since.elapsed())
    }

    pub(super) fn set_stalled_since(&self, since: Option<Instant>) {
        *self.stalled_since.lock() = since;
    }

    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_bounded_jitter() {
        let b = WorkerOptions::new().backoff;
        let ms = |retry| b.ceiling(retry).as_millis();
        let schedule: Vec<_> = (1..=8).map(ms).collect();
        assert_eq!(schedule, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(ms(0), 100);
        assert_eq!(ms(u32::MAX), 5000);
        assert_eq!(b.jittered(3, 0.0), Duration::from_millis(400));
        assert_eq!(b.jittered(3, 0.999_999).as_millis(), 200);
        for retry in 1..=10 {
            let d = b.delay(retry);
            assert!(d <= b.ceiling(retry) && d >= b.ceiling(retry) / 2, "{d:?}");
        }
    }

    #[test]
    fn options_validate_and_the_worker_keeps_its_offset_settings() {
        assert!(WorkerOptions::new().validate().is_ok());
        #[allow(deprecated)] // still validated while it exists
        let no_attempts = WorkerOptions::new().max_attempts(0);
        for bad in [
            WorkerOptions::new().group(" "),
            no_attempts,
            WorkerOptions::new().max_batch(0),
            WorkerOptions::new().backoff(Duration::ZERO, Duration::from_secs(1)),
            WorkerOptions::new().backoff(Duration::from_secs(2), Duration::from_secs(1)),
            WorkerOptions::new().progress_interval(Duration::ZERO),
        ] {
            assert!(matches!(bad.validate(), Err(Error::Config(_))), "{bad:?}");
        }
        let kafka = KafkaOptions::new("h:1")
            .set("enable.auto.offset.store", "true")
            .set("session.timeout.ms", "6000");
        let w = WorkerOptions::new()
            .set("group.id", "sneaky")
            .set("session.timeout.ms", "7000");
        let c = w.consumer_config(&kafka, "g");
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("enable.auto.commit"), Some("true"));
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.get("session.timeout.ms"), Some("7000"));
    }
}
