//! One purchase attempt, from validation to outcome.

use crate::model::{
    AuthRejection, Order, OrderId, OrderStatus, Outcome, Principal, PurchaseRequest,
    PurchaseSummary, Receipt, Reservation, ReservationState, Sale, Timestamp,
};
use crate::ports::{
    CommitOutcome, RateDecision, ReleaseOutcome, ReleaseReason, ReserveOutcome, ReserveRequest,
};

use super::{Action, Failure, MachineConfig, StepError};

/// The state machine of one purchase attempt. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct PurchaseMachine {
    config: MachineConfig,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    Authenticating(Box<Pending>),
    CheckingRate(ReserveRequest),
    Reserving(ReserveRequest),
    Submitting {
        reservation: Reservation,
        order: Order,
        replay: bool,
    },
    Committing {
        reservation: Reservation,
        order: Order,
        replay: bool,
    },
    Releasing {
        reservation: ReservationRef,
        /// The outcome once the release has answered.
        then: Outcome,
        /// The purchase to report if the release finds the hold committed
        /// (a commit that failed on the wire but was applied).
        if_committed: Option<PurchaseSummary>,
    },
    Done(Outcome),
}

/// A validated request waiting for its buyer to be authenticated.
#[derive(Debug, Clone)]
struct Pending {
    request: PurchaseRequest,
    order_id: OrderId,
    now: Timestamp,
}

/// What a release needs to name a reservation.
#[derive(Debug, Clone)]
struct ReservationRef {
    product: crate::model::ProductId,
    order_id: OrderId,
}

impl PurchaseMachine {
    /// Starts a purchase of `request` at `now`.
    ///
    /// `sale` is the sale's terms as the driver knows them (`None`: no such
    /// sale). Validation against them is pure and happens here, before any
    /// I/O: a quantity above the per-order maximum ends in
    /// [`Outcome::Invalid`], a closed sale in [`Outcome::NotOnSale`]. The
    /// store re-checks both atomically, so stale terms cannot oversell.
    pub fn new(
        request: PurchaseRequest,
        sale: Option<&Sale>,
        order_id: OrderId,
        now: Timestamp,
        config: MachineConfig,
    ) -> Self {
        let state = match sale {
            None => State::Done(Outcome::UnknownProduct),
            Some(sale) => {
                if let Err(e) = sale.check_quantity(request.quantity) {
                    State::Done(Outcome::Invalid(e))
                } else if !sale.is_open(now) {
                    State::Done(Outcome::NotOnSale)
                } else {
                    State::Authenticating(Box::new(Pending {
                        request,
                        order_id,
                        now,
                    }))
                }
            }
        };
        Self { config, state }
    }

