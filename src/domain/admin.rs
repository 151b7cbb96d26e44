//! Admin operations: purge long-inactive devices, reactivate a device, system statistics.
//! Each change is audited in its own transaction.

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    db::{self, devices::StatsRow},
    domain::{
        audit::{self, Actor, Event},
        devices::{self, Device},
    },
    error::{ApiError, ApiResult},
};

pub const MAX_OLDER_THAN_DAYS: u32 = 3650;

/// Deletes inactive devices unseen for `older_than_days` with all their data; returns how many.
pub async fn purge_inactive_devices(pool: &PgPool, actor: &Actor, older_than_days: u32) -> ApiResult<u64> {
    let days = i32::try_from(older_than_days).expect("validated to at most 3650");
    let mut tx = db::begin(pool).await?;
    let deleted = db::devices::delete_inactive(&mut tx, days).await?;
    let event = Event {
        action: "devices.purge_inactive",
        resource_type: "device",
        resource_id: None,
        metadata: json!({"older_than_days": older_than_days, "deleted_count": deleted.len(), "device_ids": deleted}),
    };
    audit::record(&mut tx, actor, event).await?;
    db::commit(tx).await?;
    Ok(deleted.len() as u64)
}

/// Reactivates a deactivated device. Its group's limit still holds: the same group lock and
/// count as registration, so reactivation is no back door into a full group.
pub async fn reactivate_device(
    pool: &PgPool,
    actor: &Actor,
    device_id: Uuid,
    max_per_group: u32,
) -> ApiResult<Device> {
    let mut tx = db::begin(pool).await?;
    let current = db::devices::find_record(&mut *tx, device_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Device not found".into()))?;
    db::devices::lock_group(&mut tx, &current.group_id).await?;
    let membership = db::devices::find_membership_for_update(&mut tx, device_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Device not found".into()))?;
    if !membership.active {
        devices::ensure_room_in_group(&mut tx, &membership.group_id, max_per_group).await?;
    }
    let row = db::devices::activate(&mut tx, device_id).await?;
    let event = Event {
        action: "device.reactivate",
        resource_type: "device",
        resource_id: Some(device_id.to_string()),
        metadata: json!({"group_id": row.group_id, "was_active": membership.active}),
    };
    audit::record(&mut tx, actor, event).await?;
    db::commit(tx).await?;
    Ok(row.into())
}

pub async fn stats(pool: &PgPool) -> ApiResult<StatsRow> {
    Ok(db::devices::stats(pool).await?)
}
