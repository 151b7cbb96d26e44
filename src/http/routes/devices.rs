//! Devices and groups: register (create or update), deactivate, list a group.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use crate::{
    domain::devices::{self, Device, Registration, rules},
    error::ApiResult,
    http::extract::{AppJson, AppPath, ValidJson, ValidQuery},
    openapi::{AuthenticatedErrors, responses, tags},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_device))
        .routes(routes!(list_devices))
        .routes(routes!(delete_device))
}

/// Platforms a device may declare (documentation type; the wire value is the lowercase name).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Platform {
    Android,
    Ios,
}

/// Registers a device, or updates it when `device_id` is already known.
///
/// Unknown JSON fields are ignored, so older and newer apps can talk to this server.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[schema(example = json!({
    "device_id": "550e8400-e29b-41d4-a716-446655440000",
    "display_name": "Martin's Phone",
    "group_id": "family-group-123",
    "platform": "android",
    "fcm_token": "fcm-token-from-firebase"
}))]
pub struct RegisterDeviceRequest {
    /// The device's own UUID, generated once on the phone.
    #[validate(custom(function = "rules::device_id"))]
    #[schema(value_type = Uuid)]
    pub device_id: String,
    /// 2–50 characters once surrounding whitespace is trimmed (it is stored trimmed); no
    /// control characters.
    #[validate(custom(function = "rules::display_name"))]
    #[schema(
        pattern = r"^[^\S\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]{0,48}[^\s\x00-\x1f\x7f-\x9f][^\S\x00-\x1f\x7f-\x9f]*$"
    )]
    pub display_name: String,
    /// 2–50 characters of `A-Z a-z 0-9 _ -`. A group holds at most 20 active devices.
    #[validate(custom(function = "rules::group_id"))]
    #[schema(min_length = 2, max_length = 50, pattern = "^[A-Za-z0-9_-]{2,50}$")]
    pub group_id: String,
    /// Defaults to `android` for a new device; omitted on re-registration keeps the stored value.
    #[validate(custom(function = "rules::platform"))]
    #[schema(value_type = Option<Platform>)]
    pub platform: Option<String>,
    /// Firebase Cloud Messaging token, 1–4096 characters without control characters; omitted
    /// keeps the stored one.
    #[validate(custom(function = "rules::fcm_token"))]
    #[schema(min_length = 1, max_length = 4096, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub fcm_token: Option<String>,
}

impl RegisterDeviceRequest {
    fn into_registration(self) -> Registration {
        Registration {
            device_id: Uuid::parse_str(&self.device_id).expect("validated as a UUID"),
            display_name: self.display_name.trim().to_owned(),
            group_id: self.group_id,
            platform: self.platform,
            fcm_token: self.fcm_token,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "device_id": "550e8400-e29b-41d4-a716-446655440000",
    "display_name": "Martin's Phone",
    "group_id": "family-group-123",
    "platform": "android",
    "created_at": "2026-11-21T10:30:00Z",
    "updated_at": "2026-11-21T10:30:00Z"
}))]
pub struct DeviceResponse {
    pub device_id: Uuid,
    pub display_name: String,
    pub group_id: String,
    #[schema(value_type = Platform)]
    pub platform: String,
    /// First registration; never changes.
    pub created_at: DateTime<Utc>,
    /// Last change of the device's registration.
    pub updated_at: DateTime<Utc>,
}

impl From<Device> for DeviceResponse {
    fn from(device: Device) -> Self {
        Self {
            device_id: device.device_id,
            display_name: device.display_name,
            group_id: device.group_id,
            platform: device.platform,
            created_at: device.created_at,
            updated_at: device.updated_at,
        }
    }
}

