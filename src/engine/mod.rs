//! The [`Engine`]: the async driver of the purchase machine, and its
//! background tasks.

mod builder;
mod product_cache;
mod relay;
mod sale_cache;

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tracing::{Instrument, debug, info, warn};

use crate::machine::HandOff;
pub use builder::{EngineBuilder, EngineConfig, RelayConfig};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::machine::{Action, Failure, PurchaseMachine};
use crate::metrics::{CallEnd, EngineMetrics, PortOp, ops};
use crate::model::{
    Credentials, OrderEvent, OrderId, OrderStatus, Outcome, Principal, ProductId, PurchaseRequest,
    PurchaseSummary, Reservation, ReservationState, Sale, StockLevels,
};
use crate::{
    Authenticator, CancelOutcome, ConfirmOutcome, OrderSink, RateLimiter, ReserveRequest,
    SaleWrite, StockStore,
};
use product_cache::ProductCache;
pub use product_cache::ProductView;
pub(crate) use product_cache::RenderedPage;
use sale_cache::SaleCache;

/// The flash-sale engine. Cheap to clone; clones share everything.
///
/// It runs the [purchase machine](crate::machine) against the four ports
/// ([`StockStore`], [`RateLimiter`], [`OrderSink`], [`Authenticator`]),
/// and the background tasks beside it: the
/// outbox [relay](Engine::spawn_relay) and the hold
/// [sweeper](Engine::spawn_sweeper).
///
/// Every port call is bounded by [`EngineConfig::port_timeout`]; a call that
/// fails or times out ends the attempt `Unavailable`, with whatever it had
/// reserved voided. Each purchase runs in a `tracing` span named
/// `purchase`.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    stock: Arc<dyn StockStore>,
    limiter: Arc<dyn RateLimiter>,
    sink: Arc<dyn OrderSink>,
    auth: Arc<dyn Authenticator>,
    clock: Arc<dyn Clock>,
    sales: SaleCache,
    /// What [`Engine::product`] serves.
    products: ProductCache<Error>,
    config: EngineConfig,
    /// Woken when this engine appends to the outbox, so the relay delivers
    /// without waiting for its next tick.
    relay_wake: tokio::sync::Notify,
    /// A claimed batch the relay failed to deliver, retried first.
    relay_retry: parking_lot::Mutex<Option<relay::KeptBatch>>,
    /// This engine's metric handles ([`crate::metrics`]).
    metrics: EngineMetrics,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Per-port readiness, from [`Engine::readiness`].
