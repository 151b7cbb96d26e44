//! Devices and groups: register (create or update), deactivate, list a group.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::{
    domain::devices::rules,
    error::ApiResult,
    http::{
        docs::{AuthenticatedErrors, responses, tags},
        extract::{AppJson, AppPath, ValidJson, ValidQuery},
    },
    model::{Device, GroupMember, Platform, Registration},
    state::AppState,
};

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
            platform: self.platform.as_deref().map(|name| Platform::parse(name).expect("validated platform")),
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
    pub platform: Platform,
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
    path = "/api/v1/devices/register",
    tag = tags::DEVICES,
    security(("api_key" = [])),
    request_body = RegisterDeviceRequest,
    responses(
        (status = 200, description = "The device as stored", body = DeviceResponse),
        (status = 400, response = responses::ValidationFailed),
        (status = 409, response = responses::Conflict),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        AuthenticatedErrors,
    )
)]
pub async fn register_device(
    State(state): State<AppState>,
    ValidJson(request): ValidJson<RegisterDeviceRequest>,
) -> ApiResult<AppJson<DeviceResponse>> {
    let device = state.devices.register(request.into_registration()).await?;
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

/// Lists the active devices of a group with where each last was.
///
/// Sorted by display name, each with its newest location by capture time (`last_location`,
/// null when it has none). Deactivated devices are left out; an unknown group gives an empty
/// list.
#[utoipa::path(
    get,
    path = "/api/v1/devices",
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
    let devices = state.devices.list_group(&query.group_id).await?;
    Ok(AppJson(DeviceListResponse { devices }))
}

/// Deactivates a device.
///
/// The device leaves its group's listing and stops counting toward the group limit; its
/// locations are kept, and registering again reactivates it. Deactivating an already inactive
/// device also answers 204.
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{device_id}",
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
    state.devices.deactivate(device_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
