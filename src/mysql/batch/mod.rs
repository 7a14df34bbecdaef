//! Hot-row batching: concurrent [`reserve`](crate::StockStore::reserve)s
//! of one product in one process run as ONE transaction.
//!
//! Each product has a queue. The first request to find it idle spawns a
//! drainer task, which repeatedly takes up to [`MySqlOptions::batch_max`]
//! queued requests (after waiting at most [`MySqlOptions::batch_wait`] for
//! the batch to fill; by default it takes whatever queued while the
//! previous batch ran) and answers them. A request that is alone runs the
//! lone reserve's transaction. A batch runs in three round trips of
//! plain-text statements:
//!
//! 1. `START TRANSACTION`, the reservations standing under the requests'
//!    order ids, those their idempotency keys name (locked), an upsert
//!    that creates and locks every buyer's (product, buyer) row, in one
//!    order, then their counts, and last the sale's terms and stock;
//! 2. after a plan made in arrival order (first come, first served) with
//!    the same checks, in the same order, as a lone reserve: the buyers'
//!    new counts, replay claims, reservations and `placed` events as
//!    multi-row inserts, and last ONE guarded update of the hot stock row
//!    for the whole batch;
//! 3. `COMMIT`.
//!
//! Every request gets exactly the answer it would have had had the
//! batch's requests run one after the other (tests/mysql_batching.rs
//! checks this against a store without batching). Every value is sent as
//! a hex literal with its column's character set, so no value can change
//! a statement; the statements change shape with every batch size, so
//! they are not prepared.
//!
//! The stock level the plan starts from is read without a lock; if another
//! process took units meanwhile, the final guarded update matches no row,
//! and the batch runs again with the stock row locked before the plan. A
//! batch whose transaction fails (deadlock, lock-wait timeout, duplicate
//! key raced by another process) runs again as a whole, at most
//! [`MySqlOptions::max_retries`] times; an error that remains answers every
//! request of the batch, and none of their reserves was applied.
//!
//! [`MySqlOptions::batch_max`]: super::MySqlOptions::batch_max
//! [`MySqlOptions::batch_wait`]: super::MySqlOptions::batch_wait
//! [`MySqlOptions::max_retries`]: super::MySqlOptions::max_retries

mod literal;
mod plan;
mod read;
mod tx;
mod write;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::BACKEND;
use super::tx::Db;
use crate::error::{Error, Result};
use crate::model::ProductId;
use crate::{ReserveOutcome, ReserveRequest};

const OP: &str = "reserve";

/// One queued request and where its answer goes.
struct Pending {
    req: ReserveRequest,
    answer: oneshot::Sender<Result<ReserveOutcome>>,
}

/// The queue of one product. Its presence in [`Batcher::queues`] means
/// at least one drainer is running for the product.
struct Queue {
    items: VecDeque<Pending>,
    /// Woken when the queue reaches a full batch.
    full: Arc<Notify>,
    /// Drainers running for the product (at most [`Batcher::lanes`]).
    lanes: usize,
}

/// The per-product queues of one store, and the batch statements.
pub(super) struct Batcher {
    max: usize,
    wait: Duration,
    lanes: usize,
    queues: Mutex<HashMap<ProductId, Queue>>,
    /// The table prefix of the batch statements.
    prefix: String,
    batches: AtomicU64,
    requests: AtomicU64,
}

/// How much batching happened: see [`MySqlStockStore::batch_stats`](crate::mysql::MySqlStockStore::batch_stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatchStats {
    /// Batches run (a batch of one request included).
    pub batches: u64,
    /// Reserve requests answered through batches.
    pub requests: u64,
}

