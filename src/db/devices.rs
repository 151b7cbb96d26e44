//! The `devices` table.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub device_id: Uuid,
    pub display_name: String,
    pub group_id: String,
    pub platform: String,
    pub active: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Membership {
    pub group_id: String,
    pub active: bool,
}

/// Namespace of the group advisory locks (first key of the two-key form), so they cannot
/// collide with other advisory locks in the database.
const GROUP_LOCK_NAMESPACE: i32 = 0x6772_6f75; // "grou"

/// Serialises membership changes of one group until the transaction ends. Other groups are
/// not blocked (a hash collision between two group ids only makes them share a queue).
pub async fn lock_group(tx: &mut PgConnection, group_id: &str) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock($1, hashtext($2))", GROUP_LOCK_NAMESPACE, group_id)
        .execute(tx)
        .await
        .map(drop)
}

/// The device's current group and state, locking its row for the rest of the transaction.
pub async fn find_membership_for_update(
    tx: &mut PgConnection,
    device_id: Uuid,
) -> sqlx::Result<Option<Membership>> {
    sqlx::query_as!(
        Membership,
        "SELECT group_id, active FROM devices WHERE device_id = $1 FOR UPDATE",
        device_id
    )
    .fetch_optional(tx)
    .await
}

/// Active members of a group: an index-only scan of idx_devices_active (group_id, active).
pub async fn count_active_in_group(tx: &mut PgConnection, group_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM devices WHERE group_id = $1 AND active"#,
        group_id
    )
    .fetch_one(tx)
    .await
}

pub struct Upsert<'a> {
    pub device_id: Uuid,
    pub display_name: &'a str,
    pub group_id: &'a str,
    pub platform: Option<&'a str>,
    pub default_platform: &'a str,
    pub fcm_token: Option<&'a str>,
}

/// Inserts or updates by device_id in one statement. An update keeps `created_at` (and the
/// platform and token when none is given), reactivates the device and marks it seen; the
/// trigger moves `updated_at`.
pub async fn upsert(tx: &mut PgConnection, device: Upsert<'_>) -> sqlx::Result<DeviceRow> {
    sqlx::query_as!(
        DeviceRow,
        r#"INSERT INTO devices (device_id, display_name, group_id, platform, fcm_token, active, last_seen_at)
           VALUES ($1, $2, $3, COALESCE($4, $5), $6, true, now())
           ON CONFLICT (device_id) DO UPDATE SET
               display_name = EXCLUDED.display_name,
               group_id     = EXCLUDED.group_id,
               platform     = COALESCE($4, devices.platform),
               fcm_token    = COALESCE(EXCLUDED.fcm_token, devices.fcm_token),
               active       = true,
               last_seen_at = now()
           RETURNING device_id, display_name, group_id, platform, active, last_seen_at,
                     created_at, updated_at"#,
        device.device_id,
        device.display_name,
        device.group_id,
        device.platform,
        device.default_platform,
        device.fcm_token,
    )
    .fetch_one(tx)
    .await
}

/// Sets active = false; false when no such device exists.
pub async fn deactivate(db: impl PgExecutor<'_>, device_id: Uuid) -> sqlx::Result<bool> {
    let result =
        sqlx::query!("UPDATE devices SET active = false WHERE device_id = $1", device_id).execute(db).await?;
    Ok(result.rows_affected() == 1)
}

/// Active members of a group by display name (device id breaks ties, so the order is stable).
/// Uses idx_devices_active (group_id, active); a group has at most a handful of rows to sort.
pub async fn list_active_in_group(db: impl PgExecutor<'_>, group_id: &str) -> sqlx::Result<Vec<DeviceRow>> {
    sqlx::query_as!(
        DeviceRow,
        r#"SELECT device_id, display_name, group_id, platform, active, last_seen_at, created_at, updated_at
           FROM devices
           WHERE group_id = $1 AND active
           ORDER BY display_name, device_id"#,
        group_id
    )
    .fetch_all(db)
    .await
}
