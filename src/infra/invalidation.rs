//! Listens for invalidation notices (`db::notify::INVALIDATIONS`) and applies them to this
//! replica's caches, so a key deactivated through any replica or the CLI stops working here
//! within a second. One connection per replica, outside the request pool; while it is lost,
//! the caches fall back to their short TTL and forget what they held.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::{
    db::notify::{self, Heard, Listener},
    infra::key_cache::KeyCache,
    model::Invalidation,
};

/// Wait between attempts to (re)connect.
const RETRY: Duration = Duration::from_secs(1);

/// Starts listening on the current runtime; the task ends when `pool` is closed.
pub fn start(pool: PgPool, keys: Arc<KeyCache>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut listener = match Listener::connect(&pool, &[notify::INVALIDATIONS]).await {
                Ok(listener) => listener,
                Err(_) if pool.is_closed() => return,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for invalidations; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            keys.set_listening(true);
            loop {
                match listener.next().await {
                    Ok(Heard::Notice { payload, .. }) => apply(&keys, &payload),
                    Ok(Heard::Lost) => {
                        tracing::warn!("invalidation listener lost its connection; reconnecting");
                        keys.set_listening(false);
                    }
                    Err(_) if pool.is_closed() => return,
                    Err(err) => {
                        tracing::warn!(error = %err, "invalidation listener failed; reconnecting");
                        keys.set_listening(false);
                        tokio::time::sleep(RETRY).await;
                        break;
                    }
                }
            }
        }
    })
}

fn apply(keys: &KeyCache, payload: &str) {
    match payload.parse::<Invalidation>() {
        Ok(Invalidation::ApiKey(id)) => keys.forget_key(id),
        Err(payload) => tracing::warn!(%payload, "ignoring an unknown invalidation notice"),
    }
}
