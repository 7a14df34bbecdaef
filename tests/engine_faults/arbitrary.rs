//! Proptest: arbitrary failures of every port, with buyers racing and reusing
//! keys, checked against the invariants.

use super::*;

const OPS: [&str; 11] = [
    "sale",
    "authenticate",
    "check",
    "reserve",
    "void",
    "submit",
    "claim",
    "ack",
    "confirm",
    "cancel",
    "expire",
];

#[derive(Debug, Clone)]
struct Attempt {
    /// Which instance serves it (modulo the number of instances).
    instance: u8,
    user: u8,
    key: Option<u8>,
    quantity: u32,
    /// When it starts, in ms of virtual time.
    at: u64,
}

#[derive(Debug, Clone)]
struct Case {
    /// How many engine instances share the store (1 or 2).
    instances: usize,
    /// `None`: a sale without holds; else the hold in seconds (short ones
    /// expire while the case runs).
    hold: Option<u64>,
    await_sink: bool,
    stock: u32,
    cap: u32,
    attempts: Vec<Attempt>,
    /// After the attempts: the buyer of attempt `.0` (modulo their number)
    /// confirms (`true`) or cancels its order, if it got one.
    follow_ups: Vec<(usize, bool)>,
    faults: Vec<Vec<Fault>>,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        7 => Just(Fault::Pass),
        1 => Just(Fault::FailBefore),
        2 => Just(Fault::FailAfter),
        2 => Just(Fault::HangAfter),
        1 => Just(Fault::Hang),
        1 => (0u64..400).prop_map(Fault::Late),
        1 => (0u64..200).prop_map(Fault::Slow),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let attempt = (
        0u8..2,
        0u8..3,
        prop::option::weighted(0.7, 0u8..2),
        1u32..=3,
        0u64..400,
    )
        .prop_map(|(instance, user, key, quantity, at)| Attempt {
            instance,
            user,
            key,
            quantity,
            at,
        });
    (
        1usize..=2,
        prop_oneof![Just(None), Just(Some(2)), Just(Some(3_600))],
        any::<bool>(),
        2u32..=8,
        1u32..=4,
        prop::collection::vec(attempt, 1..=10),
        prop::collection::vec((0usize..10, any::<bool>()), 0..=4),
        prop::collection::vec(prop::collection::vec(fault(), 0..=4), OPS.len()),
    )
        .prop_map(
            |(instances, hold, await_sink, stock, cap, attempts, follow_ups, faults)| Case {
                instances,
                hold,
                await_sink,
                stock,
                cap,
                attempts,
                follow_ups,
                faults,
            },
        )
}

/// What a case left behind, once every background retry settled and the
/// outbox was drained.
#[derive(Debug)]
struct World {
    hold: bool,
    answers: Vec<(Attempt, Outcome)>,
    /// Confirm (`true`) or cancel of an order, and the answer.
    follow_ups: Vec<(OrderId, bool, Outcome)>,
    /// Every reservation the engine asked for, and what the store has
    /// under its order id.
    reservations: BTreeMap<OrderId, (ReserveRequest, Option<Reservation>)>,
    /// Distinct events in the sink.
    events: Vec<OrderEvent>,
    levels: StockLevels,
    /// Levels sampled while the attempts ran that broke
    /// `total == available + held + committed`.
    bad_samples: Vec<StockLevels>,
    /// Events left in the outbox after the final drain.
    left: Vec<OrderEvent>,
}

/// Which orders the follow-ups (confirm, cancel) may target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Targets {
    /// Only orders answered `Purchased`: the buyer's own, never a replay.
    Purchased,
    /// The order of any 2xx, replays and 202s included.
    Any2xx,
}

