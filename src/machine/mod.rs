//! The purchase state machine: pure, deterministic, sans-IO.
//!
//! A [`PurchaseMachine`] is created with the request, the sale's terms (if
//! known), a fresh order id and `now`. The driver then loops: it asks
//! [`PurchaseMachine::poll_action`] what to do, does it against a port, and
//! feeds the result back with the matching `handle_*` method, until the
//! action is [`Action::Done`]. The machine never awaits, never reads a
//! clock and never touches a backend, so every path is testable without a
//! runtime.
//!
//! ```text
//! validate ─▶ Authenticate ─▶ CheckRate ─▶ Reserve ─▶ Submit ─▶ Commit ─▶ Done
//!    │             │              │           │          │         │
//!    ▼             ▼              ▼           ▼          ▼         ▼
//!  Done          Done           Done   (error) Release  Release  Release ─▶ Done
//! ```
//!
//! Guarantees (checked by property tests over arbitrary port results):
//! it always reaches `Done` within six port calls; it submits only an order
//! whose reservation the store holds for this very request (just reserved,
//! or found held under the same idempotency key); after a failed submit (or
//! a failed or timed-out reserve) of its own reservation it releases it; it
//! never releases a reservation made by another request; it never commits
//! after a release; `Purchased` and `Replayed` imply the order reached the
//! sink.

mod action;
mod purchase;
#[cfg(test)]
mod tests;

pub use action::{Action, Failure, MachineConfig, StepError};
pub use purchase::PurchaseMachine;
