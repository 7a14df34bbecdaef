//! Claiming outbox events under a lease.

use sqlx::Row;

use super::Db;
use crate::model::{OrderEvent, Timestamp};
use crate::mysql::codec::text;
use crate::mysql::retry::Tx;
use crate::mysql::sql::{list, pairs};

impl Db {
    pub(in crate::mysql) async fn claim_once(
        &self,
        now: Timestamp,
        max: usize,
        until: Timestamp,
    ) -> Tx<Vec<OrderEvent>> {
        const OP: &str = "claim";
        let s = &self.sql;
        let mut tx = self.pool.begin().await?;
        // Candidates first, without locks: due events, except closing
        // events whose `placed` is leased to another relay (they would fill
        // the batch and never be handed out). A few more than `max`, so
        // that relays racing for the same ones still find work.
        let wanted = u64::try_from(max).unwrap_or(u64::MAX);
        let candidates: Vec<(Vec<u8>, u16)> = sqlx::query_as(&s.outbox_candidates)
            .bind(now.as_millis())
            .bind(now.as_millis())
            .bind(wanted.saturating_mul(4))
            .fetch_all(&mut *tx)
            .await?;
        if candidates.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        // Then lock up to `max` of them, skipping those another relay is
        // claiming right now.
        let sql = format!(
            "{}{}{}",
            s.outbox_lock_head,
            pairs(candidates.len()),
            s.outbox_lock_tail
        );
        let mut query = sqlx::query(&sql);
        for (oid, seq) in &candidates {
            query = query.bind(oid.as_slice()).bind(*seq);
        }
        let rows = query
            .bind(now.as_millis())
            .bind(wanted)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut batch: Vec<(Vec<u8>, u16, String)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let oid: Vec<u8> = row.try_get(0)?;
            let seq: u16 = row.try_get(1)?;
            let payload = text("claim", row, 2)?;
            batch.push((oid, seq, payload));
        }
        // A closing event whose `placed` is still in the outbox but not in
        // this batch (leased to another relay, or being claimed by one
        // right now) waits for it.
        let lone: Vec<&[u8]> = batch
            .iter()
            .filter(|(oid, seq, _)| *seq > 1 && !batch.iter().any(|(o, s, _)| *s == 1 && o == oid))
            .map(|(oid, _, _)| oid.as_slice())
            .collect();
        if !lone.is_empty() {
            let sql = format!("{}{}", s.outbox_placed_of, list(lone.len()));
            let mut query = sqlx::query_scalar::<_, Vec<u8>>(&sql);
            for oid in &lone {
                query = query.bind(*oid);
            }
            let waiting = query.fetch_all(&mut *tx).await?;
            batch.retain(|(oid, seq, _)| *seq == 1 || !waiting.contains(oid));
        }
        if batch.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let sql = format!("{}{}", s.outbox_lease, pairs(batch.len()));
        let mut query = sqlx::query(&sql).bind(until.as_millis());
        for (oid, seq, _) in &batch {
            query = query.bind(oid.as_slice()).bind(*seq);
        }
        query.execute(&mut *tx).await?;
        tx.commit().await?;
        let mut events = Vec::with_capacity(batch.len());
        for (_, _, payload) in &batch {
            match serde_json::from_str::<OrderEvent>(payload) {
                Ok(e) => events.push(e),
                // A corrupt row must not stall every other event; it stays
                // in the outbox (leased) for an operator to inspect.
                Err(e) => tracing::error!(error = %e, op = OP, "mysql: unreadable outbox event"),
            }
        }
        events.sort_by_key(|e| e.event_id);
        Ok(events)
    }
}
