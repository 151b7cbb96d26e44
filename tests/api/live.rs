//! `GET /api/v1/groups/{group_id}/stream`: a group's live stream (Server-Sent Events), through
//! real HTTP against a real database. Timers of a second or more (heartbeats, a second server
//! process, memory under a stalled reader) are in tests/slow/live.rs.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ApiClient, EventStream, SseBlock, TestApp, assert_error, fix, json_body, single};

/// Far longer than anything takes here; a missing event fails the test after it.
const PATIENCE: Duration = Duration::from_secs(5);
/// Long enough for an event that should not come to have come.
const QUIET: Duration = Duration::from_millis(400);

/// A group of two members, each with its app-key client acting through its device token.
struct Family {
    group: String,
    full: ApiClient,
    alice: (Uuid, ApiClient),
    bob: (Uuid, ApiClient),
}

impl Family {
    async fn new(app: &TestApp) -> Self {
        let group = format!("family-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let full = app.client().await;
        let app_key = app.app_client().await;
        let member = async |name: &str| {
            let device = Uuid::new_v4();
            let answer = full.register_device(device, name, &group).await;
            let token = answer["device_token"].as_str().expect("a new device gets a token");
            (device, app_key.with_device_token(token))
        };
        let alice = member("Alice").await;
        let bob = member("Bob").await;
        Self { group, full, alice, bob }
    }
}

async fn upload(client: &ApiClient, device: Uuid, body: Value) {
    let response = client.post_json("/api/v1/locations", &single(device, body)).await;
    assert_eq!(response.status(), StatusCode::OK, "upload");
}

/// The next event that is not a membership notice. A family's registrations reach the streams
/// through the listener, and under load one can arrive after a stream's snapshot already showed
/// that member: delivery is at least once, and a client applies a `member` event idempotently.
async fn next_pushed(stream: &mut EventStream, wait: Duration) -> SseBlock {
    loop {
        let event = stream.next_event(wait).await;
        if event.event != "member" {
            return event;
        }
    }
}

/// The events until the stream is quiet, without membership notices (see [`next_pushed`]).
async fn pushed_until_quiet(stream: &mut EventStream, quiet: Duration) -> Vec<SseBlock> {
    stream.events_until_quiet(quiet).await.into_iter().filter(|event| event.event != "member").collect()
}

fn location_of(event: &SseBlock) -> Value {
    assert_eq!(event.event, "location", "{event:?}");
    event.json()
}

#[tokio::test]
async fn a_stream_starts_with_the_listing_as_a_snapshot() {
    let app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let (bob, bob_client) = &family.bob;
    upload(bob_client, *bob, fix(60)).await;
    let listing =
        json_body(family.full.get(&format!("/api/v1/devices?group_id={}", family.group)).await).await;

    let mut stream = family.alice.1.open_stream(&family.group, None).await;
    let snapshot = stream.next_event(PATIENCE).await;
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.json(), listing, "the same JSON as the listing");
    assert!(snapshot.id.as_deref().is_some_and(|id| !id.is_empty()), "every event has an id");
    let retry = snapshot.retry.expect("retry advice with the first event");
    assert!((2000..=6000).contains(&retry), "{retry}");
}

