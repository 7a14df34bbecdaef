//! The schema of every MySQL backend: the migrations of
//! `backends/mysql/migrations/*.sql`, embedded at compile time and applied
//! per table prefix. [`MySqlStockStore::migrate`](super::MySqlStockStore::migrate)
//! and [`MySqlOrderTable::migrate`](super::MySqlOrderTable::migrate) both
//! apply all of them, so either may run first, or both at once.

use sqlx::mysql::MySqlPool;
use sqlx::{Executor, MySqlConnection};

use super::backend_err;
use crate::error::{Error, Result};

/// The schema, embedded at compile time. Each file's `{prefix}` is
/// replaced by the table prefix when [`run`] applies it.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./backends/mysql/migrations");

const OP: &str = "migrate";

/// Applies, in order, every migration that `prefix` has not had yet,
/// recording each in `<prefix>schema_migrations`. Callers on the same
/// prefix take turns on a named lock, so any number may run at once.
pub(super) async fn run(pool: &MySqlPool, prefix: &str) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(backend_err(OP))?;
    let lock = format!("flashsale-migrate:{prefix}");
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 60)")
        .bind(&lock)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend_err(OP))?;
    if got != Some(1) {
        return Err(Error::backend(
            crate::mysql::BACKEND,
            OP,
            "another instance held the migration lock for 60 s",
        ));
    }
    let result = apply(&mut conn, prefix).await;
    let released = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(&lock)
        .execute(&mut *conn)
        .await;
    result?;
    released.map(|_| ()).map_err(backend_err(OP))
}

async fn apply(conn: &mut MySqlConnection, prefix: &str) -> Result<()> {
    let table = format!("{prefix}schema_migrations");
    conn.execute(&*format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
           version BIGINT NOT NULL PRIMARY KEY, \
           description VARCHAR(255) NOT NULL, \
           checksum VARBINARY(64) NOT NULL, \
           applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP\
         ) ENGINE = InnoDB"
    ))
    .await
    .map_err(backend_err(OP))?;
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as(&format!("SELECT version, checksum FROM {table}"))
            .fetch_all(&mut *conn)
            .await
            .map_err(backend_err(OP))?;
    for m in MIGRATOR.iter() {
        if let Some((_, sum)) = applied.iter().find(|(v, _)| *v == m.version) {
            if sum.as_slice() != &*m.checksum {
                return Err(Error::Config(format!(
                    "mysql migration {} ({}) was applied to prefix {prefix:?} with another \
                     checksum: the shipped file changed",
                    m.version, m.description
                )));
            }
            continue;
        }
        let sql = m.sql.replace("{prefix}", prefix);
        for statement in statements(&sql) {
            conn.execute(statement.as_str())
                .await
                .map_err(backend_err(OP))?;
        }
        sqlx::query(&format!(
            "INSERT INTO {table} (version, description, checksum) VALUES (?, ?, ?)"
        ))
        .bind(m.version)
        .bind(&*m.description)
        .bind(&*m.checksum)
        .execute(&mut *conn)
        .await
        .map_err(backend_err(OP))?;
        tracing::info!(version = m.version, description = %m.description, prefix = %prefix, "mysql: migration applied");
    }
    Ok(())
}

/// The statements of one migration file: split at each `;` that ends a
/// line; `--` comment lines and blank statements are dropped.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if trimmed.ends_with(';') {
            let stmt = cur.trim().trim_end_matches(';').trim().to_owned();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            cur.clear();
        }
    }
    let rest = cur.trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}
