//! Credential caches across replicas, and expiry, which must wait a second out.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    ApiClient, ServerProcess, TestApp, TestDatabase, assert_unauthorized, binary, json_body, key_admin,
};

const PROTECTED: &str = "/api/v1/keys/current";

/// Polls `client` until it gets 401, failing after `limit`; returns how long it took.
async fn refused_within(client: &ApiClient, path: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = client.get(path).await.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::NOT_FOUND {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{path} still {status} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two replicas on one database, each caching the key for ten minutes: `phone-manager keys
/// deactivate` (another process again) reaches both within a second, by LISTEN/NOTIFY.
#[tokio::test]
async fn a_deactivated_key_is_refused_by_every_replica_within_a_second() {
    let db = TestDatabase::create().await;
    let key = crate::helpers::key_for(&db.url, false).await;
    let env = [("PM__SECURITY__API_KEY_CACHE_SECS", "600")];
    let (one, two) = (ServerProcess::start(&db.url, &env).await, ServerProcess::start(&db.url, &env).await);
    let clients = [one.client_with_key(&key), two.client_with_key(&key)];
    for client in &clients {
        assert_eq!(client.get(PROTECTED).await.status(), StatusCode::OK, "cached on both");
    }
    let prefix = &key[..8];
    let output = binary(&db.url).args(["keys", "deactivate", "--prefix", prefix]).output().await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for client in &clients {
        let took = refused_within(client, PROTECTED, Duration::from_secs(1)).await;
        eprintln!("refused after {took:?}");
    }
}

/// The same for a device token: rotated through one replica, the old token is refused by the
/// other at once.
#[tokio::test]
async fn a_rotated_device_token_is_refused_by_every_replica_within_a_second() {
    let db = TestDatabase::create().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let app_key = key_admin(&pool)
        .create_with_scope("app", phone_manager::model::KeyScope::App, false, None)
        .await
        .unwrap()
        .key;
    let env = [("PM__SECURITY__API_KEY_CACHE_SECS", "600")];
    let (one, two) = (ServerProcess::start(&db.url, &env).await, ServerProcess::start(&db.url, &env).await);
    let device = Uuid::new_v4();
    let registered = one
        .client_with_key(&app_key)
        .register(json!({"device_id": device, "display_name": "Phone", "group_id": "rotating"}))
        .await;
    let token = json_body(registered).await["device_token"].as_str().unwrap().to_owned();
    let on_two = two.client_with_key(&app_key).with_device_token(&token);
    let listing = "/api/v1/devices?group_id=rotating";
    assert_eq!(on_two.get(listing).await.status(), StatusCode::OK, "cached on the second replica");
    let rotated = one
        .client_with_key(&app_key)
        .with_device_token(&token)
        .post_json(&format!("/api/v1/devices/{device}/token"), &json!({}))
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_token = json_body(rotated).await["device_token"].as_str().unwrap().to_owned();
    refused_within(&on_two, listing, Duration::from_secs(1)).await;
    let with_new = two.client_with_key(&app_key).with_device_token(&new_token);
    assert_eq!(with_new.get(listing).await.status(), StatusCode::OK, "the new token works everywhere");
    // Deactivated through the second replica: the first refuses the token at once too.
    assert_eq!(with_new.deactivate(device).await.status(), StatusCode::NO_CONTENT);
    let on_one = one.client_with_key(&app_key).with_device_token(&new_token);
    refused_within(&on_one, listing, Duration::from_secs(1)).await;
    pool.close().await;
}

#[tokio::test]
async fn expiry_is_exact_even_for_cached_keys() {
    let app = TestApp::spawn_with(|s| s.security.api_key_cache_secs = 600).await;
    let expiring = app.create_key(false).await;
    sqlx::query("UPDATE api_keys SET expires_at = now() + interval '1 second' WHERE id = $1")
        .bind(expiring.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let api = app.client_with_key(&expiring.key);
    assert_eq!(api.get(PROTECTED).await.status(), StatusCode::OK, "cached now");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_unauthorized(api.get(PROTECTED).await).await;
}
