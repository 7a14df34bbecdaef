//! Property tests of the purchase state machine over arbitrary sequences of
//! port results, including an error or a timeout at every step.

use std::time::Duration;

use flashsale::machine::{Action, Failure, MachineConfig, PurchaseMachine};
use flashsale::model::{
    AuthRejection, OrderId, OrderStatus, Outcome, Principal, ProductId, PurchaseRequest, Quantity,
    Receipt, Reservation, ReservationState, Sale, Timestamp, UserId,
};
use flashsale::ports::{CommitOutcome, RateDecision, ReleaseOutcome, ReserveOutcome};
use proptest::prelude::*;

const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// What kind of action was asked for, and what was answered.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Auth(bool),
    Rate(bool),
    Reserve(ReserveAnswer),
    Submit(bool),
    Commit(Option<CommitOutcome>),
    Release(Option<ReleaseOutcome>),
}

#[derive(Debug, Clone, PartialEq)]
enum ReserveAnswer {
    Reserved,
    Refused,
    /// The key names a finished (or different) request.
    Duplicate,
    /// The key names this same request, still held.
    DuplicateHeld,
    Failed,
}

struct Trace {
    steps: Vec<Step>,
    outcome: Outcome,
}

/// Picks option 0 half the time (so success paths are explored), else any.
fn pick<T: Clone>(choice: u8, options: &[T]) -> T {
    if choice < 128 {
        options[0].clone()
    } else {
        options[usize::from(choice) % options.len()].clone()
    }
}

fn failure(choice: u8) -> Failure {
    if choice.is_multiple_of(2) {
        Failure::Error
    } else {
        Failure::Timeout
    }
}

fn reservation_for(m: &PurchaseMachine, awaits: bool) -> Reservation {
    let Action::Reserve(req) = m.poll_action() else {
        unreachable!()
    };
    req.to_reservation(awaits.then_some(Duration::from_secs(60)))
}

