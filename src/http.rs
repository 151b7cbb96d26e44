//! The HTTP layer: routes, extractors and middleware. Handlers call `domain`, never SQL.

pub mod extract;
pub mod middleware;
pub mod routes;

use std::time::Duration;

use axum::{
    Extension, Router,
    error_handling::HandleErrorLayer,
    extract::DefaultBodyLimit,
    http::{HeaderName, Method, StatusCode, Uri, header},
    middleware::{from_fn, from_fn_with_state},
};
use tower::{BoxError, ServiceBuilder};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{config::SecuritySettings, error::ApiError, openapi::ApiDoc, state::AppState};
use extract::BodyLimit;
use middleware::{errors, request_log};

/// Where the OpenAPI JSON is served; Swagger UI at `/docs` loads it from here.
pub const OPENAPI_JSON_PATH: &str = "/api-docs/openapi.json";

/// Every documented route. With a state, the authenticated routes get their middleware
/// (key, per-key limit, the export limit); without one, the same table documents the API, so
/// the document and the running service cannot disagree.
fn routes(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    let mut exports = routes::privacy::export_router();
    if let Some(state) = state {
        exports =
            exports.route_layer(from_fn_with_state(state.clone(), middleware::rate_limit::limit_exports));
    }
    let mut authenticated = OpenApiRouter::new()
        .merge(routes::admin::router())
        .merge(routes::devices::router())
        .merge(routes::keys::router())
        .merge(routes::locations::router())
        .merge(routes::privacy::router())
        .merge(exports);
    if let Some(state) = state {
        // route_layer: the last added runs first, so the key is known before its limit.
        authenticated = authenticated
            .route_layer(from_fn_with_state(state.clone(), middleware::rate_limit::limit_per_key))
            .route_layer(from_fn_with_state(state.clone(), middleware::auth::require_api_key));
    }
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(routes::metrics::router())
        .nest("/api/v1", authenticated)
}

/// The route table without state or middleware: what `openapi::spec()` documents.
pub fn api_router() -> OpenApiRouter<AppState> {
    routes(None)
}

/// The complete service: routes, docs, fallbacks and the middleware stack.
pub fn app(state: AppState) -> Router {
    let settings = state.settings.clone();
    let (router, spec) = routes(Some(&state)).split_for_parts();
    let body_limit = settings.limits.max_body_bytes;

    let routed = router
        .merge(routes::legacy::router())
        .merge(SwaggerUi::new("/docs").url(OPENAPI_JSON_PATH, spec))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Outermost first: the request id exists before the span that logs it; CORS answers
        // preflights before anything asks for a key.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_log::make_span)
                        .on_request(())
                        .on_response(request_log::log_response)
                        .on_failure(()),
                )
                .layer(from_fn(request_log::expose_trace_context))
                .layer(from_fn(middleware::metrics::record))
                .layer(from_fn_with_state(state.clone(), middleware::security_headers::add))
                .option_layer(cors(&settings.security))
                .layer(CatchPanicLayer::custom(errors::panic_response))
                .layer(axum::middleware::map_response(errors::ensure_json_errors))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    settings.server.request_timeout(),
                ))
                .layer(Extension(BodyLimit(body_limit)))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state);

    // Router::layer wraps each route separately; the concurrency cap must be one for the whole
    // service, so it wraps the routed service as a single fallback. Beyond the cap, requests
    // are refused at once (503) rather than queued behind a slow backlog.
    Router::new().fallback_service(routed).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|_: BoxError| async {
                ApiError::ServiceUnavailable("The server is at capacity; retry shortly".into())
            }))
            .load_shed()
            .concurrency_limit(settings.server.max_concurrent_requests),
    )
}

/// CORS for browser clients: any origin with `*`, else exactly the configured ones.
fn cors(security: &SecuritySettings) -> Option<CorsLayer> {
    let origins = security.cors_origins();
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|origin| match origin.parse() {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::warn!(%origin, "ignoring an invalid CORS origin");
                None
            }
        }))
    };
    let header = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                header::ACCEPT,
                header("x-api-key"),
                header("idempotency-key"),
                header("x-request-id"),
                header("traceparent"),
                header("tracestate"),
            ])
            .expose_headers([
                header("x-request-id"),
                header::RETRY_AFTER,
                header("x-ratelimit-limit"),
                header("x-ratelimit-remaining"),
                header("x-ratelimit-reset"),
                header("idempotent-replayed"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("No route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
