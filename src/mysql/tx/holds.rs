//! Confirming, cancelling and expiring holds.

use super::Db;
use crate::model::{
    EventType, OrderEvent, OrderId, ProductId, Reservation, ReservationState, Timestamp,
};
use crate::mysql::retry::Tx;
use crate::{CancelOutcome, ConfirmOutcome};

impl Db {
    pub(in crate::mysql) async fn confirm_once(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Tx<ConfirmOutcome> {
        const OP: &str = "confirm";
        let mut tx = self.pool.begin().await?;
        let Some((r, _)) = self
            .lock_product_reservation(&mut tx, OP, product, order)
            .await?
        else {
            return Ok(ConfirmOutcome::Unknown);
        };
        let outcome = match r.state {
            ReservationState::Committed => ConfirmOutcome::AlreadyConfirmed,
            ReservationState::Held if now >= r.expires_at => {
                let state = ReservationState::Expired;
                self.return_units(&mut tx, OP, &r, state, EventType::Expired, now)
                    .await?;
                ConfirmOutcome::NotHeld(state)
            }
            ReservationState::Held => {
                let q = u64::from(r.quantity.get());
                let state = ReservationState::Committed;
                self.set_state(&mut tx, order, state, now).await?;
                let sold = Reservation { state, ..r };
                self.append(
                    &mut tx,
                    OP,
                    &OrderEvent::closing(&sold, EventType::Confirmed, now),
                )
                .await?;
                sqlx::query(&self.sql.held_to_sold)
                    .bind(q)
                    .bind(q)
                    .bind(product.as_str())
                    .execute(&mut *tx)
                    .await?;
                ConfirmOutcome::Confirmed
            }
            s => ConfirmOutcome::NotHeld(s),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub(in crate::mysql) async fn cancel_once(
        &self,
        product: &ProductId,
        order: &OrderId,
        now: Timestamp,
    ) -> Tx<CancelOutcome> {
        const OP: &str = "cancel";
        let mut tx = self.pool.begin().await?;
        let Some((r, _)) = self
            .lock_product_reservation(&mut tx, OP, product, order)
            .await?
        else {
            return Ok(CancelOutcome::Unknown);
        };
        let outcome = match r.state {
            ReservationState::Cancelled => CancelOutcome::AlreadyCancelled,
            ReservationState::Held if now >= r.expires_at => {
                let state = ReservationState::Expired;
                self.return_units(&mut tx, OP, &r, state, EventType::Expired, now)
                    .await?;
                CancelOutcome::NotHeld(state)
            }
            ReservationState::Held => {
                let state = ReservationState::Cancelled;
                self.return_units(&mut tx, OP, &r, state, EventType::Cancelled, now)
                    .await?;
                CancelOutcome::Cancelled
            }
            s => CancelOutcome::NotHeld(s),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Expires one due hold, if it still is one. `None`: someone else
    /// closed it first.
    pub(in crate::mysql) async fn expire_once(
        &self,
        order: &OrderId,
        now: Timestamp,
    ) -> Tx<Option<Reservation>> {
        const OP: &str = "expire";
        let mut tx = self.pool.begin().await?;
        let Some((r, _)) = self.lock_reservation(&mut tx, OP, order).await? else {
            return Ok(None);
        };
        if r.state != ReservationState::Held || r.expires_at > now {
            return Ok(None);
        }
        let state = ReservationState::Expired;
        let closed = self
            .return_units(&mut tx, OP, &r, state, EventType::Expired, now)
            .await?;
        tx.commit().await?;
        Ok(Some(closed))
    }
}
