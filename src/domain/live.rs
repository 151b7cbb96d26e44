//! Live streams of a group: who may open one, how many, where it starts, and when it ends.
//!
//! A stream is the group listing kept current: a `snapshot` (the listing) first, then every
//! fix a member stores (`location`) and every membership change (`member`), each sent only
//! after its transaction committed, through whichever replica it was made. Access is the
//! listing's: a member's device token (its own group only), or a `full` key.
//!
//! - **Resumption.** Every event has an id that means the same on every replica; a client
//!   reconnecting with `Last-Event-ID` gets what it missed while the replica still holds it (the
//!   group's last `live.replay_events` events of the last `live.replay_window_secs`), otherwise
//!   a fresh snapshot.
//! - **Slow readers.** A stream more than `live.buffer_events` behind gets `resync` and a new
//!   snapshot instead of the events it missed: the server never queues without bound.
//! - **Credentials.** When the key or the device of a stream changes anywhere (deactivated,
//!   erased, moved to another group, token replaced) the stream checks its credentials again
//!   at once, and every `live.recheck_secs` anyway (an expired key); if they no longer give
//!   access to the group, the stream ends.
//! - **Caps.** At most `live.max_streams_per_device` streams per device and
//!   `live.max_streams_per_key` per `full` key without a device token (429 beyond), and
//!   `live.max_streams` per replica (503 beyond).
//! - **Shutdown.** Streams end when the server stops; clients reconnect to another replica.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use futures_util::stream::{self, BoxStream, StreamExt};
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};

use crate::{
    config::LiveSettings,
    db,
    domain::{access, credentials::Authenticator},
    error::{ApiError, ApiResult},
    infra::live::{Event, EventKind, Holder, Hub, Refused, Start, Ticket},
    model::{Caller, GroupListing, KeyScope, Presented, ResyncReason},
};

/// What a stream asks a client to wait before reconnecting, in milliseconds: spread over a
/// few seconds so that clients of a replica that stopped do not all return at once.
const RETRY_MS: std::ops::RangeInclusive<u64> = 2_000..=6_000;
/// A client told "too many streams" may try again after this many seconds.
const TOO_MANY_RETRY_SECS: u64 = 10;

/// A live stream's events, in order, until the stream ends.
pub struct LiveStream {
    pub events: BoxStream<'static, Arc<Event>>,
    /// Reconnection advice (`retry:`).
    pub retry: Duration,
    /// The silence after which a heartbeat comment is sent.
    pub heartbeat: Duration,
}

/// Opens live streams.
#[derive(Clone)]
pub struct Live {
    pool: PgPool,
    hub: Arc<Hub>,
    auth: Arc<Authenticator>,
    settings: LiveSettings,
}

impl Live {
    pub fn new(pool: PgPool, hub: Arc<Hub>, auth: Arc<Authenticator>, settings: LiveSettings) -> Self {
        Self { pool, hub, auth, settings }
    }

    /// A stream of `group_id` for `caller` (who presented `presented`), resuming after
    /// `last_event_id` when possible. 404 for a group an `app` key's device is not in, 429 over
    /// the caller's cap, 503 over the replica's or while shutting down.
    pub async fn open(
        &self,
        caller: &Caller,
        presented: &Presented,
        group_id: &str,
        last_event_id: Option<&str>,
    ) -> ApiResult<LiveStream> {
        access::see_group(&self.pool, caller, group_id, "group.stream").await?;
        let ticket = self.hub.register(self.holders(caller), self.settings.max_streams).map_err(refusal)?;
        let subscription = self.hub.subscribe(group_id, last_event_id);
        let pending: VecDeque<Arc<Event>> = match subscription.start {
            Start::Resume(missed) => missed.into(),
            Start::Snapshot { id } => VecDeque::from([snapshot(&self.pool, group_id, id).await?]),
        };
        let mut recheck = tokio::time::interval(self.settings.recheck());
        recheck.reset(); // the first tick one period from now, not at once
        let state = Stream {
            live: self.clone(),
            group_id: group_id.to_owned(),
            presented: presented.clone(),
            ip: caller.ip,
            ticket,
            events: subscription.events,
            pending,
            closing: self.hub.closing(),
            recheck,
        };
        Ok(LiveStream {
            events: stream::unfold(state, |mut state| async move { state.next().await.map(|e| (e, state)) })
                .boxed(),
            retry: Duration::from_millis(rand::random_range(RETRY_MS)),
            heartbeat: self.settings.heartbeat(),
        })
    }

