//! Purging finished reservations a record TTL after they finished.

use super::Db;
use crate::model::Timestamp;
use crate::mysql::retry::Tx;
use crate::mysql::sql::list;

/// Most finished reservations purged per sweep.
pub(in crate::mysql) const PURGE_BATCH: u64 = 1_000;

impl Db {
    /// Deletes up to [`PURGE_BATCH`] reservations that finished a record
    /// TTL before `now` and have no event left in the outbox, with their
    /// idempotency keys (a column of the row) and replay claims; returns
    /// how many. One still waiting for delivery stays until a later sweep.
    pub(in crate::mysql) async fn purge_once(&self, now: Timestamp) -> Tx<usize> {
        let s = &self.sql;
        let cutoff = now.as_millis().saturating_sub(millis(self.record_ttl));
        let mut tx = self.pool.begin().await?;
        // Locked rows are in use by a live transaction: left for later.
        let ids: Vec<Vec<u8>> = sqlx::query_scalar(&s.res_purgeable)
            .bind(cutoff)
            .bind(PURGE_BATCH)
            .fetch_all(&mut *tx)
            .await?;
        if ids.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        for head in [&s.res_purge, &s.replay_of] {
            let sql = format!("{head}{}", list(ids.len()));
            let mut q = sqlx::query(&sql);
            for id in &ids {
                q = q.bind(id.as_slice());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(ids.len())
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
