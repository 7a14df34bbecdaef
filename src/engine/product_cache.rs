//! The per-instance cache behind [`Engine::product`](super::Engine::product):
//! a product's terms and levels, reused for a bounded staleness, and
//! fetched by one store round (a `sale` and a `snapshot`) per product per
//! period however many readers arrive together (single flight). A failed
//! fetch is kept for the period too, so a crowd on a page during a store
//! outage queues behind one timeout, not one each. Purchases never read
//! it: it only serves product pages.
//!
//! Bounded as the sale cache is (`quick_cache`, scan-resistant), so ids
//! nobody asks for twice cannot push out the hot products; answers that a
//! product does not exist are cached too. Ages run on the engine clock's
//! monotonic time.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use quick_cache::sync::Cache;

use crate::model::{ProductId, Sale, StockLevels};

/// A product's terms and live stock levels as one read saw them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProductView {
    /// The sale's terms.
    pub sale: Arc<Sale>,
    /// Its stock levels.
    pub levels: StockLevels,
    /// The HTTP page rendered from it, so the readers of one period share
    /// one JSON encoding and one tag.
    page: OnceLock<RenderedPage>,
}

/// A product page as the HTTP layer sends it.
#[derive(Debug, Clone)]
pub(crate) struct RenderedPage {
    /// Whether the sale was open when it was rendered (the one part of the
    /// page that follows the clock, not the read).
    pub(crate) on_sale: bool,
    /// The JSON body.
    pub(crate) body: Vec<u8>,
    /// Its entity tag.
    pub(crate) etag: String,
}

impl PartialEq for ProductView {
    fn eq(&self, other: &Self) -> bool {
        self.sale == other.sale && self.levels == other.levels
    }
}

impl Eq for ProductView {}

impl ProductView {
    pub(crate) fn new(sale: Arc<Sale>, levels: StockLevels) -> Self {
        Self {
            sale,
            levels,
            page: OnceLock::new(),
        }
    }

    /// The page for `on_sale`: the one rendered first, if it was rendered
    /// for the same `on_sale`; otherwise `render`'s (kept if it is the
    /// first).
    pub(crate) fn page(
        &self,
        on_sale: bool,
        render: impl FnOnce() -> RenderedPage,
    ) -> Cow<'_, RenderedPage> {
        match self.page.get() {
            Some(page) if page.on_sale == on_sale => Cow::Borrowed(page),
            Some(_) => Cow::Owned(render()),
            None => Cow::Borrowed(self.page.get_or_init(render)),
        }
    }
}

/// One read's answer: `None` for a product that does not exist.
type Answer = Option<Arc<ProductView>>;

/// What a slot keeps: the answer, or the error every reader in the period
/// shares.
type Kept<E> = Result<Answer, Arc<E>>;

/// One product's entry: the last answer with its fetch time, and the lock
/// a reader holds while it fetches, which the others queue on.
struct Slot<E> {
    last: Mutex<Option<(Kept<E>, Duration)>>,
    fetching: tokio::sync::Mutex<()>,
}

impl<E> Default for Slot<E> {
    fn default() -> Self {
        Self {
            last: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }
}

impl<E> Slot<E> {
    fn fresh(&self, now: Duration, staleness: Duration) -> Option<Kept<E>> {
        let last = self.last.lock();
        let (answer, at) = last.as_ref()?;
        now.checked_sub(*at)
            .is_some_and(|age| age < staleness)
            .then(|| answer.clone())
    }
}

pub(crate) struct ProductCache<E> {
    staleness: Duration,
    /// `None` when caching is off (a zero staleness).
    slots: Option<Cache<ProductId, Arc<Slot<E>>>>,
}

impl<E> std::fmt::Debug for ProductCache<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductCache")
            .field("staleness", &self.staleness)
            .field("len", &self.slots.as_ref().map_or(0, Cache::len))
            .finish()
    }
}

impl<E> ProductCache<E> {
    /// Answers reused for `staleness`, about `capacity` products kept.
    pub(crate) fn new(staleness: Duration, capacity: usize) -> Self {
        Self {
            staleness,
            slots: (!staleness.is_zero()).then(|| Cache::new(capacity.max(1))),
        }
    }

    /// The cached answer if it is fresh at monotonic time `now()`;
    /// otherwise `fetch`'s, which this reader runs unless another reader of
    /// the product is already running it (then this one waits for that
    /// answer). A failure is kept like an answer: the readers of the
    /// period share it.
    pub(crate) async fn get<F, Fut>(
        &self,
        product: &ProductId,
        now: impl Fn() -> Duration,
        fetch: F,
    ) -> Kept<E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Answer, E>>,
    {
        let Some(slots) = &self.slots else {
            return fetch().await.map_err(Arc::new);
        };
        let Ok(slot) = slots.get_or_insert_with(product, || {
            Ok::<_, std::convert::Infallible>(Arc::new(Slot::default()))
        });
        if let Some(kept) = slot.fresh(now(), self.staleness) {
            return kept;
        }
        let _turn = slot.fetching.lock().await;
        let started = now();
        if let Some(kept) = slot.fresh(started, self.staleness) {
            return kept;
        }
        let kept = fetch().await.map_err(Arc::new);
        // Aged from when the fetch began, so no answer is served longer
        // than `staleness` after the store gave it.
        *slot.last.lock() = Some((kept.clone(), started));
        kept
    }

