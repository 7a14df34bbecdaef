//! [`RedisStockStore`]: sales, stock and reservations in Redis, one Lua
//! script per mutating operation.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::Script;
use async_trait::async_trait;
use serde::Deserialize;

use super::conn::Conn;
use super::{RedisOptions, backend_err, bad_reply};
use crate::error::Result;
use crate::model::{
    IdempotencyKey, OrderId, ProductId, Quantity, Reservation, ReservationState, Sale, StockLevels,
    Timestamp, UserId,
};
use crate::ports::{
    CommitOutcome, ReleaseOutcome, ReleaseReason, ReserveOutcome, ReserveRequest, SaleWrite,
    StockStore,
};

static CREATE_SALE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../backends/redis/create_sale.lua")));
static RESERVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../backends/redis/reserve.lua")));
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../../backends/redis/holds.lua"),
        include_str!("../../backends/redis/commit.lua")
    ))
});
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../../backends/redis/holds.lua"),
        include_str!("../../backends/redis/release.lua")
    ))
});
static EXPIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../../backends/redis/holds.lua"),
        include_str!("../../backends/redis/expire.lua")
    ))
});

/// Finished records purged per product per sweep, at most.
const PURGE_BATCH: usize = 200;
/// Extra life of the order → product index past its record's retention.
const INDEX_SLACK: Duration = Duration::from_secs(3600);

/// Sales, stock and reservations in Redis, shared by every app instance
/// that uses the same server (or cluster) and prefix.
///
/// * `reserve`, `commit`, `release`, `expire` (per product) and
///   `create_sale` are each ONE Lua script, so each is atomic across the
///   idempotency key, the sale window, the per-order maximum, the per-user
///   cap, the stock, the hold record and the hold-expiry index.
/// * A purchase costs one round trip for `reserve` (two on a cluster for a
///   successful one: the order → product index lives in another slot) and
///   one for `commit`. The connection is multiplexed: concurrent calls share
///   one socket per node and are pipelined, never serialised.
/// * Idempotency keys and finished reservations are kept for
///   [`RedisOptions::record_ttl`] (default 24 h) after they finish; the
///   sweeper purges them.
///
/// Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct RedisStockStore {
    conn: Conn,
    prefix: String,
    record_ttl_ms: u64,
}

/// The keys of one product: all share the hash tag `{prefix:product}`.
struct ProductKeys {
    sale: String,
    users: String,
    res: String,
    idem: String,
    exp: String,
    done: String,
}

/// A reservation as the scripts store it (JSON, every number a string so
/// that no precision is lost in Lua).
#[derive(Deserialize)]
struct Record {
    o: String,
    u: String,
    q: String,
    #[serde(default)]
    k: Option<String>,
    c: String,
    e: String,
    w: String,
    s: String,
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

