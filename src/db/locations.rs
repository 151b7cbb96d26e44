//! The `locations` table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{idempotency::IdempotencyKey, locations::Fix};

/// Inserts fixes of one or many devices in one statement (UNNEST of one array per column), each
/// device's only if it exists and is active. Returns the devices whose fixes were stored: an
/// unknown or inactive device's rows are left out, every other row goes in. One round trip
/// whatever the number of rows, so concurrent uploads can share it (see `domain::ingest`).
pub async fn insert_fixes(conn: &mut PgConnection, fixes: &[(Uuid, &Fix)]) -> sqlx::Result<Vec<Uuid>> {
    let columns = Columns::of(fixes.iter().map(|(device_id, fix)| (*device_id, *fix)));
    // `active` is read once, in the statement's snapshot; the INSERT takes only those devices'
    // rows. A data-modifying WITH runs whether or not the final SELECT reads it.
    observe!(
        "INSERT",
        "locations",
        sqlx::query_scalar!(
            r#"WITH fixes AS (
                   SELECT * FROM UNNEST($1::uuid[], $2::float8[], $3::float8[], $4::float4[], $5::float8[],
                                        $6::float4[], $7::float4[], $8::text[], $9::int2[], $10::text[],
                                        $11::timestamptz[])
                       AS t(device_id, latitude, longitude, accuracy, altitude, bearing, speed, provider,
                            battery_level, network_type, captured_at)
               ),
               active AS (
                   SELECT device_id FROM devices WHERE device_id = ANY($1::uuid[]) AND active
               ),
               stored AS (
                   INSERT INTO locations (device_id, latitude, longitude, accuracy, altitude, bearing, speed,
                                          provider, battery_level, network_type, captured_at)
                   SELECT f.device_id, f.latitude, f.longitude, f.accuracy, f.altitude, f.bearing, f.speed,
                          f.provider, f.battery_level, f.network_type, f.captured_at
                   FROM fixes f WHERE f.device_id IN (SELECT device_id FROM active)
               )
               SELECT device_id AS "device_id!" FROM active"#,
            &columns.device,
            &columns.latitude,
            &columns.longitude,
            &columns.accuracy,
            &columns.altitude as &[Option<f64>],
            &columns.bearing as &[Option<f32>],
            &columns.speed as &[Option<f32>],
            &columns.provider as &[Option<&str>],
            &columns.battery as &[Option<i16>],
            &columns.network as &[Option<&str>],
            &columns.captured_at,
        ),
        fetch_all(conn)
    )
}

/// What [`insert_fixes_once`] did.
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
pub async fn insert_fixes_once(
    conn: &mut PgConnection,
    device_id: Uuid,
    fixes: &[Fix],
    api_key_id: i64,
    key: &IdempotencyKey,
    status: i16,
    body: &serde_json::Value,
) -> sqlx::Result<KeyedInsert> {
    let columns = Columns::of(fixes.iter().map(|fix| (device_id, fix)));
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
                   SELECT $12, $13, $14, device_id, $15, $16 FROM device
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
                   INSERT INTO locations (device_id, latitude, longitude, accuracy, altitude, bearing, speed,
                                          provider, battery_level, network_type, captured_at)
                   SELECT c.device_id, t.*
                   FROM claim c
                   CROSS JOIN UNNEST($2::float8[], $3::float8[], $4::float4[], $5::float8[], $6::float4[],
                                     $7::float4[], $8::text[], $9::int2[], $10::text[], $11::timestamptz[]) AS t
               )
               SELECT EXISTS (SELECT 1 FROM device) AS "active!", EXISTS (SELECT 1 FROM claim) AS "claimed!""#,
            device_id,
            &columns.latitude,
            &columns.longitude,
            &columns.accuracy,
            &columns.altitude as &[Option<f64>],
            &columns.bearing as &[Option<f32>],
            &columns.speed as &[Option<f32>],
            &columns.provider as &[Option<&str>],
            &columns.battery as &[Option<i16>],
            &columns.network as &[Option<&str>],
            &columns.captured_at,
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

/// Fixes as one array per column, the shape UNNEST takes.
struct Columns<'a> {
    device: Vec<Uuid>,
    latitude: Vec<f64>,
    longitude: Vec<f64>,
    accuracy: Vec<f32>,
    altitude: Vec<Option<f64>>,
    bearing: Vec<Option<f32>>,
    speed: Vec<Option<f32>>,
    provider: Vec<Option<&'a str>>,
    battery: Vec<Option<i16>>,
    network: Vec<Option<&'a str>>,
    captured_at: Vec<DateTime<Utc>>,
}

impl<'a> Columns<'a> {
    fn of(fixes: impl ExactSizeIterator<Item = (Uuid, &'a Fix)>) -> Self {
        let n = fixes.len();
        let mut columns = Self {
            device: Vec::with_capacity(n),
            latitude: Vec::with_capacity(n),
            longitude: Vec::with_capacity(n),
            accuracy: Vec::with_capacity(n),
            altitude: Vec::with_capacity(n),
            bearing: Vec::with_capacity(n),
            speed: Vec::with_capacity(n),
            provider: Vec::with_capacity(n),
            battery: Vec::with_capacity(n),
            network: Vec::with_capacity(n),
            captured_at: Vec::with_capacity(n),
        };
        for (device_id, fix) in fixes {
            columns.device.push(device_id);
            columns.latitude.push(fix.latitude);
            columns.longitude.push(fix.longitude);
            columns.accuracy.push(fix.accuracy);
            columns.altitude.push(fix.altitude);
            columns.bearing.push(fix.bearing);
            columns.speed.push(fix.speed);
            columns.provider.push(fix.provider.as_deref());
            columns.battery.push(fix.battery_level);
            columns.network.push(fix.network_type.as_deref());
            columns.captured_at.push(fix.captured_at);
        }
        columns
    }
}

/// One retention batch: deletes at most `batch` locations created more than `retention_days`
/// ago (oldest first, via idx_locations_created_at) and returns how many it deleted.
pub async fn cleanup_old_batch(pool: &sqlx::PgPool, retention_days: i32, batch: i64) -> sqlx::Result<u64> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let deleted = observe!(
        "SELECT",
        "locations",
        sqlx::query_scalar!(r#"SELECT cleanup_old_locations($1, $2) AS "deleted!""#, retention_days, batch),
        fetch_one(pool)
    )?;
    Ok(deleted.max(0) as u64)
}

/// One stored location, as a data export shows it.
#[derive(Debug, Clone)]
pub struct LocationRecord {
    pub captured_at: DateTime<Utc>,
    pub latitude: f64,
    pub longitude: f64,
    pub accuracy: f32,
    pub altitude: Option<f64>,
    pub bearing: Option<f32>,
    pub speed: Option<f32>,
    pub provider: Option<String>,
    pub battery_level: Option<i16>,
    pub network_type: Option<String>,
    pub created_at: DateTime<Utc>,
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
/// [`prefer_index_order`]).
pub fn stream_for_device(
    conn: &mut PgConnection,
    device_id: Uuid,
) -> impl futures_util::Stream<Item = sqlx::Result<LocationRecord>> + Send + '_ {
    sqlx::query_as!(
        LocationRecord,
        "SELECT captured_at, latitude, longitude, accuracy, altitude, bearing, speed, provider,
                battery_level, network_type, created_at
         FROM locations WHERE device_id = $1
         ORDER BY captured_at",
        device_id
    )
    .fetch(conn)
}
