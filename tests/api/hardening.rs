//! Production hardening: metrics, rate limits (local and shared through Redis), versioned
//! routes, security headers, CORS, body limits, timeouts and the concurrency cap.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    ApiClient, ServerProcess, TcpProxy, TestApp, TestDatabase, assert_error, json_body, key_for, raw_exchange,
};

/// A server process of its own, so its metrics registry sees only this test's traffic.
#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let db = TestDatabase::create().await;
    let server = ServerProcess::start(&db.url, &[]).await;
    let api = server.client_with_key(&key_for(&db.url, false).await);
    let device = Uuid::new_v4();
    api.register_device(device, "Metered", "metrics").await;
    let fix = json!({"device_id": device, "timestamp": chrono::Utc::now().timestamp_millis(),
                     "latitude": 1.0, "longitude": 2.0, "accuracy": 3.0});
    assert_eq!(api.post_json("/api/v1/locations", &fix).await.status(), StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(api.deactivate(Uuid::new_v4()).await.status(), StatusCode::NOT_FOUND);
    }

    let response = server.anonymous().get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK, "no key needed");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    let expect = [
        r#"http_requests_total{method="DELETE",path="/api/v1/devices/{device_id}",status="404"} 2"#,
        r#"http_requests_total{method="POST",path="/api/v1/devices/register",status="200"} 1"#,
        r#"http_requests_total{method="POST",path="/api/v1/locations",status="200"} 1"#,
        r#"http_request_duration_seconds_bucket{method="POST",path="/api/v1/locations",status="200",le="0.001"}"#,
        r#"http_request_duration_seconds_bucket{method="POST",path="/api/v1/locations",status="200",le="5"}"#,
        r#"database_query_duration_seconds_bucket{operation="INSERT",table="locations""#,
        "database_connections_active ",
        "database_connections_idle ",
        "locations_uploaded_total 1",
        r#"devices_registered_total{created="true"} 1"#,
    ];
    for line in expect {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(!text.contains(&device.to_string()), "raw ids never become labels");
}

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

fn redis_env<'a>(prefix: &'a str, url: &'a str, limit: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("PM__SECURITY__RATE_LIMIT_BACKEND", "redis"),
        ("PM__SECURITY__REDIS_URL", url),
        ("PM__SECURITY__REDIS_KEY_PREFIX", prefix),
        ("PM__SECURITY__RATE_LIMIT_PER_MINUTE", limit),
    ]
}

