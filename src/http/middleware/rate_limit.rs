//! Rate limits. Run after authentication: a request with a device token counts against its
//! device, one without against its key (standard or admin limit); a data export also against the
//! hourly export limit, and a registration through an `app` key also against its client
//! address. Every authenticated response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset`
//! of the narrowest limit, and a refusal is a 429 envelope with `Retry-After`.

use axum::{
    extract::{MatchedPath, Request, State},
    http::HeaderValue,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    headers::{RATE_LIMIT_LIMIT, RATE_LIMIT_REMAINING, RATE_LIMIT_RESET},
    http::{
        extract::client_address,
        routes::{devices::REGISTER_ROUTE, privacy::EXPORT_ROUTE},
    },
    infra::rate_limit::{Scope, Subject},
    metrics,
    model::{Credentials, KeyScope},
    state::AppState,
};

/// Requests without credentials (public routes) pass untouched.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(credentials) = request.extensions().get::<Credentials>() else {
        return next.run(request).await;
    };
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or_default();
    let caller = match &credentials.device {
        Some(device) => Subject::Device(device.device_id),
        None => Subject::Key(credentials.key.id),
    };
    let mut checks = vec![match caller {
        Subject::Device(_) => (Scope::Device, caller),
        _ if credentials.key.is_admin => (Scope::Admin, caller),
        _ => (Scope::Standard, caller),
    }];
    if route == EXPORT_ROUTE {
        checks.push((Scope::Export, caller));
    }
    if route == REGISTER_ROUTE
        && credentials.key.scope == KeyScope::App
        && let Some(address) = client_address(&request, &state.settings.security)
    {
        checks.push((Scope::Registration, Subject::Address(address)));
    }
    let mut reported = None;
    for (scope, subject) in checks {
        let decision = state.rate_limiter.check(scope, subject).await;
        if !decision.allowed {
            metrics::rate_limited(scope.name());
            tracing::warn!(%subject, scope = scope.name(), "rate limit exceeded");
            return decision.refusal().into_response();
        }
        // The later limits are the narrower ones: their numbers are what the client must heed.
        reported = Some(decision);
    }
    let mut response = next.run(request).await;
    if let Some(decision) = reported {
        let headers = response.headers_mut();
        headers.insert(RATE_LIMIT_LIMIT, HeaderValue::from(decision.quota.limit));
        headers.insert(RATE_LIMIT_REMAINING, HeaderValue::from(decision.remaining));
        headers.insert(RATE_LIMIT_RESET, HeaderValue::from(decision.reset_after_secs()));
    }
    response
}
