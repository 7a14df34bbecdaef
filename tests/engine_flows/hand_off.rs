//! The two hand-off modes and the spawned relay.

use super::*;

#[tokio::test]
async fn await_sink_answers_200_once_the_sink_has_the_order() {
    let s = shop_with(
        "100/1s",
        HandOff::AwaitSink {
            timeout: Duration::from_millis(200),
        },
    );
    s.engine
        .create_sale(&Sale::builder(pid("p"), 5).build().unwrap())
        .await
        .unwrap();
    let o = s.engine.purchase(&as_("alice"), buy("p", 2)).await;
    assert_eq!(o.code(), "purchased");
    assert_eq!(s.sink.orders(), vec![o.purchase().unwrap().order.clone()]);
    // Acknowledged in the store at once: the relay has nothing to resend.
    assert_eq!(s.engine.drain_outbox().await.unwrap(), 0);
    assert_eq!(s.sink.duplicates(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_spawned_relay_delivers_each_purchase_promptly() {
    let s = shop("100/1s");
    s.engine
        .create_sale(&Sale::builder(pid("p"), 5).build().unwrap())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = s
        .engine
        .spawn_relay(Duration::from_secs(3_600), async move {
            let _ = stopped.await;
        });
    let mut live = s.sink.subscribe();
    let o = s.engine.purchase(&as_("alice"), buy("p", 1)).await;
    let started = tokio::time::Instant::now();
    let e = live.recv().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "woken by the purchase, not by its hourly tick"
    );
    assert_eq!(
        (e.event_type, e.order.order_id),
        (EventType::Placed, order_of(&o))
    );
    stop.send(()).unwrap();
    relay.await.unwrap();
}
