use sqlx::PgPool;

use crate::db;

/// Refreshes `group_member_counts` without blocking readers; returns the number of groups.
pub async fn run(pool: &PgPool) -> anyhow::Result<u64> {
    db::devices::refresh_group_stats(pool).await?;
    Ok(db::devices::count_group_stats(pool).await?)
}
