//! The `idempotency_keys` table. Records are claimed together with the upload they answer
//! (`locations::insert_batch`); here they get their answer, are read back for a replay, and
//! expire.

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

/// Stores the answers of records claimed earlier in this transaction (by
/// [`locations::insert_batch`](super::locations::insert_batch)): `(record id, response body)`.
pub async fn set_answers(tx: &mut PgConnection, answers: &[(i64, serde_json::Value)]) -> sqlx::Result<()> {
    let (ids, bodies): (Vec<i64>, Vec<serde_json::Value>) = answers.iter().cloned().unzip();
    observe!(
        "UPDATE",
        "idempotency_keys",
        sqlx::query!(
            "UPDATE idempotency_keys AS k SET response_body = a.body
             FROM UNNEST($1::int8[], $2::jsonb[]) AS a(id, body)
             WHERE k.id = a.id",
            &ids,
            &bodies,
        ),
        execute(tx)
    )
    .map(drop)
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