fn run_case(case: &Case, targets: Targets) -> World {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut sale = Sale::builder(product(), case.stock).per_user_limit(case.cap);
        if let Some(secs) = case.hold {
            sale = sale.hold(Duration::from_secs(secs));
        }
        let inner = memory_store(sale.build().unwrap()).await;
        let script = Arc::new(Script::default());
        let store = Arc::new(scripted(inner.clone(), script.clone()));
        let sink = Arc::new(MemoryOrderSink::new());
        let hand_off = if case.await_sink {
            HandOff::AwaitSink {
                timeout: SINK_TIMEOUT,
            }
        } else {
            HandOff::Outbox
        };
        // One or two instances sharing the store, the sink and the faults,
        // each with its own relay and sweeper.
        let engines: Vec<Engine> = (0..case.instances)
            .map(|_| {
                Engine::builder()
                    .stock_store(store.clone())
                    .rate_limiter(Arc::new(ScriptedLimiter {
                        inner: limiter(),
                        script: script.clone(),
                    }))
                    .order_sink(Arc::new(ScriptedSink {
                        inner: sink.clone(),
                        script: script.clone(),
                    }))
                    .authenticator(Arc::new(ScriptedAuth {
                        inner: authenticator(),
                        script: script.clone(),
                    }))
                    .clock(Arc::new(TokioClock::new()))
                    .port_timeout(PORT_TIMEOUT)
                    .hand_off(hand_off)
                    .relay(relay_config())
                    .build()
                    .unwrap()
            })
            .collect();
        let engine = |n: u8| engines[usize::from(n) % engines.len()].clone();
        for (op, faults) in OPS.iter().zip(&case.faults) {
            script.set(op, faults.iter().copied());
        }

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let mut background = Vec::new();
        for e in &engines {
            background
                .push(e.spawn_relay(Duration::from_millis(200), until_stopped(stopped.clone())));
            background
                .push(e.spawn_sweeper(Duration::from_millis(500), until_stopped(stopped.clone())));
        }
        let running = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (inner, running) = (inner.clone(), running.clone());
            tokio::spawn(async move {
                let mut bad = Vec::new();
                while running.load(Ordering::SeqCst) {
                    let l = levels(&inner).await;
                    if !l.is_consistent() || l.total != l.available + l.held + l.committed {
                        bad.push(l);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                bad
            })
        };
        let tasks: Vec<_> = case
            .attempts
            .iter()
            .map(|a| {
                let (engine, a) = (engine(a.instance), a.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(a.at)).await;
                    let mut req = buy(i64::from(a.quantity));
                    if let Some(k) = a.key {
                        req = req.with_idempotency_key(key(&format!("k{k}")));
                    }
                    let out = engine.purchase_to_completion(creds_of(a.user), req).await;
                    (a, out)
                })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        let follow_ups: Vec<_> = case
            .follow_ups
            .iter()
            .filter_map(|&(i, confirm)| {
                let (a, o) = &answers[i % answers.len()];
                if targets == Targets::Purchased && !matches!(o, Outcome::Purchased(_)) {
                    return None;
                }
                let id = o.purchase()?.order.order_id;
                let (engine, who) = (engine(a.instance + 1), creds_of(a.user));
                Some(tokio::spawn(async move {
                    let out = if confirm {
                        engine.confirm(&who, &id).await
                    } else {
                        engine.cancel(&who, &id).await
                    };
                    (id, confirm, out)
                }))
            })
            .collect();
        let follow_ups = futures::future::join_all(follow_ups)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        running.store(false, Ordering::SeqCst);
        let bad_samples = sampler.await.unwrap();

        // Every port recovers; background voids and late calls settle.
        script.clear();
        tokio::time::sleep(Duration::from_secs(120)).await;
        stop.send(true).unwrap();
        for task in background {
            task.await.unwrap();
        }
        tokio::time::sleep(LEASE * 2).await;
        engines[0].drain_outbox().await.unwrap();
        let left = outbox(&engines[0], &inner).await;

        let mut reservations = BTreeMap::new();
        for req in store.hook().reserve_requests() {
            let r = inner.reservation(&req.order_id).await.unwrap();
            reservations.insert(req.order_id, (req, r));
        }
        World {
            hold: case.hold.is_some(),
            answers,
            follow_ups,
            reservations,
            events: sink.events(),
            levels: levels(&inner).await,
            bad_samples,
            left,
        }
    })
}

impl World {
    fn events_of(&self, id: &OrderId) -> Vec<EventType> {
        self.events
            .iter()
            .filter(|e| e.event_id.order_id() == *id)
            .map(|e| e.event_type)
            .collect()
    }

    fn owning(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations
            .values()
            .filter_map(|(_, r)| r.as_ref())
            .filter(|r| r.state.owns_units())
    }

