use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};

use crate::metrics;

/// Counts every request and its latency under its route template (`/api/v1/devices/{device_id}`),
/// never the raw path, so label cardinality stays bounded whatever clients send.
pub async fn record(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_deref().unwrap_or("unmatched");
    metrics::record_http(method.as_str(), route, response.status().as_u16(), started.elapsed());
    response
}
