//! The admission checks every Rust stock store makes before it reserves.
//! reserve.lua makes the same checks in the same order; the conformance
//! suite holds the two to one answer.

use super::{ReserveOutcome, ReserveRequest, Sale};

/// Whether `req` may reserve from `sale`, given the units `available` and
/// the units its buyer already owns (held + committed) in this sale.
///
/// The checks run in the order the answers take precedence: the sale
/// window, the per-order maximum, the stock, then the per-user cap. The
/// idempotency key and the order id are the caller's to look up first.
pub(crate) fn admit(
    sale: &Sale,
    available: u64,
    owned: u64,
    req: &ReserveRequest,
) -> Result<(), ReserveOutcome> {
    let q = u64::from(req.quantity.get());
    if !sale.is_open(req.now) {
        return Err(ReserveOutcome::NotOnSale);
    }
    if req.quantity.get() > sale.per_order_max() {
        let max = sale.per_order_max();
        return Err(ReserveOutcome::OverOrderMax { max });
    }
    if available < q {
        return Err(ReserveOutcome::SoldOut);
    }
    if owned.saturating_add(q) > u64::from(sale.per_user_limit()) {
        return Err(ReserveOutcome::LimitExceeded);
    }
    Ok(())
}
