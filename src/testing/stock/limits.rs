//! The limits a reserve checks: stock, the per-user cap, the per-order
//! maximum, the sale window and unknown products, and restocks that change
//! them.

use std::future::Future;

use crate::model::{EventType, OrderId, Sale, Timestamp};
use crate::testing::{unique_product, user};
use crate::{CancelOutcome, ConfirmOutcome, ReserveOutcome, SaleWrite, StockStore};

use super::{
    HOLD, T0, assert_event_set, at, create, drained, fresh, hold_sale, levels, lv, request,
    reserved, sale, secs,
};

/// The last unit sells; one more does not, whatever the quantity mix.
pub async fn sold_out_is_exact<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = sale(&*store, "soldout", 3).await;
    reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    let too_many = store.reserve(&request(&p, &user(2), 2, T0)).await.unwrap();
    assert_eq!(too_many, ReserveOutcome::SoldOut);
    reserved(&*store, &request(&p, &user(2), 1, T0)).await;
    let none_left = store.reserve(&request(&p, &user(3), 1, T0)).await.unwrap();
    assert_eq!(none_left, ReserveOutcome::SoldOut);
    assert_eq!(levels(&*store, &p).await, lv(3, 0, 0, 3));
    assert_eq!(
        drained(&*store, T0).await.len(),
        2,
        "refusals append nothing"
    );
}

/// A buyer's held + sold units never exceed the cap; cancelling and expiry
/// free room under it.
pub async fn per_user_cap<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("cap");
    let s = Sale::builder(p.clone(), 100)
        .per_user_limit(3)
        .hold(HOLD)
        .build()
        .unwrap();
    create(&*store, &s).await;
    let a = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    store.confirm(&p, &a.order_id, T0).await.unwrap();
    let over = store.reserve(&request(&p, &user(1), 2, T0)).await.unwrap();
    assert_eq!(over, ReserveOutcome::LimitExceeded);
    let b = reserved(&*store, &request(&p, &user(1), 1, T0)).await;
    let full = store.reserve(&request(&p, &user(1), 1, T0)).await.unwrap();
    assert_eq!(full, ReserveOutcome::LimitExceeded);
    // Other buyers are unaffected.
    reserved(&*store, &request(&p, &user(2), 3, T0)).await;
    // Cancelling frees room under the cap.
    assert_eq!(
        store.cancel(&p, &b.order_id, T0).await.unwrap(),
        CancelOutcome::Cancelled
    );
    reserved(&*store, &request(&p, &user(1), 1, T0)).await;
    assert_eq!(levels(&*store, &p).await, lv(100, 94, 4, 2));
    assert_eq!(
        store.reserve(&request(&p, &user(1), 1, T0)).await.unwrap(),
        ReserveOutcome::LimitExceeded
    );
    // Expiry frees room too.
    assert_eq!(store.expire(at(HOLD), 100).await.unwrap().len(), 2);
    assert_eq!(levels(&*store, &p).await, lv(100, 98, 0, 2));
    reserved(&*store, &request(&p, &user(1), 1, at(HOLD))).await;
    assert_eq!(
        store
            .reserve(&request(&p, &user(1), 1, at(HOLD)))
            .await
            .unwrap(),
        ReserveOutcome::LimitExceeded
    );
    assert_eq!(levels(&*store, &p).await, lv(100, 97, 1, 2));
}

/// A quantity above the per-order maximum is refused and changes nothing.
pub async fn per_order_max<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("order-max");
    let s = Sale::builder(p.clone(), 100)
        .per_order_max(2)
        .build()
        .unwrap();
    create(&*store, &s).await;
    let over = store.reserve(&request(&p, &user(1), 3, T0)).await.unwrap();
    assert_eq!(over, ReserveOutcome::OverOrderMax { max: 2 });
    reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    assert_eq!(levels(&*store, &p).await, lv(100, 98, 0, 2));
    assert_eq!(drained(&*store, T0).await.len(), 1);
}

