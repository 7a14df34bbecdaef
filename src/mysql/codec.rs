//! How the backend's values are written to and read from rows: order ids
//! as 16 bytes, states as their names, text columns as checked UTF-8, and
//! the reservation and sale rows of the stock store. The order table's rows
//! use the same pieces.

use std::time::Duration;

use sqlx::Row;
use sqlx::mysql::MySqlRow;

use super::bad_reply;
use crate::error::Result;
use crate::model::{
    IdempotencyKey, OrderId, ProductId, Quantity, Reservation, ReservationState, Sale, StockLevels,
    Timestamp, UserId,
};

/// An order id as its column holds it: the UUID's 16 bytes.
pub(super) fn oid_bytes(order: &OrderId) -> &[u8] {
    order.as_uuid().as_bytes().as_slice()
}

/// An order id column.
/// When a new reservation finished, for its `finished_at` column: at its
/// creation if it was sold at once (or is a tombstone), else not yet.
pub(super) fn finished_at(r: &Reservation) -> Option<u64> {
    (r.state != ReservationState::Held).then(|| r.created_at.as_millis())
}

pub(super) fn parse_oid(op: &'static str, raw: &[u8]) -> Result<OrderId> {
    uuid::Uuid::from_slice(raw)
        .map(OrderId::from_uuid)
        .map_err(|e| bad_reply(op, e))
}

fn parse_state(op: &'static str, s: &str) -> Result<ReservationState> {
    Ok(match s {
        "held" => ReservationState::Held,
        "committed" => ReservationState::Committed,
        "cancelled" => ReservationState::Cancelled,
        "expired" => ReservationState::Expired,
        "voided" => ReservationState::Voided,
        other => return Err(bad_reply(op, format!("unknown state {other:?}"))),
    })
}

/// A text column. Binary collations make the server flag text columns as
/// binary, so they are read as bytes and checked to be UTF-8.
pub(super) fn text(op: &'static str, row: &MySqlRow, i: usize) -> Result<String> {
    let raw: Vec<u8> = row.try_get(i).map_err(|e| bad_reply(op, e))?;
    String::from_utf8(raw).map_err(|e| bad_reply(op, e))
}

/// A nullable text column (see [`text`]).
pub(super) fn opt_text(op: &'static str, row: &MySqlRow, i: usize) -> Result<Option<String>> {
    let raw: Option<Vec<u8>> = row.try_get(i).map_err(|e| bad_reply(op, e))?;
    raw.map(|r| String::from_utf8(r).map_err(|e| bad_reply(op, e)))
        .transpose()
}

/// A user id column.
pub(super) fn user(op: &'static str, row: &MySqlRow, i: usize) -> Result<UserId> {
    UserId::new(text(op, row, i)?).map_err(|e| bad_reply(op, e))
}

/// A product id column.
pub(super) fn product(op: &'static str, row: &MySqlRow, i: usize) -> Result<ProductId> {
    ProductId::new(text(op, row, i)?).map_err(|e| bad_reply(op, e))
}

/// A quantity column.
pub(super) fn quantity(op: &'static str, row: &MySqlRow, i: usize) -> Result<Quantity> {
    let q: u32 = row.try_get(i).map_err(|e| bad_reply(op, e))?;
    Quantity::new(i64::from(q)).map_err(|e| bad_reply(op, e))
}

/// A nullable idempotency key column.
pub(super) fn idempotency_key(
    op: &'static str,
    row: &MySqlRow,
    i: usize,
) -> Result<Option<IdempotencyKey>> {
    opt_text(op, row, i)?
        .map(IdempotencyKey::new)
        .transpose()
        .map_err(|e| bad_reply(op, e))
}

/// A reservation row, selected as [`RES_COLS`](super::sql::RES_COLS), and
/// whether its own request's void is waiting for its replays.
pub(super) fn reservation(op: &'static str, row: &MySqlRow) -> Result<(Reservation, bool)> {
    let get = |e: sqlx::Error| bad_reply(op, e);
    let oid: Vec<u8> = row.try_get(0).map_err(get)?;
    let created_at: u64 = row.try_get(5).map_err(get)?;
    let expires_at: u64 = row.try_get(6).map_err(get)?;
    let awaits: bool = row.try_get(7).map_err(get)?;
    let void_waiting: bool = row.try_get(9).map_err(get)?;
    let r = Reservation {
        order_id: parse_oid(op, &oid)?,
        product: product(op, row, 1)?,
        user: user(op, row, 2)?,
        quantity: quantity(op, row, 3)?,
        idempotency_key: idempotency_key(op, row, 4)?,
        created_at: Timestamp::from_millis(created_at),
        expires_at: Timestamp::from_millis(expires_at),
        awaits_confirmation: awaits,
        state: parse_state(op, &text(op, row, 8)?)?,
    };
    Ok((r, void_waiting))
}

/// A sale's terms and levels, selected as
/// [`SALE_COLS`](super::sql::SALE_COLS).
pub(super) fn sale_row(op: &'static str, row: &MySqlRow) -> Result<(Sale, StockLevels)> {
    let get = |e: sqlx::Error| bad_reply(op, e);
    let total: u64 = row.try_get(1).map_err(get)?;
    let available: u64 = row.try_get(2).map_err(get)?;
    let held: u64 = row.try_get(3).map_err(get)?;
    let committed: u64 = row.try_get(4).map_err(get)?;
    let limit: u64 = row.try_get(5).map_err(get)?;
    let omax: u64 = row.try_get(6).map_err(get)?;
    let starts_at: Option<u64> = row.try_get(7).map_err(get)?;
    let ends_at: Option<u64> = row.try_get(8).map_err(get)?;
    let hold_ns: Option<u64> = row.try_get(9).map_err(get)?;
    let n32 = |n: u64| u32::try_from(n).map_err(|e| bad_reply(op, e));
    let mut b = Sale::builder(product(op, row, 0)?, n32(total)?)
        .per_user_limit(n32(limit)?)
        .per_order_max(n32(omax)?);
    if let Some(t) = starts_at {
        b = b.starts_at(Timestamp::from_millis(t));
    }
    if let Some(t) = ends_at {
        b = b.ends_at(Timestamp::from_millis(t));
    }
    if let Some(ns) = hold_ns {
        b = b.hold(Duration::from_nanos(ns));
    }
    let sale = b.build().map_err(|e| bad_reply(op, e))?;
    let levels = StockLevels {
        total,
        available,
        held,
        committed,
    };
    Ok((sale, levels))
}
