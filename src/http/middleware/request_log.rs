//! One span per request (method, route, request id) that every log line of the request carries,
//! and one summary line when it completes.

use std::time::Duration;

use axum::{
    extract::{MatchedPath, Request},
    http::Response,
};
use tower_http::request_id::RequestId;
use tracing::Span;

pub fn make_span(request: &Request) -> Span {
    let request_id =
        request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("-");
    // The route template (`/api/v1/devices/{device_id}`) keeps dashboards' cardinality bounded;
    // the raw path is what a developer greps for.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "http_request",
        method = %request.method(),
        path = %request.uri().path(),
        route = %route,
        request_id = %request_id,
    )
}

pub fn log_response<B>(response: &Response<B>, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    let duration_ms = (latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    if response.status().is_server_error() {
        tracing::error!(status, duration_ms, "request completed");
    } else {
        tracing::info!(status, duration_ms, "request completed");
    }
}
