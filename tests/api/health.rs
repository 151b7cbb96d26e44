use reqwest::StatusCode;

use crate::helpers::{TestApp, json_body};

#[tokio::test]
async fn health_reports_a_connected_database_without_a_key() {
    let app = TestApp::spawn().await;
    let response = app.anonymous().get("/api/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["database"]["connected"], true);
    assert!(body["database"]["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{body}");
}

#[tokio::test]
async fn liveness_and_readiness_answer_without_a_key() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let live = anonymous.get("/api/health/live").await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(json_body(live).await["status"], "ok");
    let ready = anonymous.get("/api/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(json_body(ready).await["status"], "ready");
}

#[tokio::test]
async fn stopping_finishes_cleanly_and_refuses_new_connections() {
    let mut app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    assert_eq!(anonymous.get("/api/health/live").await.status(), StatusCode::OK);
    app.stop().await.expect("clean shutdown");
    // A new connection, as a fresh client would open (a pooled one might just be dead).
    let after = tokio::net::TcpStream::connect(app.socket_addr).await;
    assert!(after.is_err(), "no longer accepting connections");
}

/// A request in flight when shutdown starts still completes; new connections are refused.
#[tokio::test]
async fn in_flight_requests_finish_during_graceful_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut app = TestApp::spawn().await;
    let key = app.create_key(false).await.key;
    let body =
        format!(r#"{{"device_id":"{}","display_name":"Late","group_id":"fam"}}"#, uuid::Uuid::new_v4());
    let (head, tail) = body.split_at(20);
    let address = app.socket_addr;
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "POST /api/v1/devices/register HTTP/1.1\r\nHost: {address}\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let stopping = tokio::spawn(async move {
        let result = app.stop().await;
        (app, result)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "no new connections while stopping");

    stream.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 200"), "the in-flight request completed: {answer}");
    let (app, result) = stopping.await.unwrap();
    result.expect("clean shutdown");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM devices").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 1);
}
