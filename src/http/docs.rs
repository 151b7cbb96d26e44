//! Pieces of the OpenAPI document that handlers' `#[utoipa::path]` annotations refer to: the
//! tag of each resource and the reusable error responses. `openapi::ApiDoc` lists them too.

use utoipa::ToResponse;

use crate::error::ErrorBody;

/// One tag per resource; the document describes each (`openapi::ApiDoc`).
pub mod tags {
    pub const ADMIN: &str = "admin";
    pub const DEVICES: &str = "devices";
    pub const HEALTH: &str = "health";
    pub const HISTORY: &str = "history";
    pub const KEYS: &str = "keys";
    pub const LIVE: &str = "live";
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

    /// Joining a group that has members needs an invitation code from one of them (through an
    /// `app` key), and the code must be valid for the group; or a device token acted for another
    /// device.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "forbidden",
        "message": "This group already has members: joining it needs an invite code from one of them"}))]
    pub struct InviteNeeded(pub ErrorBody);

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

    /// The request body exceeds the configured limit (1 MiB by default), as sent or once
    /// decompressed; a declared `Content-Length` over it is refused before the body is read.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "payload_too_large", "message": "Request exceeds maximum size of 1048576 bytes"}))]
    pub struct PayloadTooLarge(pub ErrorBody);

    /// None of the media types the `Accept` header names is one this operation answers.
    #[derive(ToResponse)]
    #[response(example = json!({"error": "not_acceptable",
        "message": "History is available as application/json, application/geo+json or application/gpx+xml"}))]
    pub struct NotAcceptable(pub ErrorBody);

    /// The body's `Content-Encoding` is not one the server decodes (gzip, deflate, or none).
    #[derive(ToResponse)]
    #[response(example = json!({"error": "unsupported_media_type",
        "message": "Unsupported Content-Encoding: send the body as is, or compressed with gzip or deflate"}))]
    pub struct UnsupportedMediaType(pub ErrorBody);

    /// Too many requests for this API key (100/minute for standard keys, 1000/minute for admin
    /// keys, 10 data exports/hour); retry after `retry_after` seconds. Its headers are declared
    /// by [`super::declare_response_headers`].
    #[derive(ToResponse)]
    #[response(
        example = json!({"error": "rate_limit_exceeded", "message": "Rate limit of 100 requests/minute exceeded", "retry_after": 45}),
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

/// The response headers the service adds beyond the standard ones, as the document names them,
/// with what they say. Only the headers every response of a kind carries are declared, so that a
/// client may rely on what the document promises.
pub mod response_headers {
    /// On every response ([`crate::http::app`] sets it outside everything else).
    pub const REQUEST_ID: &str = "X-Request-ID";
    /// On every response to a request that passed authentication, among them every 2xx of an
    /// authenticated operation and its 429.
    pub const RATE_LIMIT_LIMIT: &str = "X-RateLimit-Limit";
    pub const RATE_LIMIT_REMAINING: &str = "X-RateLimit-Remaining";
    pub const RATE_LIMIT_RESET: &str = "X-RateLimit-Reset";
    /// On a 429.
    pub const RETRY_AFTER: &str = "Retry-After";
    /// On a replayed answer to an upload with an `Idempotency-Key`.
    pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";
}

/// Declares the response headers of [`response_headers`] where they are sent, which utoipa's
/// attributes can only do one response at a time: `X-Request-ID` on every response (of every
/// operation, and of every reusable response); `X-RateLimit-Limit`, `-Remaining` and `-Reset` on
/// every 2xx of an operation that needs an API key, and with `Retry-After` on the 429;
/// `Idempotent-Replayed` on the 2xx of every operation that takes an `Idempotency-Key`.
/// Other answers to authenticated requests (a 404, a 400 from the handler) carry the rate-limit
/// headers as well, but not all of them do (not a 401, nor a 408 or 413 answered before the key
/// is checked), and a reusable response is shared with operations without a key, so those
/// responses do not declare them.
pub fn declare_response_headers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::{
        ToResponse,
        openapi::{
            RefOr,
            path::{Operation, ParameterIn},
        },
    };

    let components = doc.components.get_or_insert_with(Default::default);
    let (rate_limited, _) = responses::RateLimited::response();
    for (name, response) in components.responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        response.headers.extend([request_id()]);
        if name == rate_limited {
            response.headers.extend(rate_limit());
            response.headers.extend([retry_after()]);
        }
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let Operation { security, parameters, responses, .. } = operation;
            let authenticated = security.as_ref().is_some_and(|ways| !ways.is_empty());
            let idempotent = parameters.iter().flatten().any(|parameter| {
                parameter.parameter_in == ParameterIn::Header
                    && parameter.name.eq_ignore_ascii_case(crate::headers::IDEMPOTENCY_KEY)
            });
            for (status, response) in responses.responses.iter_mut() {
                // References point into the components, handled above.
                let RefOr::T(response) = response else { continue };
                response.headers.extend([request_id()]);
                if status.starts_with('2') {
                    if authenticated {
                        response.headers.extend(rate_limit());
                    }
                    if idempotent {
                        response.headers.extend([idempotent_replayed()]);
                    }
                }
            }
        }
    }
}

fn header(
    description: &str,
    schema: utoipa::openapi::schema::ObjectBuilder,
) -> utoipa::openapi::header::Header {
    utoipa::openapi::header::HeaderBuilder::new()
        .schema(schema.build())
        .description(Some(description))
        .build()
}

