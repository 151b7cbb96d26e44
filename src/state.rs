use std::sync::Arc;

use sqlx::PgPool;

use crate::{
    config::Settings,
    domain::{key_cache::KeyCache, last_seen::LastSeen},
    rate_limit::RateLimiter,
};

/// Shared by every request: cheap to clone (a pool handle and an `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    /// Coalesced `last_seen_at` writes for uploads.
    pub last_seen: Arc<LastSeen>,
    /// Per-key limits (local or shared through Redis).
    pub rate_limiter: Arc<RateLimiter>,
    /// Recently authenticated keys (per replica, short TTL).
    pub key_cache: Arc<KeyCache>,
}
