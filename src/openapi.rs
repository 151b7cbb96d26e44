//! The OpenAPI v1 document: info, tags, the `X-API-Key` scheme and the reusable error
//! responses. Paths come from the `#[utoipa::path]` handlers that `http::routes()` collects.
//! [`spec`] needs no state and no database.

use utoipa::{
    Modify, OpenApi, ToResponse,
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
};

use crate::error::{ErrorBody, FieldError};

pub mod tags {
    pub const ADMIN: &str = "admin";
    pub const DEVICES: &str = "devices";
    pub const HEALTH: &str = "health";
    pub const KEYS: &str = "keys";
    pub const LOCATIONS: &str = "locations";
    pub const OPERATIONS: &str = "operations";
    pub const PRIVACY: &str = "privacy";
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Phone Manager API",
        // The version of the HTTP contract, not of the binary (see "API versioning" in README).
        version = "1.0.0",
        description = "Location sharing for small groups of family and friends. Phones register \
            into groups (at most 20 active devices), upload GPS positions one at a time or in \
            offline batches, and see where the other members last were.\n\n\
            Every endpoint under `/api/v1` needs an `X-API-Key` header (keys are created with \
            `phone-manager keys create`). Errors always have the shape \
            `{\"error\", \"message\", \"details\"}`. Timestamps in responses are RFC 3339 UTC; \
            JSON fields are snake_case. Unknown fields in request bodies are ignored.",
        license(name = "MIT", identifier = "MIT"),
        contact(name = "Phone Manager backend team"),
    ),
    servers((url = "/", description = "This server")),
    tags(
        (name = "admin", description = "Maintenance for admin API keys only; changes are audited"),
        (name = "devices", description = "Device registration and group membership"),
        (name = "health", description = "Liveness, readiness and dependency health; no key needed"),
        (name = "keys", description = "The calling API key"),
        (name = "locations", description = "Location uploads, single and batch, with idempotent retries"),
        (name = "operations", description = "Prometheus metrics; no key needed"),
        (name = "privacy", description = "Data export and erasure (GDPR); audited"),
    ),
    components(
        schemas(ErrorBody, FieldError),
        responses(
            responses::ValidationFailed,
            responses::Unauthorized,
            responses::Forbidden,
            responses::NotFound,
            responses::DeviceNotRegistered,
            responses::Conflict,
            responses::IdempotencyKeyReused,
            responses::PayloadTooLarge,
            responses::RateLimited,
            responses::RequestTimeout,
            responses::ServiceUnavailable,
            responses::InternalError,
        ),
    ),
    modifiers(&ApiKeyScheme),
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = ApiKeyValue::new(crate::http::middleware::auth::API_KEY_HEADER_NAME);
        scheme.description = Some(
            "An API key: `pm_` followed by 45 URL-safe base64 characters. Create one with \
             `phone-manager keys create --name NAME`."
                .into(),
        );
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(scheme)));
    }
}

/// Reusable error responses, referenced by every path that can produce them.
pub mod responses {
    use super::{ErrorBody, ToResponse};

    /// The request is malformed or fails validation; `details` lists every problem.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "validation_error", "message": "Request validation failed",
        "details": [{"field": "group_id", "message": "is required"}]}))]
    pub struct ValidationFailed(pub ErrorBody);

    /// Missing, unknown, inactive or expired API key.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "unauthorized", "message": "Invalid or missing API key"}))]
    pub struct Unauthorized(pub ErrorBody);

    /// The key is valid but may not do this (admin endpoints need an admin key).
    #[derive(ToResponse)]
    #[response(example = json!({"error": "forbidden", "message": "Admin API key required"}))]
    pub struct Forbidden(pub ErrorBody);

    /// The resource does not exist.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "not_found", "message": "Device not found"}))]
    pub struct NotFound(pub ErrorBody);

    /// The device is unknown or deactivated: register it first.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "not_found", "message": "Device not found. Please register first."}))]
    pub struct DeviceNotRegistered(pub ErrorBody);

    /// The `Idempotency-Key` was already used (by this API key, within 24 h) for a different request.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "idempotency_key_reused",
        "message": "This Idempotency-Key was already used with a different request body"}))]
    pub struct IdempotencyKeyReused(pub ErrorBody);

    /// A business rule forbids the change.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "conflict", "message": "Group has reached maximum device limit (20)"}))]
    pub struct Conflict(pub ErrorBody);

    /// The request body exceeds the configured limit (1 MiB by default).
    #[derive(ToResponse)]
    #[response(example = json!({"error": "payload_too_large", "message": "Request exceeds maximum size of 1048576 bytes"}))]
    pub struct PayloadTooLarge(pub ErrorBody);

    /// Too many requests for this API key (100/minute for standard keys, 1000/minute for admin
    /// keys, 10 data exports/hour); retry after `retry_after` seconds.
    #[derive(ToResponse)]
    #[response(
        example = json!({"error": "rate_limit_exceeded", "message": "Rate limit of 100 requests/minute exceeded", "retry_after": 45}),
        headers(
            ("Retry-After" = u64, description = "Seconds to wait before retrying"),
            ("X-RateLimit-Limit" = u32, description = "Requests allowed per period"),
            ("X-RateLimit-Remaining" = u32, description = "Requests left now (0)"),
            ("X-RateLimit-Reset" = u64, description = "Seconds until the full limit is available again"),
        )
    )]
    pub struct RateLimited(pub ErrorBody);

    /// The request did not complete within the server's timeout (30 s by default).
    #[derive(ToResponse)]
    #[response(example = json!({"error": "request_timeout", "message": "The request did not complete in time"}))]
    pub struct RequestTimeout(pub ErrorBody);

    /// A dependency (the database) is temporarily unavailable, or the server is at capacity.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "service_unavailable", "message": "Database temporarily unavailable"}))]
    pub struct ServiceUnavailable(pub ErrorBody);

    /// An unexpected error; the body never reveals internals (the cause is in the logs under
    /// the response's `X-Request-ID`).
    #[derive(ToResponse)]
    #[response(example = json!({"error": "internal_error", "message": "An unexpected error occurred"}))]
    pub struct InternalError(pub ErrorBody);
}

/// The errors every authenticated operation can answer: no valid key, the request took too long,
/// the key's rate limit, the database or the server unavailable. Listed once, referenced by all.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AuthenticatedErrors {
    #[response(status = 401)]
    Unauthorized(#[ref_response] responses::Unauthorized),
    #[response(status = 408)]
    RequestTimeout(#[ref_response] responses::RequestTimeout),
    #[response(status = 429)]
    RateLimited(#[ref_response] responses::RateLimited),
    #[response(status = 503)]
    ServiceUnavailable(#[ref_response] responses::ServiceUnavailable),
    #[response(status = 500)]
    InternalError(#[ref_response] responses::InternalError),
}

/// The complete v1 document, built from the route table without any state.
pub fn spec() -> utoipa::openapi::OpenApi {
    crate::http::api_router().into_openapi()
}

/// The document as committed in `openapi/v1.json`: pretty JSON and a final newline.
pub fn spec_json() -> String {
    let mut json = spec().to_pretty_json().expect("the OpenAPI document serializes");
    json.push('\n');
    json
}
