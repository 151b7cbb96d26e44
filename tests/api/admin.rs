//! Admin API, audit trail, data export and erasure.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, json_body, test_settings};

async fn audit_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(&app.pool).await.unwrap()
}

async fn age_device(app: &TestApp, device: Uuid, days: i32) {
    sqlx::query("UPDATE devices SET last_seen_at = now() - make_interval(days => $2) WHERE device_id = $1")
        .bind(device)
        .bind(days)
        .execute(&app.pool)
        .await
        .unwrap();
}

async fn device_exists(app: &TestApp, device: Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = $1)")
        .bind(device)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn admin_endpoints_need_an_admin_key() {
    let app = TestApp::spawn().await;
    let (api, admin) = (app.client().await, app.admin_client().await);
    let device = api.registered_device("fam").await;
    let endpoints = [
        (Method::DELETE, "/api/v1/admin/devices/inactive?older_than_days=30".to_owned()),
        (Method::POST, format!("/api/v1/admin/devices/{device}/reactivate")),
        (Method::GET, "/api/v1/admin/stats".to_owned()),
        (Method::GET, "/api/v1/admin/audit".to_owned()),
    ];
    for (method, path) in &endpoints {
        assert_error(
            app.anonymous().request(method.clone(), path).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        let body =
            assert_error(api.request(method.clone(), path).await, StatusCode::FORBIDDEN, "forbidden").await;
        assert_eq!(body["message"], "Admin API key required");
        let response = admin.request(method.clone(), path).await;
        assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
    }
}

#[tokio::test]
async fn purging_deletes_exactly_the_old_inactive_devices_and_their_data() {
    let app = TestApp::spawn().await;
    let (api, admin) = (app.client().await, app.admin_client().await);
    let (old_inactive, recent_inactive, old_active) = (
        api.registered_device("fam").await,
        api.registered_device("fam").await,
        api.registered_device("fam").await,
    );
    for device in [old_inactive, recent_inactive, old_active] {
        let body = json!({"device_id": device, "timestamp": chrono::Utc::now().timestamp_millis(),
                          "latitude": 1.0, "longitude": 1.0, "accuracy": 1.0});
        assert_eq!(api.post_json("/api/v1/locations", &body).await.status(), StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // let last_seen_at writes land
    api.deactivate(old_inactive).await;
    api.deactivate(recent_inactive).await;
    age_device(&app, old_inactive, 100).await;
    age_device(&app, recent_inactive, 10).await;
    age_device(&app, old_active, 100).await;

    let response = admin.delete("/api/v1/admin/devices/inactive?older_than_days=30").await;
    insta::assert_compact_json_snapshot!(json_body(response).await, @r#"{"deleted_count": 1}"#);
    assert!(!device_exists(&app, old_inactive).await);
    assert_eq!(app.location_count(old_inactive).await, 0, "its locations went with it");
    assert!(device_exists(&app, recent_inactive).await && device_exists(&app, old_active).await);
    assert_eq!(app.location_count(old_active).await, 1);

    let audit = admin.audit_log("?action=devices.purge_inactive").await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["metadata"]["deleted_count"], 1);
    assert_eq!(entry["metadata"]["device_ids"], json!([old_inactive]));
    assert_eq!(entry["ip_address"], "127.0.0.1");
}

#[tokio::test]
async fn older_than_days_is_validated() {
    let app = TestApp::spawn().await;
    let admin = app.admin_client().await;
    for query in
        ["", "?older_than_days=0", "?older_than_days=3651", "?older_than_days=abc", "?older_than_days=-1"]
    {
        let path = format!("/api/v1/admin/devices/inactive{query}");
        let body = assert_error(admin.delete(&path).await, StatusCode::BAD_REQUEST, "validation_error").await;
        assert_eq!(body["details"][0]["field"], "older_than_days", "{query}: {body}");
    }
    assert_eq!(audit_count(&app).await, 0, "nothing happened, nothing audited");
}

#[tokio::test]
async fn reactivation_restores_a_device_within_the_group_limit() {
    let app = TestApp::spawn_with(|s| s.limits.max_devices_per_group = 2).await;
    let (api, admin) = (app.client().await, app.admin_client().await);
    let device = api.registered_device("fam").await;
    api.deactivate(device).await;
    let path = format!("/api/v1/admin/devices/{device}/reactivate");

    let response = admin.request(Method::POST, &path).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(response).await["device_id"], device.to_string());
    assert_eq!(api.list_group("fam").await.len(), 1, "listed again");

    // Full group: reactivation is refused, and the failed operation leaves no audit row.
    api.deactivate(device).await;
    api.registered_device("fam").await;
    api.registered_device("fam").await;
    let audits_before = audit_count(&app).await;
    let response = admin.request(Method::POST, &path).await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(audit_count(&app).await, audits_before, "rolled back with the failed change");

    let unknown = format!("/api/v1/admin/devices/{}/reactivate", Uuid::new_v4());
    assert_error(admin.request(Method::POST, &unknown).await, StatusCode::NOT_FOUND, "not_found").await;
    let audit = admin.audit_log("?action=device.reactivate").await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1);
    assert_eq!(audit["entries"][0]["resource_id"], device.to_string());
}

#[tokio::test]
async fn stats_report_the_totals() {
    let app = TestApp::spawn().await;
    let (api, admin) = (app.client().await, app.admin_client().await);
    let gone = api.registered_device("fam").await;
    api.registered_device("fam").await;
    api.register_device(Uuid::new_v4(), "Other", "other").await;
    api.deactivate(gone).await;
    let settings = test_settings(&app.db.url);
    phone_manager::jobs::Job::GroupStatsRefresh.run_once(&app.pool, &settings).await.unwrap();
    let stats = json_body(admin.get("/api/v1/admin/stats").await).await;
    assert_eq!(stats["devices"], 3);
    assert_eq!(stats["active_devices"], 2);
    assert_eq!(stats["inactive_devices"], 1);
    assert_eq!(stats["groups"], 2);
    assert_eq!(stats["groups_with_active_devices"], 2);
    assert!(stats["oldest_location_at"].is_null());
}

#[tokio::test]
async fn the_audit_log_filters_and_pages() {
    let app = TestApp::spawn().await;
    let (api, admin) = (app.client().await, app.admin_client().await);
    let mut erased = Vec::new();
    for _ in 0..5 {
        let device = api.registered_device("fam").await;
        let response = api.delete(&format!("/api/v1/devices/{device}/data")).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        erased.push(device);
    }
    let first = admin.audit_log("?action=device.data_delete&limit=2").await;
    let second = admin
        .audit_log(&format!(
            "?action=device.data_delete&limit=2&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ))
        .await;
    let third = admin
        .audit_log(&format!(
            "?action=device.data_delete&limit=2&cursor={}",
            second["next_cursor"].as_str().unwrap()
        ))
        .await;
    let ids: Vec<String> = [&first, &second, &third]
        .iter()
        .flat_map(|page| {
            page["entries"].as_array().unwrap().iter().map(|e| e["resource_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut expected: Vec<String> = erased.iter().rev().map(Uuid::to_string).collect();
    expected.truncate(5);
    assert_eq!(ids, expected, "newest first, no entry twice");
    assert!(third["next_cursor"].is_null(), "last page");

    let one = admin.audit_log(&format!("?resource_id={}", erased[2])).await;
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);
    assert_eq!(one["entries"][0]["action"], "device.data_delete");
    assert!(admin.audit_log("?resource_type=api_key").await["entries"].as_array().unwrap().is_empty());
    for bad in [
        "?limit=0",
        "?limit=201",
        "?cursor=abc",
        "?since=yesterday",
        "?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
    ] {
        let response = admin.get(&format!("/api/v1/admin/audit{bad}")).await;
        assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
    }
}

#[tokio::test]
async fn erasure_cascades_and_a_second_erasure_is_404() {
    let app = TestApp::spawn().await;
    let (api, admin) = (app.client().await, app.admin_client().await);
    let device = api.registered_device("fam").await;
    let batch = json!({"device_id": device, "locations": (0..5).map(|n| json!({
        "timestamp": chrono::Utc::now().timestamp_millis() - n * 1000, "latitude": 1.0, "longitude": 1.0, "accuracy": 1.0
    })).collect::<Vec<_>>()});
    assert_eq!(
        api.post_json("/api/v1/locations/batch", &batch).idempotency_key("erase-me").await.status(),
        StatusCode::OK
    );
    let path = format!("/api/v1/devices/{device}/data");

    assert_eq!(api.delete(&path).await.status(), StatusCode::NO_CONTENT);
    assert!(!device_exists(&app, device).await);
    assert_eq!(app.location_count(device).await, 0);
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE device_id = $1")
        .bind(device)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(keys, 0, "idempotency records are erased too");

    let audits = audit_count(&app).await;
    assert_error(api.delete(&path).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(audit_count(&app).await, audits, "a failed erasure is not audited");
    let entry = &admin.audit_log("?action=device.data_delete").await["entries"][0];
    assert_eq!(entry["resource_id"], device.to_string());
    assert!(entry["api_key_id"].is_i64());
}

#[tokio::test]
async fn exports_are_limited_per_hour_separately_from_the_minute_limit() {
    let app = TestApp::spawn_with(|s| {
        s.security.export_rate_limit_per_hour = 2;
        s.security.rate_limit_per_minute = 100;
    })
    .await;
    let (api, admin) = (app.client().await, app.admin_client().await);
    let device = api.registered_device("fam").await;
    let path = format!("/api/v1/devices/{device}/data-export");
    for _ in 0..2 {
        let response = api.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-ratelimit-limit"], "2", "the tighter export limit is reported");
    }
    let refused = api.get(&path).await;
    let body = assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded").await;
    assert_eq!(body["message"], "Rate limit of 2 requests/hour exceeded");
    // Other endpoints of the same key still work: the per-minute budget is separate.
    assert_eq!(api.get("/api/v1/keys/current").await.status(), StatusCode::OK);
    let unknown = format!("/api/v1/devices/{}/data-export", Uuid::new_v4());
    assert_error(admin.get(&unknown).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn audit_retention_removes_entries_after_90_days() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    api.delete(&format!("/api/v1/devices/{device}/data")).await;
    let other = api.registered_device("fam").await;
    api.delete(&format!("/api/v1/devices/{other}/data")).await;
    sqlx::query("UPDATE audit_log SET created_at = now() - interval '91 days' WHERE resource_id = $1")
        .bind(device.to_string())
        .execute(&app.pool)
        .await
        .unwrap();
    let settings = test_settings(&app.db.url);
    assert_eq!(phone_manager::jobs::Job::AuditRetention.run_once(&app.pool, &settings).await.unwrap(), 1);
    assert_eq!(audit_count(&app).await, 1);
}
