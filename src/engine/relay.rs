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

impl Engine {
    /// One relay pass: claims up to [`RelayConfig::batch`](super::RelayConfig::batch)
    /// pending events, hands them to the sink, acknowledges them. Returns
    /// how many events were delivered (0: nothing was claimable). On an
    /// error nothing is acknowledged; the events come back when their lease
    /// lapses.
    ///
    /// A batch whose submit or ack failed is kept and retried first by the
    /// next pass of this engine, without waiting for its lease to lapse
    /// (but not after: then it is claimed afresh, by whichever relay).
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
        // A kept batch is resent only while this relay still holds its
        // lease: once it lapsed, another relay may have claimed those events
        // and delivered later ones of the same orders after them, so a
        // resend would put an order's events out of order in the sink.
        let retry = inner.relay_retry.lock().take();
        let (events, lease_until) = match retry {
            Some((events, until)) if now < until => (events, until),
            _ => {
                let events = self
                    .call_err(&ops::CLAIM, inner.stock.claim(now, cfg.batch, cfg.lease))
                    .await
                    .inspect_err(|_| inner.metrics.relay_failed(RelayStage::Claim))?;
                (events, now.saturating_add(cfg.lease))
            }
        };
        let oldest = events.iter().map(|e| e.at).min().unwrap_or(now);
        inner
            .metrics
            .relay_batch(events.len(), now.saturating_duration_since(oldest));
        if events.is_empty() {
            return Ok(0);
        }
        let delivered = async {
            self.call_err_within(&ops::SUBMIT, cfg.submit_timeout, inner.sink.submit(&events))
                .await
                .inspect_err(|_| inner.metrics.relay_failed(RelayStage::Submit))?;
            self.call_err(&ops::ACK, inner.stock.ack(&events))
                .await
                .inspect_err(|_| inner.metrics.relay_failed(RelayStage::Ack))
        };
        if let Err(error) = delivered.await {
            // Keep the batch: the next pass resends it at once (the sink
            // may have stored part of it; consumers dedupe by event id).
            *inner.relay_retry.lock() = Some((events, lease_until));
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
