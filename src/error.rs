//! The one error type of the service and its JSON envelope
//! `{"error": "<code>", "message": "<text>", "details": [{"field", "message"}]}`.
//!
//! Every failure, from a handler, an extractor, a middleware or axum itself, leaves the service
//! through [`ApiError::into_response`]. 5xx bodies say nothing internal: the cause is logged.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::headers::{RATE_LIMIT_LIMIT, RATE_LIMIT_REMAINING, RATE_LIMIT_RESET};

pub type ApiResult<T> = Result<T, ApiError>;

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = FieldErrorResponse, example = json!({"field": "latitude", "message": "must be between -90 and 90"}))]
pub struct FieldError {
    /// Path of the field in the request: `latitude`, `locations[3].latitude`, `group_id` (query).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// The error envelope returned with every 4xx and 5xx response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ErrorResponse, example = json!({
    "error": "validation_error",
    "message": "Request validation failed",
    "details": [{"field": "latitude", "message": "must be between -90 and 90"}]
}))]
pub struct ErrorBody {
    // Documented by `error_code_schema`: one of ERROR_CODES, an open set.
    #[schema(schema_with = error_code_schema)]
    pub error: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Field-level problems; present (and non-empty) on validation errors only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
    /// Seconds until the client may retry; present on 429 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// Every `error` code the service answers, with its status: the documented values of
/// [`ErrorBody::error`]. The set is open: a new situation may add a code within v1 (clients
/// treat an unknown code by its status), so the document lists them as an extensible enum, not a
/// closed `enum` (see docs/decisions.md).
pub const ERROR_CODES: [(&str, StatusCode); 14] = [
    ("validation_error", StatusCode::BAD_REQUEST),
    ("unauthorized", StatusCode::UNAUTHORIZED),
    ("forbidden", StatusCode::FORBIDDEN),
    ("not_found", StatusCode::NOT_FOUND),
    ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
    ("not_acceptable", StatusCode::NOT_ACCEPTABLE),
    ("request_timeout", StatusCode::REQUEST_TIMEOUT),
    ("conflict", StatusCode::CONFLICT),
    ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
    ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("idempotency_key_reused", StatusCode::UNPROCESSABLE_ENTITY),
    ("rate_limit_exceeded", StatusCode::TOO_MANY_REQUESTS),
    ("internal_error", StatusCode::INTERNAL_SERVER_ERROR),
    ("service_unavailable", StatusCode::SERVICE_UNAVAILABLE),
];

/// `ErrorBody.error`: a string whose current values are listed twice, as JSON Schema `examples`
/// (the standard keyword, which Swagger UI shows) and as `x-extensible-enum` (the marker that
/// says "these values, and possibly others later"; Zalando's API guideline 112, which
/// `scripts/generate-clients.sh` turns into an enum with an unknown case for the Kotlin client).
/// Not `enum`: a closed list would make every new code a breaking change.
fn error_code_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::{Type, extensions::Extensions, schema::ObjectBuilder};
    let codes = ERROR_CODES.map(|(code, _)| code);
    let listed: Vec<String> =
        ERROR_CODES.iter().map(|(code, status)| format!("`{code}` ({})", status.as_u16())).collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "Extensible enum: the machine-readable code, one of {} today. A new situation may add \
             a code within v1: handle an unknown code by the response's status.",
            listed.join(", ")
        )))
        .examples(codes)
        .extensions(Some(Extensions::from_iter([("x-extensible-enum", codes.to_vec())])))
        .build()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation { message: String, details: Vec<FieldError> },
    #[error("Invalid or missing API key")]
    Unauthorized,
    /// A device token is missing where an `app` key needs one, or is not valid.
    #[error("{0}")]
    UnauthorizedDevice(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("Request exceeds maximum size{}", .limit_bytes.map(|b| format!(" of {b} bytes")).unwrap_or_default())]
    PayloadTooLarge { limit_bytes: Option<usize> },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    IdempotencyKeyReused(String),
    #[error("Rate limit of {limit} requests/{per} exceeded")]
    RateLimited { limit: u32, per: &'static str, retry_after: u64, reset_after: u64 },
    /// A holder (a device, or a `full` key) has its maximum of live streams open.
    #[error("At most {limit} live streams per {per} may be open at once; close one first")]
    TooManyStreams { limit: usize, per: &'static str, retry_after: u64 },
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    /// Anything unexpected. The cause is logged, never sent.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The database cannot be reached (pool exhausted, connection lost): a 503 the client may retry.
    pub fn database_unavailable() -> Self {
        Self::ServiceUnavailable("Database temporarily unavailable".into())
    }

    /// An upload for a device that is unknown or deactivated.
    pub fn device_not_registered() -> Self {
        Self::NotFound("Device not found. Please register first.".into())
    }

    /// A validation error with one field problem.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }

    /// A validation error for one field, from a rule's problem.
    pub fn problem(field: impl Into<String>, problem: validator::ValidationError) -> Self {
        let message = problem.message.map_or_else(|| problem.code.to_string(), |m| m.into_owned());
        Self::field(field, message)
    }

    /// A validation error listing every field problem found.
    pub fn invalid(details: Vec<FieldError>) -> Self {
        Self::Validation { message: "Request validation failed".into(), details }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::UnauthorizedDevice(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            Self::IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } | Self::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation_error",
            Self::Unauthorized | Self::UnauthorizedDevice(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::NotAcceptable(_) => "not_acceptable",
            Self::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Self::RateLimited { .. } | Self::TooManyStreams { .. } => "rate_limit_exceeded",
            Self::RequestTimeout(_) => "request_timeout",
            Self::ServiceUnavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn body(self) -> ErrorBody {
        let error = self.code();
        let (message, details, retry_after) = match self {
            Self::Validation { message, details } => (message, details, None),
            Self::RateLimited { retry_after, .. } | Self::TooManyStreams { retry_after, .. } => {
                (self.to_string(), Vec::new(), Some(retry_after))
            }
            Self::Internal(_) => ("An unexpected error occurred".to_owned(), Vec::new(), None),
            other => (other.to_string(), Vec::new(), None),
        };
        ErrorBody { error, message, details, retry_after }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "internal error")
            }
            Self::ServiceUnavailable(reason) => tracing::warn!(%reason, "service unavailable"),
            _ => {}
        }
        let limited = match &self {
            Self::RateLimited { limit, retry_after, reset_after, .. } => {
                Some((*limit, *retry_after, *reset_after))
            }
            _ => None,
        };
        let streams_retry = match &self {
            Self::TooManyStreams { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(retry_after) = streams_retry {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if let Some((limit, retry_after, reset_after)) = limited {
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            headers.insert(RATE_LIMIT_LIMIT, HeaderValue::from(limit));
            headers.insert(RATE_LIMIT_REMAINING, HeaderValue::from(0));
            headers.insert(RATE_LIMIT_RESET, HeaderValue::from(reset_after));
        }
        response
    }
}

/// Every problem `validator` found, flattened to `field` paths like `locations[3].latitude`
/// and sorted so the order is stable.
impl From<validator::ValidationErrors> for ApiError {
    fn from(errors: validator::ValidationErrors) -> Self {
        let mut details = Vec::new();
        flatten_validation_errors(&errors, "", &mut details);
        details.sort_by(|a, b| a.field.cmp(&b.field));
        Self::invalid(details)
    }
}

fn flatten_validation_errors(errors: &validator::ValidationErrors, prefix: &str, out: &mut Vec<FieldError>) {
    use validator::ValidationErrorsKind;
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") };
        match kind {
            ValidationErrorsKind::Field(problems) => out.extend(problems.iter().map(|problem| {
                let message =
                    problem.message.as_deref().map_or_else(|| problem.code.to_string(), str::to_owned);
                FieldError::new(path.clone(), message)
            })),
            ValidationErrorsKind::Struct(inner) => flatten_validation_errors(inner, &path, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    flatten_validation_errors(inner, &format!("{path}[{index}]"), out);
                }
            }
        }
    }
}

/// Database failures: an unreachable or exhausted database is a 503 the client may retry;
/// anything else is a bug or an outage we must not describe to the client.
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => {
                tracing::warn!(error = %err, "database unavailable");
                Self::database_unavailable()
            }
            // A lock not granted within its lock_timeout (55P03: creating a day's partition
            // while a long export holds the table, decision 38) or a deadlock PostgreSQL broke
            // (40P01): the database is momentarily busy, the request itself is fine, and the
            // phone's retry succeeds. A 503, not a 500.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "55P03" || c == "40P01") => {
                tracing::warn!(code = ?db.code(), error = %db, "database busy");
                Self::database_unavailable()
            }
            // SQLSTATE class 22 (data exception: a character PostgreSQL cannot store, a value
            // out of a column's range) and 23514 (a CHECK constraint) come from values in the
            // request that validation should have refused: still the client's mistake, so a
            // 400, never a 500. Logged, because validation should catch these first.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22") || c == "23514") => {
                tracing::warn!(code = ?db.code(), constraint = ?db.constraint(), error = %db, "input refused by the database");
                Self::Validation {
                    message: "The request contains a value that cannot be stored".into(),
                    details: vec![FieldError::new("body", "a value is invalid or out of range")],
                }
            }
            other => Self::Internal(anyhow::Error::new(other).context("database error")),
        }
    }
}

