use reqwest::StatusCode;

use crate::helpers::TestApp;

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
