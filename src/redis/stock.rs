//! [`RedisStockStore`]: sales, stock, reservations and the outbox of order
//! events in Redis, one Lua script per mutating operation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{Script, ScriptInvocation};
use async_trait::async_trait;
use parking_lot::Mutex;

use super::codec;
use super::conn::Conn;
use super::durability::Guard;
use super::keys::{Keys, idem_field};
use super::scripts::{ACK, CANCEL, CLAIM, CONFIRM, CREATE_SALE, EXPIRE, PROBE, RESERVE, VOID};
use super::{RedisOptions, backend_err, bad_reply};
use crate::error::Result;
use crate::model::{
    OrderEvent, OrderId, ProductId, Reservation, ReservationState, Sale, StockLevels, Timestamp,
};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
    VoidOutcome,
};

/// Finished records purged per product per sweep, at most.
const PURGE_BATCH: usize = 200;
/// Products one sweep visits, at most (those the due index names first).
const SWEEP_PRODUCTS: usize = 100;
/// How long a due purge waits when the record's events are still in the
/// outbox (a replay must find the record until the order is delivered).
const PURGE_RETRY: Duration = Duration::from_secs(60);
/// Extra life of the order → product index past the longest a record can
/// live (the longest hold plus its retention).
const INDEX_SLACK: Duration = Duration::from_secs(3600);

/// Sales, stock, reservations and the outbox of order events in Redis,
/// shared by every app instance that uses the same server (or cluster) and
/// prefix.
///
/// * `reserve`, `confirm`, `cancel`, `void`, `expire` (per product),
///   `create_sale`, and the outbox's `claim` and `ack` (per product) are
///   each ONE Lua script, so each is atomic across the idempotency key, the
///   sale window, the per-order maximum, the per-user cap, the stock, the
///   reservation record, the hold-expiry index and the order's event in the
///   product's outbox.
/// * A purchase costs one round trip (`reserve`, which also appends the
///   `placed` event). On a cluster a successful reserve adds one concurrent
///   pair of commands for the keys that live in other slots (the order →
///   product index and the set of products with pending events). The
///   connection is multiplexed: concurrent calls share one socket per node
///   and are pipelined, never serialised.
/// * The relay's `claim` reads the set of products with pending events and
///   runs one script per such product; `ack` runs one script per product.
///   Their cost follows the pending events, not the number of products.
/// * Idempotency keys and finished reservations are kept for
///   [`RedisOptions::record_ttl`] (default 24 h) after they finish, and
///   until their events are delivered; the sweeper purges them.
/// * The sweeper ([`expire`](StockStore::expire)) reads a due index
///   (`{prefix}|due`: each product by the time its next hold expiry or
///   purge is due, kept by the scripts) and visits only the products that
///   are due, at most 100 per call: an idle store costs one command per
///   sweep, whatever its number of products.
///
/// Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisStockStore {
    pub(super) conn: Conn,
    pub(super) keys: Keys,
    pub(super) record_ttl_ms: u64,
    pub(super) index_ttl_ms: u64,
    pub(super) replay_claim_ttl: Duration,
    pub(super) relay: Arc<Mutex<RelayCursor>>,
    pub(super) durability: Arc<Guard>,
}

/// Where the next `claim` starts, and where the cluster repair pass is.
#[derive(Debug, Default)]
pub(super) struct RelayCursor {
    /// The product the next claim visits first (fairness between products).
    pub(super) next: Option<String>,
    /// `now` when the last repair pass started (cluster only).
    pub(super) repair_started: Option<Timestamp>,
    /// The `SSCAN` cursor of the repair pass in progress, if one is.
    pub(super) repair_cursor: Option<u64>,
}

