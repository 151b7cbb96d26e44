use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ApiClient, TestApp, assert_error, json_body};

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("a timestamp: {value}")))
        .unwrap()
        .with_timezone(&Utc)
}

fn names(devices: &[Value]) -> Vec<&str> {
    devices.iter().map(|d| d["display_name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn registration_creates_a_device_with_defaults() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let id = Uuid::new_v4();
    let body = api.register_device(id, "  Martin's Phone ", "family-1").await;
    // The name is stored trimmed; the platform defaults to android.
    insta::assert_json_snapshot!(body, {
        ".device_id" => "[uuid]",
        ".created_at" => "[time]",
        ".updated_at" => "[time]",
        ".device_token" => "[token]",
    }, @r#"
    {
      "created_at": "[time]",
      "device_id": "[uuid]",
      "device_token": "[token]",
      "display_name": "Martin's Phone",
      "group_id": "family-1",
      "platform": "android",
      "updated_at": "[time]"
    }
    "#);
    assert_eq!(body["device_id"], id.to_string());
    // A new device gets its token once: pmd_ and 43 characters.
    let token = body["device_token"].as_str().unwrap();
    assert!(token.starts_with("pmd_") && token.len() == 47, "{token}");
    assert_eq!(time(&body["created_at"]), time(&body["updated_at"]));
    let stored: (bool, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT active, last_seen_at FROM devices WHERE device_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(stored.0);
    assert!(stored.1.is_some(), "registration marks the device seen");
}

#[tokio::test]
async fn re_registration_updates_and_preserves_history() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let id = Uuid::new_v4();
    let first = api
        .register(json!({"device_id": id, "display_name": "Old", "group_id": "fam", "platform": "ios", "fcm_token": "t1"}))
        .await;
    let first = json_body(first).await;
    crate::helpers::create_partitions_back(&app.pool, 1).await;
    sqlx::query(
        "INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at)
         SELECT $1, 48.1, 11.5, 5, now() - make_interval(mins => n) FROM generate_series(1, 3) n",
    )
    .bind(id)
    .execute(&app.pool)
    .await
    .unwrap();

    let second = api.register(json!({"device_id": id, "display_name": "New name", "group_id": "fam"})).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second = json_body(second).await;
    assert_eq!(second["display_name"], "New name");
    assert_eq!(second["platform"], "ios", "an omitted platform keeps the stored one");
    assert_eq!(second["created_at"], first["created_at"], "created_at is preserved");
    assert!(time(&second["updated_at"]) > time(&first["updated_at"]), "updated_at moves");
    let (token, locations): (Option<String>, i64) = sqlx::query_as(
        "SELECT fcm_token, (SELECT count(*) FROM locations WHERE device_id = $1) FROM devices WHERE device_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(token.as_deref(), Some("t1"), "an omitted token keeps the stored one");
    assert_eq!(locations, 3, "locations survive re-registration");

    api.register(json!({"device_id": id, "display_name": "New name", "group_id": "fam", "fcm_token": "t2"}))
        .await;
    let token: Option<String> = sqlx::query_scalar("SELECT fcm_token FROM devices WHERE device_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(token.as_deref(), Some("t2"));
}

#[tokio::test]
async fn last_seen_at_moves_on_registration() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let id = Uuid::new_v4();
    api.register_device(id, "Phone", "fam").await;
    sqlx::query("UPDATE devices SET last_seen_at = now() - interval '1 hour' WHERE device_id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let before = time(&api.list_group("fam").await[0]["last_seen_at"]);
    api.register_device(id, "Phone", "fam").await;
    let after = time(&api.list_group("fam").await[0]["last_seen_at"]);
    assert!(after - before > chrono::Duration::minutes(59), "{before} -> {after}");
    assert!(Utc::now() - after < chrono::Duration::seconds(30));
}

async fn fill_group(api: &ApiClient, group: &str, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for n in 0..count {
        let id = Uuid::new_v4();
        api.register_device(id, &format!("Member {n:02}"), group).await;
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn a_full_group_refuses_newcomers_but_not_its_members() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let members = fill_group(&api, "full", 20).await;

    let response =
        api.register(json!({"device_id": Uuid::new_v4(), "display_name": "Late", "group_id": "full"})).await;
    let body = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    insta::assert_compact_json_snapshot!(
        body,
        @r#"{"error": "conflict", "message": "Group has reached maximum device limit (20)"}"#
    );

    // A member re-registering never trips the limit.
    api.register_device(members[0], "Renamed member", "full").await;

    // Inactive devices don't count: deactivate one and the newcomer fits.
    assert_eq!(api.deactivate(members[1]).await.status(), StatusCode::NO_CONTENT);
    api.register_device(Uuid::new_v4(), "Late", "full").await;
    // Now full again: the deactivated member cannot come back.
    let response =
        api.register(json!({"device_id": members[1], "display_name": "Back", "group_id": "full"})).await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(api.list_group("full").await.len(), 20);
}

#[tokio::test]
async fn moving_between_groups_respects_the_target_limit() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    fill_group(&api, "crowded", 20).await;
    let mover = Uuid::new_v4();
    api.register_device(mover, "Mover", "home").await;

    let response =
        api.register(json!({"device_id": mover, "display_name": "Mover", "group_id": "crowded"})).await;
    assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(names(&api.list_group("home").await), ["Mover"], "a refused move changes nothing");

    let moved = api.register_device(mover, "Mover", "roomy").await;
    assert_eq!(moved["group_id"], "roomy");
    assert!(api.list_group("home").await.is_empty());
    assert_eq!(names(&api.list_group("roomy").await), ["Mover"]);
}

#[tokio::test]
async fn the_limit_is_configurable() {
    let app = TestApp::spawn_with(|s| s.limits.max_devices_per_group = 2).await;
    let api = app.client().await;
    fill_group(&api, "small", 2).await;
    let response = api
        .register(json!({"device_id": Uuid::new_v4(), "display_name": "Third", "group_id": "small"}))
        .await;
    let body = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(body["message"], "Group has reached maximum device limit (2)");
}

/// 40 devices register into one empty group at the same moment, five times over: every round
/// ends with exactly 20 active members and 20 clean 409s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_never_exceed_the_limit() {
    let app = TestApp::spawn_with(|s| {
        s.database.max_connections = 10;
        s.security.rate_limit_per_minute = 10_000;
    })
    .await;
    let api = app.client().await;
    for round in 0..5 {
        let group = format!("race-{round}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(40));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..40 {
            let (api, group, barrier) = (api.clone(), group.clone(), barrier.clone());
            tasks.spawn(async move {
                let body = json!({"device_id": Uuid::new_v4(), "display_name": format!("Racer {n}"), "group_id": group});
                barrier.wait().await;
                let response = api.register(body).await;
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            });
        }
        let (mut ok, mut conflict) = (0, 0);
        while let Some(result) = tasks.join_next().await {
            let (status, body) = result.unwrap();
            match status {
                StatusCode::OK => ok += 1,
                StatusCode::CONFLICT => {
                    assert_eq!(body["error"], "conflict");
                    conflict += 1;
                }
                other => panic!("round {round}: unexpected {other}: {body}"),
            }
        }
        assert_eq!((ok, conflict), (20, 20), "round {round}");
        let active: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE group_id = $1 AND active")
            .bind(&group)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert_eq!(active, 20, "round {round}");
    }
}

#[tokio::test]
async fn deactivation_hides_a_device_until_it_registers_again() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let id = Uuid::new_v4();
    let created = api.register_device(id, "Phone", "fam").await;
    sqlx::query("INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at) VALUES ($1, 1, 2, 3, now())")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();

    let response = api.deactivate(id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.unwrap().is_empty());
    assert!(api.list_group("fam").await.is_empty());
    let (active, locations): (bool, i64) = sqlx::query_as(
        "SELECT active, (SELECT count(*) FROM locations WHERE device_id = $1) FROM devices WHERE device_id = $1",
    )
    .bind(id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(!active);
    assert_eq!(locations, 1, "locations stay");
    // Deactivating twice is fine.
    assert_eq!(api.deactivate(id).await.status(), StatusCode::NO_CONTENT);

    let back = api.register_device(id, "Phone", "fam").await;
    assert_eq!(back["created_at"], created["created_at"]);
    assert_eq!(names(&api.list_group("fam").await), ["Phone"]);
}

#[tokio::test]
async fn deleting_an_unknown_device_is_404() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let body = assert_error(api.deactivate(Uuid::new_v4()).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(body["message"], "Device not found");
}

#[tokio::test]
async fn listing_is_filtered_by_group_and_sorted_by_name() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    for name in ["Charlie", "alice", "Bob"] {
        api.register_device(Uuid::new_v4(), name, "fam").await;
    }
    api.register_device(Uuid::new_v4(), "Stranger", "other").await;
    let gone = Uuid::new_v4();
    api.register_device(gone, "Deactivated", "fam").await;
    api.deactivate(gone).await;

    let devices = api.list_group("fam").await;
    let mut expected = vec!["Charlie", "alice", "Bob"];
    expected.sort_by_key(|n| n.to_lowercase());
    let listed = names(&devices);
    assert_eq!(listed.len(), 3);
    assert!(!listed.contains(&"Stranger") && !listed.contains(&"Deactivated"));
    // Sorted by display name as PostgreSQL collates it (case-insensitive in en_US, bytewise in C).
    let mut sorted_c = listed.clone();
    sorted_c.sort();
    assert!(listed == expected || listed == sorted_c, "{listed:?}");
    for device in &devices {
        assert!(device["device_id"].is_string() && device["last_seen_at"].is_string());
        assert_eq!(device["platform"], "android");
    }
    assert!(api.list_group("nobody-here").await.is_empty(), "unknown group: empty list");
}

#[tokio::test]
async fn listing_needs_a_valid_group_id() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let response = api.get("/api/v1/devices").await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
    assert_eq!(body["details"], json!([{"field": "group_id", "message": "is required"}]));
    let response = api.get("/api/v1/devices?group_id=a%20b").await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
    assert_eq!(body["details"][0]["field"], "group_id");
}

/// Each rule at its bounds (accepted) and just beyond (rejected, with the field named).
#[tokio::test]
async fn validation_rules_at_and_beyond_their_bounds() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let base = || json!({"device_id": Uuid::new_v4(), "display_name": "Phone", "group_id": "fam"});
    let with = |field: &str, value: Value| {
        let mut body = base();
        body[field] = value;
        body
    };
    let accepted = [
        with("display_name", json!("ab")),
        with("display_name", json!("x".repeat(50))),
        with("display_name", json!("  Zoë 📱  ")),
        with("group_id", json!("g1")),
        with("group_id", json!("G".repeat(50))),
        with("group_id", json!("a-b_C9")),
        with("platform", json!("ios")),
        with("platform", json!("android")),
        with("fcm_token", json!("t".repeat(4096))),
    ];
    for body in accepted {
        let response = api.register(body.clone()).await;
        assert_eq!(response.status(), StatusCode::OK, "{body}");
    }
    let rejected = [
        ("device_id", with("device_id", json!("not-a-uuid"))),
        ("display_name", with("display_name", json!("a"))),
        ("display_name", with("display_name", json!("   a   "))),
        ("display_name", with("display_name", json!("x".repeat(51)))),
        ("display_name", with("display_name", json!("bell\u{7}"))),
        ("group_id", with("group_id", json!("g"))),
        ("group_id", with("group_id", json!("G".repeat(51)))),
        ("group_id", with("group_id", json!("with space"))),
        ("group_id", with("group_id", json!("grüppe"))),
        ("platform", with("platform", json!("windows"))),
        ("fcm_token", with("fcm_token", json!("t".repeat(4097)))),
    ];
    for (field, body) in rejected {
        let body = assert_error(api.register(body).await, StatusCode::BAD_REQUEST, "validation_error").await;
        assert_eq!(body["details"].as_array().unwrap().len(), 1, "{body}");
        assert_eq!(body["details"][0]["field"], field, "{body}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM devices").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 9, "nothing stored from rejected requests");
}

#[tokio::test]
async fn every_field_error_is_reported_at_once() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let response = api
        .register(json!({"device_id": "nope", "display_name": "x", "group_id": "!", "platform": "symbian"}))
        .await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
    let fields: Vec<&str> =
        body["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["device_id", "display_name", "group_id", "platform"]);
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let response = api
        .register(
            json!({"device_id": Uuid::new_v4(), "display_name": "Phone", "group_id": "fam", "shoe_size": 44}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}
