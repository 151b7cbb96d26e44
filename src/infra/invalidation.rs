//! Listens for invalidation notices (`db::notify::INVALIDATIONS`) and applies them to this
//! replica's caches, so a key deactivated, or a device deactivated, erased, moved or given a new
//! token, through any replica or the CLI stops working here within a second. One connection per replica, outside the request pool; while it is lost,
//! the caches fall back to their short TTL and forget what they held.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::{
    db::notify::{self, Heard, Listener},
    infra::credential_cache::{KeyCache, TokenCache},
    model::Invalidation,
};

/// Wait between attempts to (re)connect.
const RETRY: Duration = Duration::from_secs(1);

/// Starts listening on the current runtime; the task ends when `pool` is closed.
pub fn start(pool: PgPool, keys: Arc<KeyCache>, tokens: Arc<TokenCache>) -> JoinHandle<()> {
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
            let listening = |on: bool| {
                keys.set_listening(on);
                tokens.set_listening(on);
            };
            listening(true);
            loop {
                match listener.next().await {
                    Ok(Heard::Notice { payload, .. }) => apply(&keys, &tokens, &payload),
                    Ok(Heard::Lost) => {
                        tracing::warn!("invalidation listener lost its connection; reconnecting");
                        listening(false);
                    }
                    Err(_) if pool.is_closed() => return,
                    Err(err) => {
                        tracing::warn!(error = %err, "invalidation listener failed; reconnecting");
                        listening(false);
                        tokio::time::sleep(RETRY).await;
                        break;
                    }
                }
            }
        }
    })
}

fn apply(keys: &KeyCache, tokens: &TokenCache, payload: &str) {
    match payload.parse::<Invalidation>() {
        Ok(Invalidation::ApiKey(id)) => keys.forget(|key| key.id == id),
        Ok(Invalidation::Device(id)) => tokens.forget(|device| device.device_id == id),
        Err(payload) => tracing::warn!(%payload, "ignoring an unknown invalidation notice"),
    }
}
