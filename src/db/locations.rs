//! The `locations` table.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::locations::Fix;

/// Inserts fixes of one or many devices in one statement (UNNEST of one array per column), each
/// device's only if it exists and is active. Returns the devices whose fixes were stored: an
/// unknown or inactive device's rows are left out, every other row goes in. One round trip
/// whatever the number of rows, so concurrent uploads can share it (see `domain::ingest`).
pub async fn insert_fixes(conn: &mut PgConnection, fixes: &[(Uuid, &Fix)]) -> sqlx::Result<Vec<Uuid>> {
    let mut device = Vec::with_capacity(fixes.len());
    let mut latitude = Vec::with_capacity(fixes.len());
    let mut longitude = Vec::with_capacity(fixes.len());
    let mut accuracy = Vec::with_capacity(fixes.len());
    let mut altitude = Vec::with_capacity(fixes.len());
    let mut bearing = Vec::with_capacity(fixes.len());
    let mut speed = Vec::with_capacity(fixes.len());
    let mut provider = Vec::with_capacity(fixes.len());
    let mut battery = Vec::with_capacity(fixes.len());
    let mut network = Vec::with_capacity(fixes.len());
    let mut captured_at: Vec<DateTime<Utc>> = Vec::with_capacity(fixes.len());
    for (device_id, fix) in fixes {
        device.push(*device_id);
        latitude.push(fix.latitude);
        longitude.push(fix.longitude);
        accuracy.push(fix.accuracy);
        altitude.push(fix.altitude);
        bearing.push(fix.bearing);
        speed.push(fix.speed);
        provider.push(fix.provider.as_deref());
        battery.push(fix.battery_level);
        network.push(fix.network_type.as_deref());
        captured_at.push(fix.captured_at);
    }
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
            &device,
            &latitude,
            &longitude,
            &accuracy,
            &altitude as &[Option<f64>],
            &bearing as &[Option<f32>],
            &speed as &[Option<f32>],
            &provider as &[Option<&str>],
            &battery as &[Option<i16>],
            &network as &[Option<&str>],
            &captured_at,
        ),
        fetch_all(conn)
    )
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
