//! Building and running the service: bind, serve, and stop gracefully.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::{
    config::Settings,
    db,
    domain::last_seen::{self, LastSeen},
    http, jobs,
    state::AppState,
};

/// A bound, ready-to-run service. Tests bind port 0 and read the real port from [`port`].
///
/// [`port`]: Application::port
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects to the database (creating it and migrating it if configured) and binds.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = db::connect(&settings.database).await?;
        if settings.database.migrate_on_start {
            db::migrate(&pool).await?;
        }
        Self::with_pool(settings, pool).await
    }

    /// Binds with an existing pool (the database must already be migrated).
    pub async fn with_pool(settings: Settings, pool: PgPool) -> anyhow::Result<Self> {
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener =
            TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
        let last_seen = Arc::new(LastSeen::new(pool.clone(), last_seen::DEFAULT_WINDOW));
        Ok(Self { listener, state: AppState { pool, settings: Arc::new(settings), last_seen } })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn pool(&self) -> &PgPool {
        &self.state.pool
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// within the configured grace period, and closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = self.state.settings.server.shutdown_grace();
        let pool = self.state.pool.clone();
        let scheduler = jobs::Scheduler::start(pool.clone(), &self.state.settings);
        let app = http::app(self.state);
        tracing::info!(address = %self.listener.local_addr()?, "listening");

        let stopping = Arc::new(tokio::sync::Notify::new());
        let notify = stopping.clone();
        let server = axum::serve(self.listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections");
                notify.notify_one();
            });
        let deadline = async {
            stopping.notified().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server.into_future() => result.context("server error")?,
            () = deadline => tracing::warn!("grace period elapsed; abandoning in-flight requests"),
        }
        scheduler.shutdown(grace).await;
        pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM (what orchestrators send).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