    /// The checks that must hold whatever the ports did.
    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let l = self.levels;
        prop_assert!(self.bad_samples.is_empty(), "{:?}", self.bad_samples);
        prop_assert_eq!(l.total, l.available + l.held + l.committed, "{:?}", l);
        prop_assert!(
            self.left.is_empty(),
            "the drained outbox kept {:?}",
            self.left
        );

        // Every event belongs to a reservation the engine asked for, and
        // says what the store did to it: units held or sold ⇔ `placed`
        // with no closing event; units back ⇔ `placed` then the closing
        // event that says why; a void that ran first ⇔ no event at all.
        let mut ids = BTreeSet::new();
        for e in &self.events {
            prop_assert!(ids.insert(e.event_id), "the sink deduplicates");
            let Some((_, Some(r))) = self.reservations.get(&e.event_id.order_id()) else {
                return Err(TestCaseError::fail(format!(
                    "event of an unknown order: {e:?}"
                )));
            };
            prop_assert_eq!(&e.order, &r.to_order());
        }
        use EventType::*;
        for (id, (req, r)) in &self.reservations {
            // In the order the sink first received them.
            let events = self.events_of(id);
            let want: &[&[EventType]] = match r.as_ref().map(|r| r.state) {
                None => &[&[]],
                Some(ReservationState::Held) => &[&[Placed]],
                Some(ReservationState::Committed) if self.hold => &[&[Placed, Confirmed]],
                Some(ReservationState::Committed) => &[&[Placed]],
                Some(ReservationState::Cancelled) => &[&[Placed, Cancelled]],
                Some(ReservationState::Expired) => &[&[Placed, Expired]],
                Some(ReservationState::Voided) => &[&[], &[Placed, Voided]],
            };
            prop_assert!(
                want.contains(&events.as_slice()),
                "{:?} ({:?}) has events {:?}",
                req,
                r.as_ref().map(|r| r.state),
                events
            );
        }

        // Units in the store == units of owning reservations == units of
        // placed-minus-closed events, in total and per buyer.
        let mut owned: BTreeMap<UserId, u64> = BTreeMap::new();
        for r in self.owning() {
            *owned.entry(r.user.clone()).or_default() += u64::from(r.quantity.get());
        }
        prop_assert_eq!(owned.values().sum::<u64>(), l.held + l.committed);
        let mut by_events: BTreeMap<UserId, i64> = BTreeMap::new();
        for e in &self.events {
            let q = i64::from(e.order.quantity.get());
            let d = match e.event_type {
                EventType::Placed => q,
                EventType::Confirmed => 0,
                _ => -q,
            };
            *by_events.entry(e.order.user_id.clone()).or_default() += d;
        }
        by_events.retain(|_, n| *n != 0);
        let owned_i: BTreeMap<UserId, i64> = owned
            .iter()
            .map(|(u, n)| (u.clone(), i64::try_from(*n).unwrap()))
            .collect();
        prop_assert_eq!(&owned_i, &by_events);

        // One Idempotency-Key, at most one order that was not voided.
        let mut per_key: BTreeMap<(UserId, String), usize> = BTreeMap::new();
        for (id, (req, _)) in &self.reservations {
            let events = self.events_of(id);
            if let Some(k) = &req.idempotency_key
                && events.contains(&EventType::Placed)
                && !events.contains(&EventType::Voided)
            {
                *per_key
                    .entry((req.user.clone(), k.as_str().to_owned()))
                    .or_default() += 1;
            }
        }
        prop_assert!(per_key.values().all(|n| *n <= 1), "{:?}", per_key);

