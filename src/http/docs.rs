//! Pieces of the OpenAPI document that handlers' `#[utoipa::path]` annotations refer to: the
//! tag of each resource and the reusable error responses. `openapi::ApiDoc` lists them too.

use utoipa::ToResponse;

use crate::error::ErrorBody;

/// One tag per resource; the document describes each (`openapi::ApiDoc`).
pub mod tags {
    pub const ADMIN: &str = "admin";
    pub const DEVICES: &str = "devices";
    pub const HEALTH: &str = "health";
    pub const KEYS: &str = "keys";
    pub const LOCATIONS: &str = "locations";
    pub const OPERATIONS: &str = "operations";
    pub const PRIVACY: &str = "privacy";
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