/// Registers a device or updates its registration.
///
/// Creates the device when `device_id` is new; otherwise updates its name, group, platform and
/// FCM token, marks it seen, and reactivates it if it was deactivated. `created_at` and every
/// stored location are kept. Joining (or moving into) a group that already has 20 active
/// devices is refused with 409; a device already in the group can always re-register.
#[utoipa::path(
    post,
    path = "/devices/register",
    tag = tags::DEVICES,
    security(("api_key" = [])),
    request_body = RegisterDeviceRequest,
    responses(
        (status = 200, description = "The device as stored", body = DeviceResponse),
        (status = 400, response = responses::ValidationFailed),
        (status = 409, response = responses::Conflict),
        (status = 413, response = responses::PayloadTooLarge),
        AuthenticatedErrors,
    )
)]
pub async fn register_device(
    State(state): State<AppState>,
    ValidJson(request): ValidJson<RegisterDeviceRequest>,
) -> ApiResult<AppJson<DeviceResponse>> {
    let limit = state.settings.limits.max_devices_per_group;
    let device = devices::register(&state.pool, request.into_registration(), limit).await?;
    Ok(AppJson(device.into()))
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListDevicesQuery {
    /// The group to list (2–50 characters of `A-Z a-z 0-9 _ -`).
    #[validate(custom(function = "rules::group_id"))]
    #[param(
        example = "family-group-123",
        min_length = 2,
        max_length = 50,
        pattern = "^[A-Za-z0-9_-]{2,50}$"
    )]
    pub group_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"devices": [{
    "device_id": "550e8400-e29b-41d4-a716-446655440000",
    "display_name": "Martin's Phone",
    "platform": "android",
    "last_seen_at": "2026-11-21T10:31:12Z",
    "last_location": {"latitude": 48.1374, "longitude": 11.5755,
                      "timestamp": "2026-11-21T10:30:00Z", "accuracy": 12.5}
}]}))]
pub struct DeviceListResponse {
    /// Active devices of the group, sorted by display name.
    pub devices: Vec<GroupMember>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupMember {
    pub device_id: Uuid,
    pub display_name: String,
    #[schema(value_type = Platform)]
    pub platform: String,
    /// When the device last registered or uploaded (precise to 30 s); null if never.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The newest fix by capture time; null when the device has none.
    pub last_location: Option<LastLocationResponse>,
}

/// Where a device last was.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastLocationResponse {
    pub latitude: f64,
    pub longitude: f64,
    /// When the fix was taken (RFC 3339, UTC).
    pub timestamp: DateTime<Utc>,
    /// Horizontal accuracy in metres.
    pub accuracy: f64,
}

/// Lists the active devices of a group with where each last was.
///
/// Sorted by display name, each with its newest location by capture time (`last_location`,
/// null when it has none). Deactivated devices are left out; an unknown group gives an empty
/// list.
#[utoipa::path(
    get,
    path = "/devices",
    tag = tags::DEVICES,
    security(("api_key" = [])),
    params(ListDevicesQuery),
    responses(
        (status = 200, description = "The group's active devices", body = DeviceListResponse),
        (status = 400, response = responses::ValidationFailed),
        AuthenticatedErrors,
    )
)]
pub async fn list_devices(
    State(state): State<AppState>,
    ValidQuery(query): ValidQuery<ListDevicesQuery>,
) -> ApiResult<AppJson<DeviceListResponse>> {
    let members = devices::list_group(&state.pool, &query.group_id).await?;
    let devices = members
        .into_iter()
        .map(|member| GroupMember {
            device_id: member.device.device_id,
            display_name: member.device.display_name,
            platform: member.device.platform,
            last_seen_at: member.device.last_seen_at,
            last_location: member.last_location.map(|last| LastLocationResponse {
                latitude: last.latitude,
                longitude: last.longitude,
                timestamp: last.captured_at,
                accuracy: f64::from(last.accuracy),
            }),
        })
        .collect();
    Ok(AppJson(DeviceListResponse { devices }))
}

/// Deactivates a device.
///
/// The device leaves its group's listing and stops counting toward the group limit; its
/// locations are kept, and registering again reactivates it. Deactivating an already inactive
/// device also answers 204.
#[utoipa::path(
    delete,
    path = "/devices/{device_id}",
    tag = tags::DEVICES,
    security(("api_key" = [])),
    params(("device_id" = Uuid, Path, description = "The device's UUID")),
    responses(
        (status = 204, description = "Deactivated"),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::NotFound),
        AuthenticatedErrors,
    )
)]
pub async fn delete_device(
    State(state): State<AppState>,
    AppPath(device_id): AppPath<Uuid>,
) -> ApiResult<StatusCode> {
    devices::deactivate(&state.pool, device_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
