//! Prometheus scrape endpoint.

use axum::{extract::State, http::header, response::IntoResponse};

use crate::{
    http::docs::{responses, tags},
    metrics,
    state::AppState,
};

/// Exposes metrics in the Prometheus text format (no key needed).
///
/// HTTP requests by method, route template and status; request, SQL and job latency
/// histograms; pool connections; uploads and registrations; rate-limit refusals.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = tags::OPERATIONS,
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String,
            content_type = "text/plain; version=0.0.4",
            example = "# TYPE http_requests_total counter\nhttp_requests_total{method=\"GET\",path=\"/api/health\",status=\"200\"} 3\n"),
        (status = 408, response = responses::RequestTimeout),
    )
)]
pub async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.health.record_pool_metrics();
    let handle = metrics::handle();
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
}
