//! Production hardening: local rate limits, versioned routes, security headers, CORS, body
//! and head limits. Metrics, shared (Redis) limits and timeouts are in the slow lane
//! (`tests/slow/hardening.rs`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use uuid::Uuid;

use crate::helpers::{ApiClient, TestApp, assert_error, json_body, raw_exchange};

#[tokio::test]
async fn the_101st_request_in_a_minute_is_refused_for_that_key_only() {
    let app = TestApp::spawn().await;
    let (noisy, quiet) = (app.client().await, app.client().await);
    // 100/minute replenishes one request every 0.6 s: a slow machine earns a few extra.
    let started = std::time::Instant::now();
    let mut passed = 0usize;
    let mut last_remaining = 100u32;
    let refused = loop {
        let response = noisy.get("/api/v1/keys/current").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-ratelimit-limit"], "100");
        let remaining: u32 = response.headers()["x-ratelimit-remaining"].to_str().unwrap().parse().unwrap();
        assert!(remaining < last_remaining || passed > 0 && remaining <= last_remaining + 1, "counts down");
        last_remaining = remaining;
        passed += 1;
        assert!(passed <= 200, "the limit never applied");
    };
    let earned = (started.elapsed().as_secs_f64() / 0.6).ceil() as usize;
    assert!(passed >= 100 && passed <= 100 + earned, "{passed} passed in {:?}", started.elapsed());
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    let body = json_body(refused).await;
    assert_eq!(body["error"], "rate_limit_exceeded");
    assert_eq!(body["message"], "Rate limit of 100 requests/minute exceeded");
    assert_eq!(body["retry_after"], retry_after);

    let other = quiet.get("/api/v1/keys/current").await;
    assert_eq!(other.status(), StatusCode::OK, "one noisy key never throttles another");
    // Unauthenticated health checks are never limited.
    assert_eq!(app.anonymous().get("/api/health/live").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_keys_have_their_own_larger_limit() {
    let app = TestApp::spawn_with(|s| {
        s.security.rate_limit_per_minute = 3;
        s.security.admin_rate_limit_per_minute = 5;
    })
    .await;
    let (standard, admin) = (app.client().await, app.admin_client().await);
    let statuses = |client: ApiClient, n: usize| async move {
        let mut statuses = Vec::new();
        for _ in 0..n {
            statuses.push(client.get("/api/v1/keys/current").await.status().as_u16());
        }
        statuses
    };
    assert_eq!(statuses(standard, 4).await, [200, 200, 200, 429]);
    assert_eq!(statuses(admin, 6).await, [200, 200, 200, 200, 200, 429]);
}

#[tokio::test]
async fn unversioned_paths_redirect_permanently_to_v1() {
    let app = TestApp::spawn().await;
    // GET and HEAD: 301. Every other method: 308, which keeps the method and the body (a 301
    // is re-sent as a GET without the body, and an old app's upload was lost).
    for (method, from, to, status) in [
        (
            "GET",
            "/api/devices?group_id=family",
            "/api/v1/devices?group_id=family",
            StatusCode::MOVED_PERMANENTLY,
        ),
        (
            "HEAD",
            "/api/devices?group_id=family",
            "/api/v1/devices?group_id=family",
            StatusCode::MOVED_PERMANENTLY,
        ),
        ("POST", "/api/devices/register", "/api/v1/devices/register", StatusCode::PERMANENT_REDIRECT),
        (
            "DELETE",
            "/api/devices/550e8400-e29b-41d4-a716-446655440000",
            "/api/v1/devices/550e8400-e29b-41d4-a716-446655440000",
            StatusCode::PERMANENT_REDIRECT,
        ),
        ("POST", "/api/locations", "/api/v1/locations", StatusCode::PERMANENT_REDIRECT),
        ("POST", "/api/locations/batch", "/api/v1/locations/batch", StatusCode::PERMANENT_REDIRECT),
    ] {
        let response = app.anonymous().request(method.parse().unwrap(), from).await;
        assert_eq!(response.status(), status, "{method} {from}");
        assert_eq!(response.headers()["location"], to);
    }
}

#[tokio::test]
async fn security_headers_suit_the_api_and_the_docs() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    for path in ["/api/health", "/api/v1/keys/current", "/no-such-route"] {
        let response = anonymous.get(path).await;
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-xss-protection"], "1; mode=block");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
        assert!(headers.get("strict-transport-security").is_none(), "HSTS only when configured");
    }
    let docs = anonymous.get("/docs/").await;
    let csp = docs.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");

    let https = TestApp::spawn_with(|s| s.security.hsts_max_age_secs = 31_536_000).await;
    let response = https.anonymous().get("/api/health").await;
    assert_eq!(response.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains");
}

#[tokio::test]
async fn cors_preflight_is_answered_without_a_key() {
    let app = TestApp::spawn().await;
    let response = app
        .anonymous()
        .request(Method::OPTIONS, "/api/v1/locations")
        .header("Origin", "https://map.example.org")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "x-api-key, idempotency-key, x-request-id, content-type")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    for header in ["x-api-key", "idempotency-key", "x-request-id", "content-type"] {
        assert!(allowed.contains(header), "{allowed}");
    }
    assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("POST"));

    let strict =
        TestApp::spawn_with(|s| s.security.cors_origins = vec!["https://admin.example.org".into()]).await;
    let preflight = |origin: &'static str| {
        strict
            .anonymous()
            .request(Method::OPTIONS, "/api/v1/devices")
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
    };
    let allowed = preflight("https://admin.example.org").await;
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://admin.example.org");
    let refused = preflight("https://evil.example.com").await;
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn bodies_over_one_mebibyte_get_413() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let limit = 1024 * 1024;
    let json_of_size = |size: usize| {
        let base = format!(r#"{{"device_id":"{}","display_name":"Phone","group_id":"fam"}}"#, Uuid::new_v4());
        format!("{base}{}", " ".repeat(size - base.len()))
    };
    let send = |body: String| {
        api.post_body("/api/v1/devices/register", body).header("Content-Type", "application/json")
    };
    let at_limit = send(json_of_size(limit)).await;
    assert_eq!(at_limit.status(), StatusCode::OK, "exactly 1 MiB is accepted");
    let over = send(json_of_size(limit + 1)).await;
    let body = assert_error(over, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(body["message"], "Request exceeds maximum size of 1048576 bytes");
}

/// The per-connection read buffer (server.read_buffer_bytes, 8 KiB) bounds a request's head:
/// a longer one is refused by hyper with 431 before any handler runs, while a head that fits
/// and a body far larger than the buffer (it streams through) are served.
#[tokio::test]
async fn a_request_head_beyond_the_read_buffer_is_431() {
    let app = TestApp::spawn().await;
    let head = |padding: usize| {
        format!(
            "GET /api/health/live HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(padding)
        )
    };
    let refused = raw_exchange(app.socket_addr, head(9_000).as_bytes(), Duration::from_secs(5)).await;
    assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
    let served = raw_exchange(app.socket_addr, head(7_000).as_bytes(), Duration::from_secs(5)).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
}

/// A client that speaks HTTP/2 from its first byte (prior knowledge, as gRPC-style clients and
/// some proxies do) is served by HTTP/2: the server answers the preface with its own SETTINGS
/// frame. HTTP/1 clients are covered by every other test.
#[tokio::test]
async fn http2_with_prior_knowledge_is_served_as_http2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(app.socket_addr).await.expect("connect");
    // The preface, then an empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.expect("write");
    let mut frame_header = [0u8; 9];
    tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_exact(&mut frame_header))
        .await
        .expect("the server answers within 5 s")
        .expect("a frame header");
    assert_eq!(frame_header[3], 4, "the first frame is SETTINGS: {frame_header:?}");
    assert_eq!(&frame_header[5..9], &[0, 0, 0, 0], "on stream 0: {frame_header:?}");
}
