//! One connection per replica listening for what other replicas (and the CLI) tell it through
//! PostgreSQL `LISTEN`/`NOTIFY`, outside the request pool:
//! - invalidations (`db::notify::INVALIDATIONS`): a key deactivated, or a device deactivated,
//!   erased, moved or given a new token, anywhere stops working here within a second (the
//!   caches forget it, and its live streams check their credentials again);
//! - live events (`db::notify::LIVE`): stored fixes and membership changes, for this replica's
//!   live streams (`infra::live`).
//!
//! While the connection is lost, notices are missed: the caches fall back to their short TTL and
//! forget what they held, and every live stream starts over from a snapshot.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::{
    db::notify::{self, Heard, Listener},
    infra::{
        credential_cache::{KeyCache, TokenCache},
        live::Hub,
    },
    model::{Invalidation, LiveNotice},
};

/// Wait between attempts to (re)connect.
const RETRY: Duration = Duration::from_secs(1);

/// What the notices act on.
pub struct Targets {
    pub keys: Arc<KeyCache>,
    pub tokens: Arc<TokenCache>,
    pub hub: Arc<Hub>,
}

/// Starts listening on the current runtime; the task ends when `pool` is closed.
pub fn start(pool: PgPool, targets: Targets) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut listener = match Listener::connect(&pool, &[notify::INVALIDATIONS, notify::LIVE]).await {
                Ok(listener) => listener,
                Err(_) if pool.is_closed() => return,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for notices; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            targets.listening(true);
            loop {
                match listener.next().await {
                    Ok(Heard::Notice { channel, payload }) => targets.apply(&channel, &payload),
                    Ok(Heard::Lost) => {
                        tracing::warn!("notice listener lost its connection; reconnecting");
                        targets.listening(false);
                    }
                    Err(_) if pool.is_closed() => return,
                    Err(err) => {
                        tracing::warn!(error = %err, "notice listener failed; reconnecting");
                        targets.listening(false);
                        tokio::time::sleep(RETRY).await;
                        break;
                    }
                }
            }
        }
    })
}

impl Targets {
    /// Notices arrive (again), or no longer do (and some may have been missed).
    fn listening(&self, on: bool) {
        self.keys.set_listening(on);
        self.tokens.set_listening(on);
        if !on {
            self.hub.interrupted();
        }
    }

    fn apply(&self, channel: &str, payload: &str) {
        if channel == notify::LIVE {
            match serde_json::from_str::<LiveNotice>(payload) {
                Ok(notice) => self.hub.publish(notice),
                Err(err) => tracing::warn!(error = %err, %payload, "ignoring an unknown live notice"),
            }
            return;
        }
        match payload.parse::<Invalidation>() {
            Ok(invalidation) => {
                match invalidation {
                    Invalidation::ApiKey(id) => self.keys.forget(|key| key.id == id),
                    Invalidation::Device(id) => self.tokens.forget(|device| device.device_id == id),
                }
                self.hub.invalidated(invalidation);
            }
            Err(payload) => tracing::warn!(%payload, "ignoring an unknown invalidation notice"),
        }
    }
}
