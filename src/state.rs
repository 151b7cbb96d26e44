use std::sync::Arc;

use sqlx::PgPool;

use crate::config::Settings;

/// Shared by every request: cheap to clone (a pool handle and an `Arc`).
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
}
