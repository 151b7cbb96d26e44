//! The key cache, whose TTL and expiry tests must wait a second out.

use phone_manager::domain::api_keys;
use reqwest::StatusCode;

use crate::helpers::{TestApp, assert_unauthorized, key_admin};

const PROTECTED: &str = "/api/v1/keys/current";

/// With the cache on, a replica trusts a key it looked up for the TTL: a deactivation elsewhere
/// takes effect within it; expiry is exact whatever the cache says.
#[tokio::test]
async fn cached_keys_are_trusted_for_the_ttl_only() {
    let app = TestApp::spawn_with(|s| s.security.api_key_cache_secs = 1).await;
    let key = app.create_key(false).await;
    let api = app.client_with_key(&key.key);
    assert_eq!(api.get(PROTECTED).await.status(), StatusCode::OK);
    key_admin(&app.pool).deactivate(&api_keys::KeySelector::Id(key.id)).await.unwrap();
    assert_eq!(api.get(PROTECTED).await.status(), StatusCode::OK, "still cached");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_unauthorized(api.get(PROTECTED).await).await;
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
