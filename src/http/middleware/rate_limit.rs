//! Per-key rate limits. Runs after authentication (it needs the key); every authenticated
//! response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset`, and a refusal is a 429
//! envelope with `Retry-After`.

use axum::{
    extract::{Request, State},
    http::HeaderValue,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    domain::api_keys::AuthenticatedKey,
    error::{ApiError, RATE_LIMIT_LIMIT, RATE_LIMIT_REMAINING, RATE_LIMIT_RESET},
    metrics,
    rate_limit::Scope,
    state::AppState,
};

/// The per-minute limit of the calling key: standard or admin.
pub async fn limit_per_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = request.extensions().get::<AuthenticatedKey>() else {
        return ApiError::Unauthorized.into_response();
    };
    let scope = if key.is_admin { Scope::Admin } else { Scope::Standard };
    let key_id = key.id;
    enforce(&state, scope, key_id, request, next).await
}

/// The hourly data-export limit, on top of the per-minute one.
pub async fn limit_exports(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key_id) = request.extensions().get::<AuthenticatedKey>().map(|k| k.id) else {
        return ApiError::Unauthorized.into_response();
    };
    enforce(&state, Scope::Export, key_id, request, next).await
}

async fn enforce(state: &AppState, scope: Scope, key_id: i64, request: Request, next: Next) -> Response {
    let decision = state.rate_limiter.check(scope, key_id).await;
    let reset_after = decision.reset_after.as_secs_f64().ceil() as u64;
    if !decision.allowed {
        metrics::rate_limited(scope.name());
        tracing::warn!(key_id, scope = scope.name(), "rate limit exceeded");
        return ApiError::RateLimited {
            limit: decision.quota.limit,
            per: decision.quota.period.name(),
            // Never "retry after 0 s": a client would come straight back.
            retry_after: (decision.retry_after.as_secs_f64().ceil() as u64).max(1),
            reset_after,
        }
        .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // An inner limit (exports) already reported the tighter numbers: keep those.
    if !headers.contains_key(RATE_LIMIT_LIMIT) {
        headers.insert(RATE_LIMIT_LIMIT, HeaderValue::from(decision.quota.limit));
        headers.insert(RATE_LIMIT_REMAINING, HeaderValue::from(decision.remaining));
        headers.insert(RATE_LIMIT_RESET, HeaderValue::from(reset_after));
    }
    response
}
