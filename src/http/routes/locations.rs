//! Location uploads: one fix, or an offline batch. Both accept `Idempotency-Key`.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{RefOr, Schema},
};
use uuid::Uuid;
use validator::{Validate, ValidateArgs, ValidationErrors, ValidationErrorsKind};

use crate::{
    domain::{
        devices, idempotency,
        uploads::{Clock, Outcome, rules},
    },
    error::{ApiError, ApiResult},
    headers,
    http::{
        docs::{AuthenticatedErrors, responses, tags},
        extract::{AppJson, Caller, JsonBody, integer, parse_json, validate},
    },
    model::{
        Fix, IdempotencyKey, Upload, UploadReceipt,
        schema::{flattened, object_of},
    },
    state::AppState,
};

/// One fix of a batch (the device is given once, on the batch).
#[derive(Debug, Deserialize, Serialize, Validate, ToSchema)]
#[validate(context = Clock)]
pub struct LocationRequest {
    /// When the fix was taken, in milliseconds since the Unix epoch: at most 300 s ahead of
    /// the server's clock (`limits.max_clock_skew_secs`; further ahead is refused). An older fix
    /// is accepted; one captured before the retention period (30 days by default) is
    /// acknowledged but not stored (`expired_count`).
    #[serde(deserialize_with = "integer::deserialize")]
    #[validate(custom(function = "rules::timestamp", use_context))]
    #[schema(minimum = 0, example = 1_763_721_000_000_i64)]
    pub timestamp: i64,
    /// Degrees, -90 to 90 inclusive.
    #[validate(custom(function = "rules::latitude"))]
    #[schema(minimum = -90, maximum = 90, example = 48.1374)]
    pub latitude: f64,
    /// Degrees, -180 to 180 inclusive.
    #[validate(custom(function = "rules::longitude"))]
    #[schema(minimum = -180, maximum = 180, example = 11.5755)]
    pub longitude: f64,
    /// Horizontal accuracy in metres, 0 to 3.4e38.
    #[validate(custom(function = "rules::accuracy"))]
    #[schema(minimum = 0, maximum = 3.4e38, example = 12.5)]
    pub accuracy: f64,
    /// Metres above sea level, -1,000,000 to 1,000,000.
    #[validate(custom(function = "rules::altitude"))]
    #[schema(minimum = -1_000_000, maximum = 1_000_000, example = 519.0)]
    pub altitude: Option<f64>,
    /// Degrees from north, 0 to 360 inclusive; a negative value (iOS sends -1 for an invalid
    /// course) means unknown and is stored as null.
    #[validate(custom(function = "rules::bearing"))]
    #[schema(maximum = 360, example = 270.0)]
    pub bearing: Option<f64>,
    /// Metres per second, up to 3.4e38; a negative value (iOS sends -1 for an invalid speed)
    /// means unknown and is stored as null.
    #[validate(custom(function = "rules::speed"))]
    #[schema(maximum = 3.4e38, example = 1.4)]
    pub speed: Option<f64>,
    /// Location provider, e.g. `gps`, `network`, `fused` (at most 50 characters, no control
    /// characters); empty or blank means unknown and is stored as null.
    #[validate(custom(function = "rules::short_text"))]
    #[schema(max_length = 50, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", example = "fused")]
    pub provider: Option<String>,
    /// Battery percentage, 0 to 100; a negative value (Android sends -1, or -2147483648, when it
    /// cannot read the battery) means unknown and is stored as null.
    #[serde(default, deserialize_with = "integer::option::deserialize")]
    #[validate(custom(function = "rules::battery_level"))]
    #[schema(minimum = -2_147_483_648_i64, maximum = 100, example = 82)]
    pub battery_level: Option<i32>,
    /// Network type, e.g. `wifi`, `cellular` (at most 50 characters, no control characters);
    /// empty or blank means unknown and is stored as null.
    #[validate(custom(function = "rules::short_text"))]
    #[schema(max_length = 50, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", example = "wifi")]
    pub network_type: Option<String>,
}

