//! The `idempotency_keys` table.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::idempotency::IdempotencyKey;

#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub request_hash: String,
    pub response_status: Option<i16>,
    pub response_body: Option<serde_json::Value>,
}

pub enum Claim {
    /// This transaction owns the key: do the work and `complete` it before committing.
    Claimed,
    /// A live record exists (committed by an earlier request).
    Taken(StoredResponse),
}

/// Claims the key for this API key, or returns the live record that holds it. An expired
/// record is taken over. A concurrent claim of the same key waits here until the other
/// transaction ends, then sees its committed record (or claims the key if it rolled back).
pub async fn claim(
    tx: &mut PgConnection,
    api_key_id: i64,
    key: &IdempotencyKey,
    device_id: Uuid,
) -> sqlx::Result<Claim> {
    let claimed = observe!(
        "INSERT",
        "idempotency_keys",
        sqlx::query_scalar!(
            r#"INSERT INTO idempotency_keys (api_key_id, key_hash, request_hash, device_id)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT ON CONSTRAINT uq_idempotency_keys_api_key_key DO UPDATE SET
               request_hash = EXCLUDED.request_hash,
               device_id = EXCLUDED.device_id,
               response_status = NULL,
               response_body = NULL,
               created_at = now(),
               expires_at = now() + INTERVAL '24 hours'
           WHERE idempotency_keys.expires_at <= now()
           RETURNING id"#,
            api_key_id,
            key.key_hash,
            key.request_hash,
            device_id,
        ),
        fetch_optional(&mut *tx)
    )?;
    if claimed.is_some() {
        return Ok(Claim::Claimed);
    }
    let stored = observe!(
        "SELECT",
        "idempotency_keys",
        sqlx::query_as!(
            StoredResponse,
            r#"SELECT request_hash, response_status, response_body
           FROM idempotency_keys WHERE api_key_id = $1 AND key_hash = $2"#,
            api_key_id,
            key.key_hash,
        ),
        fetch_one(&mut *tx)
    )?;
    Ok(Claim::Taken(stored))
}

/// Stores the answer of a claimed key (same transaction as the work it describes).
pub async fn complete(
    tx: &mut PgConnection,
    api_key_id: i64,
    key: &IdempotencyKey,
    status: i16,
    body: &serde_json::Value,
) -> sqlx::Result<()> {
    observe!(
        "UPDATE",
        "idempotency_keys",
        sqlx::query!(
            "UPDATE idempotency_keys SET response_status = $3, response_body = $4
         WHERE api_key_id = $1 AND key_hash = $2",
            api_key_id,
            key.key_hash,
            status,
            body,
        ),
        execute(tx)
    )
    .map(drop)
}

/// Deletes up to `batch` expired records; the expiry job calls it until it returns less.
/// `= ANY (ARRAY(...))` keeps the plan an index scan of idx_idempotency_keys_expires_at plus
/// primary-key lookups; `IN (SELECT ... LIMIT)` made the planner hash-join the whole table
/// (docs/query-plans.md, query 17).
pub async fn delete_expired(pool: &sqlx::PgPool, batch: i64) -> sqlx::Result<u64> {
    let result = observe!(
        "DELETE",
        "idempotency_keys",
        sqlx::query!(
            "DELETE FROM idempotency_keys WHERE id = ANY (ARRAY(
                 SELECT id FROM idempotency_keys WHERE expires_at <= now() LIMIT $1
             ))",
            batch,
        ),
        execute(pool)
    )?;
    Ok(result.rows_affected())
}
