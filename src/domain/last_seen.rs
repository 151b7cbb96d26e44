//! `devices.last_seen_at` for requests that act for a device (uploads). The write happens off
//! the request path, and bursts are coalesced: a device is written at most once per window
//! per replica, however chatty it is.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use sqlx::PgPool;
use uuid::Uuid;

use crate::db;

/// `last_seen_at` is precise to this window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// Beyond this many remembered devices, forget those outside the window.
const PRUNE_AT: usize = 10_000;

pub struct LastSeen {
    pool: PgPool,
    window: Duration,
    recent: Mutex<HashMap<Uuid, Instant>>,
}

impl LastSeen {
    pub fn new(pool: PgPool, window: Duration) -> Self {
        Self { pool, window, recent: Mutex::new(HashMap::new()) }
    }

    /// Records that the device was seen now; returns at once.
    pub fn touch(&self, device_id: Uuid) {
        if !self.should_write(device_id, Instant::now()) {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(err) = db::devices::touch_last_seen(&pool, device_id).await {
                tracing::warn!(error = %err, %device_id, "could not record last_seen_at");
            }
        });
    }

    fn should_write(&self, device_id: Uuid, now: Instant) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.get(&device_id).is_some_and(|at| now.duration_since(*at) < self.window) {
            return false;
        }
        if recent.len() >= PRUNE_AT {
            recent.retain(|_, at| now.duration_since(*at) < self.window);
        }
        recent.insert(device_id, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_once_per_window() {
        let pool =
            sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://unused@127.0.0.1:1/x").unwrap();
        let tracker = LastSeen::new(pool, Duration::from_secs(30));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let start = Instant::now();
        assert!(tracker.should_write(a, start));
        assert!(!tracker.should_write(a, start + Duration::from_secs(29)));
        assert!(tracker.should_write(b, start + Duration::from_secs(1)));
        assert!(tracker.should_write(a, start + Duration::from_secs(30)));
    }
}
