//! Publishing stored fixes to every replica's live streams, after they are committed.
//!
//! The upload writers (`infra::ingest`) hand each committed statement's fixes to one publisher
//! task per replica, which sends everything handed to it since its last send as `pm_live`
//! notices in ONE transaction of its own (`db::notify::Sender`). The uploads' transactions send
//! nothing: PostgreSQL serialises the commits of notifying transactions (a database-wide lock
//! held until the commit's WAL flush returns), which measured as a 25–40 % loss of upload
//! throughput when every upload statement notified (docs/decisions.md, 29). The publisher's own
//! commits skip the flush wait, so they hold that lock for microseconds.
//!
//! Nothing is announced that is not committed. What could be lost instead: the notices of a
//! replica that dies between an upload's commit and its publisher's send (milliseconds), and
//! those a publisher cannot keep up with or cannot send; in the latter two cases it sends a
//! `resync` notice as soon as it can, so every stream starts over from a snapshot rather than
//! silently missing a fix.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::{
    db::notify::{self, Sender},
    metrics,
    model::{LiveNotice, LocationNotice, LocationNotices},
};

/// Statements waiting to be published at most; beyond, their notices are dropped (and a
/// resync sent).
const QUEUE_CAPACITY: usize = 4096;
/// Notices stay below this many bytes (PostgreSQL refuses payloads of 8000 bytes and more).
const MAX_PAYLOAD_BYTES: usize = 7000;
/// Notices per transaction at most (a backlog is sent in several).
const MAX_NOTICES_PER_SEND: usize = 1000;

/// The handle the upload writers use; cheap to share.
pub struct Publisher {
    queue: mpsc::Sender<LocationNotices>,
    /// Notices were dropped: a resync is owed.
    dropped: Arc<AtomicBool>,
}

impl Publisher {
    /// Starts the publisher task on the current runtime; it ends when every handle is dropped.
    pub fn start(pool: &PgPool) -> Publisher {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let dropped = Arc::new(AtomicBool::new(false));
        tokio::spawn(publish_forever(Sender::new(pool), receiver, dropped.clone()));
        Publisher { queue, dropped }
    }

    /// Publishes the fixes one statement stored (committed at `stored_at`, microseconds since
    /// the epoch). Never waits: when the publisher is this far behind, the fixes are dropped and
    /// every stream is told to start over.
    pub fn publish(&self, stored_at: i64, fixes: Vec<LocationNotice>) {
        if fixes.is_empty() {
            return;
        }
        let count = fixes.len();
        if self.queue.try_send(LocationNotices { stored_at, fixes }).is_err() {
            self.dropped.store(true, Ordering::Relaxed);
            metrics::live_notices_dropped(count);
        }
    }
}

async fn publish_forever(
    sender: Sender,
    mut queue: mpsc::Receiver<LocationNotices>,
    dropped: Arc<AtomicBool>,
) {
    let mut waiting = Vec::new();
    while queue.recv_many(&mut waiting, MAX_NOTICES_PER_SEND).await > 0 {
        let mut payloads = Vec::new();
        if dropped.swap(false, Ordering::Relaxed) {
            payloads.push(serde_json::to_string(&LiveNotice::Resync).expect("serializes"));
        }
        for statement in waiting.drain(..) {
            payloads.extend(split(statement));
        }
        if let Err(err) = sender.send_all(notify::LIVE, &payloads).await {
            tracing::warn!(error = %err, notices = payloads.len(), "could not publish live notices");
            metrics::live_notices_dropped(payloads.len());
            dropped.store(true, Ordering::Relaxed);
        }
    }
}

/// One statement's fixes as notices below [`MAX_PAYLOAD_BYTES`] each, in order.
fn split(statement: LocationNotices) -> Vec<String> {
    let LocationNotices { stored_at, fixes } = statement;
    let mut payloads = Vec::new();
    let mut part: Vec<LocationNotice> = Vec::new();
    let mut size = 0;
    for fix in fixes {
        // A fix is ~250 bytes, at most ~1.2 KB (two 50-character texts, escaped).
        let length = serde_json::to_string(&fix).expect("serializes").len() + 1;
        if !part.is_empty() && size + length > MAX_PAYLOAD_BYTES - 64 {
            let full = std::mem::take(&mut part);
            payloads.push(notice(stored_at, full));
            size = 0;
        }
        size += length;
        part.push(fix);
    }
    if !part.is_empty() {
        payloads.push(notice(stored_at, part));
    }
    payloads
}

fn notice(stored_at: i64, fixes: Vec<LocationNotice>) -> String {
    serde_json::to_string(&LiveNotice::Locations(LocationNotices { stored_at, fixes })).expect("serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LocationEvent;

    fn fix(id: i64, text: &str) -> LocationNotice {
        LocationNotice {
            id,
            group_id: "g".repeat(50),
            event: LocationEvent {
                device_id: uuid::Uuid::new_v4(),
                latitude: -89.123_456_789_012_34,
                longitude: -179.123_456_789_012_34,
                accuracy: 1.0e38,
                timestamp: chrono::Utc::now(),
                altitude: Some(-999_999.123_456_789),
                bearing: Some(359.999_999_999_9),
                speed: Some(1.0e38),
                provider: Some(text.to_owned()),
                battery_level: Some(100),
                network_type: Some(text.to_owned()),
            },
        }
    }

    #[test]
    fn notices_stay_below_the_payload_limit_and_keep_every_fix_in_order() {
        // The longest texts there are: 50 characters that JSON escapes to six bytes each.
        let worst = "\u{1}".repeat(50);
        for text in ["fused", worst.as_str()] {
            let fixes: Vec<LocationNotice> = (0..1000).map(|id| fix(id, text)).collect();
            let payloads = split(LocationNotices { stored_at: 1, fixes });
            let mut ids = Vec::new();
            for payload in &payloads {
                assert!(payload.len() < 8000, "{} bytes", payload.len());
                let LiveNotice::Locations(part) = serde_json::from_str(payload).unwrap() else { panic!() };
                ids.extend(part.fixes.iter().map(|fix| fix.id));
            }
            assert_eq!(ids, (0..1000).collect::<Vec<_>>());
            assert!(payloads.len() < 1000 / 4, "fixes share notices: {}", payloads.len());
        }
    }
}
