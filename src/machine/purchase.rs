//! One purchase attempt, from validation to outcome.

use crate::model::{
    AuthRejection, InvalidInput, OrderEvent, OrderId, OrderStatus, Outcome, Principal,
    PurchaseRequest, PurchaseSummary, Reservation, Sale, Timestamp,
};
use crate::{RateDecision, ReserveOutcome, ReserveRequest, VoidOutcome};

use super::{Action, Failure, HandOff, MachineConfig, StepError};

/// The state machine of one purchase attempt. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct PurchaseMachine {
    config: MachineConfig,
    /// The request as sent, until its buyer is authenticated.
    sent: Option<Pending>,
    /// The request as it will be reserved, from authentication on. It stays
    /// in place while the state moves on, so a step is not a copy of it.
    req: Option<ReserveRequest>,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    Authenticating,
    /// Authenticated (`req` is set), waiting for the sale's terms.
    LoadingSale,
    /// The sale is open and the request has no idempotency key: waiting to
    /// hear whether the store already knows it cannot be served.
    CheckingSoldOut,
    CheckingRate,
    Reserving,
    Voiding,
    Submitting {
        event: Box<OrderEvent>,
        summary: PurchaseSummary,
        replay: bool,
    },
    Done(Outcome),
}

/// A request waiting for its buyer to be authenticated.
#[derive(Debug, Clone)]
struct Pending {
    request: PurchaseRequest,
    order_id: OrderId,
    now: Timestamp,
}

impl PurchaseMachine {
    /// Starts a purchase of `request` at `now`, under `order_id`.
    ///
    /// The first action is always [`Action::Authenticate`]: nothing about
    /// the product is looked at, in a cache or a store, before the buyer is
    /// known, so a client without valid credentials costs no store round
    /// trip whatever product id it sends. (`request` itself was validated
    /// when it was built: well-formed product id, quantity at least 1.)
    pub fn new(
        request: PurchaseRequest,
        order_id: OrderId,
        now: Timestamp,
        config: MachineConfig,
    ) -> Self {
        Self {
            config,
            sent: Some(Pending {
                request,
                order_id,
                now,
            }),
            req: None,
            state: State::Authenticating,
        }
    }

    /// The request as it will be reserved: set in every state past
    /// authentication but `Done`.
    #[inline]
    fn req(&self) -> &ReserveRequest {
        self.req
            .as_ref()
            .expect("the buyer is authenticated in this state")
    }