/// Two replicas sharing Redis enforce one combined limit.
#[tokio::test]
async fn two_processes_sharing_redis_enforce_one_limit() {
    let db = TestDatabase::create().await;
    let prefix = format!("pm-test:{}", Uuid::new_v4().simple());
    let env = redis_env(&prefix, "redis://127.0.0.1:6379", "10");
    let (a, b) = (ServerProcess::start(&db.url, &env).await, ServerProcess::start(&db.url, &env).await);
    let key = key_for(&db.url, false).await;
    let (via_a, via_b) = (a.client_with_key(&key), b.client_with_key(&key));
    let started = std::time::Instant::now();
    let mut passed = 0;
    for n in 0..20 {
        let api = if n % 2 == 0 { &via_a } else { &via_b };
        let response = api.get("/api/v1/keys/current").await;
        match response.status() {
            StatusCode::OK => passed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    // 10/minute earns one more request every 6 s; each replica alone would allow 10 (20 in all).
    let earned = (started.elapsed().as_secs_f64() / 6.0).floor() as usize;
    assert!(
        (10..=10 + earned).contains(&passed),
        "one limit of 10/minute across both replicas, got {passed}"
    );
    let health = json_body(a.anonymous().get("/api/health").await).await;
    assert_eq!(health["rate_limiter"], json!({"backend": "redis", "connected": true}));
    assert_eq!(health["status"], "healthy");
}

/// Redis goes away behind a proxy: the service keeps serving on local limits and says so;
/// when Redis is back, the shared limiter is used again.
#[tokio::test]
async fn losing_redis_falls_back_to_local_limits() {
    let db = TestDatabase::create().await;
    let mut proxy = TcpProxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let url = format!("redis://{}", proxy.address);
    let prefix = format!("pm-test:{}", Uuid::new_v4().simple());
    let server = ServerProcess::start(&db.url, &redis_env(&prefix, &url, "1000")).await;
    let api = server.client_with_key(&key_for(&db.url, false).await);
    let call = || api.get("/api/v1/keys/current");
    let health = || async { json_body(server.anonymous().get("/api/health").await).await };

    assert_eq!(call().await.status(), StatusCode::OK);
    assert_eq!(health().await["rate_limiter"]["connected"], true);

    proxy.cut().await;
    for _ in 0..3 {
        assert_eq!(call().await.status(), StatusCode::OK, "still serving without Redis");
    }
    let degraded = health().await;
    assert_eq!(degraded["status"], "degraded");
    assert_eq!(degraded["rate_limiter"], json!({"backend": "redis", "connected": false}));

    proxy.restore().await;
    let mut reconnected = false;
    for _ in 0..50 {
        let _ = call().send().await;
        if health().await["rate_limiter"]["connected"] == true {
            reconnected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reconnected, "back on the shared limiter once Redis answers");
}

#[tokio::test]
async fn unversioned_paths_redirect_permanently_to_v1() {
    let app = TestApp::spawn().await;
    for (method, from, to) in [
        ("GET", "/api/devices?group_id=family", "/api/v1/devices?group_id=family"),
        ("POST", "/api/devices/register", "/api/v1/devices/register"),
        (
            "DELETE",
            "/api/devices/550e8400-e29b-41d4-a716-446655440000",
            "/api/v1/devices/550e8400-e29b-41d4-a716-446655440000",
        ),
        ("POST", "/api/locations", "/api/v1/locations"),
        ("POST", "/api/locations/batch", "/api/v1/locations/batch"),
    ] {
        let response = app.anonymous().request(method.parse().unwrap(), from).await;
        assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY, "{method} {from}");
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

/// A request whose body stalls: announced with Content-Length, never completed.
fn stalled_upload(port: u16, key: &str) -> Vec<u8> {
    format!(
        "POST /api/v1/devices/register HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"device_id\":"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_request_exceeding_the_timeout_gets_a_json_408() {
    let app = TestApp::spawn_with(|s| s.server.request_timeout_secs = 1).await;
    let key = app.create_key(false).await.key;
    let answer = raw_exchange(app.socket_addr, &stalled_upload(0, &key), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("application/json") && answer.contains(r#""error":"request_timeout""#),
        "{answer}"
    );
}

#[tokio::test]
async fn beyond_the_concurrency_cap_requests_get_503_at_once() {
    let app = TestApp::spawn_with(|s| {
        s.server.max_concurrent_requests = 1;
        s.server.request_timeout_secs = 5;
    })
    .await;
    let key = app.create_key(false).await.key;
    // Occupies the only slot until its timeout.
    let holder = tokio::spawn({
        let (address, request) = (app.socket_addr, stalled_upload(0, &key));
        async move { raw_exchange(address, &request, Duration::from_secs(8)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let refused = app.anonymous().get("/api/health/live").await;
    // Queued, it would wait for the holder's 5 s timeout.
    assert!(started.elapsed() < Duration::from_secs(3), "refused at once, not queued");
    let body = assert_error(refused, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
    assert!(body["message"].as_str().unwrap().contains("capacity"));
    let held = holder.await.unwrap();
    assert!(held.starts_with("HTTP/1.1 408"), "{held}");
    assert_eq!(
        app.anonymous().get("/api/health/live").await.status(),
        StatusCode::OK,
        "the slot is free again"
    );
}

#[tokio::test]
async fn clients_that_never_finish_their_headers_are_disconnected() {
    let app = TestApp::spawn_with(|s| s.server.header_read_timeout_secs = 1).await;
    let started = std::time::Instant::now();
    let answer = raw_exchange(
        app.socket_addr,
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        Duration::from_secs(10),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "closed after the header timeout, not kept open ({elapsed:?})");
    assert!(!answer.contains("200 OK"), "{answer}");
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