impl RedisStockStore {
    /// Connects to the standalone Redis at `url` (e.g.
    /// `redis://127.0.0.1:6379`), keeping every key under `prefix`.
    /// Fails if Redis does not answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::with_options(RedisOptions::single(url).prefix(prefix)).await
    }

    /// Connects to the Redis Cluster reachable through any of `urls`,
    /// keeping every key under `prefix`.
    pub async fn connect_cluster(urls: &[&str], prefix: &str) -> Result<Self> {
        Self::with_options(RedisOptions::cluster(urls.iter().copied()).prefix(prefix)).await
    }

    /// Connects with explicit options. Reads every primary's persistence
    /// settings and warns when an answered purchase could be lost (see
    /// [`Self::durability`], [`RedisOptions::require_durable`]).
    pub async fn with_options(opts: RedisOptions) -> Result<Self> {
        let conn = Conn::connect(&opts).await?;
        let durability = Arc::new(Guard::check(&conn, &opts).await?);
        if !opts.lazy {
            conn.preload(&[
                &CREATE_SALE,
                &RESERVE,
                &CONFIRM,
                &CANCEL,
                &VOID,
                &EXPIRE,
                &CLAIM,
                &ACK,
                &PROBE,
            ])
            .await?;
        }
        let record_ttl_ms = codec::millis(opts.record_ttl);
        Ok(Self {
            conn,
            keys: Keys::new(&opts.prefix),
            record_ttl_ms,
            // A record lives at most the longest hold, then its retention.
            index_ttl_ms: codec::millis(Sale::MAX_HOLD + INDEX_SLACK).saturating_add(record_ttl_ms),
            replay_claim_ttl: opts.replay_claim_ttl,
            relay: Arc::default(),
            durability,
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Standalone Redis: adds the set of products with pending events as
    /// the script's last key, so the script marks the product itself. On a
    /// cluster that set lives in another slot; see [`Self::mark_pending`].
    /// Runs confirm.lua or cancel.lua (same keys, same arguments) on one
    /// hold.
    async fn run_hold_script(
        &self,
        script: &Script,
        operation: &'static str,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<Vec<String>> {
        let k = self.keys.product(product);
        let mut inv = script.key(&k.sale);
        inv.key(&k.users)
            .key(&k.res)
            .key(&k.exp)
            .key(&k.done)
            .key(&k.outbox)
            .key(&k.events);
        self.global_keys_in_script(&mut inv);
        inv.arg(order.to_string())
            .arg(now.as_millis())
            .arg(self.record_ttl_ms)
            .arg(product.as_str());
        self.conn.script(&inv).await.map_err(backend_err(operation))
    }

    fn pending_key_in_script(&self, inv: &mut ScriptInvocation<'_>) {
        if !self.is_cluster() {
            inv.key(self.keys.pending());
        }
    }

    /// Standalone Redis: adds the pending set and the due index as the
    /// script's last keys, so the script writes them itself. On a cluster
    /// they live in another slot; see [`Self::mark`].
    fn global_keys_in_script(&self, inv: &mut ScriptInvocation<'_>) {
        if !self.is_cluster() {
            inv.key(self.keys.pending()).key(self.keys.due());
        }
    }

    /// The time (ms) a record finished at `now` is due for purging: the
    /// cluster's follow-up for the due index (the script schedules the
    /// purge by the same `now`).
    fn purge_due(&self, now: Timestamp) -> u64 {
        now.as_millis().saturating_add(self.record_ttl_ms)
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }
}

#[async_trait]
impl StockStore for RedisStockStore {
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite> {
        const OP: &str = "create_sale";
        // Register the product for the sweeper first: a registered product
        // without a sale is harmless, a sale the sweeper never visits is not.
        self.conn
            .query::<i64>(
                ::redis::cmd("SADD")
                    .arg(self.keys.products())
                    .arg(sale.product().as_str()),
            )
            .await
            .map_err(backend_err(OP))?;
        let k = self.keys.product(sale.product());
        let hold = sale.hold().unwrap_or(Duration::ZERO);
        let reply: Vec<String> = self
            .conn
            .script(
                CREATE_SALE
                    .key(&k.sale)
                    .arg(sale.stock())
                    .arg(sale.per_user_limit())
                    .arg(sale.per_order_max())
                    .arg(codec::opt_ms(sale.starts_at()))
                    .arg(codec::opt_ms(sale.ends_at()))
                    .arg(codec::millis(hold))
                    .arg(u64::try_from(hold.as_nanos()).unwrap_or(u64::MAX)),
            )
            .await
            .map_err(backend_err(OP))?;
        match reply.first().map(String::as_str) {
            Some("created") => Ok(SaleWrite::Created),
            Some("updated") => Ok(SaleWrite::Updated),
            Some("stock_below_sold") => Ok(SaleWrite::StockBelowSold {
                held_or_committed: reply
                    .get(1)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| codec::unexpected(OP, &reply))?,
            }),
            _ => Err(codec::unexpected(OP, &reply)),
        }
    }

    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        const OP: &str = "sale";
        let k = self.keys.product(product);
        let f: Vec<Option<String>> = self
            .conn
            .query(
                ::redis::cmd("HMGET")
                    .arg(&k.sale)
                    .arg(&["total", "limit", "omax", "start", "end", "hold_ns"]),
            )
            .await
            .map_err(backend_err(OP))?;
        let [
            Some(total),
            Some(limit),
            Some(omax),
            Some(start),
            Some(end),
            Some(hold),
        ] = <[Option<String>; 6]>::try_from(f).map_err(|f| bad_reply(OP, format!("{f:?}")))?
        else {
            return Ok(None);
        };
        let n = |s: &str| -> Result<u64> {
            s.parse()
                .map_err(|_| bad_reply(OP, format!("{s:?} is not a number")))
        };
        let n32 = |s: &str| -> Result<u32> {
            u32::try_from(n(s)?).map_err(|_| bad_reply(OP, format!("{s:?} is out of range")))
        };
        let mut b = Sale::builder(product.clone(), n32(&total)?)
            .per_user_limit(n32(&limit)?)
            .per_order_max(n32(&omax)?);
        if !start.is_empty() {
            b = b.starts_at(Timestamp::from_millis(n(&start)?));
        }
        if !end.is_empty() {
            b = b.ends_at(Timestamp::from_millis(n(&end)?));
        }
        let hold = n(&hold)?;
        if hold > 0 {
            b = b.hold(Duration::from_nanos(hold));
        }
        b.build().map(Some).map_err(|e| bad_reply(OP, e))
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome> {
        const OP: &str = "reserve";
        let k = self.keys.product(&req.product);
        let (ifield, ikey) = match &req.idempotency_key {
            Some(key) => (idem_field(&req.user, key), key.as_str()),
            None => (String::new(), ""),
        };
        let mut inv = RESERVE.key(&k.sale);
        inv.key(&k.users)
            .key(&k.res)
            .key(&k.idem)
            .key(&k.exp)
            .key(&k.done)
            .key(&k.outbox)
            .key(&k.events)
            .key(&k.claims);
        // On one server the order index, the pending mark and the due index
        // are written inside the script; on a cluster they live in other
        // slots and are written after a success.
        if !self.is_cluster() {
            inv.key(self.keys.order(&req.order_id));
            self.global_keys_in_script(&mut inv);
        }
        inv.arg(req.order_id.to_string())
            .arg(req.user.as_str())
            .arg(req.quantity.get())
            .arg(&ifield)
            .arg(ikey)
            .arg(req.now.as_millis())
            .arg(self.index_ttl_ms)
            .arg(req.product.as_str())
            .arg(self.record_ttl_ms)
            .arg(codec::millis(self.replay_claim_ttl));
        let reply: Vec<String> = self.conn.script(&inv).await.map_err(backend_err(OP))?;
        let record = |i: usize| -> Result<Reservation> {
            let raw = reply.get(i).ok_or_else(|| codec::unexpected(OP, &reply))?;
            codec::record(OP, &req.product, raw)
        };
        Ok(match reply.first().map(String::as_str) {
            Some("reserved") => {
                let r = record(1)?;
                if self.is_cluster() {
                    // A hold is due at its expiry, a sale at its purge.
                    let due = if r.state == ReservationState::Held {
                        r.expires_at.as_millis()
                    } else {
                        self.purge_due(r.created_at)
                    };
                    // Two slots, two nodes maybe: both at once, one wait.
                    let (indexed, ()) = tokio::join!(
                        self.write_index(OP, &req.order_id, &req.product),
                        self.mark(&req.product, true, Some(due))
                    );
                    indexed?;
                }
                self.durability.after_reserve(&self.conn, &k.sale).await?;
                ReserveOutcome::Reserved(r)
            }
            Some("duplicate") => ReserveOutcome::Duplicate(record(1)?),
            Some("sold_out") => ReserveOutcome::SoldOut,
            Some("limit_exceeded") => ReserveOutcome::LimitExceeded,
            Some("not_on_sale") => ReserveOutcome::NotOnSale,
            Some("unknown_product") => ReserveOutcome::UnknownProduct,
            Some("over_order_max") => ReserveOutcome::OverOrderMax {
                max: reply
                    .get(1)
                    .and_then(|m| m.parse().ok())
                    .ok_or_else(|| codec::unexpected(OP, &reply))?,
            },
            _ => return Err(codec::unexpected(OP, &reply)),
        })
    }

    async fn confirm(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<ConfirmOutcome> {
        const OP: &str = "confirm";
        let reply = self
            .run_hold_script(&CONFIRM, OP, product, order, now)
            .await?;
        let outcome = match reply.first().map(String::as_str) {
            Some("confirmed") => ConfirmOutcome::Confirmed,
            Some("already_confirmed") => ConfirmOutcome::AlreadyConfirmed,
            Some("not_held") => ConfirmOutcome::NotHeld(codec::state(OP, reply.get(1))?),
            Some("unknown") => ConfirmOutcome::Unknown,
            _ => return Err(codec::unexpected(OP, &reply)),
        };
        if self.is_cluster()
            && matches!(
                outcome,
                ConfirmOutcome::Confirmed | ConfirmOutcome::NotHeld(ReservationState::Expired)
            )
        {
            self.mark(product, true, Some(self.purge_due(now))).await;
        }
        Ok(outcome)
    }

    async fn cancel(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CancelOutcome> {
        const OP: &str = "cancel";
        let reply = self
            .run_hold_script(&CANCEL, OP, product, order, now)
            .await?;
        let outcome = match reply.first().map(String::as_str) {
            Some("cancelled") => CancelOutcome::Cancelled,
            Some("already_cancelled") => CancelOutcome::AlreadyCancelled,
            Some("not_held") => CancelOutcome::NotHeld(codec::state(OP, reply.get(1))?),
            Some("unknown") => CancelOutcome::Unknown,
            _ => return Err(codec::unexpected(OP, &reply)),
        };
        if self.is_cluster()
            && matches!(
                outcome,
                CancelOutcome::Cancelled | CancelOutcome::NotHeld(ReservationState::Expired)
            )
        {
            self.mark(product, true, Some(self.purge_due(now))).await;
        }
        Ok(outcome)
    }

    async fn void(&self, req: &ReserveRequest, now: Timestamp) -> Result<VoidOutcome> {
        const OP: &str = "void";
        let k = self.keys.product(&req.product);
        let mut inv = VOID.key(&k.sale);
        inv.key(&k.users)
            .key(&k.res)
            .key(&k.idem)
            .key(&k.exp)
            .key(&k.done)
            .key(&k.outbox)
            .key(&k.events)
            .key(&k.claims);
        if !self.is_cluster() {
            inv.key(self.keys.order(&req.order_id));
            self.global_keys_in_script(&mut inv);
        }
        inv.arg(req.order_id.to_string())
            .arg(req.user.as_str())
            .arg(req.quantity.get())
            .arg(req.idempotency_key.as_ref().map_or("", |k| k.as_str()))
            .arg(req.now.as_millis())
            .arg(now.as_millis())
            .arg(self.record_ttl_ms)
            .arg(self.index_ttl_ms)
            .arg(req.product.as_str());
        let reply: Vec<String> = self.conn.script(&inv).await.map_err(backend_err(OP))?;
        // Every void that wrote something schedules a purge.
        let due = Some(self.purge_due(now));
        match reply.first().map(String::as_str) {
            Some("voided") => {
                if self.is_cluster() {
                    self.mark(&req.product, true, due).await;
                }
                Ok(VoidOutcome::Voided)
            }
            Some("nothing_reserved") => {
                if self.is_cluster() {
                    self.write_index(OP, &req.order_id, &req.product).await?;
                    let claimed = reply.get(1).is_some_and(|s| s == "voided_claimed");
                    self.mark(&req.product, claimed, due).await;
                }
                Ok(VoidOutcome::NothingReserved)
            }
            Some("kept") => Ok(VoidOutcome::Kept),
            Some("already_voided") => {
                // A retry of a void whose script ran but whose follow-ups
                // were lost (the first answer never came back): the script
                // cannot tell which it wrote, so write both again (each is
                // idempotent).
                if self.is_cluster() {
                    self.write_index(OP, &req.order_id, &req.product).await?;
                    self.mark(&req.product, true, due).await;
                }
                Ok(VoidOutcome::AlreadyVoided)
            }
            Some("already_closed") => {
                Ok(VoidOutcome::AlreadyClosed(codec::state(OP, reply.get(1))?))
            }
            _ => Err(codec::unexpected(OP, &reply)),
        }
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>> {
        const OP: &str = "reservation";
        let product: Option<String> = self
            .conn
            .query(::redis::cmd("GET").arg(self.keys.order(order)))
            .await
            .map_err(backend_err(OP))?;
        let Some(product) = product else {
            return Ok(None);
        };
        let product = ProductId::new(product).map_err(|e| bad_reply(OP, e))?;
        let raw: Option<String> = self
            .conn
            .query(
                ::redis::cmd("HGET")
                    .arg(self.keys.product(&product).res)
                    .arg(order.to_string()),
            )
            .await
            .map_err(backend_err(OP))?;
        raw.map(|raw| codec::record(OP, &product, &raw)).transpose()
    }

    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>> {
        const OP: &str = "expire";
        let mut expired = Vec::new();
        if max == 0 {
            return Ok(expired);
        }
        // Only the products whose next expiry or purge is due: an idle store
        // costs this one command.
        let due: Vec<(String, u64)> = self
            .conn
            .query(
                ::redis::cmd("ZRANGEBYSCORE")
                    .arg(self.keys.due())
                    .arg("-inf")
                    .arg(now.as_millis())
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(SWEEP_PRODUCTS),
            )
            .await
            .map_err(backend_err(OP))?;
        // One script per product: each runs on the node owning the product's
        // slot, so the sweep works on a cluster too.
        for (name, was_due) in due {
            let product = ProductId::new(name.as_str()).map_err(|e| bad_reply(OP, e))?;
            if self.is_cluster() {
                // Out of the index first, then the script, then its next due
                // time back with `LT`: a reserve's follow-up racing with this
                // either lands after the removal or its hold is seen by the
                // script, so no due time is lost.
                self.conn
                    .query::<i64>(
                        ::redis::cmd("ZREM")
                            .arg(self.keys.due())
                            .arg(product.as_str()),
                    )
                    .await
                    .map_err(backend_err(OP))?;
            }
            let k = self.keys.product(&product);
            let mut inv = EXPIRE.key(&k.sale);
            inv.key(&k.users)
                .key(&k.res)
                .key(&k.idem)
                .key(&k.exp)
                .key(&k.done)
                .key(&k.outbox)
                .key(&k.events);
            self.global_keys_in_script(&mut inv);
            inv.arg(now.as_millis())
                .arg(max - expired.len())
                .arg(PURGE_BATCH)
                .arg(self.record_ttl_ms)
                .arg(product.as_str())
                .arg(codec::millis(PURGE_RETRY));
            let reply = self.conn.script::<Vec<String>>(&inv).await;
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    if self.is_cluster() {
                        // Put the entry back, so the next sweep tries again.
                        self.mark(&product, false, Some(was_due)).await;
                    }
                    return Err(backend_err(OP)(e));
                }
            };
            let Some((next, records)) = reply.split_first() else {
                return Err(codec::unexpected(OP, &reply));
            };
            if self.is_cluster() {
                let next = next.parse::<u64>().ok();
                if !records.is_empty() || next.is_some() {
                    self.mark(&product, !records.is_empty(), next).await;
                }
            }
            for raw in records {
                expired.push(codec::record(OP, &product, raw)?);
            }
            if expired.len() >= max {
                break;
            }
        }
        Ok(expired)
    }

    async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>> {
        const OP: &str = "snapshot";
        let f: Vec<Option<u64>> = self
            .conn
            .query(
                ::redis::cmd("HMGET")
                    .arg(self.keys.product(product).sale)
                    .arg(&["total", "available", "held", "committed"]),
            )
            .await
            .map_err(backend_err(OP))?;
        match f.as_slice() {
            [Some(total), Some(available), Some(held), Some(committed)] => Ok(Some(StockLevels {
                total: *total,
                available: *available,
                held: *held,
                committed: *committed,
            })),
            [None, ..] => Ok(None),
            _ => Err(bad_reply(OP, format!("{f:?}"))),
        }
    }

    async fn claim(&self, now: Timestamp, max: usize, lease: Duration) -> Result<Vec<OrderEvent>> {
        const OP: &str = "claim";
        let mut claimed = Vec::new();
        if max == 0 {
            return Ok(claimed);
        }
        let mut pending: Vec<String> = self
            .conn
            .query(::redis::cmd("SMEMBERS").arg(self.keys.pending()))
            .await
            .map_err(backend_err(OP))?;
        pending.sort_unstable();
        if self.is_cluster() {
            pending = self.repair_step(now, pending).await;
        }
        if pending.is_empty() {
            return Ok(claimed);
        }
        // Start where the previous claim stopped, so one busy product does
        // not starve the others.
        let start = self
            .relay
            .lock()
            .next
            .as_ref()
            .map_or(0, |next| pending.partition_point(|p| p < next))
            % pending.len();
        let lease_until = now.saturating_add(lease).as_millis();
        let mut next = None;
        let mut failure = None;
        for i in 0..pending.len() {
            let name = &pending[(start + i) % pending.len()];
            let Ok(product) = ProductId::new(name.as_str()) else {
                tracing::error!(product = %name, "redis: invalid product id in the pending set");
                continue;
            };
            let k = self.keys.product(&product);
            let mut inv = CLAIM.key(&k.outbox);
            inv.key(&k.events).key(&k.res);
            self.pending_key_in_script(&mut inv);
            inv.arg(now.as_millis())
                .arg(max - claimed.len())
                .arg(lease_until)
                .arg(name);
            let reply: Vec<String> = match self.conn.script(&inv).await {
                Ok(reply) => reply,
                // One product's node failing (a cluster) must not stall the
                // others; what is claimed is handed out, since its lease
                // would only delay it. The error counts if nothing is.
                Err(e) => {
                    failure.get_or_insert(e);
                    continue;
                }
            };
            let Some((left, events)) = reply.split_first() else {
                return Err(codec::unexpected(OP, &reply));
            };
            let left: u64 = left.parse().map_err(|_| codec::unexpected(OP, &reply))?;
            for raw in events {
                match codec::event(OP, &product, raw) {
                    Ok(e) => claimed.push(e),
                    // A corrupt entry must not stall every other event; it
                    // stays in the outbox for an operator to inspect.
                    Err(e) => {
                        tracing::error!(product = %product, error = %e, "redis: unreadable outbox event")
                    }
                }
            }
            if left == 0 && self.is_cluster() {
                self.unmark_pending(&product).await;
            }
            if claimed.len() >= max {
                next = Some(pending[(start + i + 1) % pending.len()].clone());
                break;
            }
        }
        if next.is_some() {
            self.relay.lock().next = next;
        }
        if let Some(e) = failure.filter(|_| claimed.is_empty()) {
            return Err(backend_err(OP)(e));
        }
        claimed.sort_by_key(|e| e.event_id);
        Ok(claimed)
    }

    async fn ack(&self, events: &[OrderEvent]) -> Result<()> {
        const OP: &str = "ack";
        let mut by_product: BTreeMap<&ProductId, Vec<String>> = BTreeMap::new();
        for e in events {
            by_product
                .entry(&e.order.product_id)
                .or_default()
                .push(e.event_id.to_string());
        }
        // Every product is tried even if one fails (its node may be down on
        // a cluster): the others' events are not delivered twice for it.
        let mut failure = None;
        for (product, ids) in by_product {
            let k = self.keys.product(product);
            let mut inv = ACK.key(&k.outbox);
            inv.key(&k.events);
            self.pending_key_in_script(&mut inv);
            inv.arg(product.as_str()).arg(ids);
            match self.conn.script::<u64>(&inv).await {
                Ok(0) if self.is_cluster() => self.unmark_pending(product).await,
                Ok(_) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(()), |e| Err(backend_err(OP)(e)))
    }

    fn replay_claim_ttl(&self) -> Duration {
        self.replay_claim_ttl
    }

    async fn ping(&self) -> Result<()> {
        self.conn.ping("ping").await
    }
}
