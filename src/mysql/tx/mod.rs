//! The stock store's transactions, one command per file, on [`Db`]: what
//! every transaction needs (the pool, the statements, the retry bound, the
//! replay claim and record TTLs) and the steps they share.

mod holds;
mod outbox;
mod purge;
mod reserve;
mod sale;
mod void;

use std::future::Future;
use std::time::Duration;

use sqlx::mysql::MySqlPool;
use sqlx::{MySql, MySqlConnection, Transaction};

use super::codec::{oid_bytes, reservation};
use super::retry::{Tx, retried};
use super::sql::Sql;
use super::{backend_err, bad_reply};
use crate::error::{Error, Result};
use crate::model::{
    EventType, OrderEvent, OrderId, ProductId, Reservation, ReservationState, Timestamp,
};
use crate::{ReserveOutcome, ReserveRequest};

/// The database side of a stock store, shared by its clones and its batch
/// drainers.
#[derive(Debug)]
pub(super) struct Db {
    pub(super) pool: MySqlPool,
    pub(super) sql: Sql,
    pub(super) max_retries: u32,
    /// How long a replay's claim on an order is kept.
    pub(super) replay_claim_ttl: Duration,
    /// How long a finished reservation is kept.
    pub(super) record_ttl: Duration,
}

impl Db {
    /// Runs `once` (one transaction) until it succeeds, fails for good, or
    /// has been retried [`MySqlOptions::max_retries`] times.
    pub(in crate::mysql) async fn retry<T, Fut>(
        &self,
        op: &'static str,
        once: impl FnMut() -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Tx<T>>,
    {
        retried(op, self.max_retries, backend_err(op), once).await
    }

    pub(in crate::mysql) async fn lock_reservation(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        order: &OrderId,
    ) -> Tx<Option<(Reservation, bool)>> {
        let row = sqlx::query(&self.sql.res_lock)
            .bind(oid_bytes(order))
            .fetch_optional(&mut *tx)
            .await?;
        Ok(row.map(|r| reservation(op, &r)).transpose()?)
    }

    pub(in crate::mysql) async fn own_reservation(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        order: &OrderId,
    ) -> Tx<Option<Reservation>> {
        let row = sqlx::query(&self.sql.res)
            .bind(oid_bytes(order))
            .fetch_optional(&mut *tx)
            .await?;
        Ok(row
            .map(|r| reservation(op, &r).map(|(r, _)| r))
            .transpose()?)
    }

    pub(in crate::mysql) async fn append(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        event: &OrderEvent,
    ) -> Tx<()> {
        let payload = serde_json::to_string(event)
            .map_err(|e| Error::backend(crate::mysql::BACKEND, op, e))?;
        sqlx::query(&self.sql.outbox_insert)
            .bind(oid_bytes(&event.order.order_id))
            .bind(event.seq)
            .bind(event.order.product_id.as_str())
            .bind(payload)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Gives a live reservation's units back (the buyer's count first, the
    /// hot stock row last), marks it `state` and appends `event`.
    pub(in crate::mysql) async fn return_units(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        r: &Reservation,
        state: ReservationState,
        event: EventType,
        at: Timestamp,
    ) -> Tx<Reservation> {
        let q = u64::from(r.quantity.get());
        sqlx::query(&self.sql.user_sub)
            .bind(q)
            .bind(r.product.as_str())
            .bind(r.user.as_str())
            .bind(q)
            .execute(&mut *tx)
            .await?;
        if state == ReservationState::Voided {
            sqlx::query(&self.sql.res_void)
                .bind(at.as_millis())
                .bind(oid_bytes(&r.order_id))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&self.sql.replay_clear)
                .bind(oid_bytes(&r.order_id))
                .execute(&mut *tx)
                .await?;
        } else {
            self.set_state(tx, &r.order_id, state, at).await?;
        }
        let closed = Reservation { state, ..r.clone() };
        self.append(tx, op, &OrderEvent::closing(&closed, event, at))
            .await?;
        let give_back = match r.state {
            ReservationState::Held => &self.sql.give_back_held,
            ReservationState::Committed => &self.sql.give_back_sold,
            other => {
                return Err(bad_reply(op, format!("{other:?} owns no units")).into());
            }
        };
        sqlx::query(give_back)
            .bind(q)
            .bind(q)
            .bind(r.product.as_str())
            .execute(&mut *tx)
            .await?;
        Ok(closed)
    }

    pub(in crate::mysql) async fn set_state(
        &self,
        tx: &mut MySqlConnection,
        order: &OrderId,
        state: ReservationState,
        at: Timestamp,
    ) -> Tx<()> {
        sqlx::query(&self.sql.res_state)
            .bind(state.as_str())
            .bind(at.as_millis())
            .bind(oid_bytes(order))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Rolls back and answers `outcome`, unless the request's own order id
    /// already names a reservation (a retry below the port): then that.
    pub(in crate::mysql) async fn refuse(
        &self,
        mut tx: Transaction<'static, MySql>,
        req: &ReserveRequest,
        outcome: ReserveOutcome,
    ) -> Tx<ReserveOutcome> {
        let own = self
            .own_reservation(&mut tx, "reserve", &req.order_id)
            .await?;
        tx.rollback().await?;
        Ok(own.map_or(outcome, ReserveOutcome::Reserved))
    }

    pub(in crate::mysql) async fn lock_product_reservation(
        &self,
        tx: &mut MySqlConnection,
        op: &'static str,
        product: &ProductId,
        order: &OrderId,
    ) -> Tx<Option<(Reservation, bool)>> {
        let row = sqlx::query(&self.sql.res_of_product_lock)
            .bind(oid_bytes(order))
            .bind(product.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        Ok(row.map(|r| reservation(op, &r)).transpose()?)
    }

    /// One reserve in its own transaction, retried.
    pub(in crate::mysql) async fn reserve_alone(
        &self,
        req: &ReserveRequest,
    ) -> Result<ReserveOutcome> {
        self.retry("reserve", || self.reserve_once(req)).await
    }
}
