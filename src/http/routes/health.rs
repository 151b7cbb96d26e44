//! Health probes: no API key, cheap, and honest about the database.

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    config::RateLimitBackend,
    error::{ApiError, ErrorBody},
    http::{
        docs::{responses, tags},
        extract::AppJson,
    },
    state::AppState,
};

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "status": "healthy",
    "version": "0.1.0",
    "database": {"connected": true, "latency_ms": 0.42},
    "rate_limiter": {"backend": "local", "connected": true}
}))]
pub struct HealthResponse {
    /// `healthy` when every dependency answers; `degraded` when the service works around a
    /// missing optional one (shared rate limits fall back to per-replica limits while Redis is
    /// unreachable); `unhealthy` when the database is unreachable.
    #[schema(example = "healthy")]
    pub status: &'static str,
    /// Version of the running service.
    pub version: &'static str,
    pub database: DatabaseStatusResponse,
    pub rate_limiter: RateLimiterStatusResponse,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimiterStatusResponse {
    /// `local` (per replica) or `redis` (shared by every replica).
    #[schema(value_type = String, example = "local")]
    pub backend: RateLimitBackend,
    /// For `redis`: whether Redis answers. While it does not, each replica enforces the limits
    /// on its own.
    pub connected: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseStatusResponse {
    pub connected: bool,
    /// Round trip of `SELECT 1` in milliseconds; absent when the database is unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Why the database is considered down; absent when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct ProbeResponse {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Reports the service's health and the database's latency.
///
/// Answers 503 with the same body while the database is unreachable, and 200 again as soon as
/// it is back (no restart needed).
#[utoipa::path(
    get,
    path = "/api/health",
    tag = tags::HEALTH,
    responses(
        (status = 200, description = "Service and database are healthy", body = HealthResponse),
        (status = 408, response = responses::RequestTimeout),
        (status = 503, description = "The database is unreachable", body = HealthResponse,
            example = json!({"status": "unhealthy", "version": "0.1.0",
                             "database": {"connected": false, "error": "database unreachable"},
                             "rate_limiter": {"backend": "local", "connected": true}})),
    )
)]
pub async fn get_health(State(state): State<AppState>) -> impl IntoResponse {
    let db = state.health.database().await;
    let limiter = state.rate_limiter.status();
    let status = if db.connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = HealthResponse {
        status: match (db.connected, limiter.connected) {
            (false, _) => "unhealthy",
            (true, false) => "degraded",
            (true, true) => "healthy",
        },
        version: env!("CARGO_PKG_VERSION"),
        database: DatabaseStatusResponse {
            connected: db.connected,
            latency_ms: db.latency_ms,
            error: db.error,
        },
        rate_limiter: RateLimiterStatusResponse { backend: limiter.configured, connected: limiter.connected },
    };
    (status, AppJson(body))
}

/// Liveness probe: 200 while the process serves requests. Never touches the database.
#[utoipa::path(
    get,
    path = "/api/health/live",
    tag = tags::HEALTH,
    responses(
        (status = 200, description = "The process is alive", body = ProbeResponse),
        (status = 408, response = responses::RequestTimeout),
    ),
)]
pub async fn get_liveness() -> AppJson<ProbeResponse> {
    AppJson(ProbeResponse { status: "ok" })
}

/// Readiness probe: 200 when the database answers, 503 otherwise.
#[utoipa::path(
    get,
    path = "/api/health/ready",
    tag = tags::HEALTH,
    responses(
        (status = 200, description = "Ready to accept traffic", body = ProbeResponse,
            example = json!({"status": "ready"})),
        (status = 408, response = responses::RequestTimeout),
        (status = 503, description = "The database is unreachable", body = ErrorBody,
            example = json!({"error": "service_unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn get_readiness(State(state): State<AppState>) -> Result<AppJson<ProbeResponse>, ApiError> {
    if state.health.database().await.connected {
        Ok(AppJson(ProbeResponse { status: "ready" }))
    } else {
        Err(ApiError::ServiceUnavailable("The database is unreachable".into()))
    }
}
