//! The unversioned paths of the first app releases redirect to their `/api/v1` twin, query
//! string kept, so old clients find the current API: GET and HEAD with 301 Moved Permanently
//! (Story 4.3), every other method with 308 Permanent Redirect, which keeps the method and the
//! body. Clients re-send a 301 as a GET without the body, so an old app's `POST
//! /api/locations` would get 405 and lose its fix (docs/decisions.md).

use axum::{
    Router,
    http::{HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::any,
};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/devices", any(redirect))
        .route("/api/devices/{*rest}", any(redirect))
        .route("/api/locations", any(redirect))
        .route("/api/locations/{*rest}", any(redirect))
}

async fn redirect(method: Method, uri: Uri) -> Response {
    let rest = uri.path().strip_prefix("/api").unwrap_or(uri.path());
    let target = match uri.query() {
        Some(query) => format!("/api/v1{rest}?{query}"),
        None => format!("/api/v1{rest}"),
    };
    let status = if method == Method::GET || method == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    match HeaderValue::from_str(&target) {
        Ok(location) => (status, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
