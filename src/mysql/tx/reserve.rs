//! The reserve transaction: the key first, then the checks of
//! [`admit`](crate::model::admit), then the writes, the hot stock row last.

use super::Db;
use crate::model::{IdempotencyKey, OrderEvent, ReservationState, admit};
use crate::mysql::codec::{finished_at, oid_bytes, reservation, sale_row};
use crate::mysql::retry::{Fail, Tx, is_duplicate};
use crate::{ReserveOutcome, ReserveRequest};

impl Db {
    pub(in crate::mysql) async fn reserve_once(&self, req: &ReserveRequest) -> Tx<ReserveOutcome> {
        const OP: &str = "reserve";
        let s = &self.sql;
        let oid = oid_bytes(&req.order_id);
        let mut tx = self.pool.begin().await?;
        // The key first: a replay wins over every other check.
        if let Some(key) = &req.idempotency_key {
            let row = sqlx::query(&s.res_by_key_lock)
                .bind(req.product.as_str())
                .bind(req.user.as_str())
                .bind(key.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = row {
                let (found, _) = reservation(OP, &row)?;
                if found.order_id == req.order_id {
                    tx.commit().await?;
                    return Ok(ReserveOutcome::Reserved(found));
                }
                if let Some(own) = self.own_reservation(&mut tx, OP, &req.order_id).await? {
                    tx.commit().await?;
                    return Ok(ReserveOutcome::Reserved(own));
                }
                if found.state.owns_units() && found.quantity == req.quantity {
                    // This replay will answer 2xx with the order: it must
                    // stand unless this replay's answer is lost too.
                    sqlx::query(&s.replay_add)
                        .bind(oid_bytes(&found.order_id))
                        .bind(oid)
                        .bind(req.now.saturating_add(self.replay_claim_ttl).as_millis())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                return Ok(ReserveOutcome::Duplicate(found));
            }
        }
        let row = sqlx::query(&s.sale)
            .bind(req.product.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return self.refuse(tx, req, ReserveOutcome::UnknownProduct).await;
        };
        let (sale, levels) = sale_row(OP, &row)?;
        // The buyer's units are checked below, under the row's lock.
        if let Err(refusal) = admit(&sale, levels.available, 0, req) {
            return self.refuse(tx, req, refusal).await;
        }
        let q = u64::from(req.quantity.get());
        let limit = u64::from(sale.per_user_limit());
        // The per-user cap: make sure the (product, buyer) row exists (and
        // lock it), then a guarded update.
        sqlx::query(&s.user_touch)
            .bind(req.product.as_str())
            .bind(req.user.as_str())
            .execute(&mut *tx)
            .await?;
        let added = sqlx::query(&s.user_add)
            .bind(q)
            .bind(req.product.as_str())
            .bind(req.user.as_str())
            .bind(q)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
        if added.rows_affected() == 0 {
            return self.refuse(tx, req, ReserveOutcome::LimitExceeded).await;
        }
        let r = req.to_reservation(sale.hold());
        let key = req.idempotency_key.as_ref().map(IdempotencyKey::as_str);
        let inserted = sqlx::query(&s.res_insert)
            .bind(oid)
            .bind(req.product.as_str())
            .bind(req.user.as_str())
            .bind(req.quantity.get())
            .bind(key)
            .bind(key)
            .bind(r.created_at.as_millis())
            .bind(r.expires_at.as_millis())
            .bind(r.awaits_confirmation)
            .bind(r.state.as_str())
            .bind(finished_at(&r))
            .execute(&mut *tx)
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => {
                // This order id already stands (a retry below the port), or
                // a concurrent request took the key: look again.
                tx.rollback().await?;
                let mut conn = self.pool.acquire().await?;
                return match self.own_reservation(&mut conn, OP, &req.order_id).await? {
                    Some(own) => Ok(ReserveOutcome::Reserved(own)),
                    None => Err(Fail::RaceLost),
                };
            }
            Err(e) => return Err(e.into()),
        }
        self.append(&mut tx, OP, &OrderEvent::placed(&r)).await?;
        // The hot row, last.
        let take = if r.state == ReservationState::Held {
            &s.take_held
        } else {
            &s.take_sold
        };
        let taken = sqlx::query(take)
            .bind(q)
            .bind(q)
            .bind(req.product.as_str())
            .bind(q)
            .execute(&mut *tx)
            .await?;
        if taken.rows_affected() == 0 {
            // The insert above proved this order id new: no retry to find.
            tx.rollback().await?;
            return Ok(ReserveOutcome::SoldOut);
        }
        tx.commit().await?;
        Ok(ReserveOutcome::Reserved(r))
    }
}
