//! [`Hooked`], a [`StockStore`] that forwards every call to another store
//! through a [`StockHook`], so a test can count, delay, fail or hang any
//! call without writing out the whole trait.
//!
//! ```ignore
//! struct FailReserves;
//! #[async_trait::async_trait]
//! impl StockHook for FailReserves {
//!     async fn around<T: Send + 'static>(&self, call: StockCall<'_>, answer: Answer<T>) -> Result<T> {
//!         match call {
//!             StockCall::Reserve(_) => Err(flashsale::Error::backend("test", "reserve", "down")),
//!             _ => answer.await,
//!         }
//!     }
//! }
//! let store = Hooked::new(Arc::new(MemoryStockStore::new()), FailReserves);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{OrderEvent, OrderId, ProductId, Reservation, Sale, StockLevels, Timestamp};
use crate::{
    CancelOutcome, ConfirmOutcome, ReserveOutcome, ReserveRequest, SaleWrite, StockStore,
    VoidOutcome,
};

/// The inner store's answer to one call, not yet run. It owns everything it
/// needs, so a hook may await it, drop it (the call never applies), await
/// it twice over by asking the store again, or spawn it to land later.
pub type Answer<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'static>>;

/// One [`StockStore`] call and its arguments, as a [`StockHook`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum StockCall<'a> {
    /// [`StockStore::create_sale`].
    CreateSale(&'a Sale),
    /// [`StockStore::sale`].
    Sale(&'a ProductId),
    /// [`StockStore::reserve`].
    Reserve(&'a ReserveRequest),
    /// [`StockStore::confirm`].
    Confirm(&'a ProductId, &'a OrderId, Timestamp),
    /// [`StockStore::cancel`].
    Cancel(&'a ProductId, &'a OrderId, Timestamp),
    /// [`StockStore::void`].
    Void(&'a ReserveRequest, Timestamp),
    /// [`StockStore::reservation`].
    Reservation(&'a OrderId),
    /// [`StockStore::expire`].
    Expire(Timestamp, usize),
    /// [`StockStore::snapshot`].
    Snapshot(&'a ProductId),
    /// [`StockStore::claim`].
    Claim(Timestamp, usize, Duration),
    /// [`StockStore::ack`].
    Ack(&'a [OrderEvent]),
    /// [`StockStore::ping`].
    Ping,
}

impl StockCall<'_> {
    /// The method's name, as the engine's errors spell operations
    /// (`"reserve"`, `"claim"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateSale(_) => "create_sale",
            Self::Sale(_) => "sale",
            Self::Reserve(_) => "reserve",
            Self::Confirm(..) => "confirm",
            Self::Cancel(..) => "cancel",
            Self::Void(..) => "void",
            Self::Reservation(_) => "reservation",
            Self::Expire(..) => "expire",
            Self::Snapshot(_) => "snapshot",
            Self::Claim(..) => "claim",
            Self::Ack(_) => "ack",
            Self::Ping => "ping",
        }
    }
}

/// What a [`Hooked`] store does around each call it forwards.
#[async_trait]
pub trait StockHook: Send + Sync + 'static {
    /// Answers `call`; `answer` is the inner store's answer, which runs (and
    /// applies) only if awaited. The default awaits it.
    async fn around<T: Send + 'static>(&self, call: StockCall<'_>, answer: Answer<T>) -> Result<T> {
        let _ = call;
        answer.await
    }
}

/// A [`StockStore`] that forwards every call to `inner` through `hook`.
/// [`known_sold_out`](StockStore::known_sold_out) and
/// [`replay_claim_ttl`](StockStore::replay_claim_ttl) are forwarded as they
/// are (they do no I/O).
#[derive(Debug)]
pub struct Hooked<S, H> {
    inner: Arc<S>,
    hook: H,
}

impl<S: StockStore, H: StockHook> Hooked<S, H> {
    /// `inner` behind `hook`.
    pub fn new(inner: Arc<S>, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The store the calls go to.
    pub fn inner(&self) -> &Arc<S> {
        &self.inner
    }

    /// The hook, for a test to read what it recorded.
    pub fn hook(&self) -> &H {
        &self.hook
    }

    /// The answer `run` gives with its own handle on the inner store.
    fn answer<T, F, Fut>(&self, run: F) -> Answer<T>
    where
        F: FnOnce(Arc<S>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        Box::pin(run(self.inner.clone()))
    }
}

#[async_trait]
impl<S: StockStore, H: StockHook> StockStore for Hooked<S, H> {
    async fn create_sale(&self, sale: &Sale) -> Result<SaleWrite> {
        let owned = sale.clone();
        let answer = self.answer(|s| async move { s.create_sale(&owned).await });
        self.hook.around(StockCall::CreateSale(sale), answer).await
    }

    async fn sale(&self, product: &ProductId) -> Result<Option<Sale>> {
        let p = product.clone();
        let answer = self.answer(|s| async move { s.sale(&p).await });
        self.hook.around(StockCall::Sale(product), answer).await
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome> {
        let r = req.clone();
        let answer = self.answer(|s| async move { s.reserve(&r).await });
        self.hook.around(StockCall::Reserve(req), answer).await
    }

    fn known_sold_out(&self, req: &ReserveRequest) -> bool {
        self.inner.known_sold_out(req)
    }

    fn replay_claim_ttl(&self) -> Duration {
        self.inner.replay_claim_ttl()
    }

    async fn confirm(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<ConfirmOutcome> {
        let (p, o) = (product.clone(), *order);
        let answer = self.answer(|s| async move { s.confirm(&p, &o, now).await });
        let call = StockCall::Confirm(product, order, now);
        self.hook.around(call, answer).await
    }

    async fn cancel(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Result<CancelOutcome> {
        let (p, o) = (product.clone(), *order);
        let answer = self.answer(|s| async move { s.cancel(&p, &o, now).await });
        let call = StockCall::Cancel(product, order, now);
        self.hook.around(call, answer).await
    }

    async fn void(&self, req: &ReserveRequest, now: Timestamp) -> Result<VoidOutcome> {
        let r = req.clone();
        let answer = self.answer(|s| async move { s.void(&r, now).await });
        self.hook.around(StockCall::Void(req, now), answer).await
    }

    async fn reservation(&self, order: &OrderId) -> Result<Option<Reservation>> {
        let o = *order;
        let answer = self.answer(|s| async move { s.reservation(&o).await });
        self.hook
            .around(StockCall::Reservation(order), answer)
            .await
    }

    async fn expire(&self, now: Timestamp, max: usize) -> Result<Vec<Reservation>> {
        let answer = self.answer(|s| async move { s.expire(now, max).await });
        self.hook.around(StockCall::Expire(now, max), answer).await
    }

    async fn snapshot(&self, product: &ProductId) -> Result<Option<StockLevels>> {
        let p = product.clone();
        let answer = self.answer(|s| async move { s.snapshot(&p).await });
        self.hook.around(StockCall::Snapshot(product), answer).await
    }

    async fn claim(&self, now: Timestamp, max: usize, lease: Duration) -> Result<Vec<OrderEvent>> {
        let answer = self.answer(|s| async move { s.claim(now, max, lease).await });
        let call = StockCall::Claim(now, max, lease);
        self.hook.around(call, answer).await
    }

    async fn ack(&self, events: &[OrderEvent]) -> Result<()> {
        let e = events.to_vec();
        let answer = self.answer(|s| async move { s.ack(&e).await });
        self.hook.around(StockCall::Ack(events), answer).await
    }

    async fn ping(&self) -> Result<()> {
        let answer = self.answer(|s| async move { s.ping().await });
        self.hook.around(StockCall::Ping, answer).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::memory::MemoryStockStore;
    use crate::testing::stock::request;
    use crate::testing::{unique_product, user};

    const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

    /// Records each call's name and drops every reserve unanswered.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<&'static str>>);

    #[async_trait]
    impl StockHook for Recorder {
        async fn around<T: Send + 'static>(
            &self,
            call: StockCall<'_>,
            answer: Answer<T>,
        ) -> Result<T> {
            self.0.lock().unwrap().push(call.name());
            match call {
                StockCall::Reserve(_) => Err(crate::Error::backend("hook", "reserve", "dropped")),
                _ => answer.await,
            }
        }
    }

    #[tokio::test]
    async fn every_call_passes_the_hook_and_a_dropped_answer_never_applies() {
        let inner = Arc::new(MemoryStockStore::new());
        let store = Hooked::new(inner.clone(), Recorder::default());
        let product = unique_product("hooked");
        let sale = Sale::builder(product.clone(), 3).build().unwrap();
        store.create_sale(&sale).await.unwrap();
        let req = request(&product, &user(1), 1, T0);
        assert!(store.reserve(&req).await.is_err());
        assert_eq!(
            store.snapshot(&product).await.unwrap().unwrap().available,
            3
        );
        assert_eq!(
            inner.snapshot(&product).await.unwrap().unwrap().available,
            3
        );
        store.ping().await.unwrap();
        assert_eq!(
            *store.hook().0.lock().unwrap(),
            ["create_sale", "reserve", "snapshot", "ping"]
        );
    }
}
