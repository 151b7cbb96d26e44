//! Devices and groups: register (create or update), deactivate, list a group, renew a device
//! token, invite into a group.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::{
    domain::devices::{Registered, rules},
    error::{ApiError, ApiResult},
    http::{
        docs::{AuthenticatedErrors, responses, tags},
        extract::{AppJson, AppPath, Caller, OptionalJson, ValidJson, ValidQuery, integer},
    },
    model::{Device, GroupListing, Invite, Platform, Registration},
    state::AppState,
};

/// The registration route: the one an `app` key may call without a device token.
pub const REGISTER_ROUTE: &str = "/api/v1/devices/register";

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
    /// An invitation code from a member of the group (`7KQ-M4D-XR9`; case, dashes and spaces do
    /// not matter). Needed to join a group that has active members through an `app` key;
    /// ignored otherwise.
    #[validate(length(min = 1, max = 32, message = "must be 1 to 32 characters"))]
    #[schema(min_length = 1, max_length = 32, example = "7KQ-M4D-XR9")]
    pub invite_code: Option<String>,
}

impl RegisterDeviceRequest {
    fn registration(&self) -> Registration {
        Registration {
            device_id: Uuid::parse_str(&self.device_id).expect("validated as a UUID"),
            display_name: self.display_name.trim().to_owned(),
            group_id: self.group_id.clone(),
            platform: self.platform.as_deref().map(|name| Platform::parse(name).expect("validated platform")),
            fcm_token: self.fcm_token.clone(),
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
    /// The device's token, present only when this request issued it (a new device, or one
    /// registered before tokens existed): `pmd_` and 43 characters. Keep it in the app's
    /// secure storage and send it as `Authorization: Bearer <device_token>` with the API key;
    /// it cannot be shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "pmd_3q2-7wXk0hV9bLJz8rT4mNcYp1sAeGdUuFiHo6KjQvE")]
    pub device_token: Option<String>,
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
            device_token: None,
        }
    }
}

impl From<Registered> for DeviceResponse {
    fn from(registered: Registered) -> Self {
        Self { device_token: registered.device_token, ..registered.device.into() }
    }
}

/// Registers a device or updates its registration.
///
/// Creates the device when `device_id` is new, and answers its device token (once); otherwise
/// updates its name, group, platform and FCM token, marks it seen, and reactivates it if it was
/// deactivated. `created_at` and every stored location are kept. Joining (or moving into) a
/// group that already has 20 active devices is refused with 409; a device already in the group
/// can always re-register.
///
/// With an `app` key: re-registering an existing device needs its device token (401; a device
/// registered before tokens existed gets its first one instead), and joining a group that has
/// active members needs an `invite_code` from one of them (403 without or with a wrong, expired
/// or used-up code; 429 after too many wrong ones). Registrations through an `app` key are also
/// limited per client address.
#[utoipa::path(
    post,
    path = "/api/v1/devices/register",
    tag = tags::DEVICES,
    security(("api_key" = []), ("api_key" = [], "device_token" = [])),
    request_body = RegisterDeviceRequest,
    responses(
        (status = 200, description = "The device as stored (with its device token when one was issued)", body = DeviceResponse),
        (status = 400, response = responses::ValidationFailed),
        (status = 403, response = responses::InviteNeeded),
        (status = 409, response = responses::Conflict),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        AuthenticatedErrors,
    )
)]
pub async fn register_device(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ValidJson(request): ValidJson<RegisterDeviceRequest>,
) -> ApiResult<AppJson<DeviceResponse>> {
    let registered =
        state.devices.register(&caller, request.registration(), request.invite_code.as_deref()).await?;
    Ok(AppJson(registered.into()))
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

/// Lists the active devices of a group with where each last was.
///
/// Sorted by display name as people read it (case and accents do not split the order), each
/// with its newest location by capture time (`last_location`, null when it has none).
/// Deactivated devices are left out; with a `full` key an unknown group gives an empty list.
/// With an `app` key, only the group of the device whose token is sent (404 for any other).
#[utoipa::path(
    get,
    path = "/api/v1/devices",
    tag = tags::DEVICES,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    params(ListDevicesQuery),
    responses(
        (status = 200, description = "The group's active devices", body = GroupListing),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::NotFound),
        AuthenticatedErrors,
    )
)]
pub async fn list_devices(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ValidQuery(query): ValidQuery<ListDevicesQuery>,
) -> ApiResult<AppJson<GroupListing>> {
    let devices = state.devices.list_group(&caller, &query.group_id).await?;
    Ok(AppJson(GroupListing { devices }))
}

