//! Every statement of the stock store, with the table prefix filled in
//! once, and the placeholder lists of the statements that take many rows.

/// The columns every reservation read selects, in [`Sql::reservation`]'s
/// order.
pub(super) const RES_COLS: &str = "order_id, product_id, user_id, quantity, idempotency_key, \
     created_at, expires_at, awaits_confirmation, state, void_waiting";

/// The columns of a sale's terms and levels.
pub(super) const SALE_COLS: &str = "product_id, total, available, held, committed, per_user_limit, \
     per_order_max, starts_at, ends_at, hold_ns";

/// Every statement, with the table prefix filled in (built once).
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) sale: String,
    pub(super) sale_lock: String,
    pub(super) sale_insert: String,
    pub(super) sale_update: String,
    pub(super) levels: String,
    pub(super) take_held: String,
    pub(super) take_sold: String,
    pub(super) give_back_held: String,
    pub(super) give_back_sold: String,
    pub(super) held_to_sold: String,
    pub(super) user_touch: String,
    pub(super) user_add: String,
    pub(super) user_sub: String,
    pub(super) res: String,
    pub(super) res_lock: String,
    pub(super) res_of_product_lock: String,
    pub(super) res_by_key_lock: String,
    pub(super) res_insert: String,
    pub(super) res_state: String,
    pub(super) res_void: String,
    pub(super) res_void_waiting: String,
    pub(super) res_due: String,
    pub(super) res_purgeable: String,
    pub(super) res_purge: String,
    pub(super) replay_of: String,
    pub(super) replay_add: String,
    pub(super) replay_remove: String,
    pub(super) replay_count: String,
    pub(super) replay_clear: String,
    pub(super) replay_lapsed: String,
    pub(super) outbox_insert: String,
    pub(super) outbox_candidates: String,
    pub(super) outbox_lock_head: String,
    pub(super) outbox_lock_tail: String,
    pub(super) outbox_placed_of: String,
    pub(super) outbox_lease: String,
    pub(super) outbox_delete: String,
}

