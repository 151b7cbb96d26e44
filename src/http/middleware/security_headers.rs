//! Security headers for a JSON API, with a Content-Security-Policy that lets Swagger UI run
//! on `/docs` and nothing anywhere else.

use axum::{
    extract::{Request, State},
    http::{HeaderName, HeaderValue, header},
    middleware::Next,
    response::Response,
};

use crate::state::AppState;

/// JSON needs no scripts, styles, frames or fetches.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// Swagger UI: its own scripts and styles (it sets inline styles), images incl. data: URIs,
/// and fetches of the OpenAPI document and "Try it out" calls to this origin.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

pub async fn add(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let docs = request.uri().path().starts_with("/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: HeaderValue| {
        headers.entry(name).or_insert(value);
    };
    set(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    set(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    set(header::X_XSS_PROTECTION, HeaderValue::from_static("1; mode=block"));
    set(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    set(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(if docs { DOCS_CSP } else { API_CSP }));
    let hsts = state.settings.security.hsts_max_age_secs;
    if hsts > 0 {
        let value = format!("max-age={hsts}; includeSubDomains");
        set(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_str(&value).expect("ASCII"));
    }
    response
}
