//! Property tests of the purchase state machine, pure and without a
//! runtime: every port answer is drawn at random, an error or a timeout
//! included at every step, and the whole trace is checked against the
//! design's promises (see the `machine` module docs and design.md, "The
//! purchase state machine" and "Order hand-off: the outbox").

use std::time::Duration;

use flashsale::machine::{Action, Failure, HandOff, MachineConfig, PurchaseMachine, StepError};
use flashsale::{
    AuthRejection, IdempotencyKey, OrderEvent, OrderId, OrderStatus, Outcome, Principal, ProductId,
    PurchaseRequest, PurchaseSummary, Quantity, Reservation, ReservationState, Sale, Timestamp,
    UserId,
};
use flashsale::{RateDecision, ReserveOutcome, ReserveRequest, VoidOutcome};
use proptest::prelude::*;

const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const HOLD: Duration = Duration::from_secs(60);
const RETRY_AFTER: Duration = Duration::from_secs(3);
const RATE_COST: u32 = 2;

// ---------------------------------------------------------------- scenario

/// Where `NOW` falls relative to the sale's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Open,
    NotYet,
    Ended,
}

/// The request, the sale's terms as the driver knows them, and the config.
#[derive(Debug, Clone)]
struct Scenario {
    await_sink: bool,
    /// `false`: the driver knows no such sale.
    known: bool,
    hold: bool,
    window: Window,
    per_order_max: u32,
    quantity: u32,
    key: bool,
}

impl Scenario {
    fn config(&self) -> MachineConfig {
        MachineConfig {
            hand_off: if self.await_sink {
                HandOff::AwaitSink {
                    timeout: Duration::from_millis(50),
                }
            } else {
                HandOff::Outbox
            },
            unavailable_retry_after: RETRY_AFTER,
            rate_cost: RATE_COST,
        }
    }

    fn sale(&self) -> Sale {
        let mut sale = Sale::builder(product(), 100).per_order_max(self.per_order_max);
        if self.hold {
            sale = sale.hold(HOLD);
        }
        sale = match self.window {
            Window::Open => sale,
            Window::NotYet => sale.starts_at(NOW.saturating_add(Duration::from_secs(1))),
            Window::Ended => sale
                .starts_at(Timestamp::from_millis(NOW.as_millis() - 10_000))
                .ends_at(NOW),
        };
        sale.build().unwrap()
    }

    fn request(&self) -> PurchaseRequest {
        let req = PurchaseRequest::new(product(), Quantity::new(self.quantity.into()).unwrap());
        if self.key {
            req.with_idempotency_key(key())
        } else {
            req
        }
    }
}

fn product() -> ProductId {
    ProductId::new("p").unwrap()
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

fn key() -> IdempotencyKey {
    IdempotencyKey::new("k-1").unwrap()
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        any::<bool>(),
        prop::bool::weighted(0.95),
        any::<bool>(),
        prop_oneof![
            6 => Just(Window::Open),
            1 => Just(Window::NotYet),
            1 => Just(Window::Ended)
        ],
        1u32..=4,
        1u32..=6,
        any::<bool>(),
    )
        .prop_map(
            |(await_sink, known, hold, window, per_order_max, quantity, key)| Scenario {
                await_sink,
                known,
                hold,
                window,
                per_order_max,
                quantity,
                key,
            },
        )
}

// ----------------------------------------------------------------- answers

/// How a `Duplicate`'s reservation differs from this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diff {
    Same,
    User,
    Quantity,
    Product,
}

#[derive(Debug, Clone)]
enum AuthAnswer {
    Ok,
    Rejected(AuthRejection),
    Fail(Failure),
}

#[derive(Debug, Clone)]
enum ReserveAnswer {
    /// This request's own reservation, in the state the store should
    /// report (`Held` for a hold sale, else `Committed`).
    Reserved,
    /// This request's own reservation found again (a store-level retry), in
    /// any state: e.g. the `Voided` tombstone a racing void left.
    ReservedAs(ReservationState),
    Duplicate(Diff, ReservationState),
    SoldOut,
    LimitExceeded,
    NotOnSale,
    UnknownProduct,
    OverOrderMax(u32),
    Fail(Failure),
}

/// One answer per kind of action; a kind asked twice gets the same answer
/// (so a loop would show up as a trace longer than allowed).
#[derive(Debug, Clone)]
struct Answers {
    auth: AuthAnswer,
    /// The sale lookup: `Ok` answers the scenario's sale (or its absence).
    sale: Result<(), Failure>,
    /// The store's local answer to "already known sold out?".
    known_sold_out: bool,
    rate: Result<RateDecision, Failure>,
    reserve: ReserveAnswer,
    void: Result<VoidOutcome, Failure>,
    submit: Result<(), Failure>,
}

