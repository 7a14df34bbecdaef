//! Round trip 1 of a batch: `START TRANSACTION` and every read its plan
//! needs, in one multi-statement query.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::mysql::MySqlRow;

use super::OP;
use super::literal::{ascii, each, hex, utf8};
use crate::ReserveRequest;
use crate::model::{IdempotencyKey, OrderId, Reservation, Sale, StockLevels, UserId};
use crate::mysql::codec::{oid_bytes, reservation, sale_row, user};
use crate::mysql::retry::Tx;
use crate::mysql::sql::{RES_COLS, SALE_COLS};

/// What the reads found.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Reservations standing under the requests' own order ids (retries
    /// below the port, void tombstones).
    pub(super) own: HashMap<OrderId, Reservation>,
    /// Reservations the requests' idempotency keys name, by (buyer, key).
    pub(super) by_key: HashMap<(UserId, String), Reservation>,
    /// Each buyer's units of the product so far (their rows locked).
    pub(super) units: HashMap<UserId, u64>,
    /// The sale's terms and levels, if there is a sale.
    pub(super) sale: Option<(Sale, StockLevels)>,
}

/// The reads, in this order: reservations already standing under the
/// requests' order ids; those the requests' idempotency keys name, locked;
/// every buyer's row, created if need be and locked (in one order, so
/// batches never deadlock on them) with its count; and last the sale,
/// without a lock unless `lock_sale` (a previous attempt lost the race for
/// the last units: see the module docs).
pub(super) fn statement(p: &str, reqs: &[ReserveRequest], lock_sale: bool) -> String {
    let product = &reqs[0].product;
    let mut ids: Vec<&OrderId> = reqs.iter().map(|r| &r.order_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut keys: Vec<(&UserId, &IdempotencyKey)> = reqs
        .iter()
        .filter_map(|r| r.idempotency_key.as_ref().map(|k| (&r.user, k)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut users: Vec<&UserId> = reqs.iter().map(|r| &r.user).collect();
    users.sort_unstable();
    users.dedup();

    let mut sql = String::with_capacity(1024 + reqs.len() * 160);
    sql.push_str("START TRANSACTION;\n");
    sql.push_str(&format!(
        "SELECT {RES_COLS}, 1 AS src FROM {p}reservations WHERE order_id IN ("
    ));
    each(&mut sql, &ids, |s, id| hex(s, oid_bytes(id)));
    sql.push_str(");\n");
    if !keys.is_empty() {
        sql.push_str(&format!(
            "SELECT {RES_COLS}, 2 AS src FROM {p}reservations WHERE product_id = "
        ));
        ascii(&mut sql, product.as_str());
        sql.push_str(" AND (user_id, idem_slot) IN (");
        each(&mut sql, &keys, |s, (u, k)| {
            s.push('(');
            utf8(s, u.as_str());
            s.push_str(", ");
            utf8(s, k.as_str());
            s.push(')');
        });
        sql.push_str(") FOR UPDATE;\n");
    }
    sql.push_str(&format!(
        "INSERT INTO {p}user_units (product_id, user_id, units) VALUES "
    ));
    each(&mut sql, &users, |s, u| {
        s.push('(');
        ascii(s, product.as_str());
        s.push_str(", ");
        utf8(s, u.as_str());
        s.push_str(", 0)");
    });
    sql.push_str(" ON DUPLICATE KEY UPDATE units = units;\n");
    sql.push_str(&format!(
        "SELECT user_id, units FROM {p}user_units WHERE product_id = "
    ));
    ascii(&mut sql, product.as_str());
    sql.push_str(" AND user_id IN (");
    each(&mut sql, &users, |s, u| utf8(s, u.as_str()));
    sql.push_str(") FOR UPDATE;\n");
    sql.push_str(&format!(
        "SELECT {SALE_COLS} FROM {p}sales WHERE product_id = "
    ));
    ascii(&mut sql, product.as_str());
    if lock_sale {
        sql.push_str(" FOR UPDATE");
    }
    sql
}

impl Found {
    /// The rows of [`statement`], told apart by their width.
    pub(super) fn from_rows(rows: &[MySqlRow]) -> Tx<Self> {
        let mut found = Self::default();
        for row in rows {
            match row.columns().len() {
                // A reservation, tagged with the statement that found it.
                11 => {
                    let src: i64 = row.try_get(10)?;
                    let (r, _) = reservation(OP, row)?;
                    if src == 1 {
                        found.own.insert(r.order_id, r);
                    } else if let Some(k) = &r.idempotency_key {
                        found
                            .by_key
                            .insert((r.user.clone(), k.as_str().to_owned()), r);
                    }
                }
                2 => {
                    let n: u64 = row.try_get(1)?;
                    found.units.insert(user(OP, row, 0)?, n);
                }
                _ => found.sale = Some(sale_row(OP, row)?),
            }
        }
        Ok(found)
    }
}
