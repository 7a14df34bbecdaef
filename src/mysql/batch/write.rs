//! Round trip 2 of a batch: the writes of its plan in one multi-statement
//! query: counts, replay claims, reservations, `placed` events, and last
//! the hot stock row, whose rows matched come back as the one row of
//! `ROW_COUNT()`.

use super::OP;
use super::literal::{ascii, each, hex, num, utf8};
use super::plan::Plan;
use crate::error::{Error, Result};
use crate::model::{OrderEvent, ProductId, ReservationState, UserId};
use crate::mysql::BACKEND;
use crate::mysql::codec::{finished_at, oid_bytes};

/// The writes of `plan` for `product`, tables prefixed `p`.
pub(super) fn statement(p: &str, product: &ProductId, plan: &Plan) -> Result<String> {
    let Plan {
        new,
        added,
        replays,
        ..
    } = plan;
    let mut sql = String::with_capacity(1024 + new.len() * 1400);
    if !added.is_empty() {
        let added: Vec<(&UserId, &u64)> = added.iter().collect();
        sql.push_str(&format!(
            "INSERT INTO {p}user_units (product_id, user_id, units) VALUES "
        ));
        each(&mut sql, &added, |s, (u, n)| {
            s.push('(');
            ascii(s, product.as_str());
            s.push_str(", ");
            utf8(s, u.as_str());
            s.push_str(", ");
            num(s, **n);
            s.push(')');
        });
        sql.push_str(" ON DUPLICATE KEY UPDATE units = units + VALUES(units);\n");
    }
    if !replays.is_empty() {
        sql.push_str(&format!(
            "INSERT INTO {p}replays (order_id, replay_id, lapses_at) VALUES "
        ));
        each(&mut sql, replays, |s, (order, replay, lapse)| {
            s.push('(');
            hex(s, oid_bytes(order));
            s.push_str(", ");
            hex(s, oid_bytes(replay));
            s.push_str(", ");
            num(s, lapse.as_millis());
            s.push(')');
        });
        sql.push_str(" ON DUPLICATE KEY UPDATE replay_id = replay_id;\n");
    }
    if new.is_empty() {
        return Ok(sql);
    }
    sql.push_str(&format!(
        "INSERT INTO {p}reservations (order_id, product_id, user_id, quantity, \
         idempotency_key, idem_slot, created_at, expires_at, awaits_confirmation, \
         state, finished_at) VALUES "
    ));
    each(&mut sql, new, |s, r| {
        s.push('(');
        hex(s, oid_bytes(&r.order_id));
        s.push_str(", ");
        ascii(s, r.product.as_str());
        s.push_str(", ");
        utf8(s, r.user.as_str());
        s.push_str(", ");
        num(s, u64::from(r.quantity.get()));
        for _ in 0..2 {
            s.push_str(", ");
            match &r.idempotency_key {
                Some(k) => utf8(s, k.as_str()),
                None => s.push_str("NULL"),
            }
        }
        s.push_str(", ");
        num(s, r.created_at.as_millis());
        s.push_str(", ");
        num(s, r.expires_at.as_millis());
        s.push_str(if r.awaits_confirmation {
            ", TRUE, "
        } else {
            ", FALSE, "
        });
        ascii(s, r.state.as_str());
        s.push_str(", ");
        match finished_at(r) {
            Some(at) => num(s, at),
            None => s.push_str("NULL"),
        }
        s.push(')');
    });
    sql.push_str(";\n");
    let mut events = Vec::with_capacity(new.len());
    for r in new {
        let event = OrderEvent::placed(r);
        let payload = serde_json::to_string(&event).map_err(|e| Error::backend(BACKEND, OP, e))?;
        events.push((r, event.seq, payload));
    }
    sql.push_str(&format!(
        "INSERT INTO {p}outbox (order_id, seq, product_id, visible_at, payload) VALUES "
    ));
    each(&mut sql, &events, |s, (r, seq, payload)| {
        s.push('(');
        hex(s, oid_bytes(&r.order_id));
        s.push_str(", ");
        num(s, u64::from(*seq));
        s.push_str(", ");
        ascii(s, r.product.as_str());
        s.push_str(", 0, ");
        utf8(s, payload);
        s.push(')');
    });
    sql.push_str(";\n");
    let q: u64 = new.iter().map(|r| u64::from(r.quantity.get())).sum();
    let column = if new[0].state == ReservationState::Held {
        "held"
    } else {
        "committed"
    };
    sql.push_str(&format!(
        "UPDATE {p}sales SET available = available - {q}, {column} = {column} + {q} \
         WHERE product_id = "
    ));
    ascii(&mut sql, product.as_str());
    sql.push_str(&format!(" AND available >= {q};\nSELECT ROW_COUNT()"));
    Ok(sql)
}