    /// Forgets `product`: its next read goes to the store (its sale was
    /// just written through this engine).
    pub(crate) fn forget(&self, product: &ProductId) {
        if let Some(slots) = &self.slots {
            slots.remove(product);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.as_ref().map_or(0, Cache::len)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const STALE: Duration = Duration::from_millis(250);

    fn view(available: u64) -> Answer {
        let sale = Sale::builder(ProductId::new("p").unwrap(), 5)
            .build()
            .unwrap();
        Some(Arc::new(ProductView::new(
            Arc::new(sale),
            StockLevels {
                total: 5,
                available,
                held: 0,
                committed: 5 - available,
            },
        )))
    }

    /// A fetch that counts its calls and answers `available = calls`.
    async fn counted(calls: &AtomicUsize) -> Result<Answer, &'static str> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::task::yield_now().await;
        Ok(view(n as u64))
    }

    type Cache = ProductCache<&'static str>;

    #[tokio::test]
    async fn many_readers_at_once_cost_one_fetch() {
        let cache = Cache::new(STALE, 16);
        let p = ProductId::new("p").unwrap();
        let calls = AtomicUsize::new(0);
        let reads = (0..100).map(|_| cache.get(&p, || Duration::ZERO, || counted(&calls)));
        let answers = futures::future::join_all(reads).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(answers.iter().all(|a| *a == Ok(view(1))));
    }

    #[tokio::test]
    async fn an_answer_is_reused_for_the_staleness_then_fetched_again() {
        let cache = Cache::new(STALE, 16);
        let p = ProductId::new("p").unwrap();
        let calls = AtomicUsize::new(0);
        let at = |ms| move || Duration::from_millis(ms);
        assert_eq!(
            cache.get(&p, at(1_000), || counted(&calls)).await,
            Ok(view(1))
        );
        assert_eq!(
            cache.get(&p, at(1_249), || counted(&calls)).await,
            Ok(view(1))
        );
        assert_eq!(
            cache.get(&p, at(1_250), || counted(&calls)).await,
            Ok(view(2))
        );
        // A clock reading from before the fetch is not trusted.
        assert_eq!(
            cache.get(&p, at(900), || counted(&calls)).await,
            Ok(view(3))
        );
        cache.forget(&p);
        assert_eq!(
            cache.get(&p, at(900), || counted(&calls)).await,
            Ok(view(4))
        );
    }

    #[tokio::test]
    async fn a_zero_staleness_reads_through() {
        let p = ProductId::new("p").unwrap();
        let off = Cache::new(Duration::ZERO, 16);
        let calls = AtomicUsize::new(0);
        for n in 1..=3 {
            let read = off.get(&p, || Duration::ZERO, || counted(&calls));
            assert_eq!(read.await, Ok(view(n)));
        }
    }

    /// A crowd during an outage: one failed fetch per period, shared by
    /// every reader in it; the next period tries the store again.
    #[tokio::test]
    async fn a_failure_is_shared_for_the_period() {
        let p = ProductId::new("p").unwrap();
        let cache = Cache::new(STALE, 16);
        let tries = AtomicUsize::new(0);
        let down = || async {
            tries.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Err::<Answer, _>("down")
        };
        let reads = (0..50).map(|_| cache.get(&p, || Duration::ZERO, down));
        for read in futures::future::join_all(reads).await {
            assert_eq!(read, Err(Arc::new("down")));
        }
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        let calls = AtomicUsize::new(0);
        let later = cache.get(&p, || STALE, || counted(&calls));
        assert_eq!(later.await, Ok(view(1)));
    }

    /// A view renders its page once; a reader on the other side of the
    /// sale's window gets its own rendering.
    #[test]
    fn a_page_is_rendered_once_per_view_and_window_state() {
        let v = view(3).unwrap();
        let renders = AtomicUsize::new(0);
        let render = |on_sale| {
            let n = renders.fetch_add(1, Ordering::SeqCst);
            move || RenderedPage {
                on_sale,
                body: vec![n as u8],
                etag: format!("{n}"),
            }
        };
        assert_eq!(v.page(true, render(true)).body, [0]);
        assert_eq!(v.page(true, || unreachable!()).body, [0]);
        assert_eq!(v.page(false, render(false)).body, [1]);
        assert_eq!(v.page(true, || unreachable!()).etag, "0");
    }

    #[tokio::test]
    async fn unknown_ids_are_cached_and_the_cache_stays_bounded() {
        const CAP: usize = 1_000;
        let cache = Cache::new(Duration::from_secs(60), CAP);
        for i in 0..(CAP * 10) {
            let p = ProductId::new(format!("bot-{i}")).unwrap();
            let none = cache.get(&p, || Duration::ZERO, || async { Ok(None) });
            assert_eq!(none.await, Ok(None));
        }
        assert!(cache.len() <= CAP + CAP / 10, "{} entries", cache.len());
        let last = ProductId::new(format!("bot-{}", CAP * 10 - 1)).unwrap();
        let cached = cache.get(&last, || Duration::ZERO, || async { Err("fetched again") });
        assert_eq!(cached.await, Ok(None));
    }
}
