//! Last line of the error contract: responses that tower layers or axum produce on their own
//! (timeouts, panics, unmatched methods) leave the service in the same JSON envelope.

use std::any::Any;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::{error::ApiError, http::extract::BodyLimit};

/// Replaces a bodiless or non-JSON error response with the envelope for its status; a 413 names
/// the body limit in force (`BodyLimit`).
pub async fn ensure_json_errors(State(BodyLimit(limit)): State<BodyLimit>, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("Resource not found".into()),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit_bytes: Some(limit) },
        // The request decoder knows gzip and deflate only.
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "Unsupported Content-Encoding: send the body as is, or compressed with gzip or deflate".into(),
        ),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
        StatusCode::REQUEST_TIMEOUT => {
            ApiError::RequestTimeout("The request did not complete in time".into())
        }
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            ApiError::ServiceUnavailable("The service is busy; retry later".into())
        }
        status if status.is_client_error() => {
            ApiError::field("request", status.canonical_reason().unwrap_or("Bad request"))
        }
        _ => ApiError::Internal(anyhow::anyhow!("{status} response without a JSON body")),
    };
    let mut replaced = error.into_response();
    *replaced.status_mut() = status;
    // Keep headers a layer set on purpose (Allow on 405, Retry-After, request id).
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replaced
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/problem+json"))
}

/// A handler panic becomes a 500 envelope; the panic message is logged, never sent.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::Internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}
