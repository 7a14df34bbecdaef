//! The outbox relay: moves order events from the store's outbox to the
//! sink, at least once, in batches.
//!
//! One pass ([`Engine::relay_once`]) claims a batch under a lease, submits
//! it to the sink in one call, and acknowledges it in the store only after
//! the sink acked. A relay that dies between claim and ack leaves its batch
//! to be claimed again once the lease lapses, by this instance or another;
//! the sink then sees those events twice, and consumers dedupe by event id.

use std::future::Future;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::Engine;
use crate::error::Result;
use crate::metrics::{RelayStage, ops};
use crate::model::{OrderEvent, Timestamp};

impl Engine {
    /// One relay pass: claims up to [`RelayConfig::batch`](super::RelayConfig::batch)
    /// pending events, hands them to the sink, acknowledges them. Returns
    /// how many events were delivered (0: nothing was claimable). On an
    /// error nothing is acknowledged; the events come back when their lease
    /// lapses.
    ///
    /// A batch whose submit or ack failed is kept and retried first by the
    /// next pass of this engine, without waiting for its lease to lapse,
    /// but only while the lease left is longer than the whole resend can
    /// take: [`RelayConfig::submit_timeout`](super::RelayConfig::submit_timeout),
    /// then the longer of a [port timeout](super::EngineConfig::port_timeout)
    /// (the ack) and the sink's
    /// [`delivery_timeout`](crate::OrderSink::delivery_timeout) (its
    /// deliveries that may still land after a submit failed or was given
    /// up on). With less left, the kept batch is dropped and the pass claims
    /// afresh; the dropped events come back when their lease lapses, to
    /// whichever relay claims them then. A resend that outlived the lease
    /// could reach the sink after another relay had delivered the same
    /// events and the same orders' later ones, i.e. put an order's
    /// `placed` after its `cancelled`. The lease left is measured on both
    /// of the engine's clocks and the shorter one counts, so that a
    /// backward step of the wall clock cannot stretch it.
    ///
    /// Records the relay metrics: the batch size and the age of its oldest
    /// event ([`RELAY_BACKLOG_EVENTS`](crate::metrics::RELAY_BACKLOG_EVENTS),
    /// [`RELAY_LAG_SECONDS`](crate::metrics::RELAY_LAG_SECONDS), both `0` when
    /// nothing was claimable), the events delivered and the failures by
    /// stage.
    pub async fn relay_once(&self) -> Result<usize> {
        let inner = &*self.inner;
        let cfg = inner.config.relay;
        let now = inner.clock.now();
        let monotonic = inner.clock.monotonic();
        // A kept batch is resent only if this relay still holds its lease
        // when the resend is over, late deliveries included: after that,
        // another relay may have claimed those events and delivered later
        // ones of the same orders, and the resend would land behind them.
        let resend_takes =
            cfg.delivery_window(inner.config.port_timeout, inner.sink.delivery_timeout());
        let kept = inner.relay_retry.lock().take().filter(|kept| {
            let left = kept.lease_left(now, monotonic);
            let fits = left > resend_takes;
            if !fits {
                debug!(
                    events = kept.events.len(),
                    ?left,
                    ?resend_takes,
                    "kept batch dropped: too little of its lease is left to resend it; \
                     it is claimed again once the lease lapses"
                );
            }
            fits
        });
        let kept = match kept {
            Some(kept) => kept,
            None => KeptBatch {
                events: self
                    .call_err(&ops::CLAIM, inner.stock.claim(now, cfg.batch, cfg.lease))
                    .await
                    .inspect_err(|_| inner.metrics.relay_failed(RelayStage::Claim))?,
                until: now.saturating_add(cfg.lease),
                until_monotonic: monotonic.saturating_add(cfg.lease),
            },
        };
        let events = &kept.events;
        let oldest = events.iter().map(|e| e.at).min().unwrap_or(now);
        inner
            .metrics
            .relay_batch(events.len(), now.saturating_duration_since(oldest));
        if events.is_empty() {
            return Ok(0);
        }
        let delivered = async {
            self.call_err_within(&ops::SUBMIT, cfg.submit_timeout, inner.sink.submit(events))
                .await
                .inspect_err(|_| inner.metrics.relay_failed(RelayStage::Submit))?;
            self.call_err(&ops::ACK, inner.stock.ack(events))
                .await
                .inspect_err(|_| inner.metrics.relay_failed(RelayStage::Ack))
        };
        if let Err(error) = delivered.await {
            // Keep the batch: the next pass resends it at once if the lease
            // allows (the sink may have stored part of it; consumers dedupe
            // by event id).
            *inner.relay_retry.lock() = Some(kept);
            return Err(error);
        }
        inner.metrics.relay_delivered(events.len());
        debug!(count = events.len(), "order events relayed");
        Ok(events.len())
    }

    /// Relays until nothing is claimable; returns how many events were
    /// delivered. Events leased by another relay are left to it.
    pub async fn drain_outbox(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.relay_once().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Spawns the relay on the current tokio runtime. It drains the outbox
    /// whenever this engine appends to it, and every `interval` anyway (for
    /// events appended by other instances, and for leases that lapsed).
    /// After a failure it backs off, doubling from 100 ms up to `interval`
    /// (at least 1 s), and logs what failed. Stops when `shutdown`
    /// completes, after the pass in progress.
    pub fn spawn_relay(
        &self,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            let max_backoff = interval.max(Duration::from_secs(1));
            let mut backoff = Duration::ZERO;
            loop {
                let wait = if backoff.is_zero() { interval } else { backoff };
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = engine.inner.relay_wake.notified(), if backoff.is_zero() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                match engine.drain_outbox().await {
                    Ok(n) => {
                        if !backoff.is_zero() {
                            info!(delivered = n, "order relay recovered");
                        }
                        backoff = Duration::ZERO;
                    }
                    Err(error) => {
                        backoff = (backoff * 2).clamp(Duration::from_millis(100), max_backoff);
                        warn!(%error, retry_in = ?backoff,
                            "order relay failed; the events stay in the outbox and are retried");
                    }
                }
            }
            debug!("order relay stopped");
        })
    }
}

/// A claimed batch whose submit or ack failed, kept for this engine's next
/// relay pass, with the end of its lease.
pub(super) struct KeptBatch {
    events: Vec<OrderEvent>,
    /// The lease's end as the store recorded it (wall clock): what other
    /// relays compare their own time with.
    until: Timestamp,
    /// The same end on the engine's monotonic clock, which a backward step
    /// of the wall clock cannot push out.
    until_monotonic: Duration,
}

impl KeptBatch {
    /// How much of the lease is left at `now` (wall) and `monotonic`: the
    /// shorter of the two readings.
    fn lease_left(&self, now: Timestamp, monotonic: Duration) -> Duration {
        let wall = self.until.saturating_duration_since(now);
        wall.min(self.until_monotonic.saturating_sub(monotonic))
    }
}