    /// Connects with explicit options.
    pub async fn with_options(opts: RedisOptions) -> Result<Self> {
        let conn = Conn::connect(&opts).await?;
        if !opts.lazy {
            conn.preload(&[&CREATE_SALE, &RESERVE, &COMMIT, &RELEASE, &EXPIRE])
                .await?;
        }
        Ok(Self {
            conn,
            prefix: opts.prefix,
            record_ttl_ms: millis(opts.record_ttl),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The text of the reserve script (for benchmarking it directly, e.g.
    /// with `redis-benchmark ... EVALSHA`).
    pub fn reserve_script() -> &'static str {
        include_str!("../../backends/redis/reserve.lua")
    }

    fn keys(&self, product: &ProductId) -> ProductKeys {
        let tag = format!("{{{}:{}}}", self.prefix, product);
        ProductKeys {
            sale: format!("{tag}:sale"),
            users: format!("{tag}:users"),
            res: format!("{tag}:res"),
            idem: format!("{tag}:idem"),
            exp: format!("{tag}:exp"),
            done: format!("{tag}:done"),
            // `tag` is dropped here.
        }
    }

    fn products_key(&self) -> String {
        format!("{}:products", self.prefix)
    }

    fn order_key(&self, order: &OrderId) -> String {
        format!("{}:order:{}", self.prefix, order)
    }

    fn parse_record(
        &self,
        operation: &'static str,
        product: &ProductId,
        raw: &str,
    ) -> Result<Reservation> {
        let r: Record = serde_json::from_str(raw).map_err(|e| bad_reply(operation, e))?;
        let num = |s: &str| -> Result<u64> {
            s.parse::<u64>()
                .map_err(|_| bad_reply(operation, format!("{s:?} is not a number")))
        };
        let state = match r.s.as_str() {
            "held" => ReservationState::Held,
            "committed" => ReservationState::Committed,
            "cancelled" => ReservationState::Cancelled,
            "expired" => ReservationState::Expired,
            other => return Err(bad_reply(operation, format!("state {other:?}"))),
        };
        let q = num(&r.q)?;
        Ok(Reservation {
            order_id: r.o.parse().map_err(|e| bad_reply(operation, e))?,
            product: product.clone(),
            user: UserId::new(r.u).map_err(|e| bad_reply(operation, e))?,
            quantity: Quantity::new(i64::try_from(q).unwrap_or(i64::MAX))
                .map_err(|e| bad_reply(operation, e))?,
            idempotency_key: r
                .k
                .map(IdempotencyKey::new)
                .transpose()
                .map_err(|e| bad_reply(operation, e))?,
            created_at: Timestamp::from_millis(num(&r.c)?),
            expires_at: Timestamp::from_millis(num(&r.e)?),
            awaits_confirmation: r.w == "1",
            state,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn opt_ms(t: Option<Timestamp>) -> String {
    t.map(|t| t.as_millis().to_string()).unwrap_or_default()
}

/// The idempotency hash field: `<byte length of user>:<user><key>`, so no
/// (user, key) pair can collide with another.
fn idem_field(user: &UserId, key: &IdempotencyKey) -> String {
    format!("{}:{}{}", user.as_str().len(), user, key)
}

fn parse_state(operation: &'static str, s: Option<&String>) -> Result<ReservationState> {
    match s.map(String::as_str) {
        Some("cancelled") => Ok(ReservationState::Cancelled),
        Some("expired") => Ok(ReservationState::Expired),
        Some("committed") => Ok(ReservationState::Committed),
        Some("held") => Ok(ReservationState::Held),
        other => Err(bad_reply(operation, format!("state {other:?}"))),
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
                    .arg(self.products_key())
                    .arg(sale.product().as_str()),
            )
            .await
            .map_err(backend_err(OP))?;
        let k = self.keys(sale.product());
        let hold = sale.hold().unwrap_or(Duration::ZERO);
        let reply: Vec<String> = self
            .conn
            .script(
                CREATE_SALE
                    .key(&k.sale)
                    .arg(sale.stock())
                    .arg(sale.per_user_limit())
                    .arg(sale.per_order_max())
                    .arg(opt_ms(sale.starts_at()))
                    .arg(opt_ms(sale.ends_at()))
                    .arg(millis(hold))
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
                    .ok_or_else(|| bad_reply(OP, format!("{reply:?}")))?,
            }),
            _ => Err(bad_reply(OP, format!("{reply:?}"))),
        }
    }

    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        const OP: &str = "sale";
        let k = self.keys(product);
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
        let k = self.keys(&req.product);
        let order_key = self.order_key(&req.order_id);
        let (ifield, ikey) = match &req.idempotency_key {
            Some(key) => (idem_field(&req.user, key), key.as_str()),
            None => (String::new(), ""),
        };
        let hold = req.pending_ttl.max(Sale::MAX_HOLD);
        let index_ttl = millis(hold + INDEX_SLACK).saturating_add(self.record_ttl_ms);
        let mut inv = RESERVE.key(&k.sale);
        inv.key(&k.users).key(&k.res).key(&k.idem).key(&k.exp);
        // On one server the order index is written inside the script; on a
        // cluster it is in another slot and written after a success.
        if !self.conn.is_cluster() {
            inv.key(&order_key);
        }
        inv.arg(req.order_id.to_string())
            .arg(req.user.as_str())
            .arg(req.quantity.get())
            .arg(&ifield)
            .arg(ikey)
            .arg(req.now.as_millis())
            .arg(millis(req.pending_ttl))
            .arg(index_ttl)
            .arg(req.product.as_str());
        let reply: Vec<String> = self.conn.script(&inv).await.map_err(backend_err(OP))?;
        let record = |i: usize| -> Result<Reservation> {
            let raw = reply
                .get(i)
                .ok_or_else(|| bad_reply(OP, format!("{reply:?}")))?;
            self.parse_record(OP, &req.product, raw)
        };
        Ok(match reply.first().map(String::as_str) {
            Some("reserved") => {
                let r = record(1)?;
                if self.conn.is_cluster() {
                    self.conn
                        .query::<()>(
                            ::redis::cmd("SET")
                                .arg(&order_key)
                                .arg(req.product.as_str())
                                .arg("PX")
                                .arg(index_ttl),
                        )
                        .await
                        .map_err(backend_err(OP))?;
                }
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
                    .ok_or_else(|| bad_reply(OP, format!("{reply:?}")))?,
            },
            _ => return Err(bad_reply(OP, format!("{reply:?}"))),
        })
    }

    async fn commit(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CommitOutcome> {
        const OP: &str = "commit";
        let k = self.keys(product);
        let mut inv = COMMIT.key(&k.sale);
        inv.key(&k.users)
            .key(&k.res)
            .key(&k.exp)
            .key(&k.done)
            .arg(order.to_string())
            .arg(now.as_millis())
            .arg(self.record_ttl_ms);
        let reply: Vec<String> = self.conn.script(&inv).await.map_err(backend_err(OP))?;
        match reply.first().map(String::as_str) {
            Some("committed") => Ok(CommitOutcome::Committed),
            Some("already_committed") => Ok(CommitOutcome::AlreadyCommitted),
            Some("not_held") => Ok(CommitOutcome::NotHeld(parse_state(OP, reply.get(1))?)),
            Some("unknown") => Ok(CommitOutcome::Unknown),
            _ => Err(bad_reply(OP, format!("{reply:?}"))),
        }
    }

    async fn release(
        &self,
        product: &ProductId,
        order: &OrderId,
        reason: ReleaseReason,
    ) -> Result<ReleaseOutcome> {
        const OP: &str = "release";
        let k = self.keys(product);
        let mut inv = RELEASE.key(&k.sale);
        inv.key(&k.users)
            .key(&k.res)
            .key(&k.idem)
            .key(&k.exp)
            .key(&k.done)
            .arg(order.to_string())
            .arg(match reason {
                ReleaseReason::Aborted => "aborted",
                ReleaseReason::Cancelled => "cancelled",
            })
            .arg(self.record_ttl_ms);
        let reply: Vec<String> = self.conn.script(&inv).await.map_err(backend_err(OP))?;
        match reply.first().map(String::as_str) {
            Some("released") => Ok(ReleaseOutcome::Released),
            Some("already_released") => Ok(ReleaseOutcome::AlreadyReleased(parse_state(
                OP,
                reply.get(1),
            )?)),
            Some("already_committed") => Ok(ReleaseOutcome::AlreadyCommitted),
            Some("unknown") => Ok(ReleaseOutcome::Unknown),
            _ => Err(bad_reply(OP, format!("{reply:?}"))),
        }
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>> {
        const OP: &str = "reservation";
        let product: Option<String> = self
            .conn
            .query(::redis::cmd("GET").arg(self.order_key(order)))
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
                    .arg(self.keys(&product).res)
                    .arg(order.to_string()),
            )
            .await
            .map_err(backend_err(OP))?;
        raw.map(|raw| self.parse_record(OP, &product, &raw))
            .transpose()
    }

    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>> {
        const OP: &str = "expire";
        let mut expired = Vec::new();
        if max == 0 {
            return Ok(expired);
        }
        let mut products: Vec<String> = self
            .conn
            .query(::redis::cmd("SMEMBERS").arg(self.products_key()))
            .await
            .map_err(backend_err(OP))?;
        products.sort_unstable();
        // One script per product: each runs on the node owning the product's
        // slot, so the sweep works on a cluster too.
        for product in products {
            let product = ProductId::new(product).map_err(|e| bad_reply(OP, e))?;
            let k = self.keys(&product);
            let mut inv = EXPIRE.key(&k.sale);
            inv.key(&k.users)
                .key(&k.res)
                .key(&k.idem)
                .key(&k.exp)
                .key(&k.done)
                .arg(now.as_millis())
                .arg(max - expired.len())
                .arg(PURGE_BATCH)
                .arg(self.record_ttl_ms);
            let records: Vec<String> = self.conn.script(&inv).await.map_err(backend_err(OP))?;
            for raw in records {
                expired.push(self.parse_record(OP, &product, &raw)?);
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
            .query(::redis::cmd("HMGET").arg(self.keys(product).sale).arg(&[
                "total",
                "available",
                "held",
                "committed",
            ]))
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

    async fn ping(&self) -> Result<()> {
        self.conn.ping("ping").await
    }
}
