//! The connection pool both MySQL types open the same way.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::Executor;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};

use super::{MySqlOptions, backend_err};
use crate::error::{Error, Result};

/// Opens the pool `opts` describe. Every session runs at `READ COMMITTED`
/// with the configured lock-wait timeout; with `strict`, a value that does
/// not fit a column is an error, never silently truncated, whatever the
/// server's default `sql_mode`. Connects at once unless `opts.lazy`.
pub(crate) async fn open(opts: &MySqlOptions, strict: bool) -> Result<MySqlPool> {
    let connect = MySqlConnectOptions::from_str(&opts.url)
        .map_err(|e| Error::Config(format!("mysql URL: {e}")))?;
    let lock_wait = opts.lock_wait_timeout.as_secs_f64().ceil().max(1.0) as u64;
    let lock_wait = Arc::<str>::from(format!(
        "SET SESSION innodb_lock_wait_timeout = {lock_wait}"
    ));
    let pool = MySqlPoolOptions::new()
        .max_connections(opts.max_connections)
        .min_connections(0)
        .acquire_timeout(opts.acquire_timeout)
        .after_connect(move |conn, _meta| {
            let lock_wait = lock_wait.clone();
            Box::pin(async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await?;
                conn.execute(&*lock_wait).await?;
                if strict {
                    conn.execute(
                        "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES')",
                    )
                    .await?;
                }
                Ok(())
            })
        });
    if opts.lazy {
        Ok(pool.connect_lazy_with(connect))
    } else {
        pool.connect_with(connect)
            .await
            .map_err(backend_err("connect"))
    }
}
