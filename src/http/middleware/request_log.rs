//! One span per request, named by method and route template, with the OpenTelemetry HTTP
//! attributes; it continues the caller's trace (`traceparent`) and every log line of the
//! request carries its `request_id`, `trace_id` and `span_id`. One summary line per request.

use std::time::Duration;

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderValue, Response},
    middleware::Next,
};
use tower_http::request_id::RequestId;
use tracing::{Span, field::Empty};

use crate::telemetry;

pub fn make_span(request: &Request) -> Span {
    let request_id =
        request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("-");
    // The route template (`/api/v1/devices/{device_id}`) keeps span names and dashboards'
    // cardinality bounded; the raw path is what a developer greps for.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().as_str();
    let span = tracing::info_span!(
        "http_request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        url.path = %request.uri().path(),
        http.response.status_code = Empty,
        method = method,
        path = %request.uri().path(),
        route = route,
        request_id = %request_id,
        trace_id = Empty,
        span_id = Empty,
    );
    telemetry::continue_trace(&span, request.headers());
    telemetry::record_trace_ids(&span);
    span
}

pub fn log_response<B>(response: &Response<B>, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let duration_ms = (latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
        tracing::error!(status, duration_ms, "request completed");
    } else {
        tracing::info!(status, duration_ms, "request completed");
    }
}

/// Tells the caller which trace its request joined: `traceparent` (W3C) and `X-Trace-Id`.
pub async fn expose_trace_context(request: Request, next: Next) -> axum::response::Response {
    let mut response = next.run(request).await;
    let span = Span::current();
    if let Some(traceparent) = telemetry::traceparent(&span)
        && let Ok(value) = HeaderValue::from_str(&traceparent)
    {
        let trace_id = traceparent.split('-').nth(1).and_then(|id| HeaderValue::from_str(id).ok());
        response.headers_mut().insert("traceparent", value);
        if let Some(trace_id) = trace_id {
            response.headers_mut().insert("x-trace-id", trace_id);
        }
    }
    response
}
