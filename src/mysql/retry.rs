//! How both MySQL types run a transaction: one attempt at a time, again on
//! a deadlock, a lock-wait timeout, a snapshot conflict or a lost race on a
//! unique key, up to a bound, with a short random pause between attempts.

use std::future::Future;
use std::hash::BuildHasher;
use std::time::Duration;

use sqlx::mysql::MySqlDatabaseError;

use crate::error::Error;

/// Deadlock (1213), lock-wait timeout (1205), snapshot conflict (1020): the
/// transaction is rolled back and run again.
const RETRYABLE: [u16; 3] = [1213, 1205, 1020];

/// Duplicate key.
const DUPLICATE: u16 = 1062;

/// Why one attempt of a transaction did not finish.
pub(super) enum Fail {
    /// The driver failed (retried if it is a deadlock, a lock-wait timeout
    /// or a snapshot conflict).
    Sql(sqlx::Error),
    /// A concurrent transaction won a race on a unique key: run again.
    RaceLost,
    /// Not retried.
    Fatal(Error),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Fatal(e)
    }
}

impl Fail {
    fn retryable(&self) -> bool {
        match self {
            Fail::RaceLost => true,
            Fail::Sql(e) => mysql_code(e).is_some_and(|c| RETRYABLE.contains(&c)),
            Fail::Fatal(_) => false,
        }
    }
}

/// One attempt's result.
pub(super) type Tx<T> = std::result::Result<T, Fail>;

/// The server's error number, if `e` is an error the server reported.
pub(super) fn mysql_code(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// Whether `e` is a duplicate-key error.
pub(super) fn is_duplicate(e: &sqlx::Error) -> bool {
    mysql_code(e) == Some(DUPLICATE)
}

/// Runs `once` (one transaction) until it succeeds, fails for good, or has
/// been retried `max_retries` times. A driver error that ends it is mapped
/// by `sql_error`.
pub(super) async fn retried<T, Fut>(
    op: &'static str,
    max_retries: u32,
    sql_error: impl FnOnce(sqlx::Error) -> Error,
    mut once: impl FnMut() -> Fut,
) -> Result<T, Error>
where
    Fut: Future<Output = Tx<T>>,
{
    let mut attempt = 0u32;
    loop {
        let fail = match once().await {
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        if attempt < max_retries && fail.retryable() {
            attempt += 1;
            backoff(attempt).await;
            continue;
        }
        return Err(match fail {
            Fail::Sql(e) => sql_error(e),
            Fail::Fatal(e) => e,
            Fail::RaceLost => Error::backend(
                crate::mysql::BACKEND,
                op,
                format!("still conflicting after {attempt} retries"),
            ),
        });
    }
}

/// A short random pause before attempt `attempt` (1-based), growing with
/// it, so transactions that deadlocked do not meet again at once.
async fn backoff(attempt: u32) {
    let cap_us = 200u64 << attempt.min(6);
    let r = std::collections::hash_map::RandomState::new().hash_one(attempt);
    tokio::time::sleep(Duration::from_micros(r % cap_us)).await;
}