fn failure() -> impl Strategy<Value = Failure> {
    prop_oneof![Just(Failure::Error), Just(Failure::Timeout)]
}

fn any_state() -> impl Strategy<Value = ReservationState> {
    prop_oneof![
        Just(ReservationState::Held),
        Just(ReservationState::Committed),
        Just(ReservationState::Cancelled),
        Just(ReservationState::Expired),
        Just(ReservationState::Voided),
    ]
}

fn answers() -> impl Strategy<Value = Answers> {
    let auth = prop_oneof![
        6 => Just(AuthAnswer::Ok),
        1 => prop_oneof![
            Just(AuthRejection::Missing),
            Just(AuthRejection::Expired),
            Just(AuthRejection::BadSignature)
        ]
        .prop_map(AuthAnswer::Rejected),
        1 => failure().prop_map(AuthAnswer::Fail),
    ];
    let rate = prop_oneof![
        6 => Just(Ok(RateDecision::Allowed)),
        1 => (1u64..90_000).prop_map(|ms| Ok(RateDecision::Limited {
            retry_after: Duration::from_millis(ms)
        })),
        1 => failure().prop_map(Err),
    ];
    let diff = prop_oneof![
        3 => Just(Diff::Same),
        1 => Just(Diff::User),
        1 => Just(Diff::Quantity),
        1 => Just(Diff::Product),
    ];
    let reserve = prop_oneof![
        6 => Just(ReserveAnswer::Reserved),
        1 => any_state().prop_map(ReserveAnswer::ReservedAs),
        3 => (diff, any_state()).prop_map(|(d, s)| ReserveAnswer::Duplicate(d, s)),
        1 => Just(ReserveAnswer::SoldOut),
        1 => Just(ReserveAnswer::LimitExceeded),
        1 => Just(ReserveAnswer::NotOnSale),
        1 => Just(ReserveAnswer::UnknownProduct),
        1 => (1u32..=4).prop_map(ReserveAnswer::OverOrderMax),
        4 => failure().prop_map(ReserveAnswer::Fail),
    ];
    let void = prop_oneof![
        Just(Ok(VoidOutcome::Voided)),
        Just(Ok(VoidOutcome::NothingReserved)),
        Just(Ok(VoidOutcome::AlreadyVoided)),
        Just(Ok(VoidOutcome::AlreadyClosed(ReservationState::Expired))),
        failure().prop_map(Err),
    ];
    let submit = prop_oneof![2 => Just(Ok(())), 1 => failure().prop_map(Err)];
    let sale = prop_oneof![8 => Just(Ok(())), 1 => failure().prop_map(Err)];
    let known_sold_out = prop::bool::weighted(0.2);
    (auth, sale, known_sold_out, rate, reserve, void, submit).prop_map(
        |(auth, sale, known_sold_out, rate, reserve, void, submit)| Answers {
            auth,
            sale,
            known_sold_out,
            rate,
            reserve,
            void,
            submit,
        },
    )
}

// ------------------------------------------------------------------- trace

/// One port call the machine asked for, with the answer it was fed.
#[derive(Debug, Clone)]
enum Step {
    Auth(Result<Result<Principal, AuthRejection>, Failure>),
    /// The sale lookup for this product: whether a sale was found, or how
    /// the lookup failed.
    Sale(Result<bool, Failure>),
    /// The local "already known sold out?" question (no port I/O), with
    /// the request it was asked about and the answer.
    SoldOutCheck(ReserveRequest, bool),
    Rate {
        user: UserId,
        cost: u32,
        answer: Result<RateDecision, Failure>,
    },
    Reserve(ReserveRequest, Result<ReserveOutcome, Failure>),
    Void(ReserveRequest, Result<VoidOutcome, Failure>),
    Submit(OrderEvent, Result<(), Failure>),
}

#[derive(Debug)]
struct Trace {
    order_id: OrderId,
    steps: Vec<Step>,
    outcome: Outcome,
}

impl Trace {
    fn reserve(&self) -> Option<(usize, &ReserveRequest, &Result<ReserveOutcome, Failure>)> {
        self.steps.iter().enumerate().find_map(|(i, s)| match s {
            Step::Reserve(req, a) => Some((i, req, a)),
            _ => None,
        })
    }

    fn voids(&self) -> Vec<(usize, &ReserveRequest)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::Void(req, _) => Some((i, req)),
                _ => None,
            })
            .collect()
    }

    fn submits(&self) -> Vec<(usize, &OrderEvent, &Result<(), Failure>)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::Submit(e, a) => Some((i, e, a)),
                _ => None,
            })
            .collect()
    }
}

