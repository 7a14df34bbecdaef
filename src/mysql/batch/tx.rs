//! One attempt of a batch's transaction: the reads, the plan, the writes
//! and `COMMIT`, on a pooled connection that is closed rather than reused
//! if the attempt is abandoned mid-way.

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::{Executor, MySql, MySqlConnection, Row};

use super::plan::Plan;
use super::read::Found;
use super::{OP, read, write};
use crate::ReserveOutcome;
use crate::ReserveRequest;
use crate::mysql::bad_reply;
use crate::mysql::retry::{Fail, Tx, is_duplicate};
use crate::mysql::tx::Db;

/// One attempt of `reqs` (one product, arrival order) as one transaction,
/// tables prefixed `p`. `lock_sale` is set when the attempt lost the race
/// for the last units, so the next one locks the stock row first.
pub(super) async fn attempt(
    db: &Db,
    p: &str,
    reqs: &[ReserveRequest],
    lock_sale: &AtomicBool,
) -> Tx<Vec<ReserveOutcome>> {
    let mut conn = db.pool.acquire().await?;
    let mut open = OpenTx(Some(&mut conn));
    let result = run(open.conn(), db, p, reqs, lock_sale).await;
    if result.is_err() {
        // Best effort: a connection that cannot roll back is closed,
        // which rolls back on the server.
        let rolled_back = open.conn().execute("ROLLBACK").await;
        if rolled_back.is_ok() {
            open.0 = None;
        }
    } else {
        open.0 = None;
    }
    result
}

/// The attempt on `conn`. Returns with the transaction ended on success;
/// on error the caller rolls back.
fn run<'a>(
    conn: &'a mut MySqlConnection,
    db: &'a Db,
    p: &'a str,
    reqs: &'a [ReserveRequest],
    lock_sale: &'a AtomicBool,
) -> BoxFuture<'a, Tx<Vec<ReserveOutcome>>> {
    // Boxed as `Send` here: the driver's futures defeat the compiler's
    // inference of `Send` through the spawned drainer otherwise.
    Box::pin(async move {
        let locked = lock_sale.load(Ordering::Relaxed);
        let reads = read::statement(p, reqs, locked);
        let found = Found::from_rows(&(&mut *conn).fetch_all(reads.as_str()).await?)?;
        let plan = Plan::make(reqs, found, db.replay_claim_ttl)?;
        if plan.writes_nothing() {
            (&mut *conn).execute("ROLLBACK").await?;
            return Ok(plan.outcomes);
        }
        let writes = write::statement(p, &reqs[0].product, &plan)?;
        let rows = match (&mut *conn).fetch_all(writes.as_str()).await {
            Ok(rows) => rows,
            // Another process took a key or an order id meanwhile (a
            // void's tombstone, a retry): run again, and see it.
            Err(e) if is_duplicate(&e) => return Err(Fail::RaceLost),
            Err(e) => return Err(e.into()),
        };
        if !plan.new.is_empty() {
            let taken: i64 = rows
                .last()
                .ok_or_else(|| bad_reply(OP, "no ROW_COUNT()"))?
                .try_get(0)?;
            if taken == 0 {
                if locked {
                    return Err(bad_reply(OP, "the locked stock row changed").into());
                }
                // Another process took units since the unlocked read.
                lock_sale.store(true, Ordering::Relaxed);
                return Err(Fail::RaceLost);
            }
        }
        (&mut *conn).execute("COMMIT").await?;
        Ok(plan.outcomes)
    })
}

/// A boxed, `Send` future.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A pooled connection inside a batch's transaction: if the batch is
/// abandoned mid-way (its task cancelled), the connection is closed rather
/// than returned to the pool with the transaction open; the server then
/// rolls it back.
struct OpenTx<'a>(Option<&'a mut PoolConnection<MySql>>);

impl OpenTx<'_> {
    fn conn(&mut self) -> &mut MySqlConnection {
        self.0
            .as_deref_mut()
            .expect("the connection is held until the end")
    }
}

impl Drop for OpenTx<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.close_on_drop();
        }
    }
}
