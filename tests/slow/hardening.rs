//! Hardening that needs a server process of its own (metrics), Redis (shared rate limits), or
//! waits out a timeout (request, header read, the concurrency cap's holder).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    ServerProcess, TcpProxy, TestApp, TestDatabase, assert_error, json_body, key_for, raw_exchange,
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
    // Refused outside everything else, it still carries a request id, as every response does.
    assert!(refused.headers().contains_key("x-request-id"), "{:?}", refused.headers());
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

/// A slowloris client is cut off by the header read timeout: not before it (a connection
/// closed at once for another reason fails here), and not much after it.
#[tokio::test]
async fn clients_that_never_finish_their_headers_are_disconnected() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let app = TestApp::spawn_with(|s| s.server.header_read_timeout_secs = TIMEOUT.as_secs()).await;
    // Half a header; nothing at all; half of HTTP/2's preface (hyper reads the opening bytes
    // that tell the protocols apart without a timer of its own).
    let openings: [&[u8]; 3] =
        [b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"", b"PRI * HTTP/2.0\r\n"];
    for opening in openings {
        let started = std::time::Instant::now();
        let answer = raw_exchange(app.socket_addr, opening, Duration::from_secs(10)).await;
        let elapsed = started.elapsed();
        let shown = String::from_utf8_lossy(opening);
        // The server's timer starts after our clock (it cannot run before the connection
        // exists), so the only slack needed below is timer granularity; above, a loaded
        // machine's scheduling.
        assert!(
            elapsed >= TIMEOUT - Duration::from_millis(250),
            "{shown:?}: kept open until the header timeout, not closed at once ({elapsed:?})"
        );
        assert!(
            elapsed < TIMEOUT + Duration::from_secs(3),
            "{shown:?}: closed after the header timeout ({elapsed:?})"
        );
        assert!(!answer.contains("200 OK"), "{answer}");
    }
}
