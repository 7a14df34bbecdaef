//! The store-wide indexes on a cluster, where the scripts cannot write
//! them (they live in another slot): the set of products with pending
//! events and the due index, written by a follow-up after each script, and
//! the relay's periodic repair pass that finds what a crash left unmarked.

use std::time::Duration;

use super::backend_err;
use super::scripts::PROBE;
use super::stock::RedisStockStore;
use crate::error::Result;
use crate::model::{OrderId, ProductId, Timestamp};

/// Cluster only: how often `claim` starts checking every product's outbox,
/// to find events whose product was never marked pending (the process died
/// between a script and the follow-up `SADD`).
const OUTBOX_REPAIR_EVERY: Duration = Duration::from_secs(60);
/// Cluster only: products checked by the repair pass per `claim` call, so
/// that no single call grows with the number of products.
const OUTBOX_REPAIR_BATCH: usize = 100;

impl RedisStockStore {
    /// Cluster only, after a script appended an event: marks the product as
    /// having pending events. A failure is logged, not returned: the event
    /// is safely in the outbox, and `claim`'s periodic repair pass finds it.
    pub(super) async fn mark_pending(&self, product: &ProductId) {
        self.mark(product, true, None).await;
    }

    /// Cluster only, after a script: marks the product as having pending
    /// events (with `pending`) and, with `due`, lowers its entry in the due
    /// index to `due` (ms) if that is earlier; one pipeline, as both keys
    /// share a slot. Best effort, as [`Self::mark_pending`]: the repair
    /// pass finds what a failure leaves out.
    pub(super) async fn mark(&self, product: &ProductId, pending: bool, due: Option<u64>) {
        let mut pipe = ::redis::pipe();
        if pending {
            pipe.cmd("SADD")
                .arg(self.keys.pending())
                .arg(product.as_str())
                .ignore();
        }
        if let Some(due) = due {
            pipe.cmd("ZADD")
                .arg(self.keys.due())
                .arg("LT")
                .arg(due)
                .arg(product.as_str())
                .ignore();
        }
        if let Err(e) = self.conn.pipe::<()>(&pipe).await {
            tracing::warn!(
                product = %product,
                error = %e,
                "redis: could not mark the product's outbox as pending; \
                 the repair pass will find its events and due holds"
            );
        }
    }

    /// Cluster only: takes a product whose outbox was seen empty out of the
    /// pending set, then checks the outbox again and puts it back unless it
    /// is still empty (a reserve whose own `SADD` ran before our `SREM`).
    /// Best effort: a mark left behind only costs one empty claim later; a
    /// mark lost is found by the repair pass.
    pub(super) async fn unmark_pending(&self, product: &ProductId) {
        let pending = self.keys.pending();
        let removed = self
            .conn
            .query::<i64>(::redis::cmd("SREM").arg(&pending).arg(product.as_str()))
            .await;
        if removed.is_err() {
            return;
        }
        let left = self
            .conn
            .query::<u64>(::redis::cmd("ZCARD").arg(self.keys.product(product).outbox))
            .await;
        if left != Ok(0) {
            self.mark_pending(product).await;
        }
    }

    /// Cluster only: writes the order → product index (another slot).
    pub(super) async fn write_index(
        &self,
        op: &'static str,
        order: &OrderId,
        product: &ProductId,
    ) -> Result<()> {
        self.conn
            .query::<()>(
                ::redis::cmd("SET")
                    .arg(self.keys.order(order))
                    .arg(product.as_str())
                    .arg("PX")
                    .arg(self.index_ttl_ms),
            )
            .await
            .map_err(backend_err(op))
    }

    /// Cluster only: one step of the repair pass that starts about once
    /// per [`OUTBOX_REPAIR_EVERY`]. It walks `{p}|products` with `SSCAN`,
    /// [`OUTBOX_REPAIR_BATCH`] products per step (one step per `claim`), and
    /// puts back into the pending set every product whose outbox holds
    /// events but which is missing from it, and into the due index every
    /// product's next expiry or purge (a process died between a script and
    /// its follow-up). Returns the pending set with the products it put
    /// back (sorted). Best effort: a failed step ends the pass; the next one
    /// starts on time.
    pub(super) async fn repair_step(
        &self,
        now: Timestamp,
        mut pending: Vec<String>,
    ) -> Vec<String> {
        let from = {
            let mut c = self.relay.lock();
            match c.repair_cursor {
                Some(cursor) => cursor,
                None if c.repair_started.is_none_or(|t| {
                    now < t || now.saturating_duration_since(t) >= OUTBOX_REPAIR_EVERY
                }) =>
                {
                    c.repair_started = Some(now);
                    0
                }
                None => return pending,
            }
        };
        let page = self
            .conn
            .query::<(u64, Vec<String>)>(
                ::redis::cmd("SSCAN")
                    .arg(self.keys.products())
                    .arg(from)
                    .arg("COUNT")
                    .arg(OUTBOX_REPAIR_BATCH),
            )
            .await;
        let (next, names) = match page {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "redis: outbox repair pass cut short");
                self.relay.lock().repair_cursor = None;
                return pending;
            }
        };
        for name in names {
            let Ok(product) = ProductId::new(name.as_str()) else {
                continue;
            };
            let k = self.keys.product(&product);
            let probe = self
                .conn
                .script::<(u64, String)>(PROBE.key(&k.outbox).key(&k.exp).key(&k.done))
                .await;
            match probe {
                Ok((left, due)) => {
                    // A due time the index lacks is lowered into it (a no-op
                    // when the index already has it or an earlier one).
                    let due = due.parse::<u64>().ok();
                    let missing = left > 0 && pending.binary_search(&name).is_err();
                    if missing {
                        tracing::info!(product = %product, left, "redis: outbox found by the repair pass");
                        let at = pending.binary_search(&name).unwrap_or_else(|i| i);
                        pending.insert(at, name);
                    }
                    if missing || due.is_some() {
                        self.mark(&product, missing, due).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(product = %product, error = %e, "redis: outbox repair skipped a product");
                }
            }
        }
        self.relay.lock().repair_cursor = (next != 0).then_some(next);
        pending
    }
}