        // Every 503 (and every 4xx) leaves the buyer owning nothing: each
        // order that owns units was answered 2xx to its own buyer.
        let answered: BTreeSet<OrderId> = self
            .answers
            .iter()
            .filter_map(|(a, o)| o.purchase().map(|p| (a, p)))
            .filter(|(a, p)| p.order.user_id == user(a.user))
            .map(|(_, p)| p.order.order_id)
            .collect();
        for r in self.owning() {
            prop_assert!(
                answered.contains(&r.order_id),
                "{:?} owns units, yet no answer named it: {:#?}",
                r,
                self.answers
            );
        }
        for (a, o) in &self.answers {
            prop_assert!(
                [200, 202, 400, 409, 503].contains(&o.http_status()),
                "{:?} → {:?}",
                a,
                o
            );
        }
        self.check_follow_ups()
    }

    /// A confirm or cancel that answered 200 says where the order ends.
    fn check_follow_ups(&self) -> Result<(), TestCaseError> {
        for (id, confirm, o) in &self.follow_ups {
            let state = self.reservations[id].1.as_ref().map(|r| r.state);
            if let Outcome::OrderUpdated(p) = o {
                let want = if *confirm {
                    ReservationState::Committed
                } else {
                    ReservationState::Cancelled
                };
                prop_assert_eq!(state, Some(want), "{:?} answered 200 {:?}", id, p.status);
            }
        }
        Ok(())
    }

    /// Every 2xx names an order that stands: this buyer's, under this key,
    /// still owning its units, as the store has it.
    fn check_successes_stand(&self) -> Result<(), TestCaseError> {
        let mut purchased = BTreeSet::new();
        for (a, o) in &self.answers {
            let Some(p) = o.purchase() else { continue };
            let id = p.order.order_id;
            let Some((_, Some(r))) = self.reservations.get(&id) else {
                return Err(TestCaseError::fail(format!("{o:?} names no reservation")));
            };
            prop_assert_eq!(&r.user, &user(a.user));
            prop_assert_eq!(
                r.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
                a.key.map(|k| format!("k{k}"))
            );
            // It stands: still owning its units, or (holds) closed since
            // by its buyer or by expiry, never voided.
            let stands = r.state.owns_units()
                || (self.hold
                    && matches!(
                        r.state,
                        ReservationState::Cancelled | ReservationState::Expired
                    ));
            prop_assert!(
                stands,
                "{:?} answered {} for {:?}, which is now {:?}: {:#?}",
                a,
                o.http_status(),
                id,
                r.state,
                self.answers
            );
            prop_assert_eq!(&p.order, &r.to_order());
            if matches!(o, Outcome::Purchased(_)) {
                prop_assert!(purchased.insert(id), "two purchases named {:?}", id);
            }
        }
        self.check_follow_ups()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    /// Over arbitrary failures, timeouts (before or after the call took
    /// effect), slow and late calls of every port, with buyers racing and
    /// reusing keys: no lost or doubled order, at most one standing order
    /// per key, no units back on sale without their closing event, every
    /// 503 leaves the buyer owning nothing, and the stock always adds up.
    #[test]
    fn engine_invariants_hold_over_arbitrary_port_failures(case in case()) {
        run_case(&case, Targets::Purchased).check_invariants()?;
    }

    /// Every 2xx (200 purchased or replayed, 202 accepted, and the 200 of
    /// a confirm or cancel) is still true once everything settled: it
    /// names this buyer's order under this key, and that order was never
    /// voided. Confirms and cancels here also target replayed orders, and
    /// the invariants above are checked too.
    #[test]
    fn every_2xx_names_an_order_that_stands(case in case()) {
        let world = run_case(&case, Targets::Any2xx);
        world.check_successes_stand()?;
        world.check_invariants()?;
    }
}

/// The fault generator is not vacuous: over a fixed sample of cases it
/// reaches every path the properties above are about.
#[test]
fn the_fault_generator_reaches_every_path() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..300 {
        let world = run_case(
            &case().new_tree(&mut runner).unwrap().current(),
            Targets::Any2xx,
        );
        for (_, o) in &world.answers {
            *seen.entry(o.code()).or_default() += 1;
        }
        for (id, (_, r)) in &world.reservations {
            let what = match r.as_ref().map(|r| r.state) {
                None => "never reserved",
                Some(ReservationState::Voided) if world.events_of(id).is_empty() => "tombstone",
                Some(ReservationState::Voided) => "voided after placed",
                Some(ReservationState::Held) => "held",
                Some(ReservationState::Committed) => "committed",
                Some(ReservationState::Cancelled) => "cancelled",
                Some(ReservationState::Expired) => "expired",
            };
            *seen.entry(what).or_default() += 1;
        }
    }
    for path in [
        "purchased",
        "accepted",
        "replayed",
        "unavailable",
        "sold_out",
        "limit_exceeded",
        "idempotency_conflict",
        "never reserved",
        "tombstone",
        "voided after placed",
        "held",
        "committed",
        "cancelled",
        "expired",
    ] {
        assert!(
            seen.get(path).copied().unwrap_or(0) > 0,
            "{path} never happened: {seen:?}"
        );
    }
}