/// An [`Action`] detached from the machine's borrow.
#[derive(Debug, Clone, PartialEq)]
enum Asked {
    Authenticate,
    LoadSale(ProductId),
    CheckSoldOut(ReserveRequest),
    CheckRate(UserId, u32),
    Reserve(ReserveRequest),
    Void(ReserveRequest),
    Submit(OrderEvent),
    Done(Outcome),
}

fn asked(m: &PurchaseMachine) -> Asked {
    match m.poll_action() {
        Action::Authenticate => Asked::Authenticate,
        Action::LoadSale { product } => Asked::LoadSale(product.clone()),
        Action::CheckSoldOut(r) => Asked::CheckSoldOut(r.clone()),
        Action::CheckRate { user, cost } => Asked::CheckRate(user.clone(), cost),
        Action::Reserve(r) => Asked::Reserve(r.clone()),
        Action::Void(r) => Asked::Void(r.clone()),
        Action::Submit(e) => Asked::Submit(e.clone()),
        Action::Done(o) => Asked::Done(o.clone()),
    }
}

/// What the store reports for `answer`, given the request it answers.
fn reserve_outcome(
    answer: &ReserveAnswer,
    req: &ReserveRequest,
    hold: bool,
) -> Result<ReserveOutcome, Failure> {
    let own = req.to_reservation(hold.then_some(HOLD));
    Ok(match answer {
        ReserveAnswer::Reserved => ReserveOutcome::Reserved(own),
        ReserveAnswer::ReservedAs(state) => ReserveOutcome::Reserved(Reservation {
            state: *state,
            ..own
        }),
        ReserveAnswer::Duplicate(diff, state) => {
            // Another, earlier request under the same key.
            let earlier = Timestamp::from_millis(NOW.as_millis() - 5_000);
            let mut other = ReserveRequest {
                order_id: OrderId::new(earlier),
                now: earlier,
                ..req.clone()
            };
            match diff {
                Diff::Same => {}
                Diff::User => other.user = UserId::new("mallory").unwrap(),
                Diff::Quantity => {
                    other.quantity = Quantity::new(i64::from(req.quantity.get()) + 1).unwrap()
                }
                Diff::Product => other.product = ProductId::new("other").unwrap(),
            }
            ReserveOutcome::Duplicate(Reservation {
                state: *state,
                ..other.to_reservation(hold.then_some(HOLD))
            })
        }
        ReserveAnswer::SoldOut => ReserveOutcome::SoldOut,
        ReserveAnswer::LimitExceeded => ReserveOutcome::LimitExceeded,
        ReserveAnswer::NotOnSale => ReserveOutcome::NotOnSale,
        ReserveAnswer::UnknownProduct => ReserveOutcome::UnknownProduct,
        ReserveAnswer::OverOrderMax(max) => ReserveOutcome::OverOrderMax { max: *max },
        ReserveAnswer::Fail(f) => return Err(*f),
    })
}

/// The `handle_*` methods, by name, for feeding wrong answers.
const HANDLERS: [&str; 7] = [
    "authentication",
    "sale",
    "sold-out check",
    "rate check",
    "reservation",
    "void",
    "submission",
];

/// Feeds the answer of kind `which` (a harmless value); returns what the
/// machine said.
fn feed_any(m: &mut PurchaseMachine, which: &str) -> Result<(), StepError> {
    match which {
        "authentication" => m.handle_authenticated(Err(Failure::Error)),
        "sale" => m.handle_sale(Err(Failure::Error)),
        "sold-out check" => m.handle_sold_out_checked(false),
        "rate check" => m.handle_rate_checked(Err(Failure::Error)),
        "reservation" => m.handle_reserved(Err(Failure::Timeout)),
        "void" => m.handle_voided(Err(Failure::Error)),
        "submission" => m.handle_submitted(Err(Failure::Timeout)),
        _ => unreachable!(),
    }
}

fn expected_handler(a: &Asked) -> &'static str {
    match a {
        Asked::Authenticate => "authentication",
        Asked::LoadSale(_) => "sale",
        Asked::CheckSoldOut(_) => "sold-out check",
        Asked::CheckRate(..) => "rate check",
        Asked::Reserve(_) => "reservation",
        Asked::Void(_) => "void",
        Asked::Submit(_) => "submission",
        Asked::Done(_) => "nothing (done)",
    }
}

