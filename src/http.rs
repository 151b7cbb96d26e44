//! The HTTP layer: routes, extractors and middleware. Handlers call services in `domain`
//! (through [`AppState`]), never SQL.

pub mod docs;
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
    response::IntoResponse,
    routing::get,
};
use tower::{BoxError, ServiceBuilder};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    decompression::RequestDecompressionLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use utoipa_axum::{router::OpenApiRouter, routes};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::{config::SecuritySettings, error::ApiError, headers, state::AppState};
use extract::BodyLimit;
use middleware::{errors, request_log};
use routes::{admin, devices, health, history, keys, legacy, live, locations, metrics, privacy};

/// Where the OpenAPI JSON is served; Swagger UI at `/docs` loads it from here.
pub const OPENAPI_JSON_PATH: &str = "/api-docs/openapi.json";

/// Every documented route, by its full path (each handler's `#[utoipa::path]` names it). The
/// same table builds the service ([`app`]) and the OpenAPI document (`openapi::spec`), so the
/// two cannot disagree. Every route under `/api/v1/` needs an API key
/// ([`middleware::auth`]); the others are public.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // Public: probes and metrics.
        .routes(routes!(health::get_health))
        .routes(routes!(health::get_liveness))
        .routes(routes!(health::get_readiness))
        .routes(routes!(metrics::get_metrics))
        // Admin keys only.
        .routes(routes!(admin::delete_inactive_devices))
        .routes(routes!(admin::reactivate_device))
        .routes(routes!(admin::get_stats))
        .routes(routes!(admin::list_audit_entries))
        // Devices and groups.
        .routes(routes!(devices::register_device))
        .routes(routes!(devices::list_devices))
        .routes(routes!(devices::delete_device))
        .routes(routes!(devices::renew_device_token))
        .routes(routes!(devices::create_invite))
        // The calling key.
        .routes(routes!(keys::get_current_key))
        // Location uploads.
        .routes(routes!(locations::upload_location))
        .routes(routes!(locations::upload_location_batch))
        // History.
        .routes(routes!(history::list_device_locations))
        // Live.
        .routes(routes!(live::stream_group))
        // Privacy.
        .routes(routes!(privacy::delete_device_data))
        .routes(routes!(privacy::export_device_data))
}

/// The complete service: the routes of [`router`] with authentication and rate limits, the
/// legacy redirects, Swagger UI serving `spec`, the fallbacks and the middleware stack.
pub fn app(state: AppState, spec: utoipa::openapi::OpenApi) -> Router {
    let settings = state.settings.clone();
    let body_limit = settings.limits.max_body_bytes;
    let (routes, _) = router().split_for_parts();

    let routed = routes
        // route_layer runs after routing (the matched path is known) and the last added runs
        // first: the key is known before its limit is counted.
        .route_layer(from_fn_with_state(state.clone(), middleware::rate_limit::limit))
        .route_layer(from_fn_with_state(state.clone(), middleware::auth::require_api_key))
        .merge(legacy::router())
        .route(OPENAPI_JSON_PATH, get(openapi_document(&spec, settings.limits.max_clock_skew())))
        .merge(SwaggerUi::new("/docs").config(Config::from(OPENAPI_JSON_PATH)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Request bodies, innermost first (each layer changes the body type, so each is a layer
        // of its own): the handlers' extractors read at most `body_limit` bytes of the decoded
        // body, so a small compressed body cannot expand into a large one; gzip and deflate are
        // decoded (any other Content-Encoding is a 415); and a declared Content-Length over the
        // limit is refused before any of the body is read (a client sending `Expect:
        // 100-continue` never uploads it).
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(Extension(BodyLimit(body_limit)))
        .layer(RequestDecompressionLayer::new())
        .layer(RequestBodyLimitLayer::new(body_limit))
        // Outermost first: CORS answers preflights before anything asks for a key. (The
        // request id is set further out, below.)
        .layer(
            ServiceBuilder::new()
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
                .layer(axum::middleware::map_response_with_state(
                    BodyLimit(body_limit),
                    errors::ensure_json_errors,
                ))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    settings.server.request_timeout(),
                )),
        )
        .with_state(state);

    // Router::layer wraps each route separately; the concurrency cap must be one for the whole
    // service, so it wraps the routed service as a single fallback. Beyond the cap, requests
    // are refused at once (503) rather than queued behind a slow backlog. The request id is
    // set outside even that, so that every response carries `X-Request-ID` (the 503 at capacity
    // too), and it exists before the span that logs the request.
    Router::new().fallback_service(routed).layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(HandleErrorLayer::new(|_: BoxError| async {
                ApiError::ServiceUnavailable("The server is at capacity; retry shortly".into())
            }))
            .load_shed()
            .concurrency_limit(settings.server.max_concurrent_requests),
    )
}

/// Serves the document with the clock filled in ([`docs::with_clock`]).
fn openapi_document(
    spec: &utoipa::openapi::OpenApi,
    max_skew: chrono::Duration,
) -> impl Fn() -> std::future::Ready<axum::response::Response> + Clone + Send + Sync + 'static {
    let document = std::sync::Arc::new(serde_json::to_value(spec).expect("the document serializes"));
    let max_skew_ms = max_skew.num_milliseconds();
    move || {
        let live = docs::with_clock(&document, chrono::Utc::now().timestamp_millis(), max_skew_ms);
        std::future::ready(axum::Json(live).into_response())
    }
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
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::ACCEPT,
                header(headers::API_KEY),
                header(headers::IDEMPOTENCY_KEY),
                header(headers::LAST_EVENT_ID),
                header(headers::REQUEST_ID),
                header(headers::TRACEPARENT),
                header(headers::TRACESTATE),
            ])
            .expose_headers([
                header(headers::REQUEST_ID),
                header::RETRY_AFTER,
                header(headers::RATE_LIMIT_LIMIT),
                header(headers::RATE_LIMIT_REMAINING),
                header(headers::RATE_LIMIT_RESET),
                header(headers::IDEMPOTENT_REPLAYED),
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
