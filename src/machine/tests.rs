//! One test per transition of the purchase machine.

use std::time::Duration;

use super::*;
use crate::model::{
    AuthRejection, EventType, IdempotencyKey, OrderEvent, OrderId, OrderStatus, Outcome, Principal,
    ProductId, PurchaseRequest, Quantity, Reservation, ReservationState, Sale, Timestamp, UserId,
};
use crate::{RateDecision, ReserveOutcome, ReserveRequest, VoidOutcome};

const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const SINK_WAIT: Duration = Duration::from_millis(300);

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

fn config(hand_off: HandOff) -> MachineConfig {
    MachineConfig {
        hand_off,
        ..MachineConfig::default()
    }
}

fn machine_with(req: PurchaseRequest, cfg: MachineConfig) -> PurchaseMachine {
    PurchaseMachine::new(req, OrderId::new(NOW), NOW, cfg)
}

/// A machine that has authenticated alice and been fed `sale`, and been
/// told the store knows of no sell-out if it asked.
fn validated(req: PurchaseRequest, sale: Option<&Sale>, cfg: MachineConfig) -> PurchaseMachine {
    let mut m = looked_up(req, sale, cfg);
    if let Action::CheckSoldOut(_) = m.poll_action() {
        m.handle_sold_out_checked(false).unwrap();
    }
    m
}

/// A machine that has authenticated alice and been fed `sale`.
fn looked_up(req: PurchaseRequest, sale: Option<&Sale>, cfg: MachineConfig) -> PurchaseMachine {
    let mut m = machine_with(req, cfg);
    m.handle_authenticated(Ok(Ok(Principal::user(alice()))))
        .unwrap();
    assert_eq!(
        m.poll_action(),
        Action::LoadSale {
            product: &product()
        }
    );
    m.handle_sale(Ok(sale)).unwrap();
    m
}

fn request_for(q: u32) -> PurchaseRequest {
    PurchaseRequest::new(product(), Quantity::new(q.into()).unwrap())
}

/// A fresh machine for `q` units, waiting to authenticate.
fn machine_for(q: u32) -> PurchaseMachine {
    machine_with(request_for(q), MachineConfig::default())
}

/// A machine for `q` units that has authenticated alice and been fed
/// `sale`.
fn validated_for(q: u32, sale: Option<&Sale>) -> PurchaseMachine {
    validated(request_for(q), sale, MachineConfig::default())
}

fn request_of(m: &PurchaseMachine) -> ReserveRequest {
    match m.poll_action() {
        Action::Reserve(req) | Action::Void(req) => req.clone(),
        other => panic!("not reserving: {other:?}"),
    }
}

/// Passes the rate check of a validated machine.
fn to_reserve(mut m: PurchaseMachine) -> PurchaseMachine {
    m.handle_rate_checked(Ok(RateDecision::Allowed)).unwrap();
    m
}

/// A machine that has authenticated alice, found the sale and passed the
/// rate check.
fn reserving(hand_off: HandOff) -> PurchaseMachine {
    let s = sale();
    let req = PurchaseRequest::new(product(), Quantity::ONE);
    to_reserve(validated(req, Some(&s), config(hand_off)))
}

fn done(m: &PurchaseMachine) -> &Outcome {
    match m.poll_action() {
        Action::Done(o) => o,
        other => panic!("not done: {other:?}"),
    }
}

fn unavailable() -> Outcome {
    Outcome::Unavailable {
        retry_after: MachineConfig::default().unavailable_retry_after,
    }
}

#[test]
fn starts_by_authenticating() {
    let m = machine_for(1);
    assert_eq!(m.poll_action(), Action::Authenticate);
    assert!(!m.is_done());
}

#[test]
fn the_sale_is_looked_up_only_after_authentication() {
    let mut m = machine_for(1);
    // Nothing about the product may be fed before the buyer is known.
    let s = sale();
    let err = m.handle_sale(Ok(Some(&s))).unwrap_err();
    assert_eq!((err.expected, err.got), ("authentication", "sale"));
    m.handle_authenticated(Ok(Ok(Principal::user(alice()))))
        .unwrap();
    assert_eq!(
        m.poll_action(),
        Action::LoadSale {
            product: &product()
        }
    );
}

#[test]
fn unknown_product_ends_after_the_lookup_before_rate_or_store() {
    let m = validated_for(1, None);
    assert_eq!(done(&m), &Outcome::UnknownProduct);
}