#[tokio::test]
async fn a_stored_fix_is_pushed_within_a_second_and_a_duplicate_is_not() {
    let app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let (bob, bob_client) = &family.bob;
    let mut stream = family.alice.1.open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await; // snapshot

    let sent = json!({"timestamp": crate::helpers::now_ms() - 1000, "latitude": 48.148_612_345_678_9,
        "longitude": 17.107_712_345_678_9, "accuracy": 7.25, "altitude": 152.5, "bearing": 270.0,
        "speed": 1.5, "provider": "fused", "battery_level": 81, "network_type": "wifi"});
    let started = std::time::Instant::now();
    upload(bob_client, *bob, sent.clone()).await;
    let event = next_pushed(&mut stream, Duration::from_secs(1)).await;
    let elapsed = started.elapsed();
    let location = location_of(&event);
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(event.id.as_deref().is_some_and(|id| id.starts_with('L')), "{event:?}");
    assert_eq!(location["device_id"], json!(bob));
    for field in [
        "latitude",
        "longitude",
        "accuracy",
        "altitude",
        "bearing",
        "speed",
        "provider",
        "battery_level",
        "network_type",
    ] {
        assert_eq!(location[field], sent[field], "{field} exactly as sent");
    }
    let at = chrono::DateTime::parse_from_rfc3339(location["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(at.timestamp_millis(), sent["timestamp"].as_i64().unwrap());

    // The same fix again is acknowledged, not stored: nothing to push.
    upload(bob_client, *bob, sent).await;
    assert_eq!(pushed_until_quiet(&mut stream, QUIET).await, Vec::new());

    // A batch: one event per stored fix, in order.
    let batch = json!({"device_id": bob, "locations": [fix(30), fix(20), fix(10)]});
    assert_eq!(bob_client.post_json("/api/v1/locations/batch", &batch).await.status(), StatusCode::OK);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let event = next_pushed(&mut stream, PATIENCE).await;
        location_of(&event);
        ids.push(event.id.unwrap()[1..].parse::<i64>().unwrap());
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}

#[tokio::test]
async fn other_groups_fixes_are_not_pushed() {
    let app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let other = Family::new(&app).await;
    let mut stream = family.alice.1.open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await;
    upload(&other.bob.1, other.bob.0, fix(5)).await;
    upload(&family.bob.1, family.bob.0, fix(5)).await;
    let events = pushed_until_quiet(&mut stream, QUIET).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(location_of(&events[0])["device_id"], json!(family.bob.0));
}

#[tokio::test]
async fn membership_changes_are_pushed_as_member_events() {
    let app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let mut stream = family.alice.1.open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await;

    let carol = Uuid::new_v4();
    family.full.register_device(carol, "Carol", &family.group).await;
    let joined = stream.next_event(PATIENCE).await;
    assert_eq!(joined.event, "member");
    assert!(joined.id.as_deref().is_some_and(|id| id.starts_with('M')), "{joined:?}");
    let joined = joined.json();
    assert_eq!(joined["change"], "joined");
    assert_eq!(joined["device_id"], json!(carol));
    assert_eq!(joined["member"]["display_name"], "Carol");
    assert_eq!(joined["member"]["last_location"], Value::Null);

    // Registering again unchanged is nothing a member sees.
    family.full.register_device(carol, "Carol", &family.group).await;
    family.full.register_device(carol, "Carol R.", &family.group).await;
    let updated = stream.next_event(PATIENCE).await.json();
    assert_eq!(
        (updated["change"].as_str(), updated["member"]["display_name"].as_str()),
        (Some("updated"), Some("Carol R."))
    );

    assert_eq!(family.full.deactivate(carol).await.status(), StatusCode::NO_CONTENT);
    let deactivated = stream.next_event(PATIENCE).await.json();
    assert_eq!(deactivated, json!({"change": "deactivated", "device_id": carol}));

    // Back (joined), then away to another group (left).
    family.full.register_device(carol, "Carol R.", &family.group).await;
    let back = stream.next_event(PATIENCE).await.json();
    assert_eq!(back["change"], "joined");
    family.full.register_device(carol, "Carol R.", "elsewhere").await;
    assert_eq!(stream.next_event(PATIENCE).await.json(), json!({"change": "left", "device_id": carol}));

    // Erasure of a member: left.
    let (bob, _) = &family.bob;
    let erased = family.full.delete(&format!("/api/v1/devices/{bob}/data")).await;
    assert_eq!(erased.status(), StatusCode::NO_CONTENT);
    assert_eq!(stream.next_event(PATIENCE).await.json(), json!({"change": "left", "device_id": bob}));
    assert_eq!(stream.events_until_quiet(QUIET).await, Vec::new());
}

#[tokio::test]
async fn last_event_id_resumes_without_loss_inside_the_window() {
    let app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let (bob, bob_client) = &family.bob;
    let alice = &family.alice.1;

    let mut stream = alice.open_stream(&family.group, None).await;
    let snapshot_id = stream.next_event(PATIENCE).await.id.unwrap();
    upload(bob_client, *bob, fix(50)).await;
    let seen = stream.next_event(PATIENCE).await.id.unwrap();
    drop(stream);

    // While away: three fixes and a new member.
    for seconds_ago in [40, 30, 20] {
        upload(bob_client, *bob, fix(seconds_ago)).await;
    }
    family.full.register_device(Uuid::new_v4(), "Dana", &family.group).await;

    let mut resumed = alice.open_stream(&family.group, Some(&seen)).await;
    let missed = resumed.events_until_quiet(QUIET).await;
    let kinds: Vec<&str> = missed.iter().map(|event| event.event.as_str()).collect();
    assert_eq!(kinds, ["location", "location", "location", "member"], "{missed:?}");
    drop(resumed);

    // From the snapshot's id: everything since it.
    let mut resumed = alice.open_stream(&family.group, Some(&snapshot_id)).await;
    assert_eq!(resumed.events_until_quiet(QUIET).await.len(), 5);
    drop(resumed);

    // An id the server does not hold (too old, or another server's snapshot): a fresh snapshot.
    for unknown in ["L0", "S0", "not-an-id", &"L9".repeat(30)] {
        let mut fresh = alice.open_stream(&family.group, Some(unknown)).await;
        let first = fresh.next_event(PATIENCE).await;
        assert_eq!(first.event, "snapshot", "after {unknown}");
        assert_eq!(first.json()["devices"].as_array().unwrap().len(), 3);
    }
}

#[tokio::test]
async fn only_members_and_full_keys_may_stream_a_group() {
    let app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let other = Family::new(&app).await;

    // Another group's member: 404, as for a group that does not exist.
    assert_error(family.alice.1.stream(&other.group).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(family.alice.1.stream("no-such-group").await, StatusCode::NOT_FOUND, "not_found").await;
    // An app key without a device token, or none at all: 401.
    let app_key = app.app_client().await;
    assert_error(app_key.stream(&family.group).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_error(app.anonymous().stream(&family.group).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // A deactivated member: 404.
    assert_eq!(family.bob.1.deactivate(family.bob.0).await.status(), StatusCode::NO_CONTENT);
    assert_error(family.bob.1.stream(&family.group).await, StatusCode::NOT_FOUND, "not_found").await;
    // Bad input: the error envelope.
    assert_error(family.full.stream("x").await, StatusCode::BAD_REQUEST, "validation_error").await;
    assert_error(family.full.stream("bad%20group").await, StatusCode::BAD_REQUEST, "validation_error").await;
    let path = format!("/api/v1/groups/{}/stream", family.group);
    let json_only = family.alice.1.get(&path).header("Accept", "application/json").await;
    assert_error(json_only, StatusCode::NOT_ACCEPTABLE, "not_acceptable").await;
    // A full key streams any group.
    let mut stream = family.full.open_stream(&other.group, None).await;
    assert_eq!(stream.next_event(PATIENCE).await.event, "snapshot");
}

#[tokio::test]
async fn a_stream_ends_when_its_device_is_revoked_or_deactivated_or_its_key_is() {
    let app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let (alice, alice_client) = &family.alice;

    // The token reset by an operator (a lost phone): the old token's stream ends.
    let mut stream = alice_client.open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await;
    let reset = family.full.post_json(&format!("/api/v1/devices/{alice}/token"), &json!({})).await;
    assert_eq!(reset.status(), StatusCode::OK);
    assert!(stream.ends_within(PATIENCE).await, "revoked token's stream ended");
    assert_error(alice_client.stream(&family.group).await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // Deactivated: its stream ends.
    let (bob, bob_client) = &family.bob;
    let mut stream = bob_client.open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await;
    assert_eq!(family.full.deactivate(bob).await.status(), StatusCode::NO_CONTENT);
    assert!(stream.ends_within(PATIENCE).await, "deactivated device's stream ended");

    // A full key deactivated: its stream ends.
    let key = app.create_key(false).await;
    let mut stream = app.client_with_key(&key.key).open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await;
    crate::helpers::key_admin(&app.pool)
        .deactivate(&phone_manager::domain::api_keys::KeySelector::Id(key.id))
        .await
        .unwrap();
    assert!(stream.ends_within(PATIENCE).await, "deactivated key's stream ended");
}

#[tokio::test]
async fn streams_per_device_are_capped() {
    let app = TestApp::spawn_with(|settings| settings.live.max_streams_per_device = 2).await;
    let family = Family::new(&app).await;
    let alice = &family.alice.1;
    let first = alice.open_stream(&family.group, None).await;
    let _second = alice.open_stream(&family.group, None).await;
    let refused = alice.stream(&family.group).await;
    let retry_after = refused.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded").await;
    assert_eq!(retry_after.as_deref(), Some("10"));
    assert_eq!(body["retry_after"], 10);
    // Another member is not affected.
    let _bobs = family.bob.1.open_stream(&family.group, None).await;
    // A stream closed frees its place.
    drop(first);
    let mut reopened = None;
    for _ in 0..50 {
        let response = alice.stream(&family.group).await;
        if response.status() == StatusCode::OK {
            reopened = Some(EventStream::new(response).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "the closed stream's place was freed");
}

#[tokio::test]
async fn a_reader_that_falls_behind_gets_resync_then_a_snapshot() {
    let app = TestApp::spawn_with(|settings| settings.live.buffer_events = 4).await;
    let family = Family::new(&app).await;
    let (bob, bob_client) = &family.bob;
    let mut stream = family.alice.1.open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await;
    // Not reading while 3 batches of 50 are stored: the socket buffers hold what the server
    // wrote, and the server's 4-event buffer overflows behind them.
    for batch in 0..3 {
        let fixes: Vec<Value> = (0..50).map(|n| fix(3000 - batch * 50 - n)).collect();
        let body = json!({"device_id": bob, "locations": fixes});
        assert_eq!(bob_client.post_json("/api/v1/locations/batch", &body).await.status(), StatusCode::OK);
    }
    let events = stream.events_until_quiet(Duration::from_secs(1)).await;
    let kinds: Vec<&str> = events.iter().map(|event| event.event.as_str()).collect();
    let resync = kinds.iter().position(|kind| *kind == "resync").unwrap_or_else(|| panic!("{kinds:?}"));
    assert_eq!(events[resync].json(), json!({"reason": "lagged"}));
    assert_eq!(events[resync].id, None, "a resync has no id");
    assert_eq!(kinds[resync + 1], "snapshot");
    let snapshot = events[resync + 1].json();
    let bob_listed =
        snapshot["devices"].as_array().unwrap().iter().find(|d| d["device_id"] == json!(bob)).cloned();
    assert!(bob_listed.is_some_and(|d| !d["last_location"].is_null()), "{snapshot}");
    assert!(events.len() < 150, "events were dropped, not queued: {}", events.len());
}

#[tokio::test]
async fn streams_end_when_the_server_stops() {
    let mut app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let mut stream = family.alice.1.open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await;
    let started = std::time::Instant::now();
    app.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(4), "stopping did not wait out the grace period");
    assert!(stream.ends_within(PATIENCE).await);
}

#[tokio::test]
async fn streams_are_measured() {
    let app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let mut stream = family.alice.1.open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await;
    upload(&family.bob.1, family.bob.0, fix(3)).await;
    location_of(&next_pushed(&mut stream, PATIENCE).await);
    let metrics = app.anonymous().get("/metrics").await.text().await.unwrap();
    for line in
        ["sse_subscribers ", "sse_events_sent_total{event=\"location\"}", "sse_fanout_latency_seconds_bucket"]
    {
        assert!(metrics.contains(line), "{line} in /metrics");
    }
}

#[tokio::test]
async fn a_replica_that_could_not_publish_makes_every_stream_start_over() {
    let app = TestApp::spawn().await;
    let family = Family::new(&app).await;
    let mut stream = family.alice.1.open_stream(&family.group, None).await;
    stream.next_event(PATIENCE).await;
    // What a publisher that fell behind, or lost its connection, sends once it can.
    sqlx::query("SELECT pg_notify('pm_live', '\"resync\"')").execute(&app.pool).await.unwrap();
    let resync = stream.next_event(PATIENCE).await;
    assert_eq!((resync.event.as_str(), resync.json()), ("resync", json!({"reason": "interrupted"})));
    assert_eq!(stream.next_event(PATIENCE).await.event, "snapshot");
}
