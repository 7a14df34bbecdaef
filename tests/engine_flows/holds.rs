//! Holds: confirm, cancel, expiry and the sweeper, with their events.

use super::*;

#[tokio::test]
async fn held_orders_are_confirmed_by_their_buyer_or_an_admin_only() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let order = held_order(&s, "alice").await;
    assert_eq!(levels(&s, "seat").await.held, 1);
    assert_eq!(
        s.engine.confirm(&as_("bob"), &order).await,
        Outcome::Forbidden
    );
    assert_eq!(
        s.engine.confirm(&Credentials::none(), &order).await.code(),
        "unauthenticated"
    );
    let ok = s.engine.confirm(&as_("alice"), &order).await;
    assert_eq!(ok.purchase().unwrap().status, OrderStatus::Confirmed);
    // Confirming again answers the same; cancelling now is refused.
    assert_eq!(
        s.engine.confirm(&as_("root"), &order).await.code(),
        "order_updated"
    );
    assert_eq!(
        s.engine.cancel(&as_("alice"), &order).await,
        Outcome::OrderClosed(OrderStatus::Confirmed)
    );
    let l = levels(&s, "seat").await;
    assert_eq!((l.held, l.committed), (0, 1));
    let unknown = OrderId::new(T0);
    assert_eq!(
        s.engine.confirm(&as_("alice"), &unknown).await,
        Outcome::UnknownOrder
    );
    assert_eq!(
        delivered(&s).await,
        vec![(EventType::Placed, order), (EventType::Confirmed, order)],
        "one event per state change, none for the refused ones"
    );
}

#[tokio::test]
async fn cancelled_holds_return_units_and_cannot_be_confirmed() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let order = held_order(&s, "alice").await;
    let out = s.engine.cancel(&as_("root"), &order).await;
    assert_eq!(out.purchase().unwrap().status, OrderStatus::Cancelled);
    assert_eq!(
        s.engine.cancel(&as_("alice"), &order).await.code(),
        "order_updated"
    );
    assert_eq!(
        s.engine.confirm(&as_("alice"), &order).await,
        Outcome::OrderClosed(OrderStatus::Cancelled)
    );
    assert_eq!(levels(&s, "seat").await.available, 4);
    assert_eq!(
        delivered(&s).await,
        vec![(EventType::Placed, order), (EventType::Cancelled, order)]
    );
}

#[tokio::test(start_paused = true)]
async fn unconfirmed_holds_expire_and_the_sweeper_returns_them_with_their_events() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let a = held_order(&s, "alice").await;
    let b = held_order(&s, "bob").await;
    assert_eq!(levels(&s, "seat").await.available, 2);
    assert_eq!(s.engine.expire_holds().await.unwrap(), 0);
    s.clock.advance(Duration::from_secs(60));
    // Confirming after the deadline fails even before any sweep.
    assert_eq!(
        s.engine.confirm(&as_("alice"), &a).await,
        Outcome::OrderClosed(OrderStatus::Expired)
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sweeper = s
        .engine
        .spawn_sweeper(Duration::from_millis(5), async move {
            let _ = stopped.await;
        });
    for _ in 0..200 {
        if levels(&s, "seat").await.available == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    sweeper.await.unwrap();
    let l = levels(&s, "seat").await;
    assert_eq!((l.available, l.held), (4, 0), "{l:?}");
    let events: BTreeSet<_> = delivered(&s)
        .await
        .into_iter()
        .map(|(t, id)| (t.as_str(), id))
        .collect();
    let want: BTreeSet<_> = [("placed", a), ("expired", a), ("placed", b), ("expired", b)]
        .into_iter()
        .collect();
    assert_eq!(events, want, "each expiry has its event, once");
}

#[tokio::test]
async fn events_carry_stable_ids_seq_and_the_order() {
    let s = shop("100/1s");
    hold_sale(&s).await;
    let o = s
        .engine
        .purchase(&as_("alice"), keyed("seat", 2, "ev-1"))
        .await;
    let id = order_of(&o);
    s.engine.confirm(&as_("alice"), &id).await;
    s.engine.drain_outbox().await.unwrap();
    let events: Vec<OrderEvent> = s.sink.events();
    assert_eq!(events.len(), 2);
    for (e, (t, seq)) in events
        .iter()
        .zip([(EventType::Placed, 1), (EventType::Confirmed, 2)])
    {
        assert_eq!((e.event_type, e.seq), (t, seq));
        assert_eq!(e.event_id.to_string(), format!("{id}.{seq}"));
        assert_eq!(e.schema_version, OrderEvent::SCHEMA_VERSION);
        assert_eq!(&e.order, &o.purchase().unwrap().order);
    }
    // Relaying again delivers nothing new.
    assert_eq!(s.engine.drain_outbox().await.unwrap(), 0);
    assert_eq!(s.sink.duplicates(), 0);
}
