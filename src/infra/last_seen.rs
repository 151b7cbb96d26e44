//! `devices.last_seen_at` for requests that act for a device (uploads). The write happens off
//! the request path, and bursts are coalesced: a device is written at most once per window
//! per replica, however chatty it is, and the devices seen meanwhile are written together,
//! one UPDATE a second (a statement per upload would cost PostgreSQL more than the upload).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use sqlx::PgPool;
use uuid::Uuid;

use crate::db;

/// `last_seen_at` is precise to this window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// Devices seen are written this often, together.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Beyond this many remembered devices, forget those outside the window; after a prune, the
/// next one waits until the map has doubled, so pruning costs O(1) per device however many are
/// seen within one window (a fixed threshold made every new device's touch scan the whole map
/// once more than this many were active: 2× the service CPU per upload at 100k devices).
const PRUNE_AT: usize = 10_000;
/// Devices per UPDATE, so no statement holds many row locks for long.
const FLUSH_CHUNK: usize = 1_000;

pub struct LastSeen {
    pool: PgPool,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When each device was last queued for a write.
    recent: HashMap<Uuid, Instant>,
    /// Devices to write at the next flush.
    pending: Vec<Uuid>,
    /// `recent`'s size at which the next prune runs.
    prune_at: usize,
}

impl LastSeen {
    /// Starts the flusher on the current runtime; it stops when the returned handle is dropped
    /// (call [`LastSeen::flush`] first to write what is pending).
    pub fn start(pool: PgPool, window: Duration) -> Arc<Self> {
        let tracker = Arc::new(Self::new(pool, window));
        tokio::spawn(flush_forever(Arc::downgrade(&tracker)));
        tracker
    }

    fn new(pool: PgPool, window: Duration) -> Self {
        Self { pool, window, state: Mutex::new(State::default()) }
    }

    /// Records that the device was seen now; returns at once.
    pub fn touch(&self, device_id: Uuid) {
        let now = Instant::now();
        let mut state = self.lock();
        if state.recent.get(&device_id).is_some_and(|at| now.duration_since(*at) < self.window) {
            return;
        }
        if state.recent.len() >= state.prune_at.max(PRUNE_AT) {
            let window = self.window;
            state.recent.retain(|_, at| now.duration_since(*at) < window);
            state.prune_at = state.recent.len() * 2;
        }
        state.recent.insert(device_id, now);
        state.pending.push(device_id);
    }

    /// Writes every pending device now. A failed write is logged and kept for the next flush.
    pub async fn flush(&self) {
        let mut pending = std::mem::take(&mut self.lock().pending);
        pending.sort_unstable();
        for chunk in pending.chunks(FLUSH_CHUNK) {
            if let Err(err) = db::devices::touch_last_seen(&self.pool, chunk).await {
                tracing::warn!(error = %err, devices = chunk.len(), "could not record last_seen_at; retrying");
                self.lock().pending.extend_from_slice(chunk);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn flush_forever(tracker: Weak<LastSeen>) {
    let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(tracker) = tracker.upgrade() else { return };
        tracker.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_once_per_window() {
        let pool =
            sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://unused@127.0.0.1:1/x").unwrap();
        let tracker = LastSeen::new(pool, Duration::from_millis(300));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        tracker.touch(a);
        tracker.touch(a);
        tracker.touch(b);
        assert_eq!(std::mem::take(&mut tracker.lock().pending), vec![a, b], "once per window");
        tracker.touch(a);
        assert!(tracker.lock().pending.is_empty(), "still inside a's window");
        tokio::time::sleep(Duration::from_millis(300)).await;
        tracker.touch(a);
        assert_eq!(tracker.lock().pending, vec![a], "a new window");
    }
}
