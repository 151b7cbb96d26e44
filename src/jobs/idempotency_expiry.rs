use sqlx::PgPool;

use crate::db;

/// Deletes expired idempotency records in batches until a batch comes back short.
pub async fn run(pool: &PgPool, batch: i64) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let deleted = db::idempotency::delete_expired(pool, batch).await?;
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}