    /// What the driver must do next.
    #[inline]
    pub fn poll_action(&self) -> Action<'_> {
        match &self.state {
            State::Authenticating => Action::Authenticate,
            State::LoadingSale => Action::LoadSale {
                product: &self.req().product,
            },
            State::CheckingSoldOut => Action::CheckSoldOut(self.req()),
            State::CheckingRate => Action::CheckRate {
                user: &self.req().user,
                cost: self.config.rate_cost,
            },
            State::Reserving => Action::Reserve(self.req()),
            State::Voiding => Action::Void(self.req()),
            State::Submitting { event, .. } => Action::Submit(event),
            State::Done(outcome) => Action::Done(outcome),
        }
    }

    /// Whether the machine has finished.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// The outcome, once [`is_done`](Self::is_done).
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            State::Done(o) => Some(o),
            _ => None,
        }
    }

    /// Consumes the machine, returning its outcome if it has finished.
    pub fn into_outcome(self) -> Option<Outcome> {
        match self.state {
            State::Done(o) => Some(o),
            _ => None,
        }
    }

    /// Feeds the answer to [`Action::Authenticate`].
    pub fn handle_authenticated(
        &mut self,
        result: Result<Result<Principal, AuthRejection>, Failure>,
    ) -> Result<(), StepError> {
        let (State::Authenticating, Some(_)) = (&self.state, &self.sent) else {
            return Err(self.unexpected("authentication"));
        };
        self.state = match result {
            Ok(Ok(principal)) => {
                let Pending {
                    request,
                    order_id,
                    now,
                } = self.sent.take().expect("matched above");
                self.req = Some(ReserveRequest {
                    order_id,
                    product: request.product,
                    user: principal.user,
                    quantity: request.quantity,
                    idempotency_key: request.idempotency_key,
                    now,
                });
                State::LoadingSale
            }
            Ok(Err(rejection)) => State::Done(Outcome::Unauthenticated(rejection)),
            Err(_) => self.unavailable(),
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::LoadSale`]: the sale's terms as the
    /// driver knows them (from its cache or the store; `None`: no such
    /// sale).
    ///
    /// Validation against them is pure and happens here, before the rate
    /// limiter or the store is asked anything: no sale ends in
    /// [`Outcome::UnknownProduct`], a quantity above the per-order maximum
    /// in [`Outcome::Invalid`], a closed sale in [`Outcome::NotOnSale`].
    /// The store re-checks the last two atomically, so stale terms cannot
    /// oversell.
    ///
    /// A request with an idempotency key skips the window and per-order
    /// checks here: its key may name a finished purchase, whose original
    /// answer wins even after the sale ended or its terms changed. The store
    /// looks the key up before it checks anything else.
    pub fn handle_sale(&mut self, result: Result<Option<&Sale>, Failure>) -> Result<(), StepError> {
        let State::LoadingSale = self.state else {
            return Err(self.unexpected("sale"));
        };
        let req = self.req();
        self.state = match result {
            Err(_) => self.unavailable(),
            Ok(None) => State::Done(Outcome::UnknownProduct),
            Ok(Some(_)) if req.idempotency_key.is_some() => State::CheckingRate,
            Ok(Some(sale)) => {
                if let Err(e) = sale.check_quantity(req.quantity) {
                    State::Done(Outcome::Invalid(e))
                } else if !sale.is_open(req.now) {
                    State::Done(Outcome::NotOnSale)
                } else {
                    State::CheckingSoldOut
                }
            }
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::CheckSoldOut`]: `true` if the store
    /// already knows, without asking anyone, that reserving this request
    /// would answer `SoldOut` ([`StockStore::known_sold_out`]).
    ///
    /// A known sell-out ends the attempt in [`Outcome::SoldOut`] before the
    /// rate limiter is asked: after a sell-out every further attempt is
    /// answered locally, with no round trip to the limiter or the store.
    /// Such an attempt is not charged to the buyer's quota; the store sees
    /// nothing of it either, so a bot hammering a sold-out product costs
    /// neither backend anything, and every attempt the store could serve
    /// still goes through the limiter.
    ///
    /// [`StockStore::known_sold_out`]: crate::StockStore::known_sold_out
    pub fn handle_sold_out_checked(&mut self, known_sold_out: bool) -> Result<(), StepError> {
        let State::CheckingSoldOut = self.state else {
            return Err(self.unexpected("sold-out check"));
        };
        self.state = if known_sold_out {
            State::Done(Outcome::SoldOut)
        } else {
            State::CheckingRate
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::CheckRate`].
    pub fn handle_rate_checked(
        &mut self,
        result: Result<RateDecision, Failure>,
    ) -> Result<(), StepError> {
        let State::CheckingRate = self.state else {
            return Err(self.unexpected("rate check"));
        };
        self.state = match result {
            Ok(RateDecision::Allowed) => State::Reserving,
            Ok(RateDecision::Limited { retry_after }) => {
                State::Done(Outcome::RateLimited { retry_after })
            }
            Err(_) => self.config.unavailable(),
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::Reserve`].
    pub fn handle_reserved(
        &mut self,
        result: Result<ReserveOutcome, Failure>,
    ) -> Result<(), StepError> {
        let State::Reserving = self.state else {
            return Err(self.unexpected("reservation"));
        };
        let req = self.req();
        self.state = match result {
            // This request's own reservation (new, or found again after a
            // retry below the store's API). If it no longer owns its units
            // (voided or lapsed meanwhile), the buyer got nothing.
            Ok(ReserveOutcome::Reserved(r)) if r.state.owns_units() => {
                self.config.success(r, false)
            }
            Ok(ReserveOutcome::Reserved(_)) => self.config.unavailable(),
            Ok(ReserveOutcome::Duplicate(existing)) => self.config.replay(req, existing),
            Ok(ReserveOutcome::SoldOut) => State::Done(Outcome::SoldOut),
            Ok(ReserveOutcome::LimitExceeded) => State::Done(Outcome::LimitExceeded),
            Ok(ReserveOutcome::NotOnSale) => State::Done(Outcome::NotOnSale),
            Ok(ReserveOutcome::UnknownProduct) => State::Done(Outcome::UnknownProduct),
            Ok(ReserveOutcome::OverOrderMax { max }) => {
                State::Done(Outcome::Invalid(InvalidInput::new(
                    "quantity",
                    format!(
                        "{} is above this sale's per-order maximum of {max}",
                        req.quantity
                    ),
                )))
            }
            // The reserve may have been applied before the failure: void it
            // (units back, or a tombstone if it never ran), so the 503 that
            // follows leaves the buyer owning nothing.
            Err(_) => State::Voiding,
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::Void`]. The attempt ends `Unavailable`
    /// whatever the answer: on a failure the driver keeps retrying the void
    /// in the background.
    pub fn handle_voided(&mut self, result: Result<VoidOutcome, Failure>) -> Result<(), StepError> {
        if !matches!(self.state, State::Voiding) {
            return Err(self.unexpected("void"));
        }
        let _ = result;
        self.state = self.unavailable();
        Ok(())
    }

    /// Feeds the answer to [`Action::Submit`]: acknowledged → `Purchased`
    /// (or `Replayed`); failed or timed out → `Accepted` (202), since the
    /// order stands in the outbox and the relay delivers it.
    pub fn handle_submitted(&mut self, result: Result<(), Failure>) -> Result<(), StepError> {
        let State::Submitting { .. } = self.state else {
            return Err(self.unexpected("submission"));
        };
        let State::Submitting {
            summary, replay, ..
        } = self.take_state()
        else {
            unreachable!("matched above")
        };
        self.state = State::Done(match (result, replay) {
            (Ok(()), false) => Outcome::Purchased(summary),
            (Ok(()), true) => Outcome::Replayed(summary),
            (Err(_), _) => Outcome::Accepted(summary),
        });
        Ok(())
    }

    fn unavailable(&self) -> State {
        self.config.unavailable()
    }

    /// Moves the state out for a transition, which puts the next one in
    /// its place before it returns (nothing in between can fail, so the
    /// placeholder is never seen).
    fn take_state(&mut self) -> State {
        std::mem::replace(&mut self.state, self.config.unavailable())
    }

    fn unexpected(&self, got: &'static str) -> StepError {
        let expected = match &self.state {
            State::Authenticating => "authentication",
            State::LoadingSale => "sale",
            State::CheckingSoldOut => "sold-out check",
            State::CheckingRate => "rate check",
            State::Reserving => "reservation",
            State::Voiding => "void",
            State::Submitting { .. } => "submission",
            State::Done(_) => "nothing (done)",
        };
        StepError { expected, got }
    }
}

impl MachineConfig {
    fn unavailable(&self) -> State {
        State::Done(Outcome::Unavailable {
            retry_after: self.unavailable_retry_after,
        })
    }

    /// The state after the store reported `r`, owning its units, as this
    /// purchase (or, with `replay`, as the one its key names).
    fn success(&self, r: Reservation, replay: bool) -> State {
        let status = OrderStatus::of(&r);
        match self.hand_off {
            HandOff::AwaitSink { .. } => State::Submitting {
                event: Box::new(OrderEvent::placed(&r)),
                summary: PurchaseSummary {
                    order: r.into_order(),
                    status,
                },
                replay,
            },
            HandOff::Outbox => {
                let summary = PurchaseSummary {
                    order: r.into_order(),
                    status,
                };
                if replay {
                    State::Done(Outcome::Replayed(summary))
                } else {
                    State::Done(Outcome::Purchased(summary))
                }
            }
        }
    }

    /// Where a request goes when its idempotency key names `existing`.
    fn replay(&self, req: &ReserveRequest, existing: Reservation) -> State {
        let same = existing.user == req.user
            && existing.product == req.product
            && existing.quantity == req.quantity;
        if !same {
            return State::Done(Outcome::IdempotencyConflict);
        }
        if existing.state.owns_units() {
            // Held or sold: the original purchase, answered as it was
            // (through the sink again under AwaitSink; it dedupes).
            return self.success(existing, true);
        }
        match existing.state {
            // A voided purchase frees its key, so the store should not
            // name it; if it does (a race with the void), this attempt
            // owns nothing: retry.
            crate::model::ReservationState::Voided => self.unavailable(),
            // Cancelled or expired: the original order, as it stands.
            _ => State::Done(Outcome::Replayed(PurchaseSummary {
                order: existing.to_order(),
                status: OrderStatus::of(&existing),
            })),
        }
    }
}