/// Deactivates a device.
///
/// The device leaves its group's listing, stops counting toward the group limit and its device
/// token stops working; its locations are kept, and registering again (with its token, through
/// an `app` key) reactivates it. Deactivating an already inactive device also answers 204. With
/// an `app` key, only the device whose token is sent (404 for any other).
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{device_id}",
    tag = tags::DEVICES,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
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
    Caller(caller): Caller,
    AppPath(device_id): AppPath<Uuid>,
) -> ApiResult<StatusCode> {
    state.devices.deactivate(&caller, device_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new device token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"device_token": "pmd_3q2-7wXk0hV9bLJz8rT4mNcYp1sAeGdUuFiHo6KjQvE"}))]
pub struct DeviceTokenResponse {
    /// `pmd_` and 43 characters; the previous token stopped working.
    pub device_token: String,
}

/// Gives a device a new token.
///
/// With the device's own token (an `app` key): a rotation. With a `full` key: a reset, for a
/// device whose token was lost. The previous token stops working at once on every replica.
/// Audited as `device.token_rotate` or `device.token_reset`.
#[utoipa::path(
    post,
    path = "/api/v1/devices/{device_id}/token",
    tag = tags::DEVICES,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    params(("device_id" = Uuid, Path, description = "The device's UUID")),
    responses(
        (status = 200, description = "The new token", body = DeviceTokenResponse),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::NotFound),
        AuthenticatedErrors,
    )
)]
pub async fn renew_device_token(
    State(state): State<AppState>,
    Caller(caller): Caller,
    AppPath(device_id): AppPath<Uuid>,
) -> ApiResult<AppJson<DeviceTokenResponse>> {
    let device_token = state.devices.renew_token(&caller, device_id).await?;
    Ok(AppJson(DeviceTokenResponse { device_token }))
}

/// How long an invitation lasts and how many may use it. Both optional.
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[schema(example = json!({"max_uses": 1, "expires_in_hours": 24}))]
pub struct CreateInviteRequest {
    /// Devices that may join with it, 1–20 (default 1).
    // Integral numbers such as `3.0` are integers too (JSON Schema), as everywhere else.
    #[serde(default, deserialize_with = "integer::option::deserialize")]
    #[validate(range(min = 1, max = 20, message = "must be between 1 and 20"))]
    #[schema(minimum = 1, maximum = 20)]
    pub max_uses: Option<i32>,
    /// Hours until it stops working, 1–168 (default 24).
    #[serde(default, deserialize_with = "integer::option::deserialize")]
    #[validate(range(min = 1, max = 168, message = "must be between 1 and 168"))]
    #[schema(minimum = 1, maximum = 168)]
    pub expires_in_hours: Option<u32>,
}

/// The group in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    /// 2–50 characters of `A-Z a-z 0-9 _ -`.
    #[param(
        min_length = 2,
        max_length = 50,
        pattern = "^[A-Za-z0-9_-]{2,50}$",
        example = "family-group-123"
    )]
    pub group_id: String,
}

/// Creates an invitation into a group.
///
/// For a member: the device token of an active device of the group (or a `full` key). Answers a
/// nine-character code to read out or send to the newcomer, who registers with it as
/// `invite_code`; codes expire (24 h by default, at most 7 days) and admit `max_uses` devices (1
/// by default). The code is shown this once (only its hash is stored). Audited as
/// `invite.create`.
#[utoipa::path(
    post,
    path = "/api/v1/groups/{group_id}/invites",
    tag = tags::DEVICES,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    params(GroupPath),
    request_body(content = Option<CreateInviteRequest>, description = "Optional; the defaults are one use and 24 hours"),
    responses(
        (status = 201, description = "The invitation", body = Invite),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::NotFound),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        AuthenticatedErrors,
    )
)]
pub async fn create_invite(
    State(state): State<AppState>,
    Caller(caller): Caller,
    AppPath(GroupPath { group_id }): AppPath<GroupPath>,
    OptionalJson(request): OptionalJson<CreateInviteRequest>,
) -> ApiResult<(StatusCode, AppJson<Invite>)> {
    rules::group_id(&group_id).map_err(|problem| ApiError::problem("group_id", problem))?;
    let request = request.unwrap_or_default();
    let invite =
        state.devices.create_invite(&caller, &group_id, request.max_uses, request.expires_in_hours).await?;
    Ok((StatusCode::CREATED, AppJson(invite)))
}