    /// What the driver must do next.
    pub fn poll_action(&self) -> Action<'_> {
        match &self.state {
            State::Authenticating(_) => Action::Authenticate,
            State::CheckingRate(req) => Action::CheckRate {
                user: &req.user,
                cost: self.config.rate_cost,
            },
            State::Reserving(req) => Action::Reserve(req),
            State::Submitting { order, .. } => Action::Submit(order),
            State::Committing { reservation, .. } => Action::Commit {
                product: &reservation.product,
                order_id: &reservation.order_id,
            },
            State::Releasing { reservation, .. } => Action::Release {
                product: &reservation.product,
                order_id: &reservation.order_id,
                reason: ReleaseReason::Aborted,
            },
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
        let State::Authenticating(pending) = &self.state else {
            return Err(self.unexpected("authentication"));
        };
        self.state = match result {
            Ok(Ok(principal)) => {
                let Pending {
                    request,
                    order_id,
                    now,
                } = (**pending).clone();
                State::CheckingRate(ReserveRequest {
                    order_id,
                    product: request.product,
                    user: principal.user,
                    quantity: request.quantity,
                    idempotency_key: request.idempotency_key,
                    now,
                    pending_ttl: self.config.pending_ttl,
                })
            }
            Ok(Err(rejection)) => State::Done(Outcome::Unauthenticated(rejection)),
            Err(_) => self.unavailable(),
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::CheckRate`].
    pub fn handle_rate_checked(
        &mut self,
        result: Result<RateDecision, Failure>,
    ) -> Result<(), StepError> {
        let State::CheckingRate(req) = &self.state else {
            return Err(self.unexpected("rate check"));
        };
        self.state = match result {
            Ok(RateDecision::Allowed) => State::Reserving(req.clone()),
            Ok(RateDecision::Limited { retry_after }) => {
                State::Done(Outcome::RateLimited { retry_after })
            }
            Err(_) => self.unavailable(),
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::Reserve`].
    pub fn handle_reserved(
        &mut self,
        result: Result<ReserveOutcome, Failure>,
    ) -> Result<(), StepError> {
        let State::Reserving(req) = &self.state else {
            return Err(self.unexpected("reservation"));
        };
        self.state = match result {
            Ok(ReserveOutcome::Reserved(reservation)) => State::Submitting {
                order: reservation.to_order(),
                reservation,
                replay: false,
            },
            Ok(ReserveOutcome::Duplicate(existing)) => replay(req, existing),
            Ok(ReserveOutcome::SoldOut) => State::Done(Outcome::SoldOut),
            Ok(ReserveOutcome::LimitExceeded) => State::Done(Outcome::LimitExceeded),
            Ok(ReserveOutcome::NotOnSale) => State::Done(Outcome::NotOnSale),
            Ok(ReserveOutcome::UnknownProduct) => State::Done(Outcome::UnknownProduct),
            Ok(ReserveOutcome::OverOrderMax { max }) => {
                State::Done(Outcome::Invalid(crate::model::InvalidInput::new(
                    "quantity",
                    format!(
                        "{} is above this sale's per-order maximum of {max}",
                        req.quantity
                    ),
                )))
            }
            // The reserve may have been applied before the failure: release
            // the id we asked for (a no-op if nothing was reserved).
            Err(_) => State::Releasing {
                reservation: ReservationRef {
                    product: req.product.clone(),
                    order_id: req.order_id,
                },
                then: self.unavailable_outcome(),
                if_committed: None,
            },
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::Submit`].
    pub fn handle_submitted(&mut self, result: Result<Receipt, Failure>) -> Result<(), StepError> {
        let State::Submitting {
            reservation,
            order,
            replay,
        } = &self.state
        else {
            return Err(self.unexpected("submission"));
        };
        let replay = *replay;
        self.state = match result {
            Ok(_) if reservation.awaits_confirmation => {
                let summary = PurchaseSummary {
                    order: order.clone(),
                    status: OrderStatus::Held {
                        expires_at: reservation.expires_at,
                    },
                };
                State::Done(purchased(summary, replay))
            }
            Ok(_) => State::Committing {
                reservation: reservation.clone(),
                order: order.clone(),
                replay,
            },
            // A replay's reservation belongs to the first request, which may
            // still be in flight: leave it to that request (or its expiry).
            Err(_) if replay => self.unavailable(),
            Err(_) => State::Releasing {
                reservation: ReservationRef {
                    product: reservation.product.clone(),
                    order_id: reservation.order_id,
                },
                then: self.unavailable_outcome(),
                if_committed: None,
            },
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::Commit`].
    pub fn handle_committed(
        &mut self,
        result: Result<CommitOutcome, Failure>,
    ) -> Result<(), StepError> {
        let State::Committing {
            reservation,
            order,
            replay,
        } = &self.state
        else {
            return Err(self.unexpected("commit"));
        };
        let summary = PurchaseSummary {
            order: order.clone(),
            status: OrderStatus::Confirmed,
        };
        self.state = match result {
            Ok(CommitOutcome::Committed | CommitOutcome::AlreadyCommitted) => {
                State::Done(purchased(summary, *replay))
            }
            // The hold lapsed (or vanished) between reserve and commit: its
            // units are already back on sale, so the buyer did not get them.
            Ok(CommitOutcome::NotHeld(_) | CommitOutcome::Unknown) => self.unavailable(),
            Err(_) if *replay => self.unavailable(),
            // Unknown whether the commit applied: release, and let the
            // release's answer tell which it was.
            Err(_) => State::Releasing {
                reservation: ReservationRef {
                    product: reservation.product.clone(),
                    order_id: reservation.order_id,
                },
                then: self.unavailable_outcome(),
                if_committed: Some(summary),
            },
        };
        Ok(())
    }

    /// Feeds the answer to [`Action::Release`]. A failed release still ends
    /// the attempt: the hold's expiry returns the units.
    pub fn handle_released(
        &mut self,
        result: Result<ReleaseOutcome, Failure>,
    ) -> Result<(), StepError> {
        let State::Releasing {
            then, if_committed, ..
        } = &mut self.state
        else {
            return Err(self.unexpected("release"));
        };
        let outcome = match (result, if_committed.take()) {
            (Ok(ReleaseOutcome::AlreadyCommitted), Some(purchased)) => {
                Outcome::Purchased(purchased)
            }
            _ => then.clone(),
        };
        self.state = State::Done(outcome);
        Ok(())
    }

    fn unavailable_outcome(&self) -> Outcome {
        Outcome::Unavailable {
            retry_after: self.config.unavailable_retry_after,
        }
    }

    fn unavailable(&self) -> State {
        State::Done(self.unavailable_outcome())
    }

    fn unexpected(&self, got: &'static str) -> StepError {
        let expected = match &self.state {
            State::Authenticating(_) => "authentication",
            State::CheckingRate(_) => "rate check",
            State::Reserving(_) => "reservation",
            State::Submitting { .. } => "submission",
            State::Committing { .. } => "commit",
            State::Releasing { .. } => "release",
            State::Done(_) => "nothing (done)",
        };
        StepError { expected, got }
    }
}

/// Where a request goes when its idempotency key (or order id) already
/// names `existing`.
fn replay(req: &ReserveRequest, existing: Reservation) -> State {
    let same = existing.user == req.user
        && existing.product == req.product
        && existing.quantity == req.quantity;
    if !same {
        return State::Done(Outcome::IdempotencyConflict);
    }
    match existing.state {
        // Still held: the first request may be in flight, or may have died
        // before its order was durable. Finish its work idempotently (the
        // sink dedupes by order id, commit is idempotent) so that a 200
        // always means the order reached the sink.
        ReservationState::Held => State::Submitting {
            order: existing.to_order(),
            reservation: existing,
            replay: true,
        },
        // Committed (so its order was acked), cancelled or expired: answer
        // as it stands.
        _ => State::Done(Outcome::Replayed(PurchaseSummary {
            order: existing.to_order(),
            status: OrderStatus::of(&existing),
        })),
    }
}

fn purchased(summary: PurchaseSummary, replay: bool) -> Outcome {
    if replay {
        Outcome::Replayed(summary)
    } else {
        Outcome::Purchased(summary)
    }
}
