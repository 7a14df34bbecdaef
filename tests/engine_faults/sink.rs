//! The sink down, hanging or failing mid-batch, and the relay that catches up.

use super::*;

/// Buys `n` units one by one as `u0` (no cap), returning the outcomes.
async fn buy_n(engine: &Engine, n: usize) -> Vec<Outcome> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(engine.purchase(&creds(), buy(1)).await);
    }
    out
}

/// Distinct `placed` order ids in the sink.
fn placed_ids(sink: &MemoryOrderSink) -> BTreeSet<OrderId> {
    sink.orders().iter().map(|o| o.order_id).collect()
}

#[tokio::test(start_paused = true)]
async fn outbox_mode_answers_200_while_the_sink_is_down_or_hanging_and_the_relay_catches_up() {
    for down in [SwitchSink::FAILING, SwitchSink::HANGING] {
        let store = store_with_sale(50).await;
        let sink = Arc::new(SwitchSink::default());
        sink.set(down);
        let engine = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = engine.spawn_relay(Duration::from_millis(200), async move {
            let _ = stopped.await;
        });
        let mut answered = Vec::new();
        for _ in 0..6 {
            let started = tokio::time::Instant::now();
            for o in buy_n(&engine, 3).await {
                assert_eq!(o.code(), "purchased", "{o:?}");
                assert_eq!(ApiResponse::from_outcome(&o).status, 200);
                answered.push(ordered(&o));
            }
            assert_eq!(
                started.elapsed(),
                Duration::ZERO,
                "the sink is not on the path"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(sink.refused.load(Ordering::SeqCst) > 0, "the relay did try");
        assert!(sink.inner.is_empty());
        assert_eq!(levels(&store).await.committed, 18, "no unit released");

        sink.set(SwitchSink::UP);
        // The relay backs off to at most 1 s; hanging passes are retried
        // once their lease lapses.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let want: BTreeSet<_> = answered.iter().copied().collect();
        assert_eq!(
            placed_ids(&sink.inner),
            want,
            "every order delivered, none missing"
        );
        let ids: BTreeSet<_> = sink.inner.events().iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), 18, "one distinct event per order");
        assert!(outbox(&engine, &store).await.is_empty());
        stop.send(()).unwrap();
        relay.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn await_sink_answers_202_while_the_sink_is_down_or_hanging_and_keeps_the_units() {
    for (down, wait) in [
        (SwitchSink::FAILING, Duration::ZERO),
        (SwitchSink::HANGING, SINK_TIMEOUT),
    ] {
        let store = store_with_sale(50).await;
        let sink = Arc::new(SwitchSink::default());
        sink.set(down);
        let engine = engine_over(
            store.clone(),
            sink.clone(),
            HandOff::AwaitSink {
                timeout: SINK_TIMEOUT,
            },
        );
        let mut answered = Vec::new();
        for _ in 0..5 {
            let started = tokio::time::Instant::now();
            let o = engine.purchase(&creds(), buy(1)).await;
            assert_eq!(
                started.elapsed(),
                wait,
                "the hand-off timeout, not the port timeout"
            );
            assert!(matches!(o, Outcome::Accepted(_)), "{o:?}");
            let http = ApiResponse::from_outcome(&o);
            assert_eq!(http.status, 202);
            let body: serde_json::Value = serde_json::from_slice(&http.body).unwrap();
            assert_eq!(body["status"], "pending");
            assert_eq!(body["order_id"], ordered(&o).to_string());
            answered.push(ordered(&o));
        }
        assert_eq!(
            levels(&store).await.committed,
            5,
            "units are never released for a sink"
        );
        assert_eq!(
            outbox(&engine, &store).await.len(),
            5,
            "each order waits in the outbox"
        );

        sink.set(SwitchSink::UP);
        tokio::time::sleep(LEASE * 2).await; // leases of no relay, but be fair
        assert_eq!(engine.drain_outbox().await.unwrap(), 5);
        let want: BTreeSet<_> = answered.iter().copied().collect();
        assert_eq!(placed_ids(&sink.inner), want);
        // Healthy again: 200, delivered before answering, and spared the
        // relay (acknowledged at once).
        let o = engine.purchase(&creds(), buy(1)).await;
        assert_eq!(o.code(), "purchased");
        assert!(placed_ids(&sink.inner).contains(&ordered(&o)));
        assert!(outbox(&engine, &store).await.is_empty());
    }
}

#[tokio::test]
async fn outbox_mode_never_calls_the_sink_while_purchasing() {
    let store = store_with_sale(5).await;
    let mut sink = MockSink::new();
    sink.expect_submit().never();
    let engine = Engine::builder()
        .stock_store(store.clone())
        .rate_limiter(limiter())
        .order_sink(Arc::new(sink))
        .authenticator(authenticator())
        .build()
        .unwrap();
    let o = engine.purchase(&creds(), buy(2)).await;
    assert_eq!(o.code(), "purchased");
    assert_eq!(
        kinds(&outbox(&engine, &store).await),
        set([(EventType::Placed, ordered(&o))]),
        "the order is in the outbox, atomically with the units"
    );
}

/// A sink that makes the first `ok` events of its next batch durable, then
/// fails; later batches pass.
struct MidBatchSink {
    inner: Arc<MemoryOrderSink>,
    fail_after: Mutex<Option<usize>>,
}

impl MidBatchSink {
    fn failing_after(ok: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(MemoryOrderSink::new()),
            fail_after: Mutex::new(Some(ok)),
        })
    }
}

