//! Health of the service's dependencies, as probes and dashboards want it.

use std::time::Duration;

use sqlx::PgPool;

use crate::{db, metrics};

/// A probe gives up after this long: a hung database must not hang the orchestrator's probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct DatabaseHealth {
    pub connected: bool,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

/// The database, as health probes and the metrics endpoint see it.
#[derive(Clone)]
pub struct Health {
    pool: PgPool,
}

impl Health {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// `SELECT 1` within 2 s: connected and how fast, or why not.
    pub async fn database(&self) -> DatabaseHealth {
        match db::health::ping(&self.pool, PROBE_TIMEOUT).await {
            Ok(latency) => DatabaseHealth {
                connected: true,
                latency_ms: Some((latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0),
                error: None,
            },
            Err(reason) => {
                tracing::warn!(%reason, "database health check failed");
                DatabaseHealth {
                    connected: false,
                    latency_ms: None,
                    error: Some("database unreachable".into()),
                }
            }
        }
    }

    /// Updates the pool gauges (`database_connections_active`/`_idle`) before a scrape.
    pub fn record_pool_metrics(&self) {
        metrics::record_pool(self.pool.size(), self.pool.num_idle());
    }
}
