//! A family's whereabouts are visible to its members only: what the app key that ships in every
//! install can and cannot do, with and without a device token.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ApiClient, TestApp, assert_error, batch, fix, json_body, single};

/// A phone: the app key, and its device's token once registered.
struct Phone {
    device: Uuid,
    api: ApiClient,
}

/// Registers a new device through the app key `app` into `group` (with `invite` if given);
/// asserts 200 and returns the phone acting with its token.
async fn join(app: &ApiClient, name: &str, group: &str, invite: Option<&str>) -> Phone {
    let device = Uuid::new_v4();
    let mut body = json!({"device_id": device, "display_name": name, "group_id": group});
    if let Some(code) = invite {
        body["invite_code"] = json!(code);
    }
    let response = app.register(body).await;
    assert_eq!(response.status(), StatusCode::OK, "{name} joins {group}");
    let token = json_body(response).await["device_token"].as_str().expect("a new device's token").to_owned();
    Phone { device, api: app.with_device_token(&token) }
}

async fn invite(phone: &Phone, group: &str, body: Value) -> String {
    let response = phone.api.post_json(&format!("/api/v1/groups/{group}/invites"), &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let invite = json_body(response).await;
    invite["code"].as_str().unwrap().to_owned()
}

/// A family of two (Alice created the group, Bob joined with her invite) and a stranger in a
/// group of her own, all behind one app key.
async fn family(app: &TestApp) -> (ApiClient, Phone, Phone, Phone) {
    let key = app.app_client().await;
    let alice = join(&key, "Alice", "family", None).await;
    let code = invite(&alice, "family", json!({})).await;
    let bob = join(&key, "Bob", "family", Some(&code)).await;
    let mallory = join(&key, "Mallory", "elsewhere", None).await;
    for (phone, seconds) in [(&alice, 10), (&bob, 20)] {
        let response = phone.api.post_json("/api/v1/locations", &single(phone.device, fix(seconds))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    (key, alice, bob, mallory)
}

#[tokio::test]
async fn a_stranger_with_the_app_key_sees_and_touches_nothing_of_a_family() {
    let app = TestApp::spawn().await;
    let (key, alice, _bob, mallory) = family(&app).await;

    // Without a device token the app key may only register.
    for response in [
        key.get("/api/v1/devices?group_id=family").await,
        key.post_json("/api/v1/locations", &single(alice.device, fix(1))).await,
        key.get(&format!("/api/v1/devices/{}/data-export", alice.device)).await,
        key.delete(&format!("/api/v1/devices/{}/data", alice.device)).await,
        key.get("/api/v1/keys/current").await,
    ] {
        let error = assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert!(error["message"].as_str().unwrap().contains("device token"), "{error}");
    }

    // With her own token, Mallory acts for herself only.
    let stranger = &mallory.api;
    let listing = assert_error(
        stranger.get("/api/v1/devices?group_id=family").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(listing["message"], "Group not found");
    assert_error(
        stranger.post_json("/api/v1/locations", &single(alice.device, fix(1))).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_error(
        stranger.post_json("/api/v1/locations/batch", &batch(alice.device, 3)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for path in [
        format!("/api/v1/devices/{}/data-export", alice.device),
        format!("/api/v1/devices/{}/locations", alice.device),
    ] {
        let error = assert_error(stranger.get(&path).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_eq!(error["message"], "Device not found", "the same as for a device that does not exist");
    }
    for response in [
        stranger.delete(&format!("/api/v1/devices/{}/data", alice.device)).await,
        stranger.deactivate(alice.device).await,
        stranger.post_json(&format!("/api/v1/devices/{}/token", alice.device), &json!({})).await,
        stranger.post_json("/api/v1/groups/family/invites", &json!({})).await,
    ] {
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    // Re-registering Alice's device (into Mallory's group) needs Alice's token.
    let hijack = stranger
        .register(json!({"device_id": alice.device, "display_name": "Mine now", "group_id": "elsewhere"}))
        .await;
    assert_error(hijack, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Nothing of the family changed.
    assert_eq!(app.location_count(alice.device).await, 1);
    let members = alice.api.list_group("family").await;
    let names: Vec<&str> = members.iter().map(|m| m["display_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Alice", "Bob"]);

    // The refusals are audited (a full admin key reads the trail).
    let admin = app.admin_client().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let refused = admin.audit_log("?action=access.refused").await;
    let entries = refused["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["device_id"] == json!(mallory.device)), "{refused}");
}

#[tokio::test]
async fn a_member_acts_for_itself_and_sees_its_group() {
    let app = TestApp::spawn().await;
    let (_key, alice, bob, _mallory) = family(&app).await;
    let members = bob.api.list_group("family").await;
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m["last_location"].is_object()), "{members:?}");
    let history = bob.api.get(&format!("/api/v1/devices/{}/locations", alice.device)).await;
    assert_eq!(history.status(), StatusCode::OK, "a member's history");
    let export = bob.api.get(&format!("/api/v1/devices/{}/data-export", bob.device)).await;
    assert_eq!(export.status(), StatusCode::OK, "its own export");
    let key = bob.api.get("/api/v1/keys/current").await;
    assert_eq!(json_body(key).await["scope"], "app");
    // Deactivated, Bob's token no longer acts; registering again with it brings him back.
    assert_eq!(bob.api.deactivate(bob.device).await.status(), StatusCode::NO_CONTENT);
    assert_error(bob.api.get("/api/v1/devices?group_id=family").await, StatusCode::NOT_FOUND, "not_found")
        .await;
    let back =
        bob.api.register(json!({"device_id": bob.device, "display_name": "Bob", "group_id": "family"})).await;
    assert_eq!(back.status(), StatusCode::OK);
    assert!(json_body(back).await.get("device_token").is_none(), "no new token: it still has one");
    assert_eq!(bob.api.list_group("family").await.len(), 2);
}

mod invites {
    use super::*;

    #[tokio::test]
    async fn joining_a_group_with_members_needs_a_valid_invite() {
        let app = TestApp::spawn().await;
        let key = app.app_client().await;
        let alice = join(&key, "Alice", "family", None).await;
        let body = |code: Option<&str>| {
            let mut body = json!({"device_id": Uuid::new_v4(), "display_name": "Eve", "group_id": "family"});
            if let Some(code) = code {
                body["invite_code"] = json!(code);
            }
            body
        };
        let error = assert_error(key.register(body(None)).await, StatusCode::FORBIDDEN, "forbidden").await;
        assert!(error["message"].as_str().unwrap().contains("invite"), "{error}");
        assert_error(key.register(body(Some("AAA-AAA-AAA"))).await, StatusCode::FORBIDDEN, "forbidden").await;

        // A code for one use admits one device; read out loosely (case, dashes, spaces).
        let code = invite(&alice, "family", json!({})).await;
        assert_eq!(code.len(), 11, "{code}");
        let loose = code.to_lowercase().replace('-', " ");
        assert_eq!(key.register(body(Some(&loose))).await.status(), StatusCode::OK);
        assert_error(key.register(body(Some(&code))).await, StatusCode::FORBIDDEN, "forbidden").await;
        // A code is for its own group only.
        let other = join(&key, "Carol", "other", None).await;
        let theirs = invite(&other, "other", json!({"max_uses": 3})).await;
        assert_error(key.register(body(Some(&theirs))).await, StatusCode::FORBIDDEN, "forbidden").await;

        // Expired.
        let expiring = invite(&alice, "family", json!({"max_uses": 5, "expires_in_hours": 1})).await;
        sqlx::query("UPDATE group_invites SET expires_at = now() - interval '1 second', created_at = now() - interval '2 hours'")
            .execute(&app.pool)
            .await
            .unwrap();
        assert_error(key.register(body(Some(&expiring))).await, StatusCode::FORBIDDEN, "forbidden").await;

        // A full key (tools) registers into any group without one.
        let full = app.client().await;
        assert_eq!(full.register(body(None)).await.status(), StatusCode::OK);

        // No body, or the JSON null the document allows, means the defaults: one use.
        let path = "/api/v1/groups/family/invites";
        let no_body = alice.api.request(reqwest::Method::POST, path).await;
        let null = alice.api.post_body(path, "null").header("Content-Type", "application/json").await;
        for response in [no_body, null] {
            assert_eq!(response.status(), StatusCode::CREATED);
            assert_eq!(json_body(response).await["max_uses"], 1);
        }
        // Integral numbers are integers, as JSON Schema says (and every other endpoint takes them).
        let integral = alice.api.post_json(path, &json!({"max_uses": 2.0, "expires_in_hours": 123.0})).await;
        assert_eq!(integral.status(), StatusCode::CREATED);
        assert_eq!(json_body(integral).await["max_uses"], 2);

        // Bounds of an invitation.
        for bad in [json!({"max_uses": 0}), json!({"max_uses": 21}), json!({"expires_in_hours": 169})] {
            let response = alice.api.post_json("/api/v1/groups/family/invites", &bad).await;
            assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        }
        // Audited: the invitations and the join.
        let admin = app.admin_client().await;
        assert!(admin.audit_log("?action=invite.create").await["entries"].as_array().unwrap().len() >= 3);
        assert_eq!(admin.audit_log("?action=device.join").await["entries"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn wrong_codes_are_limited_per_key_and_address() {
        let app = TestApp::spawn_with(|s| s.security.invite_failures_per_hour = 3).await;
        let key = app.app_client().await;
        join(&key, "Alice", "family", None).await;
        let guess = |code: &str| {
            key.register(json!({"device_id": Uuid::new_v4(), "display_name": "Eve", "group_id": "family", "invite_code": code}))
        };
        for _ in 0..3 {
            assert_error(guess("ZZZ-ZZZ-ZZZ").await, StatusCode::FORBIDDEN, "forbidden").await;
        }
        let limited = guess("ZZZ-ZZZ-ZZY").await;
        assert!(limited.headers().contains_key("retry-after"));
        assert_error(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_joins_with_a_single_use_code_admit_one() {
        let app = TestApp::spawn_with(|s| s.database.max_connections = 12).await;
        let key = app.app_client().await;
        let alice = join(&key, "Alice", "family", None).await;
        let code = invite(&alice, "family", json!({})).await;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..8 {
            let (key, code, barrier) = (key.clone(), code.clone(), barrier.clone());
            tasks.spawn(async move {
                let body = json!({"device_id": Uuid::new_v4(), "display_name": format!("Guest {n}"),
                                  "group_id": "family", "invite_code": code});
                barrier.wait().await;
                key.register(body).await.status()
            });
        }
        let mut admitted = 0;
        while let Some(status) = tasks.join_next().await {
            match status.unwrap() {
                StatusCode::OK => admitted += 1,
                StatusCode::FORBIDDEN => {}
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(admitted, 1);
        assert_eq!(alice.api.list_group("family").await.len(), 2);
    }

    #[tokio::test]
    async fn the_group_limit_holds_for_joins_through_invites() {
        let app = TestApp::spawn_with(|s| s.limits.max_devices_per_group = 2).await;
        let key = app.app_client().await;
        let alice = join(&key, "Alice", "small", None).await;
        let code = invite(&alice, "small", json!({"max_uses": 5})).await;
        join(&key, "Bob", "small", Some(&code)).await;
        let third = key
            .register(json!({"device_id": Uuid::new_v4(), "display_name": "Carol", "group_id": "small", "invite_code": code}))
            .await;
        assert_error(third, StatusCode::CONFLICT, "conflict").await;
    }
}

mod tokens {
    use super::*;

    #[tokio::test]
    async fn a_rotated_token_is_dead_at_once_and_a_full_key_can_reset_one() {
        let app = TestApp::spawn_with(|s| s.security.api_key_cache_secs = 600).await;
        let key = app.app_client().await;
        let alice = join(&key, "Alice", "family", None).await;
        let listing = "/api/v1/devices?group_id=family";
        assert_eq!(alice.api.get(listing).await.status(), StatusCode::OK, "cached");
        let rotated =
            alice.api.post_json(&format!("/api/v1/devices/{}/token", alice.device), &json!({})).await;
        let new = json_body(rotated).await["device_token"].as_str().unwrap().to_owned();
        assert_error(alice.api.get(listing).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let renewed = key.with_device_token(&new);
        assert_eq!(renewed.get(listing).await.status(), StatusCode::OK);
        // Lost the token: a full key resets it.
        let full = app.client().await;
        let reset = full.post_json(&format!("/api/v1/devices/{}/token", alice.device), &json!({})).await;
        assert_eq!(reset.status(), StatusCode::OK);
        assert_error(renewed.get(listing).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let admin = app.admin_client().await;
        assert_eq!(
            admin.audit_log("?action=device.token_rotate").await["entries"].as_array().unwrap().len(),
            1
        );
        assert_eq!(
            admin.audit_log("?action=device.token_reset").await["entries"].as_array().unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn a_device_registered_before_tokens_claims_one_on_its_next_registration() {
        let app = TestApp::spawn().await;
        let device = Uuid::new_v4();
        let full = app.client().await;
        full.register_device(device, "Old phone", "legacy").await;
        sqlx::query("UPDATE devices SET token_hash = NULL WHERE device_id = $1")
            .bind(device)
            .execute(&app.pool)
            .await
            .unwrap();
        let key = app.app_client().await;
        let claimed = key
            .register(json!({"device_id": device, "display_name": "Old phone", "group_id": "legacy"}))
            .await;
        assert_eq!(claimed.status(), StatusCode::OK);
        let token = json_body(claimed).await["device_token"].as_str().unwrap().to_owned();
        assert_eq!(key.with_device_token(&token).list_group("legacy").await.len(), 1);
        // Once claimed, the next registration needs it.
        let again = key
            .register(json!({"device_id": device, "display_name": "Old phone", "group_id": "legacy"}))
            .await;
        assert_error(again, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let admin = app.admin_client().await;
        assert_eq!(
            admin.audit_log("?action=device.token_claim").await["entries"].as_array().unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_never_ignored() {
        let app = TestApp::spawn().await;
        let key = app.app_client().await;
        let full = app.client().await;
        for (client, label) in [(&key, "app"), (&full, "full")] {
            for authorization in ["Bearer pmd_not-a-token", "Basic dXNlcjpwYXNz", "Bearer"] {
                let response =
                    client.get("/api/v1/keys/current").header("Authorization", authorization).await;
                assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
                let _ = label;
            }
        }
    }
}

#[tokio::test]
async fn devices_behind_one_app_key_have_limits_of_their_own() {
    let app = TestApp::spawn_with(|s| s.security.rate_limit_per_minute = 5).await;
    let key = app.app_client().await;
    let alice = join(&key, "Alice", "family", None).await;
    let bob = join(&key, "Bob", "elsewhere", None).await;
    let listing = "/api/v1/devices?group_id=family";
    for _ in 0..5 {
        assert_eq!(alice.api.get(listing).await.status(), StatusCode::OK);
    }
    assert_error(alice.api.get(listing).await, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded").await;
    // Bob, behind the same key, is untouched.
    let response = bob.api.get("/api/v1/devices?group_id=elsewhere").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "4");
}