#[async_trait]
impl OrderSink for MidBatchSink {
    async fn submit(&self, events: &[OrderEvent]) -> flashsale::Result<()> {
        let cut = self.fail_after.lock().unwrap().take();
        match cut {
            Some(ok) => {
                self.inner.submit(&events[..ok.min(events.len())]).await?;
                Err(boom("submit"))
            }
            None => self.inner.submit(events).await,
        }
    }
}

/// The sink stores half a batch, then fails: the relay acknowledges
/// nothing, the batch stays leased away from other relays, and this relay's
/// next pass resends all of it (the sink dedupes the half it had).
#[tokio::test(start_paused = true)]
async fn a_relay_whose_sink_fails_mid_batch_acks_nothing_and_resends_the_whole_batch() {
    let store = store_with_sale(50).await;
    let sink = MidBatchSink::failing_after(2);
    let engine = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
    let bought: BTreeSet<_> = buy_n(&engine, 4).await.iter().map(ordered).collect();

    assert!(engine.relay_once().await.is_err());
    assert_eq!(sink.inner.len(), 2, "half the batch reached the sink");
    let other = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
    assert_eq!(
        other.drain_outbox().await.unwrap(),
        0,
        "leased to the first relay"
    );

    assert_eq!(
        engine.relay_once().await.unwrap(),
        4,
        "the whole batch, again"
    );
    assert_eq!(placed_ids(&sink.inner), bought, "none missing");
    assert_eq!(sink.inner.len(), 4, "none doubled after dedupe by event id");
    assert_eq!(sink.inner.duplicates(), 2);
    tokio::time::sleep(LEASE).await;
    assert!(outbox(&engine, &store).await.is_empty());
    assert_eq!(other.drain_outbox().await.unwrap(), 0);
}

/// The relay that claimed a batch dies after its sink failed mid-batch:
/// nothing was acknowledged, and once the lease lapses another relay
/// claims the batch and delivers all of it.
#[tokio::test(start_paused = true)]
async fn a_batch_whose_relay_died_mid_batch_comes_back_when_the_lease_lapses() {
    let store = store_with_sale(50).await;
    let sink = MidBatchSink::failing_after(1);
    let dying = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
    let bought: BTreeSet<_> = buy_n(&dying, 3).await.iter().map(ordered).collect();
    assert!(dying.relay_once().await.is_err());
    drop(dying);

    let other = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
    assert_eq!(other.drain_outbox().await.unwrap(), 0);
    tokio::time::sleep(LEASE / 2).await;
    assert_eq!(
        other.drain_outbox().await.unwrap(),
        0,
        "the lease still runs"
    );
    tokio::time::sleep(LEASE / 2).await;
    assert_eq!(
        outbox(&other, &store).await.len(),
        3,
        "nothing was acknowledged"
    );
    assert_eq!(other.drain_outbox().await.unwrap(), 3);
    assert_eq!(placed_ids(&sink.inner), bought);
    assert_eq!(sink.inner.len(), 3);
    assert!(outbox(&other, &store).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_hanging_sink_times_the_relay_out_and_a_second_relay_delivers_after_the_lease() {
    let store = store_with_sale(50).await;
    let hanging = Arc::new(SwitchSink::default());
    hanging.set(SwitchSink::HANGING);
    let a = engine_over(store.clone(), hanging.clone(), HandOff::Outbox);
    let healthy = Arc::new(MemoryOrderSink::new());
    let b = engine_over(store.clone(), healthy.clone(), HandOff::Outbox);
    let bought: BTreeSet<_> = buy_n(&a, 3).await.iter().map(ordered).collect();

    let started = tokio::time::Instant::now();
    assert!(matches!(
        a.relay_once().await,
        Err(Error::Timeout {
            operation: "submit",
            ..
        })
    ));
    assert_eq!(started.elapsed(), relay_config().submit_timeout);
    assert_eq!(
        b.drain_outbox().await.unwrap(),
        0,
        "leased by the first relay"
    );
    tokio::time::sleep(LEASE).await;
    assert_eq!(b.drain_outbox().await.unwrap(), 3);
    assert_eq!(placed_ids(&healthy), bought);
    assert!(outbox(&b, &store).await.is_empty());
}

/// A relay keeps a batch its sink refused and resends it while it still
/// holds the lease; once the lease lapsed, another relay may have delivered
/// those events (and later ones of the same orders), so the kept batch is
/// dropped and the relay claims afresh: no event reaches the sink twice and
/// none out of order.
#[tokio::test(start_paused = true)]
async fn a_kept_batch_is_not_resent_after_its_lease_lapsed() {
    let store = store_with_sale(50).await;
    let sink = Arc::new(SwitchSink::default());
    let a = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
    let b = engine_over(store.clone(), sink.clone(), HandOff::Outbox);
    let bought: BTreeSet<_> = buy_n(&a, 3).await.iter().map(ordered).collect();
    sink.set(SwitchSink::FAILING);
    assert!(a.relay_once().await.is_err(), "the sink refused the batch");
    sink.set(SwitchSink::UP);
    tokio::time::sleep(LEASE).await;
    // The lease lapsed: another relay delivers the batch.
    assert_eq!(b.drain_outbox().await.unwrap(), 3);
    assert_eq!(placed_ids(&sink.inner), bought);
    // The first relay does not resend its stale batch.
    assert_eq!(a.drain_outbox().await.unwrap(), 0);
    assert_eq!(sink.inner.duplicates(), 0, "nothing delivered twice");
    assert_eq!(sink.inner.len(), 3);
}
