use chrono::{Duration, Utc};
use phone_manager::domain::api_keys;
use reqwest::StatusCode;

use crate::helpers::{TestApp, assert_unauthorized, json_body, key_admin};

const PROTECTED: &str = "/api/v1/keys/current";

#[tokio::test]
async fn a_valid_key_is_accepted_and_described() {
    let app = TestApp::spawn().await;
    let key = app.create_key(false).await;
    let response = app.client_with_key(&key.key).get(PROTECTED).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    assert_eq!(body["id"], key.id);
    assert_eq!(body["prefix"], key.prefix);
    assert_eq!(body["is_admin"], false);
    assert!(!body.to_string().contains(&key.key), "the key itself is never echoed");
}

#[tokio::test]
async fn missing_malformed_and_unknown_keys_get_401() {
    let app = TestApp::spawn().await;
    assert_unauthorized(app.anonymous().get(PROTECTED).await).await;
    assert_unauthorized(app.client_with_key("").get(PROTECTED).await).await;
    assert_unauthorized(app.client_with_key("not-a-key").get(PROTECTED).await).await;
    // Well-formed but never issued.
    assert_unauthorized(app.client_with_key(&api_keys::generate_key()).get(PROTECTED).await).await;
}

#[tokio::test]
async fn inactive_keys_get_401() {
    let app = TestApp::spawn().await;
    let key = app.create_key(false).await;
    let api = app.client_with_key(&key.key);
    assert_eq!(api.get(PROTECTED).await.status(), StatusCode::OK);
    key_admin(&app.pool).deactivate(&api_keys::KeySelector::Id(key.id)).await.unwrap();
    assert_unauthorized(api.get(PROTECTED).await).await;
}

#[tokio::test]
async fn expired_keys_get_401() {
    let app = TestApp::spawn().await;
    let key = app.create_key(false).await;
    sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE id = $2")
        .bind(Utc::now() - Duration::seconds(1))
        .bind(key.id)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_unauthorized(app.client_with_key(&key.key).get(PROTECTED).await).await;
}

#[tokio::test]
async fn a_key_that_has_not_expired_yet_is_accepted() {
    let app = TestApp::spawn().await;
    let key = key_admin(&app.pool).create("temporary", false, Some(1)).await.unwrap();
    let response = app.client_with_key(&key.key).get(PROTECTED).await;
    assert_eq!(response.status(), StatusCode::OK, "a key expiring tomorrow still works today");
    let body = json_body(response).await;
    assert!(body["expires_at"].as_str().is_some(), "{body}");
}

#[tokio::test]
async fn using_a_key_records_last_used_at() {
    let app = TestApp::spawn().await;
    let key = app.create_key(false).await;
    assert_eq!(app.client_with_key(&key.key).get(PROTECTED).await.status(), StatusCode::OK);
    // Recorded off the request path: poll briefly.
    let mut last_used = None;
    for _ in 0..50 {
        last_used = sqlx::query_scalar::<_, Option<chrono::DateTime<Utc>>>(
            "SELECT last_used_at FROM api_keys WHERE id = $1",
        )
        .bind(key.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if last_used.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let last_used = last_used.expect("last_used_at is set after a request");
    assert!(Utc::now() - last_used < Duration::seconds(30));
}

#[tokio::test]
async fn public_endpoints_need_no_key() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    for path in ["/api/health", "/api/health/live", "/api/health/ready", "/api-docs/openapi.json", "/docs/"] {
        assert_eq!(anonymous.get(path).await.status(), StatusCode::OK, "{path}");
    }
}
