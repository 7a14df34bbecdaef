//! [`OrderWorker`]: the consumer side. Reads the order topic at least
//! once, hands decoded events to an [`EventHandler`] in batches, pauses
//! consumption and retries while the handler fails transiently, and
//! dead-letters what it cannot process.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::TopicPartitionList;

mod decode;
pub(super) mod options;

pub(crate) use decode::decode;
pub use options::{WorkerCounters, WorkerOptions, WorkerStats};

use super::client::{self, LogContext, Stop, consumer_lag};
use super::dlq::{DeadLetter, Reason};
use super::{KafkaOptions, backend_err};
use crate::EventHandler;
use crate::error::{Error, Result};
use crate::model::OrderEvent;

/// How often the consumer is polled while consumption is paused: often
/// enough for any sane `max.poll.interval.ms` (which librdkafka checks
/// between polls) and to serve rebalances promptly.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// What the worker carries from one retry to the next while the handler
/// fails transiently.
#[derive(Default)]
struct Held {
    /// The stall in progress, if any.
    stall: Option<Stall>,
    /// Messages that arrived while consumption was paused (fetched before
    /// the pause took effect, or from a partition assigned since): handled
    /// after the batch in flight, in the order they came.
    backlog: VecDeque<OwnedMessage>,
}

/// Consumption paused because the handler fails transiently.
struct Stall {
    since: Instant,
    /// Every partition paused during this stall, all resumed at its end: a
    /// partition revoked meanwhile would otherwise stay paused if it were
    /// assigned again later.
    paused: BTreeSet<(String, i32)>,
    /// When to log the next "still stalled" line.
    report_at: Instant,
}

/// The fate of one message of a batch.
enum Verdict {
    /// Processed (handled, or dead-lettered once the write is acked).
    Handled,
    /// To be dead-lettered.
    Dead(Reason, String, u32),
    /// Not processed: the worker is stopping (re-delivered later).
    Abandoned,
}

/// A consumer-group worker that reads the order topic AT LEAST ONCE and
/// hands decoded [`OrderEvent`]s to an [`EventHandler`].
///
/// * **Offsets.** Automatic offset storing is off: a message's offset is
///   stored only once it is processed, i.e. handled, or written to the
///   dead-letter topic and that write acknowledged. Stored offsets are
///   committed every [`commit_interval`](WorkerOptions::commit_interval),
///   and synchronously when [`run`](Self::run) returns. A crash or a
///   rebalance re-delivers what was not yet committed (duplicates, never
///   gaps).
/// * **Batches.** Up to [`max_batch`](WorkerOptions::max_batch) messages
///   that are ready. Each is decoded; an undecodable one (not JSON, not an
///   order event, an unknown schema version) is dead-lettered without a
///   retry. The rest go to the handler as one batch. A batch that fails
///   permanently, or transiently 5 times in a row (it may be too big for
///   the database's timeouts), is handed over one event at a time: an
///   event failing permanently is dead-lettered at once.
/// * **Back-pressure.** While the handler fails transiently (its database
///   is down), the worker retries the same batch, or event, with capped
///   backoff for as long as it takes, and reads nothing further: it pauses
///   its assigned partitions and stores no offset past the failing batch.
///   It keeps polling the consumer meanwhile, so it stays in the group
///   however long the outage. It logs a warning when the stall begins, an
///   error every [`progress_interval`](WorkerOptions::progress_interval)
///   while it lasts, and counts it in [`WorkerStats::stalls`] and
///   [`WorkerCounters::stalled_for`]. Healthy events are never
///   dead-lettered for an outage; they wait.
/// * **Dead letters** go to `<topic>.dlq` with the original key, value and
///   headers plus the [`dlq`](super::dlq) headers (original topic,
///   partition, offset, group, error, attempts), through an idempotent
///   producer. A failed dead-letter write is retried until it succeeds or
///   the worker stops; the message's offset is never skipped.
/// * **Progress.** [`stats_handle`](Self::stats_handle) for live counts,
///   and a `tracing` info line every
///   [`progress_interval`](WorkerOptions::progress_interval) with events/s
///   and the consumer lag.
///
/// ```no_run
/// # #[cfg(feature = "mysql")]
/// # async fn demo() -> flashsale::Result<()> {
/// use flashsale::kafka::{KafkaOptions, OrderWorker, WorkerOptions};
/// use flashsale::mysql::MySqlOrderTable;
///
/// let table = MySqlOrderTable::connect("mysql://root@127.0.0.1:3306/test", "shop_").await?;
/// table.migrate().await?;
/// let kafka = KafkaOptions::new("127.0.0.1:9092").topic("shop.orders");
/// let worker = OrderWorker::new(&kafka, WorkerOptions::new().group("shop-orders"), table)?;
/// let stats = worker
///     .run(async { tokio::signal::ctrl_c().await.ok(); })
///     .await?;
/// println!("{} events handled, {} dead-lettered", stats.handled, stats.dead_lettered);
/// # Ok(()) }
/// ```
pub struct OrderWorker {
    consumer: Arc<StreamConsumer<LogContext>>,
    producer: FutureProducer<LogContext>,
    handler: Arc<dyn EventHandler>,
    topic: String,
    dead_letter_topic: String,
    opts: WorkerOptions,
    request_timeout: Duration,
    counters: Arc<WorkerCounters>,
    lag_running: Arc<AtomicBool>,
}

