//! Voiding a reserve whose answer was lost, and the void of a replay.

use sqlx::MySqlConnection;

use super::Db;
use crate::model::{EventType, IdempotencyKey, ReservationState, Timestamp};
use crate::mysql::codec::{oid_bytes, reservation};
use crate::mysql::retry::{Fail, Tx, is_duplicate};
use crate::{ReserveRequest, VoidOutcome};

impl Db {
    pub(in crate::mysql) async fn void_once(
        &self,
        req: &ReserveRequest,
        now: Timestamp,
    ) -> Tx<VoidOutcome> {
        const OP: &str = "void";
        let s = &self.sql;
        let mut tx = self.pool.begin().await?;
        let Some((r, _)) = self.lock_reservation(&mut tx, OP, &req.order_id).await? else {
            // The reserve never ran (or not yet), or it was a replay: a
            // tombstone makes a late one find this request voided.
            let sale = sqlx::query(&s.levels)
                .bind(req.product.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if sale.is_none() {
                // No such sale: nothing was, or ever will be, reserved.
                return Ok(VoidOutcome::NothingReserved);
            }
            let t = req.to_tombstone();
            let key = req.idempotency_key.as_ref().map(IdempotencyKey::as_str);
            let inserted = sqlx::query(&s.res_insert)
                .bind(oid_bytes(&req.order_id))
                .bind(req.product.as_str())
                .bind(req.user.as_str())
                .bind(req.quantity.get())
                .bind(key)
                .bind(None::<&str>)
                .bind(t.created_at.as_millis())
                .bind(t.expires_at.as_millis())
                .bind(t.awaits_confirmation)
                .bind(t.state.as_str())
                .bind(now.as_millis())
                .execute(&mut *tx)
                .await;
            match inserted {
                Ok(_) => {}
                // The reserve ran meanwhile: look again.
                Err(e) if is_duplicate(&e) => return Err(Fail::RaceLost),
                Err(e) => return Err(e.into()),
            }
            self.replay_failed(&mut tx, req, now).await?;
            tx.commit().await?;
            return Ok(VoidOutcome::NothingReserved);
        };
        let outcome = match r.state {
            ReservationState::Voided => VoidOutcome::AlreadyVoided,
            s @ (ReservationState::Cancelled | ReservationState::Expired) => {
                VoidOutcome::AlreadyClosed(s)
            }
            // A confirmed hold: answered by its buyer's confirm; closed.
            ReservationState::Committed if r.awaits_confirmation => {
                VoidOutcome::AlreadyClosed(ReservationState::Committed)
            }
            ReservationState::Held | ReservationState::Committed => {
                let replays: i64 = sqlx::query_scalar(&s.replay_count)
                    .bind(oid_bytes(&r.order_id))
                    .bind(now.as_millis())
                    .fetch_one(&mut *tx)
                    .await?;
                if replays > 0 {
                    sqlx::query(&s.res_void_waiting)
                        .bind(oid_bytes(&r.order_id))
                        .execute(&mut *tx)
                        .await?;
                    VoidOutcome::Kept
                } else {
                    let state = ReservationState::Voided;
                    self.return_units(&mut tx, OP, &r, state, EventType::Voided, now)
                        .await?;
                    VoidOutcome::Voided
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// `req` was a replay whose answer was lost: it no longer holds the
    /// order its key names, which is undone if nobody else may hold it and
    /// its own request's void is waiting.
    pub(in crate::mysql) async fn replay_failed(
        &self,
        tx: &mut MySqlConnection,
        req: &ReserveRequest,
        now: Timestamp,
    ) -> Tx<()> {
        const OP: &str = "void";
        let s = &self.sql;
        let Some(key) = &req.idempotency_key else {
            return Ok(());
        };
        let row = sqlx::query(&s.res_by_key_lock)
            .bind(req.product.as_str())
            .bind(req.user.as_str())
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(());
        };
        let (prior, void_waiting) = reservation(OP, &row)?;
        let removed = sqlx::query(&s.replay_remove)
            .bind(oid_bytes(&prior.order_id))
            .bind(oid_bytes(&req.order_id))
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
        if removed.rows_affected() == 0 || !void_waiting {
            return Ok(());
        }
        let left: i64 = sqlx::query_scalar(&s.replay_count)
            .bind(oid_bytes(&prior.order_id))
            .bind(now.as_millis())
            .fetch_one(&mut *tx)
            .await?;
        // Still this request's to undo: held, or sold by a sale without
        // holds (a confirmed hold was answered by its buyer's confirm).
        let live = prior.state == ReservationState::Held
            || (prior.state == ReservationState::Committed && !prior.awaits_confirmation);
        if left == 0 && live {
            let state = ReservationState::Voided;
            self.return_units(tx, OP, &prior, state, EventType::Voided, now)
                .await?;
        }
        Ok(())
    }
}