/// Maps a named PostgreSQL constraint violation to a precise client error, so a rule enforced
/// by the schema still answers with a 400/409 instead of a 500.
pub trait ResultExt<T> {
    fn on_constraint(self, name: &str, map: impl FnOnce() -> ApiError) -> ApiResult<T>;
    /// [`ResultExt::on_constraint`] for any of several constraints.
    fn on_constraints(self, names: &[&str], map: impl FnOnce() -> ApiError) -> ApiResult<T>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn on_constraint(self, name: &str, map: impl FnOnce() -> ApiError) -> ApiResult<T> {
        self.on_constraints(&[name], map)
    }

    fn on_constraints(self, names: &[&str], map: impl FnOnce() -> ApiError) -> ApiResult<T> {
        self.map_err(|err| {
            let violated = err.as_database_error().and_then(|db| db.constraint());
            if violated.is_some_and(|name| names.contains(&name)) { map() } else { err.into() }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(err: ApiError) -> serde_json::Value {
        serde_json::to_value(err.body()).unwrap()
    }

    #[test]
    fn envelope_omits_empty_details() {
        assert_eq!(
            body_json(ApiError::Unauthorized),
            serde_json::json!({"error": "unauthorized", "message": "Invalid or missing API key"})
        );
    }

    #[test]
    fn internal_errors_reveal_nothing() {
        let err = ApiError::Internal(anyhow::anyhow!("password authentication failed for user x"));
        assert_eq!(
            body_json(err),
            serde_json::json!({"error": "internal_error", "message": "An unexpected error occurred"})
        );
    }

    /// One error of each variant (the `match` fails to compile when a variant is added without
    /// being listed here).
    fn one_of_each() -> Vec<ApiError> {
        let all = vec![
            ApiError::invalid(Vec::new()),
            ApiError::Unauthorized,
            ApiError::UnauthorizedDevice(String::new()),
            ApiError::Forbidden(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::MethodNotAllowed,
            ApiError::Conflict(String::new()),
            ApiError::PayloadTooLarge { limit_bytes: None },
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::NotAcceptable(String::new()),
            ApiError::IdempotencyKeyReused(String::new()),
            ApiError::RateLimited { limit: 1, per: "minute", retry_after: 1, reset_after: 1 },
            ApiError::TooManyStreams { limit: 1, per: "device", retry_after: 1 },
            ApiError::RequestTimeout(String::new()),
            ApiError::ServiceUnavailable(String::new()),
            ApiError::Internal(anyhow::anyhow!("x")),
        ];
        for error in &all {
            match error {
                ApiError::Validation { .. }
                | ApiError::Unauthorized
                | ApiError::UnauthorizedDevice(_)
                | ApiError::Forbidden(_)
                | ApiError::NotFound(_)
                | ApiError::MethodNotAllowed
                | ApiError::Conflict(_)
                | ApiError::PayloadTooLarge { .. }
                | ApiError::UnsupportedMediaType(_)
                | ApiError::NotAcceptable(_)
                | ApiError::IdempotencyKeyReused(_)
                | ApiError::RateLimited { .. }
                | ApiError::TooManyStreams { .. }
                | ApiError::RequestTimeout(_)
                | ApiError::ServiceUnavailable(_)
                | ApiError::Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn the_documented_codes_are_exactly_the_answered_ones() {
        let answered: std::collections::BTreeSet<(&str, u16)> =
            one_of_each().iter().map(|e| (e.code(), e.status().as_u16())).collect();
        let documented: std::collections::BTreeSet<(&str, u16)> =
            ERROR_CODES.iter().map(|(code, status)| (*code, status.as_u16())).collect();
        assert_eq!(answered, documented);
    }

    #[test]
    fn rate_limit_carries_retry_after() {
        let err = ApiError::RateLimited { limit: 100, per: "minute", retry_after: 45, reset_after: 60 };
        assert_eq!(
            body_json(err),
            serde_json::json!({
                "error": "rate_limit_exceeded",
                "message": "Rate limit of 100 requests/minute exceeded",
                "retry_after": 45
            })
        );
    }
}