impl std::fmt::Debug for OrderWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderWorker")
            .field("topic", &self.topic)
            .field("group", &self.opts.group)
            .finish_non_exhaustive()
    }
}

impl OrderWorker {
    /// A worker on `kafka`'s topic, in `options`' group, handing events to
    /// `handler`. Fails only on a configuration that is unusable (the
    /// message says what to change); it does not contact the broker.
    pub fn new(
        kafka: &KafkaOptions,
        options: WorkerOptions,
        handler: impl EventHandler,
    ) -> Result<Self> {
        kafka.validate()?;
        options.validate()?;
        let consumer: StreamConsumer<LogContext> = options
            .consumer_config(kafka, &options.group)
            .create_with_context(LogContext::new(&options.group))
            .map_err(|e| Error::Config(format!("Kafka consumer: {e}")))?;
        Ok(Self {
            consumer: Arc::new(consumer),
            producer: client::producer(kafka, &options.group)?,
            handler: Arc::new(handler),
            topic: kafka.topic.clone(),
            dead_letter_topic: kafka.dead_letter_topic(),
            opts: options,
            request_timeout: kafka.request_timeout,
            counters: Arc::default(),
            lag_running: Arc::default(),
        })
    }

    /// Live counters, readable while [`run`](Self::run) runs.
    pub fn stats_handle(&self) -> Arc<WorkerCounters> {
        self.counters.clone()
    }

