//! The `devices` table (and the listing view and statistics over it).

use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::model::{
    Device, DeviceCredential, GroupMember, LastLocation, Membership, Platform, Registration, SystemStats,
};

/// Namespace of the group advisory locks (first key of the two-key form), so they cannot
/// collide with other advisory locks in the database.
const GROUP_LOCK_NAMESPACE: i32 = 0x6772_6f75; // "grou"

/// Serialises membership changes of one group until the transaction ends. Other groups are
/// not blocked (a hash collision between two group ids only makes them share a queue).
pub async fn lock_group(tx: &mut PgConnection, group_id: &str) -> sqlx::Result<()> {
    observe!(
        "SELECT",
        "devices",
        sqlx::query!("SELECT pg_advisory_xact_lock($1, hashtext($2))", GROUP_LOCK_NAMESPACE, group_id),
        execute(tx)
    )
    .map(drop)
}

/// The device, if it exists.
pub async fn find(db: impl PgExecutor<'_>, device_id: Uuid) -> sqlx::Result<Option<Device>> {
    observe!(
        "SELECT",
        "devices",
        sqlx::query_as!(
            Device,
            r#"SELECT device_id, display_name, group_id, platform AS "platform: Platform", fcm_token, active,
                      last_seen_at, created_at, updated_at
               FROM devices WHERE device_id = $1"#,
            device_id
        ),
        fetch_optional(db)
    )
}

/// The device's group and state, locking its row for the rest of the transaction.
pub async fn find_membership_for_update(
    tx: &mut PgConnection,
    device_id: Uuid,
) -> sqlx::Result<Option<Membership>> {
    observe!(
        "SELECT",
        "devices",
        sqlx::query_as!(
            Membership,
            r#"SELECT group_id, active, token_hash IS NOT NULL AS "has_token!"
               FROM devices WHERE device_id = $1 FOR UPDATE"#,
            device_id
        ),
        fetch_optional(tx)
    )
}

/// Active members of a group: an index-only scan of idx_devices_active (group_id, active).
pub async fn count_active_in_group(tx: &mut PgConnection, group_id: &str) -> sqlx::Result<i64> {
    observe!(
        "SELECT",
        "devices",
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM devices WHERE group_id = $1 AND active"#,
            group_id
        ),
        fetch_one(tx)
    )
}

/// What a device token (by its hash) authenticates as. Uses uq_devices_token_hash.
pub async fn find_by_token(
    db: impl PgExecutor<'_>,
    token_hash: &str,
) -> sqlx::Result<Option<DeviceCredential>> {
    observe!(
        "SELECT",
        "devices",
        sqlx::query_as!(
            DeviceCredential,
            "SELECT device_id, group_id, active FROM devices WHERE token_hash = $1",
            token_hash
        ),
        fetch_optional(db)
    )
}

/// Gives the device a new token (its hash); the old one stops working. False when no such
/// device exists.
pub async fn set_token(tx: &mut PgConnection, device_id: Uuid, token_hash: &str) -> sqlx::Result<bool> {
    let result = observe!(
        "UPDATE",
        "devices",
        sqlx::query!(
            "UPDATE devices SET token_hash = $2, token_issued_at = now() WHERE device_id = $1",
            device_id,
            token_hash
        ),
        execute(tx)
    )?;
    Ok(result.rows_affected() == 1)
}

/// Inserts or updates by device_id in one statement. An update keeps `created_at` (and the
/// platform and FCM token when none is given, and the device token unless `token_hash` gives a
/// new one), reactivates the device and marks it seen; the trigger moves `updated_at`. A new
/// device without a platform is `android` (the default).
pub async fn upsert(
    tx: &mut PgConnection,
    registration: &Registration,
    token_hash: Option<&str>,
) -> sqlx::Result<Device> {
    observe!(
        "INSERT",
        "devices",
        sqlx::query_as!(
            Device,
            r#"INSERT INTO devices (device_id, display_name, group_id, platform, fcm_token, active, last_seen_at,
                                  token_hash, token_issued_at)
               VALUES ($1, $2, $3, COALESCE($4, 'android'::platform), $5, true, now(), $6::text,
                       CASE WHEN $6::text IS NULL THEN NULL ELSE now() END)
               ON CONFLICT (device_id) DO UPDATE SET
                   display_name    = EXCLUDED.display_name,
                   group_id        = EXCLUDED.group_id,
                   platform        = COALESCE($4, devices.platform),
                   fcm_token       = COALESCE(EXCLUDED.fcm_token, devices.fcm_token),
                   active          = true,
                   last_seen_at    = now(),
                   token_hash      = COALESCE(EXCLUDED.token_hash, devices.token_hash),
                   token_issued_at = COALESCE(EXCLUDED.token_issued_at, devices.token_issued_at)
               RETURNING device_id, display_name, group_id, platform AS "platform: Platform", fcm_token,
                         active, last_seen_at, created_at, updated_at"#,
            registration.device_id,
            registration.display_name,
            registration.group_id,
            registration.platform as Option<Platform>,
            registration.fcm_token,
            token_hash,
        ),
        fetch_one(tx)
    )
}

/// Sets active = false; false when no such device exists.
pub async fn deactivate(db: impl PgExecutor<'_>, device_id: Uuid) -> sqlx::Result<bool> {
    let result = observe!(
        "UPDATE",
        "devices",
        sqlx::query!("UPDATE devices SET active = false WHERE device_id = $1", device_id),
        execute(db)
    )?;
    Ok(result.rows_affected() == 1)
}

