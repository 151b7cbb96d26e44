//! Per-key rate limits. Runs after authentication (it needs the key); every authenticated
//! response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset`, and a refusal is a 429
//! envelope with `Retry-After`. Data exports count against an hourly limit too, and report it.

use axum::{
    extract::{MatchedPath, Request, State},
    http::HeaderValue,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    error::ApiError,
    headers::{RATE_LIMIT_LIMIT, RATE_LIMIT_REMAINING, RATE_LIMIT_RESET},
    http::routes::privacy::EXPORT_ROUTE,
    infra::rate_limit::{Decision, Scope},
    metrics,
    model::ApiKey,
    state::AppState,
};

/// The per-minute limit of the calling key (standard or admin), and on the export route the
/// hourly export limit as well. Requests without a key (public routes) pass untouched.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = request.extensions().get::<ApiKey>() else {
        return next.run(request).await;
    };
    let key_id = key.id;
    let mut scopes = vec![if key.is_admin { Scope::Admin } else { Scope::Standard }];
    if request.extensions().get::<MatchedPath>().is_some_and(|route| route.as_str() == EXPORT_ROUTE) {
        scopes.push(Scope::Export);
    }
    let mut reported = None;
    for scope in scopes {
        let decision = state.rate_limiter.check(scope, key_id).await;
        if !decision.allowed {
            metrics::rate_limited(scope.name());
            tracing::warn!(key_id, scope = scope.name(), "rate limit exceeded");
            return refusal(&decision).into_response();
        }
        // The last scope is the narrowest: its numbers are the ones the client must heed.
        reported = Some(decision);
    }
    let mut response = next.run(request).await;
    if let Some(decision) = reported {
        let headers = response.headers_mut();
        headers.insert(RATE_LIMIT_LIMIT, HeaderValue::from(decision.quota.limit));
        headers.insert(RATE_LIMIT_REMAINING, HeaderValue::from(decision.remaining));
        headers.insert(RATE_LIMIT_RESET, HeaderValue::from(reset_after(&decision)));
    }
    response
}

fn refusal(decision: &Decision) -> ApiError {
    ApiError::RateLimited {
        limit: decision.quota.limit,
        per: decision.quota.period.name(),
        // Never "retry after 0 s": a client would come straight back.
        retry_after: (decision.retry_after.as_secs_f64().ceil() as u64).max(1),
        reset_after: reset_after(decision),
    }
}

fn reset_after(decision: &Decision) -> u64 {
    decision.reset_after.as_secs_f64().ceil() as u64
}
