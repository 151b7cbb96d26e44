//! Names of the HTTP headers the API reads or writes beyond the standard ones, in one place
//! that the error type, the middleware, the handlers and the OpenAPI document all use.
//! HTTP header names are case-insensitive; these are the lowercase forms `http` wants, and
//! [`API_KEY_DOCUMENTED`] is how the document spells the key header.

/// The caller's API key.
pub const API_KEY: &str = "x-api-key";
/// [`API_KEY`] as the OpenAPI document and the README spell it.
pub const API_KEY_DOCUMENTED: &str = "X-API-Key";
/// Makes an upload's retries safe.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// `true` on an answer replayed for a repeated `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
/// The request id: the caller's, or a new UUID; on every response.
pub const REQUEST_ID: &str = "x-request-id";
/// The trace a request joined (W3C trace id, hex).
pub const TRACE_ID: &str = "x-trace-id";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// The rate limit in force, what is left of it, and seconds until it is whole again.
pub const RATE_LIMIT_LIMIT: &str = "x-ratelimit-limit";
pub const RATE_LIMIT_REMAINING: &str = "x-ratelimit-remaining";
pub const RATE_LIMIT_RESET: &str = "x-ratelimit-reset";
/// The `id` of the last live stream event a reconnecting client received (Server-Sent Events).
pub const LAST_EVENT_ID: &str = "last-event-id";
/// The client address as a proxy saw it (trusted only when configured).
pub const FORWARDED_FOR: &str = "x-forwarded-for";
