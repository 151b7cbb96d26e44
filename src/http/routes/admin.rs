//! Admin operations: admin API keys only (a standard key gets 403). Changes are audited.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    db::audit::{EntryRow, Filter},
    domain::{
        admin::{self, MAX_OLDER_THAN_DAYS},
        audit, text,
    },
    error::ApiResult,
    http::{
        extract::{AdminKey, AppJson, AppPath, Caller, ValidQuery},
        routes::devices::DeviceResponse,
    },
    openapi::{AuthenticatedErrors, responses, tags},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(delete_inactive_devices))
        .routes(routes!(reactivate_device))
        .routes(routes!(get_stats))
        .routes(routes!(list_audit_entries))
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PurgeQuery {
    /// Inactive devices not seen for at least this many days are deleted (1–3650).
    #[validate(range(min = 1, max = 3650, message = "must be between 1 and 3650"))]
    #[param(minimum = 1, maximum = 3650, example = 90)]
    pub older_than_days: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"deleted_count": 12}))]
pub struct PurgeResponse {
    /// Devices deleted, with all their locations.
    pub deleted_count: u64,
}

/// Deletes inactive devices that have not been seen for `older_than_days` days.
///
/// Their locations and idempotency records are deleted with them. Active devices are never
/// touched. Audited as `devices.purge_inactive` with the deleted ids.
#[utoipa::path(
    delete,
    path = "/admin/devices/inactive",
    tag = tags::ADMIN,
    security(("api_key" = [])),
    params(PurgeQuery),
    responses(
        (status = 200, description = "How many devices were deleted", body = PurgeResponse),
        (status = 400, response = responses::ValidationFailed),
        (status = 403, response = responses::Forbidden),
        AuthenticatedErrors,
    )
)]
pub async fn delete_inactive_devices(
    _admin: AdminKey,
    State(state): State<AppState>,
    Caller(actor): Caller,
    ValidQuery(query): ValidQuery<PurgeQuery>,
) -> ApiResult<AppJson<PurgeResponse>> {
    debug_assert!(query.older_than_days <= MAX_OLDER_THAN_DAYS);
    let deleted_count = admin::purge_inactive_devices(&state.pool, &actor, query.older_than_days).await?;
    Ok(AppJson(PurgeResponse { deleted_count }))
}

/// Reactivates a deactivated device.
///
/// The device rejoins its group's listing; its group's limit still applies (409 when the group
/// already has 20 active devices). Reactivating an active device changes nothing. Audited as
/// `device.reactivate`.
#[utoipa::path(
    post,
    path = "/admin/devices/{device_id}/reactivate",
    tag = tags::ADMIN,
    security(("api_key" = [])),
    params(("device_id" = Uuid, Path, description = "The device's UUID")),
    responses(
        (status = 200, description = "The device, active", body = DeviceResponse),
        (status = 400, response = responses::ValidationFailed),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::NotFound),
        (status = 409, response = responses::Conflict),
        AuthenticatedErrors,
    )
)]
pub async fn reactivate_device(
    _admin: AdminKey,
    State(state): State<AppState>,
    Caller(actor): Caller,
    AppPath(device_id): AppPath<Uuid>,
) -> ApiResult<AppJson<DeviceResponse>> {
    let limit = state.settings.limits.max_devices_per_group;
    let device = admin::reactivate_device(&state.pool, &actor, device_id, limit).await?;
    Ok(AppJson(device.into()))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "devices": 10000, "active_devices": 8572, "inactive_devices": 1428,
    "groups": 1000, "groups_with_active_devices": 998,
    "locations_estimate": 1000000,
    "oldest_location_at": "2026-10-12T08:00:00Z", "newest_location_at": "2026-11-21T10:30:00Z"
}))]
pub struct StatsResponse {
    pub devices: i64,
    pub active_devices: i64,
    pub inactive_devices: i64,
    /// Groups as of the last refresh of the `group_member_counts` view (hourly).
    pub groups: i64,
    pub groups_with_active_devices: i64,
    /// PostgreSQL's estimate of the number of stored locations (exact counts of large tables
    /// are expensive); refreshed by autovacuum.
    pub locations_estimate: i64,
    /// When the oldest stored location was received; null when there are none.
    pub oldest_location_at: Option<DateTime<Utc>>,
    pub newest_location_at: Option<DateTime<Utc>>,
}