    /// Consumes until `shutdown` resolves; then finishes the batch in
    /// flight, commits the offsets of everything processed, leaves the
    /// group and returns what it did.
    ///
    /// "Finishes" means the handler call in progress completes and its
    /// results are dead-lettered as needed; retries still pending then
    /// (a backoff, a stall waiting for the handler's database, a
    /// dead-letter write that keeps failing) are given up,
    /// and those messages, whose offsets are not committed, are delivered
    /// again to the group's next worker.
    ///
    /// # Errors
    ///
    /// Only if the worker cannot subscribe to its topic. Broker and
    /// handler failures while running are logged and retried, never
    /// returned.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WorkerStats> {
        let (fire, stop) = Stop::new();
        let result = {
            let mut shutdown = pin!(shutdown);
            let mut asked = false;
            let mut work = pin!(self.consume(stop));
            loop {
                tokio::select! {
                    r = &mut work => break r,
                    () = &mut shutdown, if !asked => {
                        asked = true;
                        tracing::info!(
                            group = %self.opts.group,
                            "order worker stopping: finishing the batch in flight"
                        );
                        let _ = fire.send(true);
                    }
                }
            }
        };
        // Closing the consumer (leaving the group) and the producer block.
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
        result
    }

    async fn consume(&self, mut stop: Stop) -> Result<WorkerStats> {
        self.consumer
            .subscribe(&[&self.topic])
            .map_err(backend_err("subscribe"))?;
        tracing::info!(
            topic = %self.topic,
            group = %self.opts.group,
            dead_letter_topic = %self.dead_letter_topic,
            "order worker started"
        );
        let every = self.opts.progress_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last = (Instant::now(), 0u64);
        let mut errors = 0u32;
        let mut held = Held::default();
        loop {
            if !held.backlog.is_empty() && !stop.fired() {
                let n = held.backlog.len().min(self.opts.max_batch);
                let batch = held.backlog.drain(..n).collect();
                self.process(batch, &mut stop, &mut held).await;
                continue;
            }
            let first = tokio::select! {
                biased;
                () = stop.wait() => break,
                _ = ticker.tick() => {
                    self.report_progress(&mut last);
                    continue;
                }
                m = self.consumer.recv() => m,
            };
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    errors += 1;
                    tracing::warn!(error = %e, topic = %self.topic, "kafka consumer error");
                    if !stop.sleep(self.opts.backoff.delay(errors)).await {
                        break;
                    }
                    continue;
                }
            };
            errors = 0;
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.opts.batch_wait;
            while batch.len() < self.opts.max_batch {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(m)) => batch.push(m.detach()),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, topic = %self.topic, "kafka consumer error");
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.process(batch, &mut stop, &mut held).await;
        }
        if let Some(stall) = held.stall.take() {
            // Nothing held was processed, so no offset past it was stored:
            // the group's next owner reads it all again.
            self.counters.set_stalled_since(None);
            tracing::warn!(
                group = %self.opts.group,
                stalled_ms = stall.since.elapsed().as_millis() as u64,
                "order worker stopping while stalled: the failing batch is left to the group"
            );
        }
        self.close().await;
        let stats = self.counters.snapshot();
        tracing::info!(
            group = %self.opts.group,
            handled = stats.handled,
            dead_lettered = stats.dead_lettered,
            retries = stats.retries,
            batches = stats.batches,
            stalls = stats.stalls,
            "order worker stopped"
        );
        Ok(stats)
    }

    /// Processes one batch and stores the offsets of what it processed.
    async fn process(&self, batch: Vec<OwnedMessage>, stop: &mut Stop, held: &mut Held) {
        let mut verdicts: Vec<Verdict> = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            match decode(m.payload()) {
                Ok(e) => {
                    verdicts.push(Verdict::Handled);
                    events.push(e);
                    slots.push(i);
                }
                Err(why) => verdicts.push(Verdict::Dead(Reason::Undecodable, why, 0)),
            }
        }
        for (slot, v) in slots
            .into_iter()
            .zip(self.handle(&events, stop, held).await)
        {
            verdicts[slot] = v;
        }
        // Dead letters, all at once; each offset is stored only once its
        // write is acknowledged.
        let mut letters = Vec::new();
        let mut of_letter = Vec::new();
        for (i, v) in verdicts.iter().enumerate() {
            if let Verdict::Dead(reason, error, attempts) = v {
                let m = &batch[i];
                tracing::warn!(
                    topic = %m.topic(), partition = m.partition(), offset = m.offset(),
                    reason = reason.as_str(), attempts, error = %error,
                    "dead-lettering a message"
                );
                letters.push(DeadLetter {
                    message: m,
                    group: &self.opts.group,
                    reason: *reason,
                    error,
                    attempts: *attempts,
                });
                of_letter.push(i);
            }
        }
        let mut done: Vec<bool> = verdicts
            .iter()
            .map(|v| matches!(v, Verdict::Handled))
            .collect();
        if !letters.is_empty() {
            let records: Vec<_> = letters
                .iter()
                .map(|l| l.record(&self.dead_letter_topic))
                .collect();
            let (acked, _) = client::produce_acked(
                &self.producer,
                &records,
                &self.opts.backoff,
                None,
                "dead_letter",
                stop,
            )
            .await;
            let n = acked.iter().filter(|a| **a).count();
            WorkerCounters::add(&self.counters.dead_lettered, n as u64);
            for (i, a) in of_letter.into_iter().zip(acked) {
                done[i] = a;
            }
        }
        WorkerCounters::add(&self.counters.batches, 1);
        self.store_offsets(&batch, &done);
    }

    /// Hands `events` to the handler: the batch, then one at a time if it
    /// fails permanently or keeps failing. One verdict per event.
    async fn handle(
        &self,
        events: &[OrderEvent],
        stop: &mut Stop,
        held: &mut Held,
    ) -> Vec<Verdict> {
        if events.is_empty() {
            return Vec::new();
        }
        if events.len() > 1 {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let e = match self.handler.handle(events).await {
                    Ok(()) => {
                        self.end_stall(held);
                        WorkerCounters::add(&self.counters.handled, events.len() as u64);
                        return events.iter().map(|_| Verdict::Handled).collect();
                    }
                    Err(e) => e,
                };
                if !e.is_transient() {
                    // The handler answered: whatever stalled it is over.
                    self.end_stall(held);
                }
                // A batch failing transiently again and again may be too
                // big for the database's timeouts: smaller calls may pass.
                if !e.is_transient() || attempt >= self.opts.max_attempts {
                    tracing::warn!(
                        error = %e, events = events.len(), attempt,
                        "batch failed; handing its events over one at a time"
                    );
                    break;
                }
                if !self.back_off(attempt, &e, events.len(), stop, held).await {
                    return events.iter().map(|_| Verdict::Abandoned).collect();
                }
                WorkerCounters::add(&self.counters.retries, 1);
            }
        }
        let mut verdicts = Vec::with_capacity(events.len());
        for e in events {
            let v = if stop.fired() {
                Verdict::Abandoned
            } else {
                self.handle_one(e, stop, held).await
            };
            verdicts.push(v);
        }
        verdicts
    }

    /// Hands one event to the handler until it succeeds or fails
    /// permanently: a transient failure is waited out, never
    /// dead-lettered.
    async fn handle_one(&self, event: &OrderEvent, stop: &mut Stop, held: &mut Held) -> Verdict {
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let e = match self.handler.handle(std::slice::from_ref(event)).await {
                Ok(()) => {
                    self.end_stall(held);
                    WorkerCounters::add(&self.counters.handled, 1);
                    return Verdict::Handled;
                }
                Err(e) => e,
            };
            if !e.is_transient() {
                self.end_stall(held);
                return Verdict::Dead(Reason::Rejected, e.to_string(), attempt);
            }
            if !self.back_off(attempt, &e, 1, stop, held).await {
                return Verdict::Abandoned;
            }
            WorkerCounters::add(&self.counters.retries, 1);
        }
    }

    /// Waits before retry `retry` of a handler call (of `events` events)
    /// that failed transiently with `error`, with consumption paused: the
    /// first such failure starts a stall. `false` if the worker was asked
    /// to stop meanwhile.
    async fn back_off(
        &self,
        retry: u32,
        error: &Error,
        events: usize,
        stop: &mut Stop,
        held: &mut Held,
    ) -> bool {
        let now = Instant::now();
        let every = self.opts.progress_interval;
        let group = &self.opts.group;
        match &mut held.stall {
            None => {
                tracing::warn!(
                    group = %group, error = %error, events,
                    "handler failed transiently: consumption paused, retrying until it succeeds"
                );
                WorkerCounters::add(&self.counters.stalls, 1);
                self.counters.set_stalled_since(Some(now));
                held.stall = Some(Stall {
                    since: now,
                    paused: BTreeSet::new(),
                    report_at: now + every,
                });
            }
            Some(stall) if now >= stall.report_at => {
                stall.report_at = now + every;
                tracing::error!(
                    group = %group, error = %error, events, retry,
                    stalled_secs = stall.since.elapsed().as_secs(),
                    "order worker stalled: the handler keeps failing transiently; \
                     consumption paused, retrying"
                );
            }
            Some(_) => {
                tracing::debug!(error = %error, events, retry, "handler failed transiently; retrying")
            }
        }
        let until = tokio::time::Instant::now() + self.opts.backoff.delay(retry);
        loop {
            if let Some(stall) = &mut held.stall {
                self.pause_assigned(stall);
            }
            // Paused, yet polled at least every KEEP_ALIVE: librdkafka drops
            // a member not polled within max.poll.interval.ms (a rebalance
            // re-delivering everything), and serves rebalances only in polls.
            tokio::select! {
                biased;
                () = stop.wait() => return false,
                () = tokio::time::sleep_until(until) => return true,
                m = self.consumer.recv() => match m {
                    Ok(m) => held.backlog.push_back(m.detach()),
                    Err(e) => tracing::debug!(error = %e, "kafka consumer error while paused"),
                },
                () = tokio::time::sleep(KEEP_ALIVE) => {}
            }
        }
    }

    /// Pauses every partition assigned now (again: one assigned since the
    /// stall began must not be read either), remembering it for the resume.
    fn pause_assigned(&self, stall: &mut Stall) {
        let assigned = match self.consumer.assignment() {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the assignment to pause it");
                return;
            }
        };
        if assigned.count() == 0 {
            return;
        }
        for p in assigned.elements() {
            stall.paused.insert((p.topic().to_owned(), p.partition()));
        }
        if let Err(e) = self.consumer.pause(&assigned) {
            tracing::debug!(error = %e, "pausing the assigned partitions failed");
        }
    }

    /// Ends the stall in progress, if any, the handler having answered:
    /// resumes what it paused.
    fn end_stall(&self, held: &mut Held) {
        let Some(stall) = held.stall.take() else {
            return;
        };
        let mut paused = TopicPartitionList::new();
        for (topic, partition) in &stall.paused {
            paused.add_partition(topic, *partition);
        }
        if paused.count() > 0
            && let Err(e) = self.consumer.resume(&paused)
        {
            tracing::error!(
                group = %self.opts.group, error = %e,
                "resuming the paused partitions failed: restart the worker if it reads nothing"
            );
        }
        self.counters.set_stalled_since(None);
        tracing::warn!(
            group = %self.opts.group,
            stalled_ms = stall.since.elapsed().as_millis() as u64,
            "handler answering again: consumption resumed"
        );
    }

    /// Stores, per partition, the offset after the last message of the
    /// batch's leading run of processed ones.
    fn store_offsets(&self, batch: &[OwnedMessage], done: &[bool]) {
        let mut ends: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        let mut open: BTreeMap<(&str, i32), bool> = BTreeMap::new();
        for (m, ok) in batch.iter().zip(done) {
            let key = (m.topic(), m.partition());
            let still = open.entry(key).or_insert(true);
            if *still && *ok {
                ends.insert(key, m.offset());
            } else {
                *still = false;
            }
        }
        for ((topic, partition), offset) in ends {
            // Stores offset + 1: the next message to read.
            if let Err(e) = self.consumer.store_offset(topic, partition, offset) {
                // The partition was revoked meanwhile: its new owner reads
                // these messages again (duplicates, never gaps).
                tracing::debug!(error = %e, topic, partition, offset, "offset not stored");
            }
        }
    }

    /// Logs a progress line: events/s since the last one and the lag.
    fn report_progress(&self, last: &mut (Instant, u64)) {
        let stats = self.counters.snapshot();
        let done = stats.handled + stats.dead_lettered;
        let secs = last.0.elapsed().as_secs_f64().max(1e-3);
        let rate = (done - last.1.min(done)) as f64 / secs;
        *last = (Instant::now(), done);
        if self.lag_running.swap(true, Ordering::AcqRel) {
            return; // the previous lag query has not answered yet
        }
        let consumer = self.consumer.clone();
        let running = self.lag_running.clone();
        let timeout = self.request_timeout;
        let group = self.opts.group.clone();
        tokio::task::spawn_blocking(move || {
            let lag = consumer_lag(&consumer, timeout);
            running.store(false, Ordering::Release);
            match lag {
                Ok((lag, partitions)) => tracing::info!(
                    group = %group,
                    events_per_sec = format_args!("{rate:.1}"),
                    lag, partitions,
                    handled = stats.handled,
                    dead_lettered = stats.dead_lettered,
                    retries = stats.retries,
                    stalls = stats.stalls,
                    "order worker progress"
                ),
                Err(e) => tracing::info!(
                    group = %group,
                    events_per_sec = format_args!("{rate:.1}"),
                    lag = "unknown",
                    handled = stats.handled,
                    dead_lettered = stats.dead_lettered,
                    retries = stats.retries,
                    error = %e,
                    "order worker progress"
                ),
            }
        });
    }

    /// Commits what is stored, synchronously (it blocks, so on a blocking
    /// thread).
    async fn close(&self) {
        let consumer = self.consumer.clone();
        let group = self.opts.group.clone();
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
                .await;
        match committed {
            Ok(Ok(())) | Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
            Ok(Err(e)) => tracing::warn!(group = %group, error = %e, "final offset commit failed"),
            Err(e) => tracing::warn!(group = %group, error = %e, "final offset commit failed"),
        }
    }
}

/// `run`'s future can be spawned.
#[cfg(test)]
#[allow(dead_code)]
fn run_is_send(w: OrderWorker) {
    fn send<T: Send>(_: T) {}
    send(w.run(async {}));
}