impl LocationRequest {
    /// The validated fix as it is stored: every number exactly as sent, unknown markers as
    /// no value.
    fn fix(&self) -> Fix {
        Fix {
            captured_at: chrono::DateTime::from_timestamp_millis(self.timestamp)
                .expect("validated timestamp"),
            latitude: self.latitude,
            longitude: self.longitude,
            accuracy: self.accuracy,
            altitude: self.altitude,
            bearing: rules::known(self.bearing),
            speed: rules::known(self.speed),
            provider: rules::known_text(self.provider.as_deref()),
            battery_level: rules::known(self.battery_level)
                .map(|level| i16::try_from(level).expect("validated 0..=100")),
            network_type: rules::known_text(self.network_type.as_deref()),
        }
    }
}

/// The device an upload is for.
#[derive(Debug, Deserialize, Serialize, Validate, ToSchema)]
pub struct DeviceRef {
    /// The registered device the fix belongs to.
    #[validate(custom(function = "devices::rules::device_id"))]
    #[schema(value_type = Uuid)]
    pub device_id: String,
}

/// One location fix of a device, `{"device_id", <the fields of a LocationRequest>}` in one
/// JSON object. Unknown fields are ignored.
#[derive(Debug, Serialize)]
pub struct UploadLocationRequest {
    #[serde(flatten)]
    pub device: DeviceRef,
    #[serde(flatten)]
    pub location: LocationRequest,
}

/// Both views are read from the same object, each with serde's field-naming errors.
impl JsonBody for UploadLocationRequest {
    fn from_json(bytes: &[u8]) -> Result<Self, ApiError> {
        Ok(Self { device: parse_json(bytes)?, location: parse_json(bytes)? })
    }
}

/// Every problem of both views, with the fields named as the client sent them.
impl<'a> ValidateArgs<'a> for UploadLocationRequest {
    type Args = &'a Clock;

    fn validate_with_args(&self, clock: &'a Clock) -> Result<(), ValidationErrors> {
        let mut errors = self.location.validate_with_args(clock).err().unwrap_or_default();
        if let Err(device) = self.device.validate() {
            errors.errors_mut().extend(device.into_errors());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

impl PartialSchema for UploadLocationRequest {
    fn schema() -> RefOr<Schema> {
        let mut object = flattened(object_of::<DeviceRef>(), object_of::<LocationRequest>());
        object.description = Some("One location fix of a device. Unknown fields are ignored.".into());
        object.example = Some(serde_json::json!({
            "device_id": "550e8400-e29b-41d4-a716-446655440000",
            "timestamp": 1_763_721_000_000_i64,
            "latitude": 48.1374, "longitude": 11.5755, "accuracy": 12.5,
            "altitude": 519.0, "bearing": 270.0, "speed": 1.4,
            "provider": "fused", "battery_level": 82, "network_type": "wifi"
        }));
        Schema::Object(object).into()
    }
}

impl ToSchema for UploadLocationRequest {}

/// Up to 50 fixes of one device, typically collected while offline. Unknown fields are ignored.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({
    "device_id": "550e8400-e29b-41d4-a716-446655440000",
    "locations": [
        {"timestamp": 1_763_720_940_000_i64, "latitude": 48.1371, "longitude": 11.5753, "accuracy": 10.0},
        {"timestamp": 1_763_721_000_000_i64, "latitude": 48.1374, "longitude": 11.5755, "accuracy": 12.5, "battery_level": 81}
    ]
}))]
pub struct UploadLocationBatchRequest {
    #[schema(value_type = Uuid)]
    pub device_id: String,
    /// 1 to 50 fixes (the server's `limits.max_batch_size`). Stored all together or not at all.
    #[schema(min_items = 1, max_items = 50)]
    pub locations: Vec<LocationRequest>,
}

/// The device id and every fix, each fix's problems under `locations[i]`.
impl<'a> ValidateArgs<'a> for UploadLocationBatchRequest {
    type Args = &'a Clock;