/// Drives a machine to the end, answering every action from `answers`, and
/// checks at every step that answers of the wrong kind are refused without
/// changing anything.
fn drive(s: &Scenario, answers: &Answers) -> Trace {
    let order_id = OrderId::new(NOW);
    let sale = s.sale();
    let mut m = PurchaseMachine::new(s.request(), order_id, NOW, s.config());
    let mut steps = Vec::new();
    // Generous: a correct machine needs at most five calls.
    for _ in 0..12 {
        let now_asked = asked(&m);
        for which in HANDLERS {
            if which == expected_handler(&now_asked) {
                continue;
            }
            let err = feed_any(&mut m, which).expect_err("a wrong answer was accepted");
            assert_eq!(err.expected, expected_handler(&now_asked));
            assert_eq!(err.got, which);
            assert_eq!(asked(&m), now_asked, "a refused answer changed the machine");
        }
        assert_eq!(m.is_done(), matches!(now_asked, Asked::Done(_)));
        match now_asked {
            Asked::Done(outcome) => {
                assert_eq!(m.outcome(), Some(&outcome));
                assert_eq!(m.clone().into_outcome(), Some(outcome.clone()));
                return Trace {
                    order_id,
                    steps,
                    outcome,
                };
            }
            Asked::Authenticate => {
                let a = match &answers.auth {
                    AuthAnswer::Ok => Ok(Ok(Principal::user(alice()))),
                    AuthAnswer::Rejected(r) => Ok(Err(r.clone())),
                    AuthAnswer::Fail(f) => Err(*f),
                };
                m.handle_authenticated(a.clone()).unwrap();
                steps.push(Step::Auth(a));
            }
            Asked::LoadSale(p) => {
                assert_eq!(p, product(), "looked up another product");
                let a = answers.sale.map(|()| s.known.then_some(&sale));
                m.handle_sale(a).unwrap();
                steps.push(Step::Sale(answers.sale.map(|()| s.known)));
            }
            Asked::CheckSoldOut(req) => {
                m.handle_sold_out_checked(answers.known_sold_out).unwrap();
                steps.push(Step::SoldOutCheck(req, answers.known_sold_out));
            }
            Asked::CheckRate(user, cost) => {
                m.handle_rate_checked(answers.rate).unwrap();
                steps.push(Step::Rate {
                    user,
                    cost,
                    answer: answers.rate,
                });
            }
            Asked::Reserve(req) => {
                let a = reserve_outcome(&answers.reserve, &req, s.hold);
                m.handle_reserved(a.clone()).unwrap();
                steps.push(Step::Reserve(req, a));
            }
            Asked::Void(req) => {
                m.handle_voided(answers.void).unwrap();
                steps.push(Step::Void(req, answers.void));
            }
            Asked::Submit(event) => {
                m.handle_submitted(answers.submit).unwrap();
                steps.push(Step::Submit(event, answers.submit));
            }
        }
    }
    panic!("the machine did not finish within 12 port calls: {steps:#?}");
}

fn unavailable() -> Outcome {
    Outcome::Unavailable {
        retry_after: RETRY_AFTER,
    }
}

fn summary_of(r: &Reservation) -> PurchaseSummary {
    PurchaseSummary {
        order: r.to_order(),
        status: OrderStatus::of(r),
    }
}

/// Whether `r` (named by the key) is this same request: same buyer,
/// product and quantity.
fn same_request(r: &Reservation, req: &ReserveRequest) -> bool {
    r.user == req.user && r.product == req.product && r.quantity == req.quantity
}

