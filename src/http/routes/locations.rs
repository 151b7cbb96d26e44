//! Location uploads: one fix, or an offline batch. Both accept `Idempotency-Key`.

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
use validator::{Validate, ValidationErrors};

use crate::{
    domain::{
        devices, idempotency,
        uploads::{Outcome, rules},
    },
    error::{ApiError, ApiResult},
    headers,
    http::{
        docs::{AuthenticatedErrors, responses, tags},
        extract::{AppJson, AuthKey, JsonBody, ValidJson, parse_json},
    },
    model::{
        Fix, IdempotencyKey, Upload, UploadReceipt,
        schema::{flattened, object_of},
    },
    state::AppState,
};

/// One fix of a batch (the device is given once, on the batch).
#[derive(Debug, Deserialize, Serialize, Validate, ToSchema)]
pub struct LocationRequest {
    /// When the fix was taken, in milliseconds since the Unix epoch. At most 60 s in
    /// the future (clock skew) and at most 7 days old.
    #[validate(custom(function = "rules::timestamp"))]
    #[schema(example = 1_763_721_000_000_i64)]
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
    /// Degrees from north, 0 to 360 inclusive.
    #[validate(custom(function = "rules::bearing"))]
    #[schema(minimum = 0, maximum = 360, example = 270.0)]
    pub bearing: Option<f64>,
    /// Metres per second, 0 to 3.4e38.
    #[validate(custom(function = "rules::speed"))]
    #[schema(minimum = 0, maximum = 3.4e38, example = 1.4)]
    pub speed: Option<f64>,
    /// Location provider, e.g. `gps`, `network`, `fused` (1–50 characters, no control
    /// characters).
    #[validate(custom(function = "rules::short_text"))]
    #[schema(min_length = 1, max_length = 50, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", example = "fused")]
    pub provider: Option<String>,
    /// Battery percentage, 0 to 100.
    #[validate(custom(function = "rules::battery_level"))]
    #[schema(minimum = 0, maximum = 100, example = 82)]
    pub battery_level: Option<i64>,
    /// Network type, e.g. `wifi`, `cellular` (1–50 characters, no control characters).
    #[validate(custom(function = "rules::short_text"))]
    #[schema(min_length = 1, max_length = 50, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$", example = "wifi")]
    pub network_type: Option<String>,
}

impl LocationRequest {
    /// The validated fix, typed as it is stored.
    fn fix(&self) -> Fix {
        Fix {
            captured_at: chrono::DateTime::from_timestamp_millis(self.timestamp)
                .expect("validated timestamp"),
            latitude: self.latitude,
            longitude: self.longitude,
            // Validated to fit a REAL: narrowing drops only precision the column lacks.
            accuracy: self.accuracy as f32,
            altitude: self.altitude,
            bearing: self.bearing.map(|b| b as f32),
            speed: self.speed.map(|s| s as f32),
            provider: self.provider.clone(),
            battery_level: self.battery_level.map(|b| i16::try_from(b).expect("validated 0..=100")),
            network_type: self.network_type.clone(),
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
impl Validate for UploadLocationRequest {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = self.location.validate().err().unwrap_or_default();
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
#[derive(Debug, Deserialize, Serialize, Validate, ToSchema)]
#[schema(example = json!({
    "device_id": "550e8400-e29b-41d4-a716-446655440000",
    "locations": [
        {"timestamp": 1_763_720_940_000_i64, "latitude": 48.1371, "longitude": 11.5753, "accuracy": 10.0},
        {"timestamp": 1_763_721_000_000_i64, "latitude": 48.1374, "longitude": 11.5755, "accuracy": 12.5, "battery_level": 81}
    ]
}))]
pub struct UploadLocationBatchRequest {
    #[validate(custom(function = "devices::rules::device_id"))]
    #[schema(value_type = Uuid)]
    pub device_id: String,
    /// 1 to 50 fixes (the server's `limits.max_batch_size`). Stored all together or not at all.
    #[validate(nested)]
    #[schema(min_items = 1, max_items = 50)]
    pub locations: Vec<LocationRequest>,
}

/// Uploads one location fix.
///
/// The device must be registered and active (404 otherwise). With an `Idempotency-Key`, a
/// retry of the same request within 24 h gets the first answer again (with the
/// `Idempotent-Replayed: true` header) and stores nothing; reusing the key for a different
/// request is refused with 422. Marks the device seen.
#[utoipa::path(
    post,
    path = "/api/v1/locations",
    tag = tags::LOCATIONS,
    security(("api_key" = [])),
    params(IdempotencyHeader),
    request_body = UploadLocationRequest,
    responses(
        (status = 200, description = "The fix was stored (or this is a replay)", body = UploadReceipt,
            example = json!({"success": true, "processed_count": 1})),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::DeviceNotRegistered),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 422, response = responses::IdempotencyKeyReused),
        AuthenticatedErrors,
    )
)]
pub async fn upload_location(
    State(state): State<AppState>,
    AuthKey(key): AuthKey,
    request_headers: HeaderMap,
    ValidJson(request): ValidJson<UploadLocationRequest>,
) -> ApiResult<Response> {
    let idempotency = idempotency_key(&request_headers, &request)?;
    let upload =
        Upload { device_id: parse_device_id(&request.device.device_id), fixes: vec![request.location.fix()] };
    let outcome = state.uploads.store(key.id, upload, idempotency.as_ref()).await?;
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
    security(("api_key" = [])),
    params(IdempotencyHeader),
    request_body = UploadLocationBatchRequest,
    responses(
        (status = 200, description = "Every fix was stored (or this is a replay)", body = UploadReceipt),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::DeviceNotRegistered),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 422, response = responses::IdempotencyKeyReused),
        AuthenticatedErrors,
    )
)]
pub async fn upload_location_batch(
    State(state): State<AppState>,
    AuthKey(key): AuthKey,
    request_headers: HeaderMap,
    ValidJson(request): ValidJson<UploadLocationBatchRequest>,
) -> ApiResult<Response> {
    let idempotency = idempotency_key(&request_headers, &request)?;
    let upload = Upload {
        device_id: parse_device_id(&request.device_id),
        fixes: request.locations.iter().map(LocationRequest::fix).collect(),
    };
    let outcome = state.uploads.store(key.id, upload, idempotency.as_ref()).await?;
    Ok(respond(outcome))
}

/// Documents the `Idempotency-Key` request header.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyHeader {
    /// Makes retries safe: 1–255 visible ASCII characters, e.g. a UUID generated per upload.
    /// The first successful answer is kept for 24 h and replayed to the same API key.
    #[param(
        rename = "Idempotency-Key",
        example = "3f1c2b7e-6d9a-4d43-9a61-0b7f3c9e2a11",
        min_length = 1,
        max_length = 255,
        pattern = "^[\\x21-\\x7e]+$"
    )]
    pub idempotency_key: Option<String>,
}

fn idempotency_key<T: Serialize>(
    request_headers: &HeaderMap,
    request: &T,
) -> ApiResult<Option<IdempotencyKey>> {
    let Some(value) = request_headers.get(headers::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?;
    // The typed request re-serialized is canonical: whitespace and key order don't matter.
    let canonical = serde_json::to_vec(request).expect("a request serializes");
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
