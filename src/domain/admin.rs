//! Admin operations: purge long-inactive devices, reactivate a device, system statistics and
//! the audit trail. Each change is audited in its own transaction.

use std::sync::Arc;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    db,
    domain::{audit, devices},
    error::{ApiError, ApiResult},
    infra::credential_cache::TokenCache,
    model::{Actor, AuditFilter, AuditPage, Device, NewAuditEntry, SystemStats},
};

pub const MAX_OLDER_THAN_DAYS: u32 = 3650;

/// What admin keys may do beyond the phone API.
#[derive(Clone)]
pub struct Admin {
    pool: PgPool,
    max_per_group: u32,
    tokens: Arc<TokenCache>,
}

impl Admin {
    /// `max_per_group`: the group limit reactivation must respect, as registration does;
    /// `tokens`: this replica's device-token cache.
    pub fn new(pool: PgPool, max_per_group: u32, tokens: Arc<TokenCache>) -> Self {
        Self { pool, max_per_group, tokens }
    }

    /// Deletes inactive devices unseen for `older_than_days` (1–3650) with all their data;
    /// returns how many.
    pub async fn purge_inactive_devices(&self, actor: &Actor, older_than_days: u32) -> ApiResult<u64> {
        let days = i32::try_from(older_than_days.min(MAX_OLDER_THAN_DAYS)).expect("at most 3650");
        let mut tx = db::begin(&self.pool).await?;
        let deleted = db::devices::delete_inactive(&mut tx, days).await?;
        let entry = NewAuditEntry {
            action: "devices.purge_inactive",
            resource_type: "device",
            resource_id: None,
            metadata: json!({"older_than_days": older_than_days, "deleted_count": deleted.len(), "device_ids": deleted}),
        };
        audit::record(&mut tx, actor, entry).await?;
        db::commit(tx).await?;
        Ok(deleted.len() as u64)
    }

    /// Reactivates a deactivated device. Its group's limit still holds: the same group lock and
    /// count as registration, so reactivation is no back door into a full group.
    pub async fn reactivate_device(&self, actor: &Actor, device_id: Uuid) -> ApiResult<Device> {
        let not_found = || ApiError::NotFound("Device not found".into());
        let mut tx = db::begin(&self.pool).await?;
        let current = db::devices::find(&mut *tx, device_id).await?.ok_or_else(not_found)?;
        db::devices::lock_group(&mut tx, &current.group_id).await?;
        let locked =
            db::devices::find_membership_for_update(&mut tx, device_id).await?.ok_or_else(not_found)?;
        if !locked.active {
            devices::ensure_room_in_group(&mut tx, &locked.group_id, self.max_per_group).await?;
        }
        let device = db::devices::activate(&mut tx, device_id).await?;
        devices::announce(&mut tx, &self.tokens, device_id).await?;
        let entry = NewAuditEntry {
            action: "device.reactivate",
            resource_type: "device",
            resource_id: Some(device_id.to_string()),
            metadata: json!({"group_id": device.group_id, "was_active": locked.active}),
        };
        audit::record(&mut tx, actor, entry).await?;
        db::commit(tx).await?;
        Ok(device)
    }

    pub async fn stats(&self) -> ApiResult<SystemStats> {
        Ok(db::devices::stats(&self.pool).await?)
    }

    /// One page of the audit trail, newest first (see [`audit::list`]).
    pub async fn audit(&self, filter: AuditFilter, cursor: Option<&str>) -> ApiResult<AuditPage> {
        audit::list(&self.pool, filter, cursor).await
    }
}
