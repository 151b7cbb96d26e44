use std::collections::BTreeSet;

use reqwest::{Response, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TestApp, fix, single};

#[tokio::test]
async fn a_request_id_is_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let response = anonymous.get("/api/health/live").header("X-Request-ID", "trace-me-42").await;
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");

    let response = anonymous.get("/api/health/live").await;
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "generated ids are UUIDs: {generated}");

    // Errors carry it too.
    let response = anonymous.get("/nowhere").header("X-Request-ID", "err-1").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["x-request-id"], "err-1");
}

/// The API's own response headers, beyond HTTP's standard ones.
const API_HEADERS: [&str; 6] = [
    "x-request-id",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
    "idempotent-replayed",
];

/// The headers the document declares for an operation's response (lowercase), following a
/// `$ref` to a reusable response.
fn declared(spec: &Value, method: &str, path: &str, status: StatusCode) -> BTreeSet<String> {
    let mut response = &spec["paths"][path][method]["responses"][status.as_str()];
    if let Some(reference) = response["$ref"].as_str() {
        response = spec.pointer(reference.trim_start_matches('#')).expect("the reference resolves");
    }
    assert!(response.is_object(), "{method} {path} documents {status}");
    let headers = response["headers"].as_object().cloned().unwrap_or_default();
    headers.keys().map(|name| name.to_ascii_lowercase()).collect()
}

/// Which of [`API_HEADERS`] a response carries.
fn sent(response: &Response) -> BTreeSet<String> {
    API_HEADERS
        .iter()
        .filter(|name| response.headers().contains_key(**name))
        .map(|name| name.to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// What the document declares is what the service sends: the same API headers on a public
/// answer, on 2xx answers of authenticated operations (fresh and replayed uploads, a listing) and
/// on a 429. Error answers that the handler gives (a 404) carry the rate-limit headers as well
/// without declaring them (a reusable response is shared with answers given before the key is
/// checked, which do not carry them): there, what is declared is a subset of what is sent.
#[tokio::test]
async fn declared_response_headers_are_the_ones_sent() {
    let app = TestApp::spawn_with(|s| s.security.rate_limit_per_minute = 8).await;
    let spec: Value = serde_json::from_str(&phone_manager::openapi::spec_json()).unwrap();
    let client = app.client().await;
    let limited = set(&["x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"]);

    let live = app.anonymous().get("/api/health/live").await;
    assert_eq!(sent(&live), declared(&spec, "get", "/api/health/live", StatusCode::OK));
    assert_eq!(sent(&live), set(&["x-request-id"]));

    let unauthorized = app.anonymous().get("/api/v1/keys/current").await;
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sent(&unauthorized), declared(&spec, "get", "/api/v1/keys/current", StatusCode::UNAUTHORIZED));

    let device = client.registered_device("headers").await;
    let upload = single(device, fix(5));
    let first = client.post_json("/api/v1/locations", &upload).idempotency_key("k-1").await;
    assert_eq!(first.status(), StatusCode::OK);
    let upload_ok = declared(&spec, "post", "/api/v1/locations", StatusCode::OK);
    assert_eq!(sent(&first), limited, "a first upload");
    assert_eq!(upload_ok, &limited | &set(&["idempotent-replayed"]), "declared on the upload's 200");
    let replay = client.post_json("/api/v1/locations", &upload).idempotency_key("k-1").await;
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(sent(&replay), upload_ok, "a replay");

    let listing = client.get("/api/v1/devices?group_id=headers").await;
    assert_eq!(listing.status(), StatusCode::OK);
    assert_eq!(sent(&listing), declared(&spec, "get", "/api/v1/devices", StatusCode::OK));

    let unknown = client.post_json("/api/v1/locations", &single(Uuid::new_v4(), fix(5))).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let declared_404 = declared(&spec, "post", "/api/v1/locations", StatusCode::NOT_FOUND);
    assert_eq!(declared_404, set(&["x-request-id"]));
    assert!(declared_404.is_subset(&sent(&unknown)));
    assert_eq!(sent(&unknown), limited, "a handler's error also carries the rate-limit headers");

    let refused = loop {
        let response = client.get("/api/v1/keys/current").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_eq!(response.status(), StatusCode::OK);
    };
    assert_eq!(sent(&refused), declared(&spec, "get", "/api/v1/keys/current", StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(sent(&refused), &limited | &set(&["retry-after"]));
}
