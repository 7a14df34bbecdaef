//! The purchase state machine: pure, deterministic, sans-IO.
//!
//! A [`PurchaseMachine`] is created with the request, a fresh order id and
//! `now`. The driver then loops: it asks [`PurchaseMachine::poll_action`]
//! what to do, does it against a port, and feeds the result back with the
//! matching `handle_*` method, until the action is [`Action::Done`]. The
//! machine never awaits, never reads a clock and never touches a backend,
//! so every path is testable without a runtime.
//!
//! ```text
//! Authenticate ─▶ LoadSale ─▶ validate ─▶ CheckSoldOut ─▶ CheckRate ─▶ Reserve ──────────▶ Done
//!      │              │           │            │              │          │   └─▶ Submit ─▶ Done   (HandOff::AwaitSink)
//!      ▼              ▼           ▼            ▼ (known)      ▼          ▼ (lost answer)
//!    Done           Done        Done         Done           Done       Void ─────────────▶ Done (Unavailable)
//! ```
//!
//! Credentials come first: nothing about the product is looked up (in the
//! driver's cache or the store) for a client that is not authenticated, so
//! a bot sending random product ids without a valid token costs no store
//! round trip. Validation against the sale's terms (product known, quantity
//! within the per-order maximum, sale window) is pure and happens right
//! after the lookup, before the rate limiter or the store's reserve is
//! asked anything. Then the store is asked, locally, whether it already
//! knows the product sold out for this quantity (a
//! [`SoldOutCache`](crate::SoldOutCache) does, for a short while after a
//! sell-out): if so the attempt ends `SoldOut` without a round trip to the
//! limiter or the store. A request with an idempotency key skips that
//! question, like the validation.
//!
//! A reservation the store accepted IS the order: the store wrote its
//! `placed` event to its outbox in the same atomic step, and a relay hands
//! it to the sink. There is no commit after a submit and no release after
//! a successful reserve, so a slow or failed sink never costs the buyer the
//! units, and never doubles an order.
//!
//! Guarantees (checked by property tests over arbitrary port results):
//! it reaches `Done` within five port calls, the sale lookup counted (the
//! driver may answer it from a cache), plus the local sold-out question;
//! a known sell-out is never charged to the rate limiter nor sent to the
//! store; it never looks the sale up for an
//! unauthenticated request; every `Purchased`, `Accepted`
//! or `Replayed` names a reservation the store reported as owning its units
//! (or, for a replay, the original as it stands); an `Unavailable` after a
//! reserve was sent is always preceded by a `Void` of that very request; it
//! never voids a reservation another request made; a request carrying an
//! idempotency key reaches the store even when local validation would
//! refuse it, so that a replay of a finished purchase wins.

mod action;
mod purchase;
#[cfg(test)]
mod tests;

pub use action::{Action, Failure, HandOff, MachineConfig, StepError};
pub use purchase::PurchaseMachine;