#[derive(Debug)]
pub struct Readiness {
    /// Each port's name and whether it answered.
    pub checks: Vec<(&'static str, Result<()>)>,
}

impl Readiness {
    /// Whether every port answered.
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The engine's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Tries to buy: authenticate, find the sale's terms (from the engine's
    /// sale cache, or the store) and validate the request against them,
    /// check the buyer's rate, reserve (which writes the order to the
    /// store's outbox in the same atomic step) and,
    /// under [`HandOff::AwaitSink`], hand the order to the sink. Never
    /// returns an error: every ending, including a failed backend, is an
    /// [`Outcome`].
    ///
    /// Credentials are verified before anything else: a request without
    /// valid ones answers `Unauthenticated` without any store call, whatever
    /// product it names.
    ///
    /// Dropping the future part-way leaves the store consistent (either
    /// nothing was reserved, or the order stands with its `placed` event),
    /// but the caller never learns which, and a reserve whose answer was
    /// lost is not voided. A server should call
    /// [`purchase_to_completion`](Self::purchase_to_completion) instead.
    pub async fn purchase(&self, credentials: &Credentials, request: PurchaseRequest) -> Outcome {
        let started = Instant::now();
        let span = tracing::info_span!(
            "purchase",
            product = %request.product,
            quantity = request.quantity.get(),
            user = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let outcome = self
            .purchase_inner(credentials, request, span.clone())
            .instrument(span)
            .await;
        self.inner
            .metrics
            .purchase_finished(&outcome, started.elapsed());
        outcome
    }

    async fn purchase_inner(
        &self,
        credentials: &Credentials,
        request: PurchaseRequest,
        span: tracing::Span,
    ) -> Outcome {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let mut machine =
            PurchaseMachine::new(request, OrderId::new(now), now, inner.config.machine);
        let mut delivered: Option<OrderEvent> = None;
        loop {
            // Each answer is fed back once the call no longer borrows the
            // machine's request.
            let step = match machine.poll_action() {
                Action::Authenticate => {
                    let answer = self
                        .call(&ops::AUTHENTICATE, inner.auth.authenticate(credentials))
                        .await;
                    machine.handle_authenticated(answer)
                }
                Action::LoadSale { product } => {
                    let answer = self.cached_sale(product).await;
                    let sale = answer.as_ref().map(Option::as_deref);
                    machine.handle_sale(sale.map_err(|_| Failure::Error))
                }
                Action::CheckSoldOut(req) => {
                    let known = inner.stock.known_sold_out(req);
                    machine.handle_sold_out_checked(known)
                }
                Action::CheckRate { user, cost } => {
                    if !span.is_disabled() {
                        span.record("user", user.as_str());
                    }
                    let answer = self
                        .call(&ops::RATE_CHECK, inner.limiter.check(user.as_str(), cost))
                        .await;
                    machine.handle_rate_checked(answer)
                }
                Action::Reserve(req) => {
                    let answer = self.call(&ops::RESERVE, inner.stock.reserve(req)).await;
                    if answer.is_ok() {
                        inner.relay_wake.notify_one();
                    }
                    machine.handle_reserved(answer)
                }
                Action::Void(req) => {
                    let answer = self
                        .call(&ops::VOID, inner.stock.void(req, inner.clock.now()))
                        .await;
                    if answer.is_err() {
                        self.void_in_background(req.clone());
                    }
                    machine.handle_voided(answer)
                }
                Action::Submit(event) => {
                    let timeout = match inner.config.machine.hand_off {
                        HandOff::AwaitSink { timeout } => timeout,
                        HandOff::Outbox => inner.config.port_timeout,
                    };
                    let answer = self
                        .call_within(
                            &ops::SUBMIT,
                            timeout,
                            inner.sink.submit(std::slice::from_ref(event)),
                        )
                        .await;
                    if answer.is_ok() {
                        delivered = Some(event.clone());
                    }
                    machine.handle_submitted(answer)
                }
                Action::Done(_) => break,
            };
            // The driver feeds exactly the answer the machine asked for.
            debug_assert!(step.is_ok(), "{step:?}");
        }
        if let Some(event) = delivered {
            // The sink has it: spare the relay a second delivery. Best
            // effort: if this fails the relay delivers it again, and
            // consumers dedupe by event id.
            if let Err(error) = self
                .call_err(&ops::ACK, inner.stock.ack(std::slice::from_ref(&event)))
                .await
            {
                debug!(%error, "ack after a direct hand-off failed; the relay will resend");
            }
        }
        let outcome = machine
            .into_outcome()
            .expect("the loop ends only when the machine is done");
        // Recording into a disabled span still costs a few hundred
        // instructions (it is forwarded to `log`); skip it when nobody
        // listens.
        if !span.is_disabled() {
            span.record("outcome", outcome.code());
        }
        debug!(code = outcome.code(), "purchase finished");
        outcome
    }

    /// [`purchase`](Self::purchase), run as its own task so that it
    /// completes even if the caller stops waiting (an HTTP client that
    /// disconnects): a reserve whose answer comes back is kept or voided as
    /// usual, never abandoned half-way. Each step stays bounded by the port
    /// timeouts. Must run inside a tokio runtime.
    pub async fn purchase_to_completion(
        &self,
        credentials: Credentials,
        request: PurchaseRequest,
    ) -> Outcome {
        let engine = self.clone();
        // The task keeps the caller's span (e.g. the HTTP request's id).
        let task = tokio::spawn(
            async move { engine.purchase(&credentials, request).await }.in_current_span(),
        );
        match task.await {
            Ok(outcome) => outcome,
            Err(error) => {
                warn!(%error, "purchase task failed");
                self.unavailable()
            }
        }
    }

    /// Retries voiding `req` in the background until the store answers
    /// (the attempt already answered `Unavailable`, which promises the buyer
    /// owns nothing). Gives up, loudly, after [`EngineConfig::void_retry_for`].
    fn void_in_background(&self, req: ReserveRequest) {
        let engine = self.clone();
        let retries = async move {
            let started = tokio::time::Instant::now();
            let give_up = engine.inner.config.void_retry_for;
            let mut backoff = Duration::from_millis(100);
            loop {
                tokio::time::sleep(backoff).await;
                let now = engine.inner.clock.now();
                match engine
                    .call_err(&ops::VOID, engine.inner.stock.void(&req, now))
                    .await
                {
                    Ok(outcome) => {
                        info!(order = %req.order_id, ?outcome, "voided after retrying");
                        return;
                    }
                    Err(error) if started.elapsed() >= give_up => {
                        tracing::error!(
                            order = %req.order_id, product = %req.product, user = %req.user, %error,
                            "could not void a reserve whose answer was lost; if it ran, the order \
                             stands although its buyer was answered 503: cancel it by hand"
                        );
                        return;
                    }
                    Err(error) => {
                        debug!(order = %req.order_id, %error, "void failed; retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        };
        // The retries keep the span of the request that failed.
        tokio::spawn(retries.in_current_span());
    }

    /// Runs one port call under the configured timeout, logging failures.
    async fn call<T>(
        &self,
        op: &'static PortOp,
        fut: impl Future<Output = Result<T>>,
    ) -> std::result::Result<T, Failure> {
        self.call_within(op, self.inner.config.port_timeout, fut)
            .await
    }

    /// Runs one port call under `after`, logging failures.
    async fn call_within<T>(
        &self,
        op: &'static PortOp,
        after: Duration,
        fut: impl Future<Output = Result<T>>,
    ) -> std::result::Result<T, Failure> {
        self.call_err_within(op, after, fut).await.map_err(|error| {
            let operation = op.operation;
            if let Error::Timeout { after, .. } = error {
                warn!(operation, ?after, "port call timed out");
                Failure::Timeout
            } else {
                warn!(operation, %error, "port call failed");
                Failure::Error
            }
        })
    }

    /// Runs one port call under the configured timeout, keeping the error.
    async fn call_err<T>(
        &self,
        op: &'static PortOp,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.call_err_within(op, self.inner.config.port_timeout, fut)
            .await
    }

    /// Runs one port call under `after`, keeping the error. Every port
    /// call goes through here: it records the call's duration and, if it
    /// failed, the failure ([`crate::metrics`]).
    async fn call_err_within<T>(
        &self,
        op: &'static PortOp,
        after: Duration,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut fut = std::pin::pin!(fut);
        // In-process ports answer on the first poll; arming a timer for them
        // would cost more than the call itself. Only a call that has to wait
        // gets the timeout (its clock starts at that first wait).
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        let out = match first {
            Poll::Ready(out) => out,
            Poll::Pending => {
                tokio::time::timeout(after, fut)
                    .await
                    .unwrap_or(Err(Error::Timeout {
                        operation: op.operation,
                        after,
                    }))
            }
        };
        let end = match &out {
            Ok(_) => CallEnd::Ok,
            Err(Error::Timeout { .. }) => CallEnd::Timeout,
            Err(_) => CallEnd::Error,
        };
        self.inner.metrics.port_call(op, started.elapsed(), end);
        out
    }

    /// The sale's terms from the engine's cache, or from the store (and
    /// then cached, unknown products included).
    async fn cached_sale(&self, product: &ProductId) -> Result<Option<Arc<Sale>>> {
        let now = self.inner.clock.monotonic();
        if let Some(hit) = self.inner.sales.get(product, now) {
            return Ok(hit);
        }
        let fetched = self
            .call_err(&ops::SALE, self.inner.stock.sale(product))
            .await
            .inspect_err(|error| warn!(%error, %product, "sale lookup failed"))?
            .map(Arc::new);
        self.inner.sales.put(product.clone(), fetched.clone(), now);
        Ok(fetched)
    }

    /// Verifies credentials: the principal, or the outcome to answer with
    /// (`Unauthenticated` or `Unavailable`).
    pub async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> std::result::Result<Principal, Outcome> {
        match self
            .call(
                &ops::AUTHENTICATE,
                self.inner.auth.authenticate(credentials),
            )
            .await
        {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(rejection)) => {
                debug!(%rejection, "credentials refused");
                Err(Outcome::Unauthenticated(rejection))
            }
            Err(_) => Err(self.unavailable()),
        }
    }

    fn unavailable(&self) -> Outcome {
        Outcome::Unavailable {
            retry_after: self.inner.config.machine.unavailable_retry_after,
        }
    }

    /// Confirms a held order (sales with holds): its units are sold for
    /// good. Only the buyer or an admin may. Confirming a confirmed order
    /// answers its status again.
    pub async fn confirm(&self, credentials: &Credentials, order: &OrderId) -> Outcome {
        let (principal, reservation) = match self.owned_reservation(credentials, order).await {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        let now = self.inner.clock.now();
        let answer = self
            .call(
                &ops::CONFIRM,
                self.inner.stock.confirm(&reservation.product, order, now),
            )
            .await;
        let state = match answer {
            Ok(ConfirmOutcome::Confirmed | ConfirmOutcome::AlreadyConfirmed) => {
                ReservationState::Committed
            }
            Ok(ConfirmOutcome::NotHeld(state)) => {
                if state == ReservationState::Expired {
                    self.inner.relay_wake.notify_one();
                }
                return Outcome::OrderClosed(OrderStatus::of(&Reservation {
                    state,
                    ..reservation
                }));
            }
            Ok(ConfirmOutcome::Unknown) => return Outcome::UnknownOrder,
            Err(_) => return self.unavailable(),
        };
        self.inner.relay_wake.notify_one();
        info!(%order, user = %principal.user, "order confirmed");
        updated(reservation, state)
    }

    /// Cancels a held order: its units go back on sale. Only the buyer or an
    /// admin may. Cancelling a cancelled order answers its status again; a
    /// confirmed or expired order cannot be cancelled.
    pub async fn cancel(&self, credentials: &Credentials, order: &OrderId) -> Outcome {
        let (principal, reservation) = match self.owned_reservation(credentials, order).await {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
        let now = self.inner.clock.now();
        let answer = self
            .call(
                &ops::CANCEL,
                self.inner.stock.cancel(&reservation.product, order, now),
            )
            .await;
        match answer {
            Ok(CancelOutcome::Cancelled | CancelOutcome::AlreadyCancelled) => {
                self.inner.relay_wake.notify_one();
                info!(%order, user = %principal.user, "order cancelled");
                updated(reservation, ReservationState::Cancelled)
            }
            Ok(CancelOutcome::NotHeld(state)) => {
                Outcome::OrderClosed(OrderStatus::of(&Reservation {
                    state,
                    ..reservation
                }))
            }
            Ok(CancelOutcome::Unknown) => Outcome::UnknownOrder,
            Err(_) => self.unavailable(),
        }
    }

    /// Authenticates and finds `order`, which must belong to the caller
    /// unless the caller is an admin.
    async fn owned_reservation(
        &self,
        credentials: &Credentials,
        order: &OrderId,
    ) -> std::result::Result<(Principal, Reservation), Outcome> {
        let principal = self.authenticate(credentials).await?;
        let found = self
            .call(&ops::RESERVATION, self.inner.stock.reservation(order))
            .await
            .map_err(|_| self.unavailable())?;
        match found {
            None => Err(Outcome::UnknownOrder),
            Some(r) if r.user != principal.user && !principal.is_admin() => Err(Outcome::Forbidden),
            Some(r) => Ok((principal, r)),
        }
    }

    /// Creates a sale or replaces its terms (restock). The new terms are
    /// used by this engine at once; other engines sharing the store see
    /// them within their sale-cache TTL.
    pub async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite> {
        let written = self
            .call_err(&ops::CREATE_SALE, self.inner.stock.create_sale(sale))
            .await?;
        if !matches!(written, SaleWrite::StockBelowSold { .. }) {
            info!(product = %sale.product(), stock = sale.stock(), ?written, "sale written");
            self.inner.sales.put(
                sale.product().clone(),
                Some(Arc::new(sale.clone())),
                self.inner.clock.monotonic(),
            );
        }
        self.inner.products.forget(sale.product());
        Ok(written)
    }

    /// The sale's terms and stock levels for a product page, `None` if
    /// there is no such sale. Served from this engine's cache for up to
    /// [`EngineConfig::product_staleness`] (a buyer may see `available`
    /// that old; a purchase always reserves against the store), and fetched
    /// by one `sale` and one `snapshot` per product per period however many
    /// readers arrive together. A sale written through this engine is
    /// fresh at once. A failed read is kept for the period too: its readers
    /// all get a copy of the error (its kind, backend and operation, a
    /// driver's error as its message), and the store sees one call.
    pub async fn product(&self, product: &ProductId) -> Result<Option<Arc<ProductView>>> {
        let clock = &self.inner.clock;
        let fetch = || async {
            let (sale, levels) = tokio::join!(self.sale(product), self.snapshot(product));
            Ok(match (sale?, levels?) {
                (Some(sale), Some(levels)) => {
                    Some(Arc::new(ProductView::new(Arc::new(sale), levels)))
                }
                _ => None,
            })
        };
        let kept = self
            .inner
            .products
            .get(product, || clock.monotonic(), fetch)
            .await;
        kept.map_err(|shared| Arc::try_unwrap(shared).unwrap_or_else(|e| e.shared_copy()))
    }

    /// The sale's current terms, straight from the store.
    pub async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        self.call_err(&ops::SALE, self.inner.stock.sale(product))
            .await
    }

    /// The product's live stock levels. Also sets the product's
    /// [`STOCK_UNITS`](crate::metrics::STOCK_UNITS) gauges (for the first
    /// [`EngineConfig::stock_gauge_products`] products read).
    pub async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>> {
        let levels = self
            .call_err(&ops::SNAPSHOT, self.inner.stock.snapshot(product))
            .await?;
        if let Some(levels) = &levels {
            self.inner.metrics.stock.set(product, levels);
        }
        Ok(levels)
    }

    /// Releases every hold past its expiry; returns how many.
    pub async fn expire_holds(&self) -> Result<usize> {
        let batch = self.inner.config.sweep_batch;
        let mut total = 0;
        loop {
            let now = self.inner.clock.now();
            let expired = self
                .call_err(&ops::EXPIRE, self.inner.stock.expire(now, batch))
                .await?;
            self.inner.metrics.holds_expired(expired.len());
            total += expired.len();
            for r in &expired {
                debug!(order = %r.order_id, product = %r.product, "hold expired");
            }
            if expired.len() < batch {
                break;
            }
        }
        if total > 0 {
            self.inner.relay_wake.notify_one();
            info!(count = total, "expired holds released");
        }
        Ok(total)
    }

    /// Spawns the hold sweeper on the current tokio runtime: it calls
    /// [`expire_holds`](Self::expire_holds) every `interval` until
    /// `shutdown` completes. A failed sweep is logged and retried on the
    /// next tick.
    pub fn spawn_sweeper(
        &self,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = ticker.tick() => {
                        if let Err(error) = engine.expire_holds().await {
                            warn!(%error, "hold sweep failed; retrying next tick");
                        }
                    }
                }
            }
            debug!("hold sweeper stopped");
        })
    }

    /// Asks every port whether it answers (for `GET /readyz`).
    pub async fn readiness(&self) -> Readiness {
        let i = &*self.inner;
        let (stock, limiter, sink) = tokio::join!(
            self.call_err(&ops::STOCK_PING, i.stock.ping()),
            self.call_err(&ops::RATE_PING, i.limiter.ping()),
            self.call_err(&ops::SINK_PING, i.sink.ping()),
        );
        Readiness {
            checks: vec![
                ("stock_store", stock),
                ("rate_limiter", limiter),
                ("order_sink", sink),
            ],
        }
    }
}

fn updated(reservation: Reservation, state: ReservationState) -> Outcome {
    let reservation = Reservation {
        state,
        ..reservation
    };
    Outcome::OrderUpdated(PurchaseSummary {
        order: reservation.to_order(),
        status: OrderStatus::of(&reservation),
    })
}