/// Sets active = true. The caller holds the group lock and has checked the limit.
pub async fn activate(tx: &mut PgConnection, device_id: Uuid) -> sqlx::Result<Device> {
    observe!(
        "UPDATE",
        "devices",
        sqlx::query_as!(
            Device,
            r#"UPDATE devices SET active = true WHERE device_id = $1
               RETURNING device_id, display_name, group_id, platform AS "platform: Platform", fcm_token,
                         active, last_seen_at, created_at, updated_at"#,
            device_id
        ),
        fetch_one(tx)
    )
}

/// Active members of a group by display name as people read it (the ICU root collation:
/// alpha, Bravo, charlie, Delta, émile, Zoe; not by byte, which puts every capital first),
/// device id breaking ties so the order is stable, each with its newest location. A group holds
/// at most 20 devices, so the sort needs no index of its own. One query through the devices_with_last_location view: the
/// group filter uses idx_devices_active (group_id, active), and the view's subquery is one
/// probe of idx_locations_device_captured (device_id, captured_at DESC) per member, never a
/// scan and never one query per device.
pub async fn list_active_in_group(db: impl PgExecutor<'_>, group_id: &str) -> sqlx::Result<Vec<GroupMember>> {
    observe!(
        "SELECT",
        "devices_with_last_location",
        sqlx::query_as!(
            GroupMember,
            r#"SELECT device_id AS "device_id!", display_name AS "display_name!",
                      platform AS "platform!: Platform", last_seen_at,
                      last_location AS "last_location: LastLocation"
               FROM devices_with_last_location
               WHERE group_id = $1 AND active
               ORDER BY display_name COLLATE "und-x-icu", device_id"#,
            group_id
        ),
        fetch_all(db)
    )
}

/// Marks the devices seen now. Rows are locked in device order (callers pass them sorted, and
/// the locking subquery sorts again), so concurrent writers of overlapping sets (replicas)
/// cannot deadlock; NO KEY UPDATE does not block location inserts' foreign-key checks.
pub async fn touch_last_seen(db: impl PgExecutor<'_>, device_ids: &[Uuid]) -> sqlx::Result<()> {
    observe!(
        "UPDATE",
        "devices",
        sqlx::query!(
            "UPDATE devices SET last_seen_at = now()
             WHERE device_id IN (SELECT device_id FROM devices WHERE device_id = ANY($1)
                                 ORDER BY device_id FOR NO KEY UPDATE)",
            device_ids
        ),
        execute(db)
    )
    .map(drop)
}

/// Recomputes `group_member_counts`; CONCURRENTLY keeps it readable meanwhile (it needs the
/// unique index idx_group_member_counts).
pub async fn refresh_group_stats(pool: &PgPool) -> sqlx::Result<()> {
    observe!(
        "REFRESH",
        "group_member_counts",
        sqlx::query!("REFRESH MATERIALIZED VIEW CONCURRENTLY group_member_counts"),
        execute(pool)
    )
    .map(drop)
}

pub async fn count_group_stats(pool: &PgPool) -> sqlx::Result<u64> {
    let groups = observe!(
        "SELECT",
        "group_member_counts",
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM group_member_counts"#),
        fetch_one(pool)
    )?;
    Ok(groups.max(0) as u64)
}

/// Deletes inactive devices not seen (or, never seen, not changed) for `older_than_days`;
/// their locations and idempotency records go with them (ON DELETE CASCADE). Returns the ids.
pub async fn delete_inactive(tx: &mut PgConnection, older_than_days: i32) -> sqlx::Result<Vec<Uuid>> {
    observe!(
        "DELETE",
        "devices",
        sqlx::query_scalar!(
            "DELETE FROM devices
             WHERE NOT active
               AND COALESCE(last_seen_at, updated_at) < now() - make_interval(days => $1)
             RETURNING device_id",
            older_than_days
        ),
        fetch_all(tx)
    )
}

/// Deletes the device and, by cascade, all its locations and idempotency records. False when
/// there was no such device.
pub async fn delete(tx: &mut PgConnection, device_id: Uuid) -> sqlx::Result<bool> {
    let result = observe!(
        "DELETE",
        "devices",
        sqlx::query!("DELETE FROM devices WHERE device_id = $1", device_id),
        execute(tx)
    )?;
    Ok(result.rows_affected() == 1)
}

/// Cheap figures for the admin dashboard: exact device counts (the table is small), group
/// figures from the materialized view, and the location count from the planner's estimate
/// (counting a table of hundreds of millions of rows exactly is not cheap), summed over the
/// partitions (the partitioned table itself has no estimate of its own).
pub async fn stats(pool: &PgPool) -> sqlx::Result<SystemStats> {
    observe!(
        "SELECT",
        "devices",
        sqlx::query_as!(
            SystemStats,
            r#"SELECT devices AS "devices!", active_devices AS "active_devices!",
                      devices - active_devices AS "inactive_devices!",
                      groups AS "groups!", groups_with_active_devices AS "groups_with_active_devices!",
                      locations_estimate AS "locations_estimate!", oldest_location_at, newest_location_at
               FROM (SELECT
                   (SELECT count(*) FROM devices) AS devices,
                   (SELECT count(*) FROM devices WHERE active) AS active_devices,
                   (SELECT count(*) FROM group_member_counts) AS groups,
                   (SELECT count(*) FROM group_member_counts WHERE active_count > 0) AS groups_with_active_devices,
                   (SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::bigint
                    FROM pg_partition_tree('locations') AS p JOIN pg_class c ON c.oid = p.relid
                    WHERE p.isleaf) AS locations_estimate,
                   (SELECT min(created_at) FROM locations) AS oldest_location_at,
                   (SELECT max(created_at) FROM locations) AS newest_location_at) AS totals"#
        ),
        fetch_one(pool)
    )
}