/// Drives a machine to the end, answering each action from `choices`.
fn drive(hold: bool, quantity: u32, open: bool, choices: &[u8]) -> Trace {
    let product = ProductId::new("p").unwrap();
    let mut sale = Sale::builder(product.clone(), 100).per_order_max(5);
    if hold {
        sale = sale.hold(Duration::from_secs(60));
    }
    if !open {
        sale = sale.starts_at(NOW.saturating_add(Duration::from_secs(1)));
    }
    let sale = sale.build().unwrap();
    let req = PurchaseRequest::new(product, Quantity::new(quantity.into()).unwrap());
    let mut m = PurchaseMachine::new(
        req,
        Some(&sale),
        OrderId::new(NOW),
        NOW,
        MachineConfig::default(),
    );
    let mut steps = Vec::new();
    let mut choices = choices.iter().copied().chain(std::iter::repeat(0));
    for _ in 0..16 {
        let c = choices.next().unwrap();
        if let Some(o) = m.outcome() {
            return Trace {
                steps,
                outcome: o.clone(),
            };
        }
        let before = format!("{:?}", m.poll_action());
        // A wrong answer is refused and changes nothing.
        let wrong = if matches!(m.poll_action(), Action::Submit(_)) {
            m.handle_rate_checked(Ok(RateDecision::Allowed))
        } else {
            m.handle_submitted(Err(Failure::Error))
        };
        assert!(wrong.is_err(), "a wrong answer was accepted at {before}");
        assert_eq!(format!("{:?}", m.poll_action()), before);

        match m.poll_action() {
            Action::Authenticate => {
                let ok = pick(c, &[0u8, 1, 2]) == 0;
                let r = match pick(c, &[0u8, 1, 2]) {
                    0 => Ok(Ok(Principal::user(UserId::new("u").unwrap()))),
                    1 => Ok(Err(AuthRejection::BadSignature)),
                    _ => Err(failure(c)),
                };
                steps.push(Step::Auth(ok));
                m.handle_authenticated(r).unwrap();
            }
            Action::CheckRate { .. } => {
                let r = match pick(c, &[0u8, 1, 2]) {
                    0 => Ok(RateDecision::Allowed),
                    1 => Ok(RateDecision::Limited {
                        retry_after: Duration::from_millis(u64::from(c) * 7),
                    }),
                    _ => Err(failure(c)),
                };
                steps.push(Step::Rate(matches!(r, Ok(RateDecision::Allowed))));
                m.handle_rate_checked(r).unwrap();
            }
            Action::Reserve(_) => {
                let held = reservation_for(&m, hold);
                let (answer, r) = match pick(c, &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9]) {
                    0 => (ReserveAnswer::Reserved, Ok(ReserveOutcome::Reserved(held))),
                    1 => (ReserveAnswer::Refused, Ok(ReserveOutcome::SoldOut)),
                    2 => (ReserveAnswer::Refused, Ok(ReserveOutcome::LimitExceeded)),
                    3 => (ReserveAnswer::Refused, Ok(ReserveOutcome::NotOnSale)),
                    4 => (ReserveAnswer::Refused, Ok(ReserveOutcome::UnknownProduct)),
                    5 => (
                        ReserveAnswer::Refused,
                        Ok(ReserveOutcome::OverOrderMax { max: 1 }),
                    ),
                    6 => (
                        ReserveAnswer::Duplicate,
                        Ok(ReserveOutcome::Duplicate(Reservation {
                            state: ReservationState::Committed,
                            ..held
                        })),
                    ),
                    7 => (
                        ReserveAnswer::Duplicate,
                        Ok(ReserveOutcome::Duplicate(Reservation {
                            quantity: Quantity::new(9).unwrap(),
                            ..held
                        })),
                    ),
                    8 => (
                        ReserveAnswer::DuplicateHeld,
                        Ok(ReserveOutcome::Duplicate(held)),
                    ),
                    _ => (ReserveAnswer::Failed, Err(failure(c))),
                };
                steps.push(Step::Reserve(answer));
                m.handle_reserved(r).unwrap();
            }
            Action::Submit(order) => {
                let r = match pick(c, &[0u8, 1]) {
                    0 => Ok(Receipt {
                        order_id: order.order_id,
                        location: "t".into(),
                    }),
                    _ => Err(failure(c)),
                };
                steps.push(Step::Submit(r.is_ok()));
                m.handle_submitted(r).unwrap();
            }
            Action::Commit { .. } => {
                let r = pick(
                    c,
                    &[
                        Ok(CommitOutcome::Committed),
                        Ok(CommitOutcome::AlreadyCommitted),
                        Ok(CommitOutcome::NotHeld(ReservationState::Expired)),
                        Ok(CommitOutcome::NotHeld(ReservationState::Cancelled)),
                        Ok(CommitOutcome::Unknown),
                        Err(Failure::Error),
                        Err(Failure::Timeout),
                    ],
                );
                steps.push(Step::Commit(r.ok()));
                m.handle_committed(r).unwrap();
            }
            Action::Release { .. } => {
                let r = pick(
                    c,
                    &[
                        Ok(ReleaseOutcome::Released),
                        Ok(ReleaseOutcome::AlreadyReleased(ReservationState::Expired)),
                        Ok(ReleaseOutcome::AlreadyCommitted),
                        Ok(ReleaseOutcome::Unknown),
                        Err(Failure::Error),
                        Err(Failure::Timeout),
                    ],
                );
                steps.push(Step::Release(r.ok()));
                m.handle_released(r).unwrap();
            }
            Action::Done(_) => unreachable!(),
        }
    }
    panic!("the machine did not finish within 16 actions: {steps:?}");
}

fn position(steps: &[Step], f: impl Fn(&Step) -> bool) -> Option<usize> {
    steps.iter().position(f)
}