// -------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    /// Authenticate, LoadSale, CheckRate, Reserve, then at most one of
    /// Void or Submit: never more than five port calls (plus the local
    /// sold-out question), each kind at most once.
    #[test]
    fn terminates_within_five_port_calls(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        let port_calls = t.steps.iter().filter(|st| !matches!(st, Step::SoldOutCheck(..))).count();
        prop_assert!(port_calls <= 5, "{:#?}", t.steps);
        prop_assert!(t.steps.len() <= 6, "{:#?}", t.steps);
        let kinds: Vec<_> = t.steps.iter().map(std::mem::discriminant).collect();
        for (i, k) in kinds.iter().enumerate() {
            prop_assert!(!kinds[..i].contains(k), "a port was asked twice: {:#?}", t.steps);
        }
        prop_assert!(t.voids().is_empty() || t.submits().is_empty(), "{:#?}", t.steps);
    }

    /// A reserve whose answer was lost (error or timeout) is followed by a
    /// Void of that very request, and nothing else: the attempt ends
    /// Unavailable whatever the void answered (a failed void is the
    /// driver's to retry in the background).
    #[test]
    fn a_failed_reserve_is_voided_next_then_unavailable(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        if let Some((i, req, Err(_))) = t.reserve() {
            match t.steps.get(i + 1) {
                Some(Step::Void(voided, answer)) => {
                    prop_assert_eq!(voided, req);
                    prop_assert_eq!(&t.outcome, &unavailable(), "the void answered {:?}", answer);
                }
                other => prop_assert!(false, "after a failed reserve came {:?}", other),
            }
            prop_assert_eq!(t.steps.len(), i + 2, "{:#?}", t.steps);
        }
    }

    /// A Void is only ever sent right after this request's reserve failed:
    /// never after a successful reserve, never of another request's
    /// reservation (a replayed original, a store-level retry's answer).
    #[test]
    fn never_voids_after_a_successful_reserve(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        for (i, voided) in t.voids() {
            prop_assert!(i > 0);
            match &t.steps[i - 1] {
                Step::Reserve(req, Err(_)) => {
                    prop_assert_eq!(voided, req);
                    prop_assert_eq!(voided.order_id, t.order_id, "voided someone else's order");
                }
                other => prop_assert!(false, "a void after {:?}", other),
            }
        }
        if let Some((_, _, Ok(_))) = t.reserve() {
            prop_assert!(t.voids().is_empty(), "{:#?}", t.steps);
        }
    }

    /// Every Purchased or Accepted names this request's own reservation as
    /// the store reported it owning units (or, after a replay under
    /// AwaitSink, the original that owns them); every Replayed names the
    /// original the key points to, a same request that was not voided.
    #[test]
    fn every_success_names_a_reservation_that_owns_units(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        let Some(summary) = t.outcome.purchase() else { return Ok(()) };
        let Some((_, req, Ok(reported))) = t.reserve() else {
            return Err(TestCaseError::fail(format!("success without a reserve: {:#?}", t)));
        };
        match (&t.outcome, reported) {
            (Outcome::Purchased(_) | Outcome::Accepted(_), ReserveOutcome::Reserved(r)) => {
                prop_assert!(r.state.owns_units(), "{:?}", r);
                prop_assert_eq!(r.order_id, req.order_id);
                prop_assert_eq!(summary, &summary_of(r));
            }
            // A replay that went through the sink again, which failed.
            (Outcome::Accepted(_), ReserveOutcome::Duplicate(r)) => {
                prop_assert!(s.await_sink);
                prop_assert!(r.state.owns_units(), "{:?}", r);
                prop_assert!(same_request(r, req));
                prop_assert_eq!(summary, &summary_of(r));
            }
            (Outcome::Replayed(_), ReserveOutcome::Duplicate(r)) => {
                prop_assert!(same_request(r, req), "replayed a different request: {:?}", r);
                prop_assert_ne!(r.state, ReservationState::Voided);
                prop_assert_ne!(r.order_id, req.order_id);
                prop_assert_eq!(summary, &summary_of(r));
            }
            (o, r) => prop_assert!(false, "{:?} after the store reported {:?}", o, r),
        }
    }

    /// A store-level retry answers `Reserved` with this request's own order
    /// id: it is this request's success (or, if a racing void already left
    /// its tombstone, a 503), never a replay.
    #[test]
    fn a_store_level_retry_is_never_a_replay(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        if let Some((_, _, Ok(ReserveOutcome::Reserved(r)))) = t.reserve() {
            prop_assert!(!matches!(t.outcome, Outcome::Replayed(_)), "{:?}", t.outcome);
            if !r.state.owns_units() {
                prop_assert_eq!(&t.outcome, &unavailable());
                prop_assert!(t.voids().is_empty() && t.submits().is_empty());
            }
        }
    }

    /// Submit happens only under AwaitSink, right after the store reported
    /// a reservation owning units, and carries exactly that reservation's
    /// `placed` event; its answer decides 200 (acked) or 202 (not), and
    /// the 202 still names the order. Under AwaitSink every purchase (and
    /// every replay of an order that owns units) goes through the sink.
    #[test]
    fn submits_only_under_await_sink_the_reported_placed_event(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        for (i, event, answer) in t.submits() {
            prop_assert!(s.await_sink, "submitted under HandOff::Outbox");
            let r = match &t.steps[i - 1] {
                Step::Reserve(_, Ok(ReserveOutcome::Reserved(r) | ReserveOutcome::Duplicate(r))) => r,
                other => return Err(TestCaseError::fail(format!("submit after {other:?}"))),
            };
            prop_assert!(r.state.owns_units());
            prop_assert_eq!(event, &OrderEvent::placed(r));
            prop_assert_eq!(i + 1, t.steps.len());
            let summary = t.outcome.purchase().expect("a submit ends in a success");
            prop_assert_eq!(&summary.order, &event.order);
            match (answer, &t.outcome) {
                (Ok(()), Outcome::Purchased(_)) => {
                    prop_assert!(matches!(t.reserve(), Some((_, _, Ok(ReserveOutcome::Reserved(_))))))
                }
                (Ok(()), Outcome::Replayed(_)) => {
                    prop_assert!(matches!(t.reserve(), Some((_, _, Ok(ReserveOutcome::Duplicate(_))))))
                }
                (Err(_), Outcome::Accepted(_)) => {}
                (answer, o) => prop_assert!(false, "submit answered {:?}, outcome {:?}", answer, o),
            }
        }
        if s.await_sink {
            if let Some((_, req, Ok(ReserveOutcome::Reserved(r) | ReserveOutcome::Duplicate(r)))) = t.reserve()
                && r.state.owns_units()
                && same_request(r, req)
            {
                prop_assert_eq!(t.submits().len(), 1, "{:#?}", t.steps);
            }
        } else {
            prop_assert!(t.submits().is_empty());
            prop_assert!(!matches!(t.outcome, Outcome::Accepted(_)));
        }
    }

    /// A request with an idempotency key reaches the store whenever auth
    /// and rate allow, even if the sale window is closed or the quantity is
    /// above the per-order maximum as the driver knows them: its key may
    /// name a finished purchase whose answer must win.
    #[test]
    fn a_keyed_request_reaches_reserve_when_auth_and_rate_allow(
        s in scenario().prop_map(|s| Scenario { key: true, known: true, ..s }),
        a in answers(),
    ) {
        let t = drive(&s, &a);
        if matches!(a.auth, AuthAnswer::Ok) && a.sale.is_ok() && a.rate == Ok(RateDecision::Allowed) {
            let (_, req, _) = t.reserve().expect("a keyed request never reached the store");
            prop_assert_eq!(req.idempotency_key.as_ref(), Some(&key()));
        }
    }

    /// Credentials come first, always: the sale is looked up only for an
    /// authenticated buyer, right after authenticating. Then, without a
    /// key, quantity and window are checked before the rate limiter or the
    /// store is called; an unknown product (key or not) or a failed lookup
    /// ends right there.
    #[test]
    fn credentials_first_then_validation_before_rate_or_store(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        prop_assert!(matches!(t.steps.first(), Some(Step::Auth(_))), "{:#?}", t.steps);
        let authenticated = matches!(a.auth, AuthAnswer::Ok);
        let lookups: Vec<usize> = t.steps.iter().enumerate()
            .filter(|(_, st)| matches!(st, Step::Sale(_)))
            .map(|(i, _)| i)
            .collect();
        if !authenticated {
            prop_assert!(lookups.is_empty(), "the sale was looked up before authentication");
            prop_assert_eq!(t.steps.len(), 1, "{:#?}", t.steps);
            return Ok(());
        }
        prop_assert_eq!(lookups, vec![1], "{:#?}", t.steps);
        let validated_out = |t: &Trace| t.steps.len() == 2;
        if a.sale.is_err() {
            prop_assert_eq!(&t.outcome, &unavailable());
            prop_assert!(validated_out(&t));
        } else if !s.known {
            prop_assert_eq!(&t.outcome, &Outcome::UnknownProduct);
            prop_assert!(validated_out(&t));
        } else if !s.key && s.quantity > s.per_order_max {
            prop_assert_eq!(t.outcome.code(), "invalid_request");
            prop_assert!(validated_out(&t));
        } else if !s.key && s.window != Window::Open {
            prop_assert_eq!(&t.outcome, &Outcome::NotOnSale);
            prop_assert!(validated_out(&t));
        } else if s.key {
            prop_assert!(matches!(t.steps.get(2), Some(Step::Rate { .. })), "{:#?}", t.steps);
        } else {
            prop_assert!(matches!(t.steps.get(2), Some(Step::SoldOutCheck(..))), "{:#?}", t.steps);
            if !a.known_sold_out {
                prop_assert!(matches!(t.steps.get(3), Some(Step::Rate { .. })), "{:#?}", t.steps);
            }
        }
    }

    /// The local sold-out question comes only for a request without a key
    /// whose sale is open and allows its quantity, right after the lookup,
    /// about exactly the request the store would reserve. A known sell-out
    /// ends `SoldOut` there: the rate limiter is not charged and the store
    /// is not called.
    #[test]
    fn a_known_sell_out_costs_no_rate_check_and_no_store_call(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        let checks: Vec<(usize, &ReserveRequest, bool)> = t.steps.iter().enumerate()
            .filter_map(|(i, st)| match st {
                Step::SoldOutCheck(req, known) => Some((i, req, *known)),
                _ => None,
            })
            .collect();
        let eligible = matches!(a.auth, AuthAnswer::Ok)
            && a.sale.is_ok()
            && s.known
            && !s.key
            && s.quantity <= s.per_order_max
            && s.window == Window::Open;
        prop_assert_eq!(checks.len(), usize::from(eligible), "{:#?}", t.steps);
        if let Some(&(i, req, known)) = checks.first() {
            prop_assert_eq!(i, 2);
            prop_assert_eq!(req, &ReserveRequest {
                order_id: t.order_id,
                product: product(),
                user: alice(),
                quantity: Quantity::new(s.quantity.into()).unwrap(),
                idempotency_key: None,
                now: NOW,
            });
            if known {
                prop_assert_eq!(&t.outcome, &Outcome::SoldOut);
                prop_assert_eq!(t.steps.len(), 3, "{:#?}", t.steps);
            } else {
                prop_assert!(t.steps.len() > 3, "{:#?}", t.steps);
            }
        }
    }

    /// The rate check charges the authenticated buyer the configured cost,
    /// and the reserve asks for exactly the request, for that buyer, under
    /// the order id and time the machine was created with.
    #[test]
    fn the_reserve_is_the_authenticated_buyers_request(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        for step in &t.steps {
            match step {
                Step::Rate { user, cost, .. } => {
                    prop_assert_eq!(user, &alice());
                    prop_assert_eq!(*cost, RATE_COST);
                }
                Step::Reserve(req, _) => {
                    prop_assert_eq!(req, &ReserveRequest {
                        order_id: t.order_id,
                        product: product(),
                        user: alice(),
                        quantity: Quantity::new(s.quantity.into()).unwrap(),
                        idempotency_key: s.key.then(key),
                        now: NOW,
                    });
                }
                _ => {}
            }
        }
    }

    /// Every path ends in the outcome design.md's table documents for it.
    #[test]
    fn each_path_maps_to_its_documented_outcome(s in scenario(), a in answers()) {
        let t = drive(&s, &a);
        let o = &t.outcome;
        match t.steps.last() {
            None => prop_assert!(false, "ended without authenticating: {:?}", o),
            Some(Step::Auth(Ok(Err(r)))) => prop_assert_eq!(o, &Outcome::Unauthenticated(r.clone())),
            Some(Step::Auth(Err(_))) => prop_assert_eq!(o, &unavailable()),
            Some(Step::Auth(Ok(Ok(_)))) => prop_assert!(false, "ended right after authenticating"),
            Some(Step::Sale(Err(_))) => prop_assert_eq!(o, &unavailable()),
            Some(Step::Sale(Ok(false))) => prop_assert_eq!(o, &Outcome::UnknownProduct),
            Some(Step::Sale(Ok(true))) => prop_assert!(
                matches!(o, Outcome::NotOnSale | Outcome::Invalid(_)),
                "{:?}", o
            ),
            Some(Step::SoldOutCheck(_, true)) => prop_assert_eq!(o, &Outcome::SoldOut),
            Some(Step::SoldOutCheck(_, false)) => {
                prop_assert!(false, "ended right after an unknown sold-out check")
            }
            Some(Step::Rate { answer: Ok(RateDecision::Limited { retry_after }), .. }) => {
                prop_assert_eq!(o, &Outcome::RateLimited { retry_after: *retry_after })
            }
            Some(Step::Rate { answer: Err(_), .. }) => prop_assert_eq!(o, &unavailable()),
            Some(Step::Rate { .. }) => prop_assert!(false, "ended right after an admitted rate check"),
            Some(Step::Reserve(req, Ok(answer))) => match answer {
                ReserveOutcome::SoldOut => prop_assert_eq!(o, &Outcome::SoldOut),
                ReserveOutcome::LimitExceeded => prop_assert_eq!(o, &Outcome::LimitExceeded),
                ReserveOutcome::NotOnSale => prop_assert_eq!(o, &Outcome::NotOnSale),
                ReserveOutcome::UnknownProduct => prop_assert_eq!(o, &Outcome::UnknownProduct),
                ReserveOutcome::OverOrderMax { .. } => match o {
                    Outcome::Invalid(e) => prop_assert_eq!(e.field, "quantity"),
                    o => prop_assert!(false, "{:?}", o),
                },
                ReserveOutcome::Reserved(r) if r.state.owns_units() => {
                    prop_assert!(!s.await_sink);
                    prop_assert_eq!(o, &Outcome::Purchased(summary_of(r)));
                }
                ReserveOutcome::Reserved(_) => prop_assert_eq!(o, &unavailable()),
                ReserveOutcome::Duplicate(r) if !same_request(r, req) => {
                    prop_assert_eq!(o, &Outcome::IdempotencyConflict)
                }
                // The original was voided (its key freed): this attempt
                // owns nothing and may retry.
                ReserveOutcome::Duplicate(r) if r.state == ReservationState::Voided => {
                    prop_assert_eq!(o, &unavailable())
                }
                ReserveOutcome::Duplicate(r) => {
                    prop_assert!(!s.await_sink || !r.state.owns_units());
                    prop_assert_eq!(o, &Outcome::Replayed(summary_of(r)));
                }
            },
            Some(Step::Reserve(_, Err(_))) => prop_assert!(false, "a failed reserve ended without a void"),
            Some(Step::Void(..)) => prop_assert_eq!(o, &unavailable()),
            Some(Step::Submit(..)) => prop_assert!(
                matches!(o, Outcome::Purchased(_) | Outcome::Accepted(_) | Outcome::Replayed(_)),
                "{:?}", o
            ),
        }
        // The HTTP mapping of what can come out of a purchase.
        let status = o.http_status();
        prop_assert!([200, 202, 400, 401, 404, 409, 429, 503].contains(&status), "{}", status);
        prop_assert_eq!(status == 202, matches!(o, Outcome::Accepted(_)));
    }
}

