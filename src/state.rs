use std::sync::Arc;

use sqlx::PgPool;

use crate::{
    config::Settings,
    domain::{ingest::Ingest, key_cache::KeyCache, last_seen::LastSeen},
    rate_limit::RateLimiter,
};

/// Shared by every request: cheap to clone (a pool handle and an `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    /// Coalesced `last_seen_at` writes for uploads.
    pub last_seen: Arc<LastSeen>,
    /// Group commit of uploads without an Idempotency-Key.
    pub ingest: Arc<Ingest>,
    /// Per-key limits (local or shared through Redis).
    pub rate_limiter: Arc<RateLimiter>,
    /// Recently authenticated keys (per replica, short TTL).
    pub key_cache: Arc<KeyCache>,
}
