//! Building and running the service: bind, serve, and stop gracefully.

use std::{future::Future, net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{body::Body, extract::ConnectInfo, http::Request};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::{
    config::Settings,
    db,
    domain::{
        admin::Admin, credentials::Authenticator, devices::Devices, health::Health, history::History,
        live::Live, privacy::Privacy, uploads::Uploads,
    },
    http,
    infra::{
        credential_cache::{KeyCache, TokenCache},
        ingest::Ingest,
        last_seen::{self, LastSeen},
        listener,
        live::{Hub, HubSettings},
        publish::Publisher,
        rate_limit::RateLimiter,
    },
    jobs, metrics, openapi,
    state::AppState,
};

/// A bound, ready-to-run service. Tests bind port 0 and read the real port from [`port`].
///
/// [`port`]: Application::port
pub struct Application {
    listener: TcpListener,
    pool: PgPool,
    last_seen: Arc<LastSeen>,
    hub: Arc<Hub>,
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
        // The coming days' partitions, before the first upload. Not fatal: an upload for a day
        // without one creates it, and the partition maintenance job tries again.
        let ahead = settings.jobs.location_partitions_ahead_days;
        match db::locations::create_partitions(&pool, chrono::Utc::now().date_naive(), ahead).await {
            Ok(created) => tracing::info!(created, ahead, "partitions of locations ready"),
            Err(err) => {
                tracing::warn!(error = %err, "could not create the coming days' partitions of locations")
            }
        }
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener =
            TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
        metrics::handle();
        let last_seen = LastSeen::start(pool.clone(), last_seen::DEFAULT_WINDOW);
        let keys = Arc::new(KeyCache::new(settings.security.api_key_cache()));
        let tokens = Arc::new(TokenCache::new(settings.security.api_key_cache()));
        let live = &settings.live;
        let hub = Hub::start(HubSettings {
            replay_events: live.replay_events,
            replay_window: live.replay_window(),
            buffer: live.buffer_events,
        });
        let targets = listener::Targets { keys: keys.clone(), tokens: tokens.clone(), hub: hub.clone() };
        listener::start(pool.clone(), targets);
        let rate_limiter = Arc::new(RateLimiter::new(&settings.security));
        RateLimiter::start_forgetting(&rate_limiter, Duration::from_secs(60));
        let limits = &settings.limits;
        let auth = Arc::new(Authenticator::new(pool.clone(), keys, tokens.clone()));
        let state = AppState {
            live: Live::new(pool.clone(), hub.clone(), auth.clone(), live.clone()),
            auth,
            devices: Devices::new(
                pool.clone(),
                limits.max_devices_per_group,
                rate_limiter.clone(),
                tokens.clone(),
            ),
            rate_limiter,
            uploads: Arc::new(Uploads::new(
                pool.clone(),
                Ingest::start(pool.clone(), &settings.ingest, Publisher::start(&pool)),
                last_seen.clone(),
                limits,
            )),
            privacy: Privacy::new(pool.clone(), tokens.clone()),
            history: History::new(pool.clone()),
            admin: Admin::new(pool.clone(), limits.max_devices_per_group, tokens),
            health: Health::new(pool.clone()),
            settings: Arc::new(settings),
        };
        Ok(Self { listener, pool, last_seen, hub, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// within the configured grace period, stops the jobs, and closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let settings = self.state.settings.clone();
        let grace = settings.server.shutdown_grace();
        let pool = self.pool;
        let scheduler = jobs::Scheduler::start(pool.clone(), &settings);
        let last_seen = self.last_seen;
        let upkeep = tokio::spawn(metrics::upkeep_forever());
        let app = http::app(self.state, openapi::spec());
        tracing::info!(address = %self.listener.local_addr()?, "listening");

        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Without a timer hyper cannot time out slow headers: a slowloris client would hold
        // its connection (and a slot) forever.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.server.header_read_timeout())
            // hyper's default (~400 KiB) lets each connection's buffer double to 16 KiB and
            // more; at 10,000 keep-alive connections that is most of the process's memory.
            .max_buf_size(settings.server.read_buffer_bytes);
        builder.http2().timer(TokioTimer::new());
        let connections = GracefulShutdown::new();
        let mut shutdown = pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            cut_when_unanswered(&stream);
            let service = app.clone().map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(Body::new)
            });
            let (builder, watcher) = (builder.clone(), connections.watcher());
            let opening = settings.server.header_read_timeout();
            tokio::spawn(async move {
                // hyper reads a connection's first bytes to tell HTTP/1 from HTTP/2 without a
                // timer; its header timeout starts after. A client that sends nothing, or half
                // of HTTP/2's preface, would hold its connection for ever.
                if !opening_arrives(&stream, opening).await {
                    return;
                }
                let connection = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .into_owned();
                if let Err(err) = watcher.watch(connection).await {
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
            });
        }

        drop(self.listener);
        tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections");
        // Live streams never finish by themselves: end them, so their connections can close
        // (clients reconnect to another replica).
        self.hub.close();
        tokio::select! {
            () = connections.shutdown() => {}
            () = tokio::time::sleep(grace) => tracing::warn!("grace period elapsed; abandoning in-flight requests"),
        }
        scheduler.shutdown(grace).await;
        last_seen.flush().await;
        upkeep.abort();
        pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// How long data the server sent may stay unacknowledged before the kernel drops the connection
/// (`TCP_USER_TIMEOUT`, Linux). A phone that lost its network never says goodbye: without this,
/// a live stream to it would hold its place (and count against the device's cap) for the ~15
/// minutes of TCP's retransmissions; with it, for one heartbeat and this long.
const UNANSWERED: Duration = Duration::from_secs(30);

/// Sets [`UNANSWERED`] where the platform has it.
fn cut_when_unanswered(stream: &tokio::net::TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Err(err) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(UNANSWERED)) {
        tracing::debug!(error = %err, "cannot set TCP_USER_TIMEOUT");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
    let _ = stream;
}

/// HTTP/2's connection preface; hyper-util tells the protocols apart by it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether enough of a connection's opening arrives within `limit` for hyper to choose the
/// protocol: the whole HTTP/2 preface, or first bytes that cannot begin it (HTTP/1, whose own
/// header timeout then applies). Peeks, so hyper still reads every byte.
async fn opening_arrives(stream: &tokio::net::TcpStream, limit: Duration) -> bool {
    let wait = async {
        let mut opening = [0u8; H2_PREFACE.len()];
        loop {
            match stream.peek(&mut opening).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n == H2_PREFACE.len() || !H2_PREFACE.starts_with(&opening[..n]) => return true,
                // Part of the preface: peek returns at once while those bytes wait, so pause.
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or(false)
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
