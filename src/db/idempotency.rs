//! The `idempotency_keys` table. Records are written together with the upload they answer
//! (`locations::insert_once`); here they are read back for a replay, and expired.

use sqlx::{PgConnection, PgPool};

use crate::model::{IdempotencyKey, StoredResponse};

/// The live record that holds a key, for a replay.
pub async fn stored_response(
    conn: &mut PgConnection,
    api_key_id: i64,
    key: &IdempotencyKey,
) -> sqlx::Result<StoredResponse> {
    observe!(
        "SELECT",
        "idempotency_keys",
        sqlx::query_as!(
            StoredResponse,
            "SELECT request_hash, response_status, response_body
             FROM idempotency_keys WHERE api_key_id = $1 AND key_hash = $2",
            api_key_id,
            key.key_hash,
        ),
        fetch_one(conn)
    )
}

/// Deletes up to `batch` expired records; the expiry job calls it until it returns less.
/// `= ANY (ARRAY(...))` keeps the plan an index scan of idx_idempotency_keys_expires_at plus
/// primary-key lookups; `IN (SELECT ... LIMIT)` made the planner hash-join the whole table
/// (docs/query-plans.md, query 17).
pub async fn delete_expired(pool: &PgPool, batch: i64) -> sqlx::Result<u64> {
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