/// Reports system totals: devices, groups and locations.
#[utoipa::path(
    get,
    path = "/admin/stats",
    tag = tags::ADMIN,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "System totals", body = StatsResponse),
        (status = 403, response = responses::Forbidden),
        AuthenticatedErrors,
    )
)]
pub async fn get_stats(_admin: AdminKey, State(state): State<AppState>) -> ApiResult<AppJson<StatsResponse>> {
    let stats = admin::stats(&state.pool).await?;
    Ok(AppJson(StatsResponse {
        devices: stats.devices,
        active_devices: stats.active_devices,
        inactive_devices: stats.devices - stats.active_devices,
        groups: stats.groups,
        groups_with_active_devices: stats.groups_with_active_devices,
        locations_estimate: stats.locations_estimate,
        oldest_location_at: stats.oldest_location_at,
        newest_location_at: stats.newest_location_at,
    }))
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this action, e.g. `device.data_delete` (1–100 characters).
    #[validate(custom(function = "filter_100"))]
    #[param(min_length = 1, max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub action: Option<String>,
    /// Only this resource type, e.g. `device` (1–50 characters).
    #[validate(custom(function = "filter_50"))]
    #[param(min_length = 1, max_length = 50, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub resource_type: Option<String>,
    /// Only this resource, e.g. a device id (1–200 characters).
    #[validate(custom(function = "filter_200"))]
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub resource_id: Option<String>,
    /// Only entries of this API key.
    #[validate(range(min = 1, message = "must be positive"))]
    #[param(minimum = 1)]
    pub api_key_id: Option<i64>,
    /// Entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Page size, 1–200 (default 50).
    #[validate(range(min = 1, max = 200, message = "must be between 1 and 200"))]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

fn filter_100(value: &str) -> Result<(), validator::ValidationError> {
    text::plain(value, 1, 100)
}

fn filter_50(value: &str) -> Result<(), validator::ValidationError> {
    text::plain(value, 1, 50)
}

fn filter_200(value: &str) -> Result<(), validator::ValidationError> {
    text::plain(value, 1, 200)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// The API key that acted (null if the key was deleted since).
    pub api_key_id: Option<i64>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub ip_address: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<EntryRow> for AuditEntry {
    fn from(row: EntryRow) -> Self {
        Self {
            id: row.id,
            api_key_id: row.api_key_id,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            metadata: row.metadata,
            ip_address: row.ip_address,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "entries": [{"id": 42, "api_key_id": 1, "action": "device.data_delete", "resource_type": "device",
                 "resource_id": "550e8400-e29b-41d4-a716-446655440000", "metadata": {},
                 "ip_address": "203.0.113.7", "created_at": "2026-11-21T10:30:00Z"}],
    "next_cursor": "42"
}))]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Lists audit entries, newest first, filtered and paginated by cursor.
///
/// Entries are kept 90 days. Every admin change and every privacy operation (data export,
/// data deletion) has one, written in the same transaction as the change.
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = tags::ADMIN,
    security(("api_key" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "One page of entries", body = AuditPage),
        (status = 400, response = responses::ValidationFailed),
        (status = 403, response = responses::Forbidden),
        AuthenticatedErrors,
    )
)]
pub async fn list_audit_entries(
    _admin: AdminKey,
    State(state): State<AppState>,
    ValidQuery(query): ValidQuery<AuditQuery>,
) -> ApiResult<AppJson<AuditPage>> {
    audit::check_window(query.since, query.until)?;
    let filter = Filter {
        action: query.action,
        resource_type: query.resource_type,
        resource_id: query.resource_id,
        api_key_id: query.api_key_id,
        since: query.since,
        until: query.until,
        before_id: None,
        limit: query.limit.unwrap_or(50),
    };
    let page = audit::list(&state.pool, filter, query.cursor.as_deref()).await?;
    Ok(AppJson(AuditPage {
        entries: page.entries.into_iter().map(AuditEntry::from).collect(),
        next_cursor: page.next_cursor,
    }))
}