fn seconds_or_count(minimum: u32) -> utoipa::openapi::schema::ObjectBuilder {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
        .minimum(Some(minimum))
}

fn request_id() -> (String, utoipa::openapi::header::Header) {
    let text = utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String);
    let description = "The request's id: the `X-Request-ID` the request carried, or a new UUID. Sent \
        with every response; every log line of the request carries it, so quote it when reporting \
        a problem.";
    (response_headers::REQUEST_ID.into(), header(description, text))
}

fn rate_limit() -> [(String, utoipa::openapi::header::Header); 3] {
    [
        (
            response_headers::RATE_LIMIT_LIMIT.into(),
            header(
                "Requests allowed per period by the narrowest limit this request counted against \
                 (per key or per device a minute; data exports an hour; registrations through an \
                 `app` key per client address).",
                seconds_or_count(0),
            ),
        ),
        (
            response_headers::RATE_LIMIT_REMAINING.into(),
            header(
                "Requests left of that limit now (0 when it is the one that refused the request).",
                seconds_or_count(0),
            ),
        ),
        (
            response_headers::RATE_LIMIT_RESET.into(),
            header("Seconds until that limit is whole again.", seconds_or_count(0)),
        ),
    ]
}

fn retry_after() -> (String, utoipa::openapi::header::Header) {
    let description = "Seconds to wait before retrying (also `retry_after` in the body).";
    (response_headers::RETRY_AFTER.into(), header(description, seconds_or_count(1)))
}

fn idempotent_replayed() -> (String, utoipa::openapi::header::Header) {
    let only_true = utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["true"]));
    let description = "`true` when this is the stored first answer to an earlier request with the \
        same `Idempotency-Key` (nothing was stored again); absent otherwise.";
    (response_headers::IDEMPOTENT_REPLAYED.into(), header(description, only_true))
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

/// The document as served at `/api-docs/openapi.json`: the committed one with the clock filled
/// in. A fix's `timestamp` may be at most `max_skew_ms` ahead of the server's clock, a bound that
/// moves with time and so cannot be in the committed document; here every `timestamp` property
/// gets that bound as its `maximum` (as of now, a bound that only loosens while the document is
/// in use), and every example's `timestamp` becomes a time just before now, so "Try it out" in
/// Swagger UI and contract fuzzers send fixes that are stored, whenever they run.
pub fn with_clock(document: &serde_json::Value, now_ms: i64, max_skew_ms: i64) -> serde_json::Value {
    fn stamp(value: &mut serde_json::Value, now_ms: i64, max_skew_ms: i64, in_example: bool) {
        match value {
            serde_json::Value::Object(object) => {
                if !in_example
                    && let Some(timestamp) = object.get_mut("properties").and_then(|p| p.get_mut("timestamp"))
                    && timestamp.get("type").and_then(|t| t.as_str()) == Some("integer")
                {
                    timestamp["maximum"] = (now_ms + max_skew_ms).into();
                    timestamp["example"] = now_ms.into();
                }
                if in_example && object.get("timestamp").is_some_and(serde_json::Value::is_i64) {
                    // Keep the examples' spacing (a batch's fixes a minute apart), ending now.
                    object.insert("timestamp".into(), now_ms.into());
                }
                for (key, child) in object.iter_mut() {
                    let example = in_example || key == "example" || key == "examples";
                    stamp(child, now_ms, max_skew_ms, example);
                }
            }
            serde_json::Value::Array(items) => {
                let count = items.len() as i64;
                for (index, item) in items.iter_mut().enumerate() {
                    // Fixes of one example batch, oldest first, one minute apart.
                    let at = if in_example { now_ms - (count - 1 - index as i64) * 60_000 } else { now_ms };
                    stamp(item, at, max_skew_ms, in_example);
                }
            }
            _ => {}
        }
    }
    let mut live = document.clone();
    stamp(&mut live, now_ms, max_skew_ms, false);
    live
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::with_clock;

    #[test]
    fn timestamps_get_the_clock_and_nothing_else_changes() {
        let document = json!({
            "components": {"schemas": {"Fix": {"type": "object", "properties": {
                "timestamp": {"type": "integer", "format": "int64", "minimum": 0, "example": 1},
                "latitude": {"type": "number", "example": 48.1}
            }}}},
            "paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {"example": {
                "device_id": "d", "locations": [{"timestamp": 1, "latitude": 1.0}, {"timestamp": 2}]
            }}}}}}}
        });
        let live = with_clock(&document, 1_000_000_000, 300_000);
        let timestamp = &live["components"]["schemas"]["Fix"]["properties"]["timestamp"];
        assert_eq!(timestamp["maximum"], 1_000_300_000);
        assert_eq!(timestamp["example"], 1_000_000_000);
        assert_eq!(timestamp["minimum"], 0);
        let example = &live["paths"]["/x"]["post"]["requestBody"]["content"]["application/json"]["example"];
        assert_eq!(example["locations"][0]["timestamp"], 1_000_000_000 - 60_000);
        assert_eq!(example["locations"][1]["timestamp"], 1_000_000_000);
        assert_eq!(example["locations"][0]["latitude"], 1.0);
        assert_eq!(
            live["components"]["schemas"]["Fix"]["properties"]["latitude"],
            document["components"]["schemas"]["Fix"]["properties"]["latitude"]
        );
    }
}