impl BatchStats {
    /// Requests per batch, on average (0 before the first batch).
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.requests as f64 / self.batches as f64
        }
    }
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("max", &self.max)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    pub(super) fn new(prefix: &str, max: usize, wait: Duration, lanes: usize) -> Self {
        Self {
            max: max.max(1),
            wait,
            lanes: lanes.max(1),
            queues: Mutex::new(HashMap::new()),
            prefix: prefix.to_owned(),
            batches: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<ProductId, Queue>> {
        // The lock guards plain collections that no panic leaves
        // half-changed.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `p`; true if the caller must start a drainer for its
    /// product (none runs, or fewer than [`lanes`](Self::lanes) do).
    fn push(&self, p: Pending) -> bool {
        let mut queues = self.queues();
        match queues.get_mut(&p.req.product) {
            Some(q) => {
                q.items.push_back(p);
                if q.items.len() == self.max {
                    q.full.notify_one();
                }
                if q.lanes < self.lanes {
                    q.lanes += 1;
                    true
                } else {
                    false
                }
            }
            None => {
                let product = p.req.product.clone();
                let mut items = VecDeque::new();
                items.push_back(p);
                let full = Arc::new(Notify::new());
                let lanes = 1;
                queues.insert(product, Queue { items, full, lanes });
                true
            }
        }
    }

    /// Waits, at most [`wait`](Self::wait), for a full batch.
    async fn gather(&self, product: &ProductId) {
        if self.wait.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let full = {
                let queues = self.queues();
                match queues.get(product) {
                    Some(q) if q.items.len() < self.max => q.full.clone(),
                    _ => return,
                }
            };
            // A wake-up left over from an earlier batch only makes this
            // look again.
            if tokio::time::timeout_at(deadline, full.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// The next batch, in arrival order; `None` if nothing is queued (the
    /// calling drainer ends).
    fn take(&self, product: &ProductId) -> Option<Vec<Pending>> {
        let mut queues = self.queues();
        let q = queues.get_mut(product)?;
        if q.items.is_empty() {
            q.lanes -= 1;
            if q.lanes == 0 {
                queues.remove(product);
            }
            return None;
        }
        let n = q.items.len().min(self.max);
        Some(q.items.drain(..n).collect())
    }

    /// A drainer ends abnormally: if it was the product's last, the
    /// queue is dropped and its pending requests get an error.
    fn abandon(&self, product: &ProductId) {
        let mut queues = self.queues();
        let dropped = match queues.get_mut(product) {
            Some(q) if q.lanes > 1 => {
                q.lanes -= 1;
                None
            }
            Some(_) => queues.remove(product),
            None => None,
        };
        drop(queues);
        drop(dropped);
    }

    /// How many batches ran so far, and how many requests they answered.
    pub(super) fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.batches.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// `reserve` through the product's batch queue.
    pub(super) async fn reserve(
        self: &Arc<Self>,
        db: &Arc<Db>,
        req: &ReserveRequest,
    ) -> Result<ReserveOutcome> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            req: req.clone(),
            answer,
        };
        if self.push(pending) {
            let (batcher, db) = (self.clone(), db.clone());
            let product = req.product.clone();
            tokio::spawn(async move { batcher.drain(&db, &product).await });
        }
        answered.await.unwrap_or_else(|_| {
            Err(Error::backend(
                BACKEND,
                OP,
                "the reserve batch was abandoned (its task ended)",
            ))
        })
    }

    /// Runs the product's batches until its queue is empty.
    async fn drain(&self, db: &Db, product: &ProductId) {
        let mut guard = DrainGuard {
            batcher: self,
            product,
            armed: true,
        };
        loop {
            // Let requests that were woken together join this batch.
            tokio::task::yield_now().await;
            self.gather(product).await;
            let Some(batch) = self.take(product) else {
                guard.armed = false;
                return;
            };
            let (reqs, answers): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.req, p.answer)).unzip();
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.requests
                .fetch_add(reqs.len() as u64, Ordering::Relaxed);
            let result = match reqs.as_slice() {
                // Alone: the lone reserve's transaction, on prepared
                // statements.
                [req] => db.reserve_alone(req).await.map(|o| vec![o]),
                reqs => {
                    let lock_sale = AtomicBool::new(false);
                    db.retry(OP, || tx::attempt(db, &self.prefix, reqs, &lock_sale))
                        .await
                }
            };
            match result {
                Ok(outcomes) => {
                    for (answer, outcome) in answers.into_iter().zip(outcomes) {
                        let _ = answer.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    for answer in answers {
                        let _ = answer.send(Err(e.shared_copy()));
                    }
                }
            }
        }
    }
}

/// Ends a drainer that did not finish normally (it panicked, or its
/// runtime shut down): its queue is dropped, so its waiting requests fail
/// at once and the next request starts a new drainer.
struct DrainGuard<'a> {
    batcher: &'a Batcher,
    product: &'a ProductId,
    armed: bool,
}

impl Drop for DrainGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.batcher.abandon(self.product);
        }
    }
}