// ------------------------------------------------------ worked examples

fn machine(s: &Scenario) -> PurchaseMachine {
    PurchaseMachine::new(s.request(), OrderId::new(NOW), NOW, s.config())
}

fn open_scenario(key: bool, await_sink: bool) -> Scenario {
    Scenario {
        await_sink,
        known: true,
        hold: false,
        window: Window::Open,
        per_order_max: 4,
        quantity: 2,
        key,
    }
}

fn reserve_request(m: &PurchaseMachine) -> ReserveRequest {
    match m.poll_action() {
        Action::Reserve(r) => r.clone(),
        other => panic!("{other:?}"),
    }
}

/// Authenticates alice, feeds `s`'s sale and passes the rate check.
fn to_reserve(m: &mut PurchaseMachine, s: &Scenario) -> ReserveRequest {
    m.handle_authenticated(Ok(Ok(Principal::user(alice()))))
        .unwrap();
    m.handle_sale(Ok(Some(&s.sale()))).unwrap();
    if !s.key {
        m.handle_sold_out_checked(false).unwrap();
    }
    m.handle_rate_checked(Ok(RateDecision::Allowed)).unwrap();
    reserve_request(m)
}

#[test]
fn a_cluster_retry_answer_of_its_own_order_is_a_purchase_not_a_replay() {
    // The store ran the reserve twice (a dropped connection, re-sent below
    // the port); the second run found the first's reservation by order id.
    let s = open_scenario(true, false);
    let mut m = machine(&s);
    let req = to_reserve(&mut m, &s);
    let own = req.to_reservation(None);
    m.handle_reserved(Ok(ReserveOutcome::Reserved(own.clone())))
        .unwrap();
    assert_eq!(m.outcome(), Some(&Outcome::Purchased(summary_of(&own))));
    let http = flashsale::http::ApiResponse::from_outcome(m.outcome().unwrap());
    assert_eq!(http.status, 200);
    assert_eq!(http.header("idempotent-replayed"), None);
}

