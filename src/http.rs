//! The HTTP layer: routes, extractors and middleware. Handlers call `domain`, never SQL.

pub mod extract;
pub mod middleware;
pub mod routes;

use axum::{
    Extension, Router,
    extract::DefaultBodyLimit,
    http::{StatusCode, Uri},
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{error::ApiError, openapi::ApiDoc, state::AppState};
use extract::BodyLimit;
use middleware::{errors, request_log};

/// Where the OpenAPI JSON is served; Swagger UI at `/docs` loads it from here.
pub const OPENAPI_JSON_PATH: &str = "/api-docs/openapi.json";

/// Every documented route. `protect` wraps the routes that need an API key, so the document
/// and the running service come from the same table and cannot disagree.
fn routes(
    protect: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let authenticated = OpenApiRouter::new()
        .merge(routes::devices::router())
        .merge(routes::keys::router())
        .merge(routes::locations::router());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::health::router())
        .nest("/api/v1", protect(authenticated))
}

/// The route table without state or middleware: what `openapi::spec()` documents.
pub fn api_router() -> OpenApiRouter<AppState> {
    routes(|router| router)
}

/// The complete service: routes, docs, fallbacks and the middleware stack.
pub fn app(state: AppState) -> Router {
    let auth = axum::middleware::from_fn_with_state(state.clone(), middleware::auth::require_api_key);
    let (router, spec) = routes(|router| router.route_layer(auth)).split_for_parts();
    let body_limit = state.settings.limits.max_body_bytes;
    let timeout = state.settings.server.request_timeout();

    router
        .merge(SwaggerUi::new("/docs").url(OPENAPI_JSON_PATH, spec))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Outermost first: the request id exists before the span that logs it.
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
                .layer(CatchPanicLayer::custom(errors::panic_response))
                .layer(axum::middleware::map_response(errors::ensure_json_errors))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
                .layer(Extension(BodyLimit(body_limit)))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("No route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