fn replayed(steps: &[Step]) -> bool {
    steps.contains(&Step::Reserve(ReserveAnswer::DuplicateHeld))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn always_terminates_within_six_port_calls(
        hold in any::<bool>(), q in 1u32..=7, open in any::<bool>(),
        choices in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let t = drive(hold, q, open, &choices);
        prop_assert!(t.steps.len() <= 6, "{:?}", t.steps);
    }

    #[test]
    fn submits_only_a_reservation_held_for_this_request(
        hold in any::<bool>(), q in 1u32..=5,
        choices in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let t = drive(hold, q, true, &choices);
        if let Some(i) = position(&t.steps, |s| matches!(s, Step::Submit(_))) {
            prop_assert!(i > 0);
            prop_assert!(matches!(&t.steps[i - 1],
                Step::Reserve(ReserveAnswer::Reserved | ReserveAnswer::DuplicateHeld)), "{:?}", t.steps);
        }
    }

    #[test]
    fn releases_its_own_reservation_right_after_a_failure_and_never_anothers(
        hold in any::<bool>(), q in 1u32..=5,
        choices in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let t = drive(hold, q, true, &choices);
        let released = t.steps.iter().any(|s| matches!(s, Step::Release(_)));
        if replayed(&t.steps) {
            prop_assert!(!released, "a replay released the first request's hold: {:?}", t.steps);
        }
        for (i, s) in t.steps.iter().enumerate() {
            let own_failure = matches!(s, Step::Reserve(ReserveAnswer::Failed))
                || (matches!(s, Step::Submit(false)) && !replayed(&t.steps));
            if own_failure {
                prop_assert!(matches!(t.steps.get(i + 1), Some(Step::Release(_))), "{:?}", t.steps);
            }
            if matches!(s, Step::Submit(false) | Step::Reserve(ReserveAnswer::Failed)) {
                prop_assert_eq!(t.outcome.code(), "unavailable");
            }
        }
        // Nothing is released unless something went wrong after reserving.
        if released {
            prop_assert!(t.steps.iter().any(|s| matches!(s,
                Step::Reserve(ReserveAnswer::Failed) | Step::Submit(false) | Step::Commit(None))));
        }
    }

    #[test]
    fn never_commits_a_released_hold_and_commits_only_after_submit(
        hold in any::<bool>(), q in 1u32..=5,
        choices in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let t = drive(hold, q, true, &choices);
        if let Some(c) = position(&t.steps, |s| matches!(s, Step::Commit(_))) {
            prop_assert!(!hold, "hold sales are confirmed by the buyer, not committed");
            prop_assert_eq!(&t.steps[c - 1], &Step::Submit(true));
            let released = position(&t.steps, |s| matches!(s, Step::Release(_)));
            prop_assert!(released.is_none_or(|r| r > c), "{:?}", t.steps);
        }
    }

    #[test]
    fn a_200_means_the_sink_acknowledged(
        hold in any::<bool>(), q in 1u32..=5,
        choices in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let t = drive(hold, q, true, &choices);
        if let Some(p) = t.outcome.purchase() {
            let already_committed = matches!(t.steps.last(), Some(Step::Reserve(ReserveAnswer::Duplicate)));
            if !already_committed {
                prop_assert!(t.steps.contains(&Step::Submit(true)), "{:?}", t.steps);
                if hold {
                    prop_assert!(matches!(p.status, OrderStatus::Held { .. }), "{:?}", p.status);
                } else {
                    prop_assert_eq!(p.status, OrderStatus::Confirmed);
                    let committed = t.steps.iter().any(|s| matches!(s,
                        Step::Commit(Some(CommitOutcome::Committed | CommitOutcome::AlreadyCommitted))
                        | Step::Release(Some(ReleaseOutcome::AlreadyCommitted))));
                    prop_assert!(committed, "{:?}", t.steps);
                }
            }
        }
    }

    #[test]
    fn each_path_maps_to_its_documented_outcome(
        hold in any::<bool>(), q in 1u32..=7, open in any::<bool>(),
        choices in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let t = drive(hold, q, open, &choices);
        let code = t.outcome.code();
        let success = if replayed(&t.steps) { "replayed" } else { "purchased" };
        if q > 5 {
            prop_assert_eq!(code, "invalid_request");
            prop_assert!(t.steps.is_empty(), "validation happens before any I/O");
        } else if !open {
            prop_assert_eq!(code, "sale_not_active");
            prop_assert!(t.steps.is_empty());
        }
        match t.steps.last() {
            None => prop_assert!(matches!(code, "invalid_request" | "sale_not_active")),
            Some(Step::Auth(false)) => prop_assert!(matches!(code, "unauthenticated" | "unavailable")),
            Some(Step::Rate(false)) => prop_assert!(matches!(code, "rate_limited" | "unavailable")),
            Some(Step::Reserve(ReserveAnswer::Refused)) => prop_assert!(matches!(code,
                "sold_out" | "limit_exceeded" | "sale_not_active" | "unknown_product" | "invalid_request")),
            Some(Step::Reserve(ReserveAnswer::Duplicate)) => prop_assert!(matches!(code,
                "replayed" | "idempotency_conflict")),
            Some(Step::Submit(true)) => {
                prop_assert!(hold);
                prop_assert_eq!(code, success);
            }
            Some(Step::Submit(false)) => prop_assert_eq!(code, "unavailable"),
            Some(Step::Commit(Some(CommitOutcome::Committed | CommitOutcome::AlreadyCommitted))) => {
                prop_assert_eq!(code, success)
            }
            Some(Step::Commit(_)) => prop_assert_eq!(code, "unavailable"),
            Some(Step::Release(Some(ReleaseOutcome::AlreadyCommitted)))
                if t.steps.iter().any(|s| matches!(s, Step::Commit(None))) => {
                prop_assert_eq!(code, "purchased")
            }
            Some(Step::Release(_)) => prop_assert_eq!(code, "unavailable"),
            Some(other) => prop_assert!(false, "ended right after {:?}", other),
        }
    }
}