impl Sql {
    pub(super) fn new(p: &str) -> Self {
        let q = |s: &str| s.replace("{p}", p);
        Self {
            sale: q(&format!(
                "SELECT {SALE_COLS} FROM {{p}}sales WHERE product_id = ?"
            )),
            sale_lock: q("SELECT held, committed FROM {p}sales WHERE product_id = ? FOR UPDATE"),
            sale_insert: q(
                "INSERT INTO {p}sales (product_id, total, available, held, committed, \
                 per_user_limit, per_order_max, starts_at, ends_at, hold_ns) \
                 VALUES (?, ?, ?, 0, 0, ?, ?, ?, ?, ?)",
            ),
            sale_update: q(
                "UPDATE {p}sales SET total = ?, available = ? - held - committed, \
                 per_user_limit = ?, per_order_max = ?, starts_at = ?, ends_at = ?, hold_ns = ? \
                 WHERE product_id = ?",
            ),
            levels: q(
                "SELECT total, available, held, committed FROM {p}sales WHERE product_id = ?",
            ),
            take_held: q(
                "UPDATE {p}sales SET available = available - ?, held = held + ? \
                 WHERE product_id = ? AND available >= ?",
            ),
            take_sold: q(
                "UPDATE {p}sales SET available = available - ?, committed = committed + ? \
                 WHERE product_id = ? AND available >= ?",
            ),
            give_back_held: q(
                "UPDATE {p}sales SET available = available + ?, held = held - ? \
                 WHERE product_id = ?",
            ),
            give_back_sold: q("UPDATE {p}sales SET available = available + ?, \
                 committed = committed - ? WHERE product_id = ?"),
            held_to_sold: q(
                "UPDATE {p}sales SET held = held - ?, committed = committed + ? \
                 WHERE product_id = ?",
            ),
            user_touch: q(
                "INSERT INTO {p}user_units (product_id, user_id, units) VALUES (?, ?, 0) \
                 ON DUPLICATE KEY UPDATE units = units",
            ),
            user_add: q("UPDATE {p}user_units SET units = units + ? \
                 WHERE product_id = ? AND user_id = ? AND units + ? <= ?"),
            user_sub: q("UPDATE {p}user_units SET units = units - ? \
                 WHERE product_id = ? AND user_id = ? AND units >= ?"),
            res: q(&format!(
                "SELECT {RES_COLS} FROM {{p}}reservations WHERE order_id = ?"
            )),
            res_lock: q(&format!(
                "SELECT {RES_COLS} FROM {{p}}reservations WHERE order_id = ? FOR UPDATE"
            )),
            res_of_product_lock: q(&format!(
                "SELECT {RES_COLS} FROM {{p}}reservations WHERE order_id = ? AND product_id = ? \
                 FOR UPDATE"
            )),
            res_by_key_lock: q(&format!(
                "SELECT {RES_COLS} FROM {{p}}reservations \
                 WHERE product_id = ? AND user_id = ? AND idem_slot = ? FOR UPDATE"
            )),
            res_insert: q(
                "INSERT INTO {p}reservations (order_id, product_id, user_id, quantity, \
                 idempotency_key, idem_slot, created_at, expires_at, awaits_confirmation, state, \
                 finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ),
            res_state: q(
                "UPDATE {p}reservations SET state = ?, finished_at = ? WHERE order_id = ?",
            ),
            res_void: q(
                "UPDATE {p}reservations SET state = 'voided', idem_slot = NULL, \
                 void_waiting = FALSE, finished_at = ? WHERE order_id = ?",
            ),
            res_void_waiting: q(
                "UPDATE {p}reservations SET void_waiting = TRUE WHERE order_id = ?",
            ),
            res_due: q("SELECT order_id FROM {p}reservations \
                 WHERE state = 'held' AND expires_at <= ? ORDER BY expires_at, order_id LIMIT ?"),
            // Finished before the cutoff, with no event left to deliver.
            res_purgeable: q("SELECT r.order_id FROM {p}reservations r \
                 WHERE r.finished_at <= ? AND NOT EXISTS (\
                   SELECT 1 FROM {p}outbox o WHERE o.order_id = r.order_id) \
                 ORDER BY r.finished_at LIMIT ? FOR UPDATE SKIP LOCKED"),
            res_purge: q("DELETE FROM {p}reservations WHERE order_id IN "),
            replay_of: q("DELETE FROM {p}replays WHERE order_id IN "),
            replay_add: q(
                "INSERT INTO {p}replays (order_id, replay_id, lapses_at) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE replay_id = replay_id",
            ),
            // A lapsed claim no longer counts, nor is it dropped by a void.
            replay_remove: q("DELETE FROM {p}replays \
                 WHERE order_id = ? AND replay_id = ? AND lapses_at > ?"),
            replay_count: q("SELECT COUNT(*) FROM {p}replays WHERE order_id = ? AND lapses_at > ?"),
            replay_clear: q("DELETE FROM {p}replays WHERE order_id = ?"),
            replay_lapsed: q("DELETE FROM {p}replays WHERE lapses_at <= ? LIMIT ?"),
            outbox_insert: q(
                "INSERT INTO {p}outbox (order_id, seq, product_id, visible_at, payload) \
                 VALUES (?, ?, ?, 0, ?)",
            ),
            outbox_candidates: q("SELECT o.order_id, o.seq FROM {p}outbox o \
                 WHERE o.visible_at <= ? AND (o.seq = 1 OR NOT EXISTS (\
                   SELECT 1 FROM {p}outbox f \
                   WHERE f.order_id = o.order_id AND f.seq = 1 AND f.visible_at > ?)) \
                 ORDER BY o.order_id, o.seq LIMIT ?"),
            outbox_lock_head: q("SELECT order_id, seq, payload FROM {p}outbox \
                 WHERE (order_id, seq) IN "),
            outbox_lock_tail: " AND visible_at <= ? ORDER BY order_id, seq LIMIT ? \
                 FOR UPDATE SKIP LOCKED"
                .to_owned(),
            outbox_placed_of: q("SELECT order_id FROM {p}outbox WHERE seq = 1 AND order_id IN "),
            outbox_lease: q("UPDATE {p}outbox SET visible_at = ? WHERE (order_id, seq) IN "),
            outbox_delete: q("DELETE FROM {p}outbox WHERE (order_id, seq) IN "),
        }
    }
}

/// `(?, ?), (?, ?), …` for `n` pairs.
pub(super) fn pairs(n: usize) -> String {
    let mut s = String::with_capacity(n * 8 + 2);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str("(?, ?)");
    }
    s.push(')');
    s
}

/// `(?, ?, …)` for `n` values.
pub(super) fn list(n: usize) -> String {
    let mut s = String::from("(");
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s.push(')');
    s
}
