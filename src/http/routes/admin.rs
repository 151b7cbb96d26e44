//! Admin operations: admin API keys only (a standard key gets 403). Changes are audited.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::{
    domain::text,
    error::ApiResult,
    http::{
        docs::{AuthenticatedErrors, responses, tags},
        extract::{AdminKey, AppJson, AppPath, Caller, ValidQuery},
        routes::devices::DeviceResponse,
    },
    model::{AuditFilter, AuditPage, SystemStats},
    state::AppState,
};

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
    path = "/api/v1/admin/devices/inactive",
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
    Caller(caller): Caller,
    ValidQuery(query): ValidQuery<PurgeQuery>,
) -> ApiResult<AppJson<PurgeResponse>> {
    let deleted_count = state.admin.purge_inactive_devices(&caller.actor(), query.older_than_days).await?;
    Ok(AppJson(PurgeResponse { deleted_count }))
}

/// Reactivates a deactivated device.
///
/// The device rejoins its group's listing; its group's limit still applies (409 when the group
/// already has 20 active devices). Reactivating an active device changes nothing. Audited as
/// `device.reactivate`.
#[utoipa::path(
    post,
    path = "/api/v1/admin/devices/{device_id}/reactivate",
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
    Caller(caller): Caller,
    AppPath(device_id): AppPath<Uuid>,
) -> ApiResult<AppJson<DeviceResponse>> {
    let device = state.admin.reactivate_device(&caller.actor(), device_id).await?;
    Ok(AppJson(device.into()))
}

/// Reports system totals: devices, groups and locations.
#[utoipa::path(
    get,
    path = "/api/v1/admin/stats",
    tag = tags::ADMIN,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "System totals", body = SystemStats),
        (status = 403, response = responses::Forbidden),
        AuthenticatedErrors,
    )
)]
pub async fn get_stats(_admin: AdminKey, State(state): State<AppState>) -> ApiResult<AppJson<SystemStats>> {
    Ok(AppJson(state.admin.stats().await?))
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
    pub limit: Option<i32>,
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

/// Lists audit entries, newest first, filtered and paginated by cursor.
///
/// Entries are kept 90 days. Every admin change and every privacy operation (data export,
/// data deletion) has one, written in the same transaction as the change.
#[utoipa::path(
    get,
    path = "/api/v1/admin/audit",
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
    let filter = AuditFilter {
        action: query.action,
        resource_type: query.resource_type,
        resource_id: query.resource_id,
        api_key_id: query.api_key_id,
        since: query.since,
        until: query.until,
        before_id: None,
        limit: query.limit.map_or(50, i64::from),
    };
    Ok(AppJson(state.admin.audit(filter, query.cursor.as_deref()).await?))
}