    fn validate_with_args(&self, clock: &'a Clock) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(problem) = devices::rules::device_id(&self.device_id) {
            errors.add("device_id", problem);
        }
        let items: BTreeMap<usize, Box<ValidationErrors>> = (self.locations.iter().enumerate())
            .filter_map(|(index, location)| {
                Some((index, Box::new(location.validate_with_args(clock).err()?)))
            })
            .collect();
        if !items.is_empty() {
            errors.errors_mut().insert("locations".into(), ValidationErrorsKind::List(items));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// Uploads one location fix.
///
/// The device must be registered and active (404 otherwise); with an `app` key it must be the
/// device whose token is sent (403 otherwise). With an `Idempotency-Key`, a
/// retry of the same request within 24 h gets the first answer again (with the
/// `Idempotent-Replayed: true` header) and stores nothing; reusing the key for a different
/// request is refused with 422. Marks the device seen.
#[utoipa::path(
    post,
    path = "/api/v1/locations",
    tag = tags::LOCATIONS,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    params(IdempotencyHeader),
    request_body = UploadLocationRequest,
    responses(
        (status = 200, description = "The fix was stored (or this is a replay)", body = UploadReceipt,
            example = json!({"success": true, "processed_count": 1, "stored_count": 1, "duplicate_count": 0, "expired_count": 0})),
        (status = 400, response = responses::ValidationFailed),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::DeviceNotRegistered),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::IdempotencyKeyReused),
        AuthenticatedErrors,
    )
)]
pub async fn upload_location(
    State(state): State<AppState>,
    Caller(caller): Caller,
    request_headers: HeaderMap,
    AppJson(request): AppJson<UploadLocationRequest>,
) -> ApiResult<Response> {
    validate(|| request.validate_with_args(&state.uploads.clock()))?;
    let upload =
        Upload { device_id: parse_device_id(&request.device.device_id), fixes: vec![request.location.fix()] };
    let idempotency = idempotency_key(&request_headers, &upload)?;
    let outcome = state.uploads.store(&caller, upload, idempotency).await?;
    Ok(respond(outcome))
}

/// Uploads a batch of location fixes atomically.
///
/// 1 to 50 fixes of one registered, active device, stored in one statement: if any fix is
/// invalid the whole batch is refused with every problem listed (`details[].field` like
/// `locations[3].latitude`) and nothing is stored. `Idempotency-Key` works as for single
/// uploads.
#[utoipa::path(
    post,
    path = "/api/v1/locations/batch",
    tag = tags::LOCATIONS,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    params(IdempotencyHeader),
    request_body = UploadLocationBatchRequest,
    responses(
        (status = 200, description = "Every fix was stored (or this is a replay)", body = UploadReceipt),
        (status = 400, response = responses::ValidationFailed),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::DeviceNotRegistered),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::IdempotencyKeyReused),
        AuthenticatedErrors,
    )
)]
pub async fn upload_location_batch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    request_headers: HeaderMap,
    AppJson(request): AppJson<UploadLocationBatchRequest>,
) -> ApiResult<Response> {
    validate(|| request.validate_with_args(&state.uploads.clock()))?;
    let upload = Upload {
        device_id: parse_device_id(&request.device_id),
        fixes: request.locations.iter().map(LocationRequest::fix).collect(),
    };
    let idempotency = idempotency_key(&request_headers, &upload)?;
    let outcome = state.uploads.store(&caller, upload, idempotency).await?;
    Ok(respond(outcome))
}

/// Documents the `Idempotency-Key` request header.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyHeader {
    /// Makes retries safe: 1–255 visible ASCII characters, e.g. a UUID generated per upload.
    /// The first successful answer is kept for 24 h and replayed to the same API key.
    // A header is present or absent, never null: documented as an optional string.
    #[param(
        rename = "Idempotency-Key",
        value_type = String,
        required = false,
        example = "3f1c2b7e-6d9a-4d43-9a61-0b7f3c9e2a11",
        min_length = 1,
        max_length = 255,
        pattern = "^[\\x21-\\x7e]+$"
    )]
    pub idempotency_key: Option<String>,
}

/// The request's `Idempotency-Key`, fingerprinted with the upload as the server understood it:
/// two requests that differ only in spelling (`48.10` and `48.1`, `-1` and `-2147483648` for an
/// unknown battery, key order, whitespace) are the same request.
fn idempotency_key(request_headers: &HeaderMap, upload: &Upload) -> ApiResult<Option<IdempotencyKey>> {
    let Some(value) = request_headers.get(headers::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?;
    let canonical = serde_json::to_vec(upload).expect("an upload serializes");
    idempotency::parse_key(value, &canonical).map(Some)
}

fn parse_device_id(value: &str) -> Uuid {
    Uuid::parse_str(value).expect("validated as a UUID")
}

fn respond(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Fresh(receipt) => AppJson(receipt).into_response(),
        Outcome::Replayed { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, AppJson(body)).into_response();
            response.headers_mut().insert(headers::IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            response
        }
    }
}