    /// Whose the stream is, each with its cap. An `app` key is shared by every install: only
    /// its devices are capped, but its streams still hear of its revocation.
    fn holders(&self, caller: &Caller) -> Vec<(Holder, usize)> {
        let key_cap = match caller.key.scope {
            KeyScope::Full => self.settings.max_streams_per_key,
            KeyScope::App => usize::MAX,
        };
        let mut holders = vec![(Holder::Key(caller.key.id), key_cap)];
        if let Some(device) = &caller.device {
            holders.push((Holder::Device(device.device_id), self.settings.max_streams_per_device));
        }
        holders
    }
}

fn refusal(refused: Refused) -> ApiError {
    match refused {
        Refused::Holder { holder, limit } => ApiError::TooManyStreams {
            limit,
            per: match holder {
                Holder::Device(_) => "device",
                Holder::Key(_) => "API key",
            },
            retry_after: TOO_MANY_RETRY_SECS,
        },
        Refused::Replica { .. } => ApiError::ServiceUnavailable(
            "This server holds its maximum of live streams; retry shortly".into(),
        ),
        Refused::Closing => {
            ApiError::ServiceUnavailable("The service is shutting down; retry shortly".into())
        }
    }
}

/// The group's listing as a `snapshot` event with id `id`.
async fn snapshot(pool: &PgPool, group_id: &str, id: String) -> ApiResult<Arc<Event>> {
    let devices = db::devices::list_active_in_group(pool, group_id).await?;
    let data = serde_json::to_string(&GroupListing { devices }).expect("serializes");
    Ok(Arc::new(Event::new(Some(id), EventKind::Snapshot, data, None)))
}

/// One stream's state.
struct Stream {
    live: Live,
    group_id: String,
    presented: Presented,
    ip: Option<std::net::IpAddr>,
    /// Its place in the register (freed when the stream is dropped).
    ticket: Ticket,
    events: broadcast::Receiver<Arc<Event>>,
    /// Events to send before waiting for more.
    pending: VecDeque<Arc<Event>>,
    closing: watch::Receiver<bool>,
    recheck: tokio::time::Interval,
}

impl Stream {
    /// The next event; None ends the stream.
    async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            let woke = tokio::select! {
                biased;
                _ = self.closing.wait_for(|closing| *closing) => return None,
                () = self.ticket.recheck.notified() => None,
                _ = self.recheck.tick() => None,
                received = self.events.recv() => Some(received),
            };
            // The rarely taken branches are boxed: an idle stream's future stays small (10,000
            // streams wait here at once).
            let resync = match woke {
                None if Box::pin(self.still_allowed()).await => continue,
                None => return None,
                Some(Ok(event)) if event.kind == EventKind::Resync => event,
                Some(Ok(event)) => return Some(event),
                Some(Err(broadcast::error::RecvError::Lagged(missed))) => {
                    tracing::debug!(group_id = %self.group_id, missed, "live stream fell behind");
                    Event::resync(ResyncReason::Lagged)
                }
                Some(Err(broadcast::error::RecvError::Closed)) => return None,
            };
            // Start over: what the client shows may miss events. The snapshot's id is taken
            // before its query, so the snapshot is at least that recent.
            let id = self.live.hub.position(&self.group_id)?;
            let snapshot = Box::pin(snapshot(&self.live.pool, &self.group_id, id)).await.ok()?;
            self.pending.extend([resync, snapshot]);
        }
    }

    /// Whether the stream's credentials still give access to its group. A database that
    /// cannot answer right now does not end it (the next check will tell).
    async fn still_allowed(&self) -> bool {
        let credentials = match self.live.auth.reauthenticate(&self.presented).await {
            Ok(credentials) => credentials,
            Err(ApiError::ServiceUnavailable(_) | ApiError::Internal(_)) => return true,
            Err(_) => return false,
        };
        let caller = Caller { key: credentials.key, device: credentials.device, ip: self.ip };
        match access::see_group(&self.live.pool, &caller, &self.group_id, "group.stream").await {
            Ok(()) => true,
            Err(ApiError::ServiceUnavailable(_) | ApiError::Internal(_)) => true,
            Err(_) => false,
        }
    }
}