#[test]
fn a_lost_reserve_answer_is_voided_then_unavailable_even_if_the_void_fails() {
    for void in [
        Ok(VoidOutcome::Voided),
        Err(Failure::Timeout),
        Err(Failure::Error),
    ] {
        let s = open_scenario(true, true);
        let mut m = machine(&s);
        let req = to_reserve(&mut m, &s);
        m.handle_reserved(Err(Failure::Timeout)).unwrap();
        assert_eq!(m.poll_action(), Action::Void(&req));
        m.handle_voided(void).unwrap();
        assert_eq!(m.outcome(), Some(&unavailable()));
        let http = flashsale::http::ApiResponse::from_outcome(m.outcome().unwrap());
        assert_eq!(http.status, 503);
        assert_eq!(http.header("retry-after"), Some("3"));
    }
}

#[test]
fn await_sink_answers_202_with_the_order_when_the_sink_fails() {
    let s = open_scenario(false, true);
    let mut m = machine(&s);
    let req = to_reserve(&mut m, &s);
    let own = req.to_reservation(None);
    m.handle_reserved(Ok(ReserveOutcome::Reserved(own.clone())))
        .unwrap();
    assert_eq!(m.poll_action(), Action::Submit(&OrderEvent::placed(&own)));
    m.handle_submitted(Err(Failure::Timeout)).unwrap();
    assert_eq!(m.outcome(), Some(&Outcome::Accepted(summary_of(&own))));
    let http = flashsale::http::ApiResponse::from_outcome(m.outcome().unwrap());
    assert_eq!(http.status, 202);
}

#[test]
fn a_keyed_replay_wins_over_a_closed_window_and_a_lowered_per_order_max() {
    let s = Scenario {
        window: Window::Ended,
        per_order_max: 1,
        quantity: 3,
        ..open_scenario(true, false)
    };
    let mut m = machine(&s);
    let req = to_reserve(&mut m, &s);
    let earlier = Timestamp::from_millis(NOW.as_millis() - 60_000);
    let original = ReserveRequest {
        order_id: OrderId::new(earlier),
        now: earlier,
        ..req
    }
    .to_reservation(None);
    m.handle_reserved(Ok(ReserveOutcome::Duplicate(original.clone())))
        .unwrap();
    assert_eq!(m.outcome(), Some(&Outcome::Replayed(summary_of(&original))));
    let http = flashsale::http::ApiResponse::from_outcome(m.outcome().unwrap());
    assert_eq!(http.header("idempotent-replayed"), Some("true"));
}
