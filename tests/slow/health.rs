//! Readiness while the database is cut off (its checks wait out acquire timeouts).

use std::net::ToSocketAddrs;

use reqwest::StatusCode;

use crate::helpers::{TcpProxy, TestApp, assert_error, database_url, json_body, server_url};

/// The database goes away behind a TCP proxy: health and readiness say 503, liveness stays
/// 200; when it comes back they recover without a restart.
#[tokio::test]
async fn readiness_follows_the_database_down_and_back_up() {
    let target = postgres_address();
    let mut proxy = TcpProxy::start(target).await;
    let proxy_address = proxy.address;
    // Same test database, reached through the proxy.
    let app = TestApp::spawn_with(|settings| {
        let direct = settings.database.url.clone();
        let name = direct.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
        settings.database.url = format!("postgres://postgres@{proxy_address}/{name}");
        settings.database.acquire_timeout_secs = 1;
    })
    .await;
    let anonymous = app.anonymous();
    assert_eq!(anonymous.get("/api/health/ready").await.status(), StatusCode::OK);

    proxy.cut().await;
    assert_error(
        anonymous.get("/api/health/ready").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    let health = anonymous.get("/api/health").await;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json_body(health).await;
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["database"]["connected"], false);
    assert_eq!(anonymous.get("/api/health/live").await.status(), StatusCode::OK);

    proxy.restore().await;
    let mut recovered = false;
    for _ in 0..50 {
        if anonymous.get("/api/health/ready").await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "readiness recovers once the database is back");
    assert_eq!(json_body(anonymous.get("/api/health").await).await["database"]["connected"], true);
}

/// Host and port of the PostgreSQL server the tests use.
fn postgres_address() -> std::net::SocketAddr {
    let options: sqlx::postgres::PgConnectOptions = database_url("x").parse().unwrap();
    (options.get_host(), options.get_port())
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("resolve {}: {e}", server_url()))
        .find(|a| a.is_ipv4())
        .expect("an IPv4 address for PostgreSQL (the proxy test needs TCP)")
}
