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
//! it always reaches `Done` in at most seven actions; it submits only after
//! a successful reserve; after a failed submit (or a failed or timed-out
//! reserve) it releases; it never commits a released hold; `Purchased`
//! implies the sink acknowledged the order.

mod action;
mod purchase;
#[cfg(test)]
mod tests;

pub use action::{Action, Failure, MachineConfig, StepError};
pub use purchase::PurchaseMachine;
