//! The binary where it waits: for a database that is not there, and serving until SIGTERM.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{ApiClient, TestDatabase, binary, database_url, free_port, key_admin};

#[tokio::test]
async fn no_database_is_a_clear_error_and_a_nonzero_exit() {
    // Nothing listens on port 1.
    let output = binary("postgres://postgres@127.0.0.1:1/phone_manager")
        .args(["keys", "list"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:1/phone_manager"),
        "{stderr}"
    );
    assert!(stderr.contains("PM__DATABASE__URL"), "says how to fix it: {stderr}");
}

#[tokio::test]
async fn serve_creates_its_database_and_stops_gracefully_on_sigterm() {
    // A database name that does not exist yet: start-up must create and migrate it.
    let name = format!("pm_test_{}", uuid::Uuid::new_v4().simple());
    let db = TestDatabase { url: database_url(&name), name };
    let port = free_port().await;
    let mut child = binary(&db.url)
        .env("PM__SERVER__PORT", port.to_string())
        .env("PM__LOGGING__LEVEL", "info")
        .env("PM__LOGGING__FORMAT", "json")
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base_url = format!("http://127.0.0.1:{port}");
    let anonymous = ApiClient::at(&base_url, None);
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(response) = anonymous.get("/api/health").send().await {
            healthy = response.status() == StatusCode::OK;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the service answers /api/health");
    let response = anonymous.get("/api/health/live").header("X-Request-ID", "log-me-7").await;
    assert_eq!(response.status(), StatusCode::OK);
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let key = key_admin(&pool).create("logged?", false, None).await.unwrap().key;
    pool.close().await;
    let response = ApiClient::at(&base_url, Some(&key)).get("/api/v1/keys/current").await;
    assert_eq!(response.status(), StatusCode::OK);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "graceful exit: {status}");
    let output = child.wait_with_output().await.unwrap();
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("shutting down") && logs.contains("\"stopped\""), "{logs}");
    // One JSON line per request, with everything needed to find it again.
    let line: Value = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["request_id"] == "log-me-7" && line["message"] == "request completed")
        .unwrap_or_else(|| panic!("a request line in {logs}"));
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/api/health/live");
    assert_eq!(line["status"], 200);
    assert!(line["duration_ms"].is_number());
    assert_eq!(line["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
    assert!(!logs.contains(&key), "keys are never logged");
}
