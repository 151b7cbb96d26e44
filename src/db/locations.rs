//! The `locations` table.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::model::{Fix, IdempotencyKey, StoredFix};

/// Inserts fixes of one or many devices in one statement, each device's only if it exists and
/// is active. `devices[i]` owns `fixes[i]`. Returns the devices whose fixes were stored: an
/// unknown or inactive device's rows are left out, every other row goes in. One round trip
/// whatever the number of rows, so concurrent uploads can share it (see `infra::ingest`).
///
/// The fixes travel as one array of the composite type `fix`; UNNEST expands each into its
/// columns, in the type's order, which is the order of the INSERT's column list.
pub async fn insert(conn: &mut PgConnection, devices: &[Uuid], fixes: &[&Fix]) -> sqlx::Result<Vec<Uuid>> {
    // `active` is read once, in the statement's snapshot; the INSERT takes only those devices'
    // rows. A data-modifying WITH runs whether or not the final SELECT reads it.
    observe!(
        "INSERT",
        "locations",
        sqlx::query_scalar!(
            r#"WITH fixes AS (
                   SELECT * FROM UNNEST($1::uuid[], $2::fix[]) AS t(device_id)
               ),
               active AS (
                   SELECT device_id FROM devices WHERE device_id = ANY($1::uuid[]) AND active
               ),
               stored AS (
                   INSERT INTO locations (device_id, captured_at, latitude, longitude, accuracy, altitude,
                                          bearing, speed, provider, battery_level, network_type)
                   SELECT * FROM fixes f WHERE f.device_id IN (SELECT device_id FROM active)
               )
               SELECT device_id AS "device_id!" FROM active"#,
            devices,
            fixes as &[&Fix],
        ),
        fetch_all(conn)
    )
}

/// What [`insert_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedInsert {
    /// The device is unknown or inactive: nothing was written.
    NoDevice,
    /// The key was claimed, its answer stored and the fixes inserted, all in this statement.
    Stored,
    /// A live record already holds the key (this statement waited for a concurrent holder to
    /// commit): nothing was written; replay that record.
    KeyTaken,
}

/// An upload with an `Idempotency-Key` in ONE statement (one round trip, one commit): claims
/// the key with its final answer (`status`, `body`) and inserts the fixes, both only if the
/// device is active, and the fixes only if the key was claimed. A key is claimed when it is
/// new or its record expired; a concurrent holder's row is waited for (ON CONFLICT), so a
/// duplicate never inserts twice. Only successful answers are ever stored: an unknown device
/// writes nothing.
pub async fn insert_once(
    conn: &mut PgConnection,
    device_id: Uuid,
    fixes: &[Fix],
    api_key_id: i64,
    key: &IdempotencyKey,
    answer: (i16, &serde_json::Value),
) -> sqlx::Result<KeyedInsert> {
    let (status, body) = answer;
    let row = observe!(
        "INSERT",
        "locations",
        sqlx::query!(
            r#"WITH device AS (
                   SELECT device_id FROM devices WHERE device_id = $1 AND active
               ),
               claim AS (
                   INSERT INTO idempotency_keys (api_key_id, key_hash, request_hash, device_id,
                                                 response_status, response_body)
                   SELECT $3, $4, $5, device_id, $6, $7 FROM device
                   ON CONFLICT ON CONSTRAINT uq_idempotency_keys_api_key_key DO UPDATE SET
                       request_hash = EXCLUDED.request_hash,
                       device_id = EXCLUDED.device_id,
                       response_status = EXCLUDED.response_status,
                       response_body = EXCLUDED.response_body,
                       created_at = now(),
                       expires_at = now() + INTERVAL '24 hours'
                   WHERE idempotency_keys.expires_at <= now()
                   RETURNING device_id
               ),
               stored AS (
                   INSERT INTO locations (device_id, captured_at, latitude, longitude, accuracy, altitude,
                                          bearing, speed, provider, battery_level, network_type)
                   SELECT c.device_id, f.* FROM claim c CROSS JOIN UNNEST($2::fix[]) AS f
               )
               SELECT EXISTS (SELECT 1 FROM device) AS "active!", EXISTS (SELECT 1 FROM claim) AS "claimed!""#,
            device_id,
            fixes as &[Fix],
            api_key_id,
            key.key_hash,
            key.request_hash,
            status,
            body,
        ),
        fetch_one(conn)
    )?;
    Ok(match (row.active, row.claimed) {
        (false, _) => KeyedInsert::NoDevice,
        (true, true) => KeyedInsert::Stored,
        (true, false) => KeyedInsert::KeyTaken,
    })
}

/// One retention batch: deletes at most `batch` locations created more than `retention_days`
/// ago (oldest first, via idx_locations_created_at) and returns how many it deleted.
pub async fn cleanup_old_batch(pool: &PgPool, retention_days: i32, batch: i64) -> sqlx::Result<u64> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let deleted = observe!(
        "SELECT",
        "locations",
        sqlx::query_scalar!(r#"SELECT cleanup_old_locations($1, $2) AS "deleted!""#, retention_days, batch),
        fetch_one(pool)
    )?;
    Ok(deleted.max(0) as u64)
}

/// Makes the rest of the transaction read rows in index order rather than sort them: for an
/// export, PostgreSQL otherwise prefers a bitmap scan plus a sort of the device's whole history
/// (spilling to disk) before sending the first row. Scoped to the transaction (`SET LOCAL`).
pub async fn prefer_index_order(tx: &mut PgConnection) -> sqlx::Result<()> {
    const STATEMENT: &str = "SET LOCAL enable_sort = off";
    crate::db::observe("SET", "session", STATEMENT, sqlx::query(STATEMENT).execute(tx)).await.map(drop)
}

/// Every location of a device, oldest capture first, as a stream: rows arrive as PostgreSQL
/// sends them, never collected (idx_locations_device_captured, scanned backwards; see
/// [`prefer_index_order`]). `ROW(…)::fix` lists the columns in the type's order.
pub fn stream_for_device(
    conn: &mut PgConnection,
    device_id: Uuid,
) -> impl futures_util::Stream<Item = sqlx::Result<StoredFix>> + Send + '_ {
    sqlx::query_as!(
        StoredFix,
        r#"SELECT ROW(captured_at, latitude, longitude, accuracy, altitude, bearing, speed, provider,
                      battery_level, network_type)::fix AS "fix!: Fix",
                  created_at
           FROM locations WHERE device_id = $1
           ORDER BY captured_at"#,
        device_id
    )
    .fetch(conn)
}
