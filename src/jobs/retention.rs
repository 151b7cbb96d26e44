use sqlx::PgPool;

use crate::db;

/// Deletes locations older than `retention_days` in batches of `batch` rows, each batch its own
/// short transaction (`cleanup_old_locations`), until a batch comes back short.
pub async fn run(pool: &PgPool, retention_days: u32, batch: i64) -> anyhow::Result<u64> {
    let days = i32::try_from(retention_days)?;
    let mut total = 0;
    loop {
        let deleted = db::locations::cleanup_old_batch(pool, days, batch).await?;
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}
