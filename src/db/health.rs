use std::time::{Duration, Instant};

use sqlx::PgPool;

/// Runs `SELECT 1` and returns its round-trip time, or the error. Bounded by `limit` so a
/// probe never hangs on a dead server (the pool would otherwise wait its acquire timeout).
pub async fn ping(pool: &PgPool, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let probe =
        async { observe!("SELECT", "none", sqlx::query_scalar!("SELECT 1 AS \"one!\""), fetch_one(pool)) };
    match tokio::time::timeout(limit, probe).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}