/// Outside `[starts_at, ends_at)` nothing can be reserved.
pub async fn sale_window<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("window");
    let start = at(secs(60));
    let end = at(secs(120));
    let s = Sale::builder(p.clone(), 10)
        .starts_at(start)
        .ends_at(end)
        .build()
        .unwrap();
    create(&*store, &s).await;
    let early = Timestamp::from_millis(start.as_millis() - 1);
    assert_eq!(
        store
            .reserve(&request(&p, &user(1), 1, early))
            .await
            .unwrap(),
        ReserveOutcome::NotOnSale
    );
    reserved(&*store, &request(&p, &user(1), 1, start)).await;
    let last = Timestamp::from_millis(end.as_millis() - 1);
    reserved(&*store, &request(&p, &user(2), 1, last)).await;
    assert_eq!(
        store.reserve(&request(&p, &user(3), 1, end)).await.unwrap(),
        ReserveOutcome::NotOnSale
    );
    assert_eq!(levels(&*store, &p).await, lv(10, 8, 0, 2));
    assert_eq!(drained(&*store, end).await.len(), 2);
}

/// Unknown products and orders are answered, not errors, and append
/// nothing.
pub async fn unknown_product<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = unique_product("unknown");
    assert_eq!(
        store.reserve(&request(&p, &user(1), 1, T0)).await.unwrap(),
        ReserveOutcome::UnknownProduct
    );
    let id = OrderId::new(T0);
    assert_eq!(
        store.confirm(&p, &id, T0).await.unwrap(),
        ConfirmOutcome::Unknown
    );
    assert_eq!(
        store.cancel(&p, &id, T0).await.unwrap(),
        CancelOutcome::Unknown
    );
    assert_eq!(store.reservation(&id).await.unwrap(), None);
    // An unknown order of a known product, too.
    let known = hold_sale(&*store, "known", 1, HOLD).await;
    assert_eq!(
        store.confirm(&known, &id, T0).await.unwrap(),
        ConfirmOutcome::Unknown
    );
    assert_eq!(
        store.cancel(&known, &id, T0).await.unwrap(),
        CancelOutcome::Unknown
    );
    assert!(drained(&*store, T0).await.is_empty());
}

/// A restock replaces the terms and the total and keeps holds and sales
/// (a hold stays confirmable); it cannot go below what is already held or
/// sold, and appends no event.
pub async fn restock<F, Fut, S>(make: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: StockStore,
{
    let store = fresh(make).await;
    let p = hold_sale(&*store, "restock", 5, HOLD).await;
    let a = reserved(&*store, &request(&p, &user(1), 2, T0)).await;
    store.confirm(&p, &a.order_id, T0).await.unwrap();
    let b = reserved(&*store, &request(&p, &user(2), 1, T0)).await;
    let below = Sale::builder(p.clone(), 2).hold(HOLD).build().unwrap();
    assert_eq!(
        store.create_sale(&below).await.unwrap(),
        SaleWrite::StockBelowSold {
            held_or_committed: 3
        }
    );
    assert_eq!(levels(&*store, &p).await, lv(5, 2, 1, 2));
    let more = Sale::builder(p.clone(), 20)
        .per_user_limit(4)
        .hold(HOLD)
        .build()
        .unwrap();
    assert_eq!(store.create_sale(&more).await.unwrap(), SaleWrite::Updated);
    assert_eq!(store.sale(&p).await.unwrap(), Some(more));
    assert_eq!(levels(&*store, &p).await, lv(20, 17, 1, 2));
    assert_eq!(
        store.confirm(&p, &b.order_id, at(secs(1))).await.unwrap(),
        ConfirmOutcome::Confirmed
    );
    assert_eq!(levels(&*store, &p).await, lv(20, 17, 0, 3));
    assert_event_set(
        &drained(&*store, at(secs(1))).await,
        &[
            (a.order_id, EventType::Placed),
            (a.order_id, EventType::Confirmed),
            (b.order_id, EventType::Placed),
            (b.order_id, EventType::Confirmed),
        ],
    );
}
