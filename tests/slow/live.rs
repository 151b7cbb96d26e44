//! Live streams where a second passes or a second process runs: heartbeats, fixes stored
//! through another replica, credentials that expire, and a stalled reader's cost.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::helpers::{
    ApiClient, EventStream, ServerProcess, SseBlock, TestApp, TestDatabase, fix, key_admin, key_for, single,
};

const PATIENCE: Duration = Duration::from_secs(5);

async fn upload(client: &ApiClient, device: Uuid, body: Value) {
    let response = client.post_json("/api/v1/locations", &single(device, body)).await;
    assert_eq!(response.status(), StatusCode::OK, "upload");
}

/// The next event that is not the membership notice of `registered` (a device registered
/// just before the stream opened): that notice reaches the stream through the listener and may
/// arrive after the snapshot already showed the device; delivery is at least once.
async fn next_after_registration(stream: &mut EventStream, registered: Uuid, wait: Duration) -> SseBlock {
    loop {
        let event = stream.next_event(wait).await;
        if !(event.event == "member" && event.json()["device_id"] == json!(registered)) {
            return event;
        }
    }
}

#[tokio::test]
async fn a_silent_stream_sends_heartbeats() {
    let app = TestApp::spawn_with(|settings| settings.live.heartbeat_secs = 1).await;
    let full = app.client().await;
    full.register_device(Uuid::new_v4(), "Alice", "quiet").await;
    let mut stream = full.open_stream("quiet", None).await;
    assert_eq!(stream.next_event(PATIENCE).await.event, "snapshot");
    let started = Instant::now();
    let mut heartbeats = 0;
    while heartbeats < 2 {
        let block = stream.next_block(Duration::from_millis(2500)).await.expect("a heartbeat");
        // Alice's registration notice may come after the snapshot (at least once).
        if block.event == "member" {
            continue;
        }
        assert_eq!((block.event.as_str(), block.comments), ("", vec!["keep-alive".to_owned()]));
        heartbeats += 1;
    }
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

/// Two replicas on one database: a fix uploaded through one is pushed by the other's stream
/// within a second, and so is a member registered through it; event ids are the same on both,
/// so a client resumes on either.
#[tokio::test]
async fn a_fix_stored_through_another_replica_is_pushed() {
    let app = TestApp::spawn().await;
    let key = key_for(&app.db.url, false).await;
    let other = ServerProcess::start(&app.db.url, &[]).await;
    let here = app.client_with_key(&key);
    let there = other.client_with_key(&key);
    let device = Uuid::new_v4();
    there.register_device(device, "Alice", "replicas").await;
    let mut stream = here.open_stream("replicas", None).await;
    assert_eq!(stream.next_event(PATIENCE).await.event, "snapshot");
    let mut other_stream = there.open_stream("replicas", None).await;
    assert_eq!(other_stream.next_event(PATIENCE).await.event, "snapshot");

    let started = Instant::now();
    upload(&there, device, fix(3)).await;
    let event = next_after_registration(&mut stream, device, Duration::from_secs(1)).await;
    assert_eq!(event.event, "location");
    assert_eq!(event.json()["device_id"], json!(device));
    eprintln!("pushed across replicas {:?} after the upload was sent", started.elapsed());
    assert_eq!(
        next_after_registration(&mut other_stream, device, PATIENCE).await.id,
        event.id,
        "the same id on both replicas"
    );

    there.register_device(Uuid::new_v4(), "Bob", "replicas").await;
    let joined = stream.next_event(Duration::from_secs(1)).await;
    assert_eq!(joined.json()["change"], "joined");
    assert_eq!(other_stream.next_event(PATIENCE).await.id, joined.id);

    // This replica's client moves to the other one, resuming from its last id.
    drop(stream);
    upload(&here, device, fix(2)).await;
    upload(&there, device, fix(1)).await;
    let mut resumed = there.open_stream("replicas", joined.id.as_deref()).await;
    let missed = resumed.events_until_quiet(Duration::from_millis(500)).await;
    let kinds: Vec<&str> = missed.iter().map(|event| event.event.as_str()).collect();
    assert_eq!(kinds, ["location", "location"], "{missed:?}");
}

/// A stream whose key expires while it is open ends at its next check.
#[tokio::test]
async fn a_stream_ends_when_its_key_expires() {
    let app = TestApp::spawn_with(|settings| settings.live.recheck_secs = 1).await;
    let key = key_admin(&app.pool).create("expiring", false, None).await.unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = now() + interval '2 seconds' WHERE id = $1")
        .bind(key.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let client = app.client_with_key(&key.key);
    client.register_device(Uuid::new_v4(), "Alice", "expiring").await;
    let mut stream = client.open_stream("expiring", None).await;
    stream.next_event(PATIENCE).await;
    assert!(stream.ends_within(Duration::from_secs(6)).await, "the expired key's stream ended");
}

/// Readers that stop reading cost the server a bounded amount of memory however much their
/// group moves: ten stalled streams while 20,000 fixes are pushed (~6 MB of events each, if
/// they were queued), then each stream, read again, says `resync` and sends a snapshot.
#[tokio::test]
async fn stalled_readers_are_resynchronised_and_memory_stays_flat() {
    let db = TestDatabase::create().await;
    let key = key_for(&db.url, false).await;
    let server = ServerProcess::start(&db.url, &[("PM__SECURITY__RATE_LIMIT_PER_MINUTE", "100000")]).await;
    let client = server.client_with_key(&key);
    let device = Uuid::new_v4();
    client.register_device(device, "Runner", "stalled").await;

    let mut stalled = Vec::new();
    for _ in 0..10 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut connection = socket.connect(server.socket_addr()).await.unwrap();
        let request = format!(
            "GET /api/v1/groups/stalled/stream HTTP/1.1\r\nHost: test\r\nX-API-Key: {key}\r\nAccept: text/event-stream\r\n\r\n"
        );
        connection.write_all(request.as_bytes()).await.unwrap();
        stalled.push(connection);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib();

    let base = crate::helpers::now_ms() - 3_600_000;
    let batches: Vec<Value> = (0..400)
        .map(|batch| {
            let fixes: Vec<Value> = (0..50)
                .map(|n| {
                    json!({"timestamp": base + (batch * 50 + n) * 100, "latitude": 48.1, "longitude": 17.1,
                    "accuracy": 5.0, "provider": "fused", "network_type": "wifi"})
                })
                .collect();
            json!({"device_id": device, "locations": fixes})
        })
        .collect();
    let mut uploads = tokio::task::JoinSet::new();
    for chunk in batches.chunks(100) {
        let (client, chunk) = (client.clone(), chunk.to_vec());
        uploads.spawn(async move {
            for body in chunk {
                let response = client.post_json("/api/v1/locations/batch", &body).await;
                assert_eq!(response.status(), StatusCode::OK);
            }
        });
    }
    uploads.join_all().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss_kib();
    eprintln!("RSS {before} KiB before, {after} KiB after 20,000 events to 10 stalled streams");
    assert!(after < before + 16 * 1024, "RSS grew from {before} to {after} KiB");

    // Read one of them now: after what the socket buffers held, a resync and a snapshot.
    let mut connection = stalled.pop().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut buffer = vec![0u8; 65536];
    while Instant::now() < deadline {
        let read = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::io::AsyncReadExt::read(&mut connection, &mut buffer),
        )
        .await;
        match read {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
            Ok(Err(err)) => panic!("{err}"),
        }
        if seen.windows(13).any(|w| w == b"event: resync")
            && seen.windows(15).any(|w| w == b"event: snapshot")
        {
            let text = String::from_utf8_lossy(&seen);
            let resync = text.find("event: resync").unwrap();
            if text[resync..].contains("event: snapshot") {
                return;
            }
        }
    }
    panic!("no resync and snapshot in {} bytes", seen.len());
}