#[test]
fn a_failed_sale_lookup_is_unavailable() {
    let mut m = machine_for(1);
    m.handle_authenticated(Ok(Ok(Principal::user(alice()))))
        .unwrap();
    m.handle_sale(Err(Failure::Timeout)).unwrap();
    assert_eq!(done(&m), &unavailable());
}

#[test]
fn quantity_above_per_order_max_is_invalid_before_rate_or_store() {
    let s = sale();
    let m = validated_for(4, Some(&s));
    match done(&m) {
        Outcome::Invalid(e) => assert_eq!(e.field, "quantity"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn closed_sale_ends_before_rate_or_store() {
    let later = Sale::builder(product(), 10)
        .starts_at(NOW.saturating_add(Duration::from_secs(1)))
        .build()
        .unwrap();
    assert_eq!(done(&validated_for(1, Some(&later))), &Outcome::NotOnSale);
}

#[test]
fn a_keyed_request_reaches_the_store_even_when_local_checks_refuse() {
    // The key may name a finished purchase, whose answer must win.
    let ended = Sale::builder(product(), 10)
        .per_order_max(1)
        .ends_at(NOW)
        .build()
        .unwrap();
    let req = PurchaseRequest::new(product(), Quantity::new(2).unwrap())
        .with_idempotency_key(IdempotencyKey::new("k").unwrap());
    let m = to_reserve(validated(req, Some(&ended), MachineConfig::default()));
    let r = request_of(&m);
    assert_eq!(r.idempotency_key.as_ref().unwrap().as_str(), "k");
    assert_eq!(r.quantity.get(), 2);
}

#[test]
fn refused_credentials_end_unauthenticated() {
    let mut m = machine_for(1);
    m.handle_authenticated(Ok(Err(AuthRejection::Expired)))
        .unwrap();
    assert_eq!(done(&m), &Outcome::Unauthenticated(AuthRejection::Expired));
}

#[test]
fn failed_authentication_or_rate_check_is_unavailable_with_nothing_to_undo() {
    let s = sale();
    let mut m = machine_for(1);
    m.handle_authenticated(Err(Failure::Timeout)).unwrap();
    assert_eq!(done(&m), &unavailable());

    let mut m = validated_for(1, Some(&s));
    m.handle_rate_checked(Err(Failure::Error)).unwrap();
    assert_eq!(done(&m), &unavailable());
}

#[test]
fn a_known_sell_out_ends_before_the_rate_check() {
    let s = sale();
    let mut m = looked_up(request_for(2), Some(&s), MachineConfig::default());
    let asked = match m.poll_action() {
        Action::CheckSoldOut(req) => req.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!((&asked.user, asked.quantity.get()), (&alice(), 2));
    // Any other answer is refused while the question is pending.
    let err = m
        .handle_rate_checked(Ok(RateDecision::Allowed))
        .unwrap_err();
    assert_eq!((err.expected, err.got), ("sold-out check", "rate check"));
    m.handle_sold_out_checked(true).unwrap();
    assert_eq!(done(&m), &Outcome::SoldOut);
    let err = m.handle_sold_out_checked(true).unwrap_err();
    assert_eq!(err.expected, "nothing (done)");
}

#[test]
fn an_unknown_sell_out_goes_on_to_the_rate_check() {
    let s = sale();
    let mut m = looked_up(request_for(1), Some(&s), MachineConfig::default());
    m.handle_sold_out_checked(false).unwrap();
    assert!(matches!(m.poll_action(), Action::CheckRate { .. }));
}

#[test]
fn a_keyed_request_is_never_asked_about_a_known_sell_out() {
    let s = sale();
    let req = request_for(1).with_idempotency_key(IdempotencyKey::new("k").unwrap());
    let mut m = looked_up(req, Some(&s), MachineConfig::default());
    assert!(matches!(m.poll_action(), Action::CheckRate { .. }));
    let err = m.handle_sold_out_checked(true).unwrap_err();
    assert_eq!((err.expected, err.got), ("rate check", "sold-out check"));
}

#[test]
fn rate_limited_ends_with_retry_after() {
    let s = sale();
    let mut m = validated_for(1, Some(&s));
    match m.poll_action() {
        Action::CheckRate { user, cost } => assert_eq!((user, cost), (&alice(), 1)),
        other => panic!("{other:?}"),
    }
    let retry_after = Duration::from_millis(1500);
    m.handle_rate_checked(Ok(RateDecision::Limited { retry_after }))
        .unwrap();
    assert_eq!(done(&m), &Outcome::RateLimited { retry_after });
}

#[test]
fn reserve_carries_the_buyer_and_the_request() {
    let m = reserving(HandOff::Outbox);
    let r = request_of(&m);
    assert_eq!(
        (r.user, r.product, r.quantity, r.now),
        (alice(), product(), Quantity::ONE, NOW)
    );
}

#[test]
fn reserved_is_purchased_at_once_under_outbox() {
    let mut m = reserving(HandOff::Outbox);
    let r = request_of(&m).to_reservation(None);
    m.handle_reserved(Ok(ReserveOutcome::Reserved(r.clone())))
        .unwrap();
    match done(&m) {
        Outcome::Purchased(p) => {
            assert_eq!(p.order, r.to_order());
            assert_eq!(p.status, OrderStatus::Confirmed);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hold_is_purchased_held() {
    let mut m = reserving(HandOff::Outbox);
    let r = request_of(&m).to_reservation(Some(Duration::from_secs(60)));
    m.handle_reserved(Ok(ReserveOutcome::Reserved(r.clone())))
        .unwrap();
    match done(&m) {
        Outcome::Purchased(p) => assert_eq!(
            p.status,
            OrderStatus::Held {
                expires_at: r.expires_at
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn await_sink_submits_the_placed_event_then_purchases() {
    let mut m = reserving(HandOff::AwaitSink { timeout: SINK_WAIT });
    let r = request_of(&m).to_reservation(None);
    m.handle_reserved(Ok(ReserveOutcome::Reserved(r.clone())))
        .unwrap();
    match m.poll_action() {
        Action::Submit(e) => {
            assert_eq!(e, &OrderEvent::placed(&r));
            assert_eq!(e.event_type, EventType::Placed);
        }
        other => panic!("{other:?}"),
    }
    m.handle_submitted(Ok(())).unwrap();
    assert!(matches!(done(&m), Outcome::Purchased(p) if p.order.order_id == r.order_id));
}

#[test]
fn await_sink_answers_accepted_when_the_sink_fails_and_keeps_the_order() {
    for failure in [Failure::Timeout, Failure::Error] {
        let mut m = reserving(HandOff::AwaitSink { timeout: SINK_WAIT });
        let r = request_of(&m).to_reservation(None);
        m.handle_reserved(Ok(ReserveOutcome::Reserved(r.clone())))
            .unwrap();
        m.handle_submitted(Err(failure)).unwrap();
        // No void, no release: the order stands and the relay delivers it.
        assert!(matches!(done(&m), Outcome::Accepted(p) if p.order.order_id == r.order_id));
    }
}

#[test]
fn a_lost_reserve_answer_voids_that_very_request_then_is_unavailable() {
    for failure in [Failure::Timeout, Failure::Error] {
        let mut m = reserving(HandOff::Outbox);
        let sent = request_of(&m);
        m.handle_reserved(Err(failure)).unwrap();
        assert_eq!(m.poll_action(), Action::Void(&sent));
        for answer in [
            Ok(VoidOutcome::Voided),
            Ok(VoidOutcome::NothingReserved),
            Err(Failure::Timeout),
        ] {
            let mut m2 = m.clone();
            m2.handle_voided(answer).unwrap();
            assert_eq!(done(&m2), &unavailable());
        }
    }
}

#[test]
fn a_retried_reserve_that_finds_its_own_order_is_a_purchase_not_a_replay() {
    let mut m = reserving(HandOff::Outbox);
    let r = request_of(&m).to_reservation(None);
    // The store saw the same order id twice and answered with it.
    m.handle_reserved(Ok(ReserveOutcome::Reserved(r))).unwrap();
    assert!(matches!(done(&m), Outcome::Purchased(_)));
}

#[test]
fn its_own_reservation_found_voided_is_unavailable() {
    let mut m = reserving(HandOff::Outbox);
    let tomb = request_of(&m).to_tombstone();
    m.handle_reserved(Ok(ReserveOutcome::Reserved(tomb)))
        .unwrap();
    assert_eq!(done(&m), &unavailable());
}

fn keyed(q: u32, hand_off: HandOff) -> PurchaseMachine {
    let s = sale();
    let req = PurchaseRequest::new(product(), Quantity::new(q.into()).unwrap())
        .with_idempotency_key(IdempotencyKey::new("k").unwrap());
    to_reserve(validated(req, Some(&s), config(hand_off)))
}

/// The first request's reservation, as the store keeps it.
fn original(q: u32, state: ReservationState) -> Reservation {
    let first = keyed(q, HandOff::Outbox);
    let mut r = request_of(&first).to_reservation(None);
    r.order_id = OrderId::new(Timestamp::from_millis(NOW.as_millis() - 5_000));
    r.state = state;
    r
}

#[test]
fn a_duplicate_key_replays_the_original_as_it_stands() {
    for state in [
        ReservationState::Committed,
        ReservationState::Held,
        ReservationState::Cancelled,
        ReservationState::Expired,
    ] {
        let mut m = keyed(1, HandOff::Outbox);
        let first = original(1, state);
        m.handle_reserved(Ok(ReserveOutcome::Duplicate(first.clone())))
            .unwrap();
        match done(&m) {
            Outcome::Replayed(p) => {
                assert_eq!(p.order.order_id, first.order_id);
                assert_eq!(p.status, OrderStatus::of(&first));
            }
            other => panic!("{state:?}: {other:?}"),
        }
    }
}

#[test]
fn a_replay_under_await_sink_goes_through_the_sink_again() {
    let mut m = keyed(1, HandOff::AwaitSink { timeout: SINK_WAIT });
    let first = original(1, ReservationState::Committed);
    m.handle_reserved(Ok(ReserveOutcome::Duplicate(first.clone())))
        .unwrap();
    assert_eq!(m.poll_action(), Action::Submit(&OrderEvent::placed(&first)));
    let mut ok = m.clone();
    ok.handle_submitted(Ok(())).unwrap();
    assert!(matches!(done(&ok), Outcome::Replayed(p) if p.order.order_id == first.order_id));
    m.handle_submitted(Err(Failure::Timeout)).unwrap();
    assert!(matches!(done(&m), Outcome::Accepted(p) if p.order.order_id == first.order_id));
}

#[test]
fn a_duplicate_key_for_another_request_is_a_conflict() {
    let mut m = keyed(2, HandOff::Outbox);
    let first = original(1, ReservationState::Committed);
    m.handle_reserved(Ok(ReserveOutcome::Duplicate(first)))
        .unwrap();
    assert_eq!(done(&m), &Outcome::IdempotencyConflict);
}

#[test]
fn a_key_naming_a_voided_purchase_is_unavailable_not_a_replay() {
    let mut m = keyed(1, HandOff::Outbox);
    let first = original(1, ReservationState::Voided);
    m.handle_reserved(Ok(ReserveOutcome::Duplicate(first)))
        .unwrap();
    assert_eq!(done(&m), &unavailable());
}

#[test]
fn business_refusals_end_the_attempt() {
    for (answer, expected) in [
        (ReserveOutcome::SoldOut, Outcome::SoldOut),
        (ReserveOutcome::LimitExceeded, Outcome::LimitExceeded),
        (ReserveOutcome::NotOnSale, Outcome::NotOnSale),
        (ReserveOutcome::UnknownProduct, Outcome::UnknownProduct),
    ] {
        let mut m = reserving(HandOff::Outbox);
        m.handle_reserved(Ok(answer)).unwrap();
        assert_eq!(done(&m), &expected);
    }
    let mut m = reserving(HandOff::Outbox);
    m.handle_reserved(Ok(ReserveOutcome::OverOrderMax { max: 0 }))
        .unwrap();
    assert!(matches!(done(&m), Outcome::Invalid(e) if e.field == "quantity"));
}

#[test]
fn a_wrong_answer_is_refused_and_changes_nothing() {
    let mut m = reserving(HandOff::Outbox);
    let before = m.poll_action().clone().to_owned_debug();
    let err = m.handle_submitted(Ok(())).unwrap_err();
    assert_eq!((err.expected, err.got), ("reservation", "submission"));
    assert!(m.handle_voided(Ok(VoidOutcome::Voided)).is_err());
    assert!(m.handle_authenticated(Err(Failure::Error)).is_err());
    assert!(m.handle_sale(Ok(None)).is_err());
    assert_eq!(m.poll_action().to_owned_debug(), before);
    let mut finished = validated_for(1, None);
    assert_eq!(
        finished
            .handle_reserved(Ok(ReserveOutcome::SoldOut))
            .unwrap_err()
            .expected,
        "nothing (done)"
    );
}

trait OwnedDebug {
    fn to_owned_debug(&self) -> String;
}

impl OwnedDebug for Action<'_> {
    fn to_owned_debug(&self) -> String {
        format!("{self:?}")
    }
}
