//! What every request handler can reach: the settings and the services. Cheap to clone (a few
//! `Arc`s and pool handles); axum clones it per request.

use std::sync::Arc;

use crate::{
    config::Settings,
    domain::{
        admin::Admin, credentials::Authenticator, devices::Devices, health::Health, history::History,
        live::Live, privacy::Privacy, uploads::Uploads,
    },
    infra::rate_limit::RateLimiter,
};

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// Authenticates `X-API-Key` and device tokens (with this replica's caches).
    pub auth: Arc<Authenticator>,
    /// Per-key limits (local, or shared through Redis).
    pub rate_limiter: Arc<RateLimiter>,
    pub devices: Devices,
    /// Location uploads (group commit, idempotent retries, `last_seen_at`).
    pub uploads: Arc<Uploads>,
    pub privacy: Privacy,
    /// Devices' trails.
    pub history: History,
    /// Groups' live streams.
    pub live: Live,
    pub admin: Admin,
    pub health: Health,
}
