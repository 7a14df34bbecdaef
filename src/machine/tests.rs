//! One test per transition of the purchase machine.

use std::time::Duration;

use super::*;
use crate::model::{
    AuthRejection, IdempotencyKey, OrderId, OrderStatus, Outcome, Principal, ProductId,
    PurchaseRequest, Quantity, Receipt, Reservation, ReservationState, Sale, Timestamp, UserId,
};
use crate::ports::{CommitOutcome, RateDecision, ReleaseOutcome, ReleaseReason, ReserveOutcome};

const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

fn product() -> ProductId {
    ProductId::new("tickets").unwrap()
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

fn sale() -> Sale {
    Sale::builder(product(), 10)
        .per_order_max(3)
        .build()
        .unwrap()
}

fn machine_for(q: u32, sale: Option<&Sale>) -> PurchaseMachine {
    let req = PurchaseRequest::new(product(), Quantity::new(q.into()).unwrap());
    PurchaseMachine::new(req, sale, OrderId::new(NOW), NOW, MachineConfig::default())
}

fn held(m: &PurchaseMachine, awaits: bool) -> Reservation {
    let Action::Reserve(req) = m.poll_action() else {
        panic!("not reserving: {:?}", m.poll_action())
    };
    req.to_reservation(awaits.then_some(Duration::from_secs(30)))
}

/// A machine that has authenticated alice and passed the rate check.
fn reserving() -> PurchaseMachine {
    let s = sale();
    let mut m = machine_for(1, Some(&s));
    m.handle_authenticated(Ok(Ok(Principal::user(alice()))))
        .unwrap();
    m.handle_rate_checked(Ok(RateDecision::Allowed)).unwrap();
    m
}

/// A machine whose reservation succeeded.
fn submitting(awaits: bool) -> (PurchaseMachine, Reservation) {
    let mut m = reserving();
    let r = held(&m, awaits);
    m.handle_reserved(Ok(ReserveOutcome::Reserved(r.clone())))
        .unwrap();
    (m, r)
}

fn receipt(r: &Reservation) -> Receipt {
    Receipt {
        order_id: r.order_id,
        location: "test@0".into(),
    }
}

fn committing() -> (PurchaseMachine, Reservation) {
    let (mut m, r) = submitting(false);
    m.handle_submitted(Ok(receipt(&r))).unwrap();
    (m, r)
}

fn done(m: &PurchaseMachine) -> &Outcome {
    match m.poll_action() {
        Action::Done(o) => o,
        other => panic!("not done: {other:?}"),
    }
}

fn assert_releasing(m: &PurchaseMachine, r_order: OrderId) {
    match m.poll_action() {
        Action::Release {
            order_id, reason, ..
        } => {
            assert_eq!(*order_id, r_order);
            assert_eq!(reason, ReleaseReason::Aborted);
        }
        other => panic!("expected Release, got {other:?}"),
    }
}

#[test]
fn starts_by_authenticating() {
    let s = sale();
    let m = machine_for(1, Some(&s));
    assert_eq!(m.poll_action(), Action::Authenticate);
    assert!(!m.is_done());
}

#[test]
fn unknown_product_ends_before_any_io() {
    let m = machine_for(1, None);
    assert_eq!(done(&m), &Outcome::UnknownProduct);
}

#[test]
fn quantity_above_per_order_max_is_invalid_before_any_io() {
    let s = sale();
    let m = machine_for(4, Some(&s));
    match done(&m) {
        Outcome::Invalid(e) => assert_eq!(e.field, "quantity"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn closed_sale_ends_before_any_io() {
    let later = Sale::builder(product(), 10)
        .starts_at(NOW.saturating_add(Duration::from_secs(1)))
        .build()
        .unwrap();
    assert_eq!(done(&machine_for(1, Some(&later))), &Outcome::NotOnSale);
    let ended = Sale::builder(product(), 10)
        .starts_at(Timestamp::from_millis(0))
        .ends_at(NOW)
        .build()
        .unwrap();
    assert_eq!(done(&machine_for(1, Some(&ended))), &Outcome::NotOnSale);
}

#[test]
fn rejected_credentials_end_unauthenticated() {
    let s = sale();
    let mut m = machine_for(1, Some(&s));
    m.handle_authenticated(Ok(Err(AuthRejection::Expired)))
        .unwrap();
    assert_eq!(done(&m), &Outcome::Unauthenticated(AuthRejection::Expired));
}

#[test]
fn authenticator_failure_ends_unavailable() {
    let s = sale();
    for f in [Failure::Error, Failure::Timeout] {
        let mut m = machine_for(1, Some(&s));
        m.handle_authenticated(Err(f)).unwrap();
        assert_eq!(done(&m).code(), "unavailable");
    }
}

#[test]
fn authenticated_buyer_is_rate_checked_then_reserves_as_themselves() {
    let s = sale();
    let mut m = machine_for(2, Some(&s));
    m.handle_authenticated(Ok(Ok(Principal::user(alice()))))
        .unwrap();
    assert_eq!(
        m.poll_action(),
        Action::CheckRate {
            user: &alice(),
            cost: 1
        }
    );
    m.handle_rate_checked(Ok(RateDecision::Allowed)).unwrap();
    let Action::Reserve(req) = m.poll_action() else {
        panic!()
    };
    assert_eq!(req.user, alice());
    assert_eq!(req.quantity.get(), 2);
    assert_eq!(req.now, NOW);
    assert_eq!(req.pending_ttl, MachineConfig::default().pending_ttl);
}

#[test]
fn limited_buyer_gets_retry_after() {
    let s = sale();
    let mut m = machine_for(1, Some(&s));
    m.handle_authenticated(Ok(Ok(Principal::user(alice()))))
        .unwrap();
    let retry_after = Duration::from_millis(1_500);
    m.handle_rate_checked(Ok(RateDecision::Limited { retry_after }))
        .unwrap();
    assert_eq!(done(&m), &Outcome::RateLimited { retry_after });
}

#[test]
fn rate_limiter_failure_ends_unavailable_without_reserving() {
    let s = sale();
    let mut m = machine_for(1, Some(&s));
    m.handle_authenticated(Ok(Ok(Principal::user(alice()))))
        .unwrap();
    m.handle_rate_checked(Err(Failure::Timeout)).unwrap();
    assert_eq!(done(&m).code(), "unavailable");
}

#[test]
fn business_refusals_from_the_store_end_the_attempt() {
    let cases = [
        (ReserveOutcome::SoldOut, "sold_out"),
        (ReserveOutcome::LimitExceeded, "limit_exceeded"),
        (ReserveOutcome::NotOnSale, "sale_not_active"),
        (ReserveOutcome::UnknownProduct, "unknown_product"),
        (ReserveOutcome::OverOrderMax { max: 1 }, "invalid_request"),
    ];
    for (answer, code) in cases {
        let mut m = reserving();
        m.handle_reserved(Ok(answer)).unwrap();
        assert_eq!(done(&m).code(), code);
    }
}

#[test]
fn successful_reserve_submits_the_reserved_order() {
    let (m, r) = submitting(false);
    let Action::Submit(order) = m.poll_action() else {
        panic!()
    };
    assert_eq!(order, &r.to_order());
    assert_eq!(order.schema_version, crate::model::Order::SCHEMA_VERSION);
    assert_eq!(order.hold_expires_at, None);
}

#[test]
fn failed_reserve_releases_the_id_it_asked_for() {
    for f in [Failure::Error, Failure::Timeout] {
        let mut m = reserving();
        let Action::Reserve(req) = m.poll_action() else {
            panic!()
        };
        let id = req.order_id;
        m.handle_reserved(Err(f)).unwrap();
        assert_releasing(&m, id);
        m.handle_released(Ok(ReleaseOutcome::Unknown)).unwrap();
        assert_eq!(done(&m).code(), "unavailable");
    }
}

#[test]
fn failed_submit_releases_then_ends_unavailable() {
    let (mut m, r) = submitting(false);
    m.handle_submitted(Err(Failure::Error)).unwrap();
    assert_releasing(&m, r.order_id);
    m.handle_released(Ok(ReleaseOutcome::Released)).unwrap();
    assert_eq!(
        done(&m),
        &Outcome::Unavailable {
            retry_after: Duration::from_secs(1)
        }
    );
}

#[test]
fn failed_release_still_ends_unavailable() {
    let (mut m, _) = submitting(false);
    m.handle_submitted(Err(Failure::Timeout)).unwrap();
    m.handle_released(Err(Failure::Error)).unwrap();
    assert_eq!(done(&m).code(), "unavailable");
}

#[test]
fn submitted_order_is_committed_then_purchased() {
    let (mut m, r) = committing();
    assert_eq!(
        m.poll_action(),
        Action::Commit {
            product: &product(),
            order_id: &r.order_id,
        }
    );
    m.handle_committed(Ok(CommitOutcome::Committed)).unwrap();
    match done(&m) {
        Outcome::Purchased(p) => {
            assert_eq!(p.order, r.to_order());
            assert_eq!(p.status, OrderStatus::Confirmed);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hold_sales_end_held_after_submit_without_commit() {
    let (mut m, r) = submitting(true);
    m.handle_submitted(Ok(receipt(&r))).unwrap();
    match done(&m) {
        Outcome::Purchased(p) => {
            assert_eq!(
                p.status,
                OrderStatus::Held {
                    expires_at: r.expires_at
                }
            );
            assert_eq!(p.order.hold_expires_at, Some(r.expires_at));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lapsed_hold_at_commit_ends_unavailable_without_release() {
    let (mut m, _) = committing();
    m.handle_committed(Ok(CommitOutcome::NotHeld(ReservationState::Expired)))
        .unwrap();
    assert_eq!(done(&m).code(), "unavailable");
}

#[test]
fn failed_commit_releases_and_a_commit_that_applied_is_still_a_purchase() {
    let (mut m, r) = committing();
    m.handle_committed(Err(Failure::Timeout)).unwrap();
    assert_releasing(&m, r.order_id);
    m.handle_released(Ok(ReleaseOutcome::AlreadyCommitted))
        .unwrap();
    assert_eq!(done(&m).code(), "purchased");

    let (mut m, _) = committing();
    m.handle_committed(Err(Failure::Error)).unwrap();
    m.handle_released(Ok(ReleaseOutcome::Released)).unwrap();
    assert_eq!(done(&m).code(), "unavailable");
}

fn duplicate_outcome(existing: Reservation) -> Outcome {
    let mut m = reserving();
    m.handle_reserved(Ok(ReserveOutcome::Duplicate(existing)))
        .unwrap();
    done(&m).clone()
}

#[test]
fn duplicate_of_the_same_request_replays_the_original() {
    let m = reserving();
    let mut original = held(&m, false);
    original.order_id = OrderId::new(Timestamp::from_millis(1));
    original.idempotency_key = Some(IdempotencyKey::new("k").unwrap());
    original.state = ReservationState::Committed;
    match duplicate_outcome(original.clone()) {
        Outcome::Replayed(p) => {
            assert_eq!(p.order.order_id, original.order_id);
            assert_eq!(p.status, OrderStatus::Confirmed);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_of_a_different_request_conflicts() {
    let m = reserving();
    let base = held(&m, false);
    let other_qty = Reservation {
        quantity: Quantity::new(2).unwrap(),
        ..base.clone()
    };
    assert_eq!(duplicate_outcome(other_qty), Outcome::IdempotencyConflict);
    let other_user = Reservation {
        user: UserId::new("bob").unwrap(),
        ..base
    };
    assert_eq!(duplicate_outcome(other_user), Outcome::IdempotencyConflict);
}

/// A machine that received `Duplicate(existing)` for its own request.
fn replaying(existing: Reservation) -> PurchaseMachine {
    let mut m = reserving();
    m.handle_reserved(Ok(ReserveOutcome::Duplicate(existing)))
        .unwrap();
    m
}

#[test]
fn duplicate_of_a_held_request_finishes_its_work_then_replays() {
    let m = reserving();
    let mut original = held(&m, false);
    original.order_id = OrderId::new(Timestamp::from_millis(7));
    let mut m = replaying(original.clone());
    // The original's order is (re)submitted: the sink dedupes by id.
    assert_eq!(m.poll_action(), Action::Submit(&original.to_order()));
    m.handle_submitted(Ok(receipt(&original))).unwrap();
    assert!(
        matches!(m.poll_action(), Action::Commit { order_id, .. } if *order_id == original.order_id)
    );
    m.handle_committed(Ok(CommitOutcome::AlreadyCommitted))
        .unwrap();
    match done(&m) {
        Outcome::Replayed(p) => {
            assert_eq!(p.order.order_id, original.order_id);
            assert_eq!(p.status, OrderStatus::Confirmed);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_of_a_held_hold_sale_request_replays_held_after_resubmitting() {
    let m = reserving();
    let original = held(&m, true);
    let mut m = replaying(original.clone());
    m.handle_submitted(Ok(receipt(&original))).unwrap();
    match done(&m) {
        Outcome::Replayed(p) => assert!(matches!(p.status, OrderStatus::Held { .. })),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_replay_never_releases_the_first_requests_hold() {
    let m = reserving();
    let original = held(&m, false);
    let mut m = replaying(original.clone());
    m.handle_submitted(Err(Failure::Timeout)).unwrap();
    assert_eq!(done(&m).code(), "unavailable");

    let mut m = replaying(original.clone());
    m.handle_submitted(Ok(receipt(&original))).unwrap();
    m.handle_committed(Err(Failure::Error)).unwrap();
    assert_eq!(done(&m).code(), "unavailable");
}

#[test]
fn wrong_event_is_refused_and_changes_nothing() {
    let s = sale();
    let mut m = machine_for(1, Some(&s));
    let err = m.handle_reserved(Ok(ReserveOutcome::SoldOut)).unwrap_err();
    assert_eq!(err.expected, "authentication");
    assert_eq!(err.got, "reservation");
    assert_eq!(m.poll_action(), Action::Authenticate);
    let (mut done_m, _) = committing();
    done_m
        .handle_committed(Ok(CommitOutcome::Committed))
        .unwrap();
    let before = done_m.outcome().cloned();
    assert!(
        done_m
            .handle_released(Ok(ReleaseOutcome::Released))
            .is_err()
    );
    assert_eq!(done_m.outcome().cloned(), before);
}
