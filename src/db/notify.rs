//! Cross-replica notices over PostgreSQL `LISTEN`/`NOTIFY`: a change one replica (or the CLI)
//! makes that the others must act on at once, such as a deactivated API key they have cached,
//! or a stored fix their live streams must push.
//! A notice sent inside a transaction is delivered when it commits, and not at all if it rolls
//! back. Each replica holds one listening connection, outside the request pool.

use sqlx::{
    PgConnection, PgPool,
    postgres::{PgListener, PgPoolOptions},
};

/// The channel of cache invalidations; payloads are [`Invalidation`](crate::model::Invalidation)s.
pub const INVALIDATIONS: &str = "pm_invalidate";
/// The channel of live events (stored fixes, membership changes); payloads are JSON
/// [`LiveNotice`](crate::model::LiveNotice)s, sent through a [`Sender`] after the uploads
/// committed, and by the trigger on `devices` (migration 0012).
pub const LIVE: &str = "pm_live";

/// Sends `payload` on `channel` when the caller's transaction commits.
pub async fn send(conn: &mut PgConnection, channel: &str, payload: &str) -> sqlx::Result<()> {
    observe!("SELECT", "notify", sqlx::query!("SELECT pg_notify($1, $2)", channel, payload), execute(conn))
        .map(drop)
}

/// A connection of its own for sending many notices at once, outside the request pool.
///
/// Its transactions commit with `synchronous_commit = off`: they write no data, and PostgreSQL
/// holds a database-wide lock from a notifying transaction's commit until it returns, so a
/// commit that waited for its WAL flush would make every other notifier wait for it too.
pub struct Sender {
    pool: PgPool,
}

impl Sender {
    /// A sender with the connection settings of `pool` (connecting lazily, reconnecting when
    /// the connection is lost).
    pub fn new(pool: &PgPool) -> Self {
        let options = (*pool.connect_options()).clone().options([("synchronous_commit", "off")]);
        Self { pool: PgPoolOptions::new().max_connections(1).connect_lazy_with(options) }
    }

    /// Sends `payloads` on `channel`, in order, in one transaction.
    pub async fn send_all(&self, channel: &str, payloads: &[String]) -> sqlx::Result<()> {
        observe!(
            "SELECT",
            "notify",
            sqlx::query!(
                "SELECT pg_notify($1, payload) FROM UNNEST($2::text[]) WITH ORDINALITY AS p(payload, n) ORDER BY n",
                channel,
                payloads
            ),
            execute(&self.pool)
        )
        .map(drop)
    }
}

/// A listening connection: one of its own (a pool of one, separate from `pool`, with the same
/// settings), reconnecting when it is lost.
pub struct Listener {
    inner: PgListener,
}

/// What [`Listener::next`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Notice {
        channel: String,
        payload: String,
    },
    /// The connection was lost (and notices sent meanwhile with it); the next call reconnects.
    Lost,
}

impl Listener {
    /// Listens on `channels` with the connection settings of `pool`.
    pub async fn connect(pool: &PgPool, channels: &[&str]) -> sqlx::Result<Self> {
        let own =
            PgPoolOptions::new().max_connections(1).connect_lazy_with((*pool.connect_options()).clone());
        let mut inner = PgListener::connect_with(&own).await?;
        inner.listen_all(channels.iter().copied()).await?;
        Ok(Self { inner })
    }

    /// The next notice, or word that the connection was lost. An error means it could not
    /// reconnect (the caller waits and calls again).
    pub async fn next(&mut self) -> sqlx::Result<Heard> {
        Ok(match self.inner.try_recv().await? {
            Some(notice) => {
                Heard::Notice { channel: notice.channel().to_owned(), payload: notice.payload().to_owned() }
            }
            None => Heard::Lost,
        })
    }
}
