//! Creating a sale, or restocking one (new terms and total).

use sqlx::Row;

use super::Db;
use crate::SaleWrite;
use crate::model::{Sale, Timestamp};
use crate::mysql::retry::{Fail, Tx, is_duplicate};

impl Db {
    pub(in crate::mysql) async fn create_sale_once(&self, sale: &Sale) -> Tx<SaleWrite> {
        let s = &self.sql;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&s.sale_lock)
            .bind(sale.product().as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let total = u64::from(sale.stock());
        let starts = sale.starts_at().map(Timestamp::as_millis);
        let ends = sale.ends_at().map(Timestamp::as_millis);
        let hold = sale
            .hold()
            .map(|h| u64::try_from(h.as_nanos()).unwrap_or(u64::MAX));
        let answer = match row {
            None => {
                let r = sqlx::query(&s.sale_insert)
                    .bind(sale.product().as_str())
                    .bind(total)
                    .bind(total)
                    .bind(sale.per_user_limit())
                    .bind(sale.per_order_max())
                    .bind(starts)
                    .bind(ends)
                    .bind(hold)
                    .execute(&mut *tx)
                    .await;
                match r {
                    Ok(_) => SaleWrite::Created,
                    Err(e) if is_duplicate(&e) => return Err(Fail::RaceLost),
                    Err(e) => return Err(e.into()),
                }
            }
            Some(row) => {
                let held: u64 = row.try_get(0)?;
                let committed: u64 = row.try_get(1)?;
                let taken = held + committed;
                if total < taken {
                    tx.rollback().await?;
                    return Ok(SaleWrite::StockBelowSold {
                        held_or_committed: taken,
                    });
                }
                sqlx::query(&s.sale_update)
                    .bind(total)
                    .bind(total)
                    .bind(sale.per_user_limit())
                    .bind(sale.per_order_max())
                    .bind(starts)
                    .bind(ends)
                    .bind(hold)
                    .bind(sale.product().as_str())
                    .execute(&mut *tx)
                    .await?;
                SaleWrite::Updated
            }
        };
        tx.commit().await?;
        Ok(answer)
    }
}
