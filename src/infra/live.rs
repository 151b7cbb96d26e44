//! This replica's fan-out of live events to its streams (`GET /api/v1/groups/{group_id}/stream`).
//!
//! Notices arrive once per replica, on the listener's connection (`infra::listener`); the hub
//! turns each into an [`Event`] (its JSON written once, whatever the number of streams) and hands
//! it to the group's streams through a bounded [`broadcast`] channel. A stream that falls more
//! than `buffer` events behind loses the oldest ones and is told so (`Lagged`): it then starts
//! over from a snapshot, so a slow reader costs a bounded amount of memory, never a growing
//! queue.
//!
//! For `Last-Event-ID` resumption each group with a stream keeps its latest events (at most
//! `replay_events`, none older than `replay_window`); a group nobody has streamed for
//! `replay_window` is forgotten, so the hub's memory follows the streams, not the traffic.
//! Notices for groups without a channel are dropped on arrival.
//!
//! The hub also keeps the register of open streams by holder (device and key): for the caps on
//! concurrent streams, and to wake a holder's streams when its credentials change (they then
//! check them again, and end if they no longer hold).

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{Notify, broadcast, watch};
use uuid::Uuid;

use crate::{
    metrics,
    model::{Invalidation, LiveNotice, ResyncEvent, ResyncReason},
};

/// How much a hub keeps.
#[derive(Debug, Clone, Copy)]
pub struct HubSettings {
    /// Events kept per group for resumption.
    pub replay_events: usize,
    /// Age beyond which events are no longer replayed, and idle groups are forgotten.
    pub replay_window: Duration,
    /// Events a stream may fall behind before it is resynchronised.
    pub buffer: usize,
}

/// What a stream sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The group as its listing shows it (each stream queries its own).
    Snapshot,
    Location,
    Member,
    Resync,
}

impl EventKind {
    /// The SSE `event:` name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Snapshot => "snapshot",
            EventKind::Location => "location",
            EventKind::Member => "member",
            EventKind::Resync => "resync",
        }
    }
}

/// One event, shared by every stream of its group.
#[derive(Debug)]
pub struct Event {
    /// `L<row id>` or `M<sequence>`: the same on every replica. None for a resync.
    pub id: Option<String>,
    pub kind: EventKind,
    /// The JSON payload (`data:`).
    pub data: String,
    /// When the storing statement ran (microseconds since the epoch): fixes only.
    pub stored_at_micros: Option<i64>,
    received: Instant,
}

impl Event {
    /// An event received now.
    pub fn new(id: Option<String>, kind: EventKind, data: String, stored_at_micros: Option<i64>) -> Event {
        Event { id, kind, data, stored_at_micros, received: Instant::now() }
    }

    /// "Start over": no id, so a client that reconnects before the snapshot that follows
    /// still resumes from the last event it had.
    pub fn resync(reason: ResyncReason) -> Arc<Event> {
        let data = serde_json::to_string(&ResyncEvent { reason }).expect("serializes");
        Arc::new(Event::new(None, EventKind::Resync, data, None))
    }
}

/// Whose a stream is: the caps count, and credential changes reach, streams by holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    Device(Uuid),
    Key(i64),
}

/// Where a new stream starts.
#[derive(Debug)]
pub enum Start {
    /// These events follow the client's `Last-Event-ID`: send them, then what arrives.
    Resume(Vec<Arc<Event>>),
    /// The client needs a snapshot (first connection, or it missed too much). The snapshot's
    /// id: a later `Last-Event-ID` resumes after it.
    Snapshot { id: String },
}

/// A new stream's channel and where it starts.
pub struct Subscription {
    pub events: broadcast::Receiver<Arc<Event>>,
    pub start: Start,
}

/// Why a stream may not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This holder has `limit` streams open already.
    Holder { holder: Holder, limit: usize },
    /// This replica has `limit` streams open.
    Replica { limit: usize },
    /// The server is shutting down.
    Closing,
}

pub struct Hub {
    settings: HubSettings,
    groups: Mutex<HashMap<String, Arc<Group>>>,
    streams: Mutex<Streams>,
    closing: watch::Sender<bool>,
}

struct Group {
    sender: broadcast::Sender<Arc<Event>>,
    /// Held while publishing and subscribing, so a new stream's replay and channel meet exactly.
    replay: Mutex<Replay>,
}

struct Replay {
    events: VecDeque<Arc<Event>>,
    /// The id a snapshot gets while nothing is buffered; valid while `events` holds every event
    /// published since it was made (until the first eviction).
    origin: Option<String>,
    /// Since when the group has had no stream.
    idle_since: Option<Instant>,
}

#[derive(Default)]
struct Streams {
    next: u64,
    open: usize,
    by_holder: HashMap<Holder, HashMap<u64, Arc<Notify>>>,
}

/// An open stream's place in the register; dropping it frees the place.
pub struct Ticket {
    hub: Weak<Hub>,
    id: u64,
    holders: Vec<Holder>,
    /// Woken when a holder's credentials changed.
    pub recheck: Arc<Notify>,
}

static ORIGINS: AtomicU64 = AtomicU64::new(0);

/// A snapshot id no other replica or moment shares.
fn new_origin() -> String {
    let count = ORIGINS.fetch_add(1, Ordering::Relaxed);
    format!("S{:x}{count:x}", rand::random::<u32>())
}

impl Hub {
    /// A hub, with a task that forgets idle groups (it ends when the hub is dropped).
    pub fn start(settings: HubSettings) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            settings,
            groups: Mutex::new(HashMap::new()),
            streams: Mutex::new(Streams::default()),
            closing: watch::channel(false).0,
        });
        let weak = Arc::downgrade(&hub);
        let every = (settings.replay_window / 5).clamp(Duration::from_millis(100), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                match weak.upgrade() {
                    Some(hub) => hub.sweep(),
                    None => return,
                }
            }
        });
        hub
    }

    /// Delivers a notice to the streams of the groups it concerns.
    pub fn publish(&self, notice: LiveNotice) {
        match notice {
            LiveNotice::Locations(notices) => {
                for fix in notices.fixes {
                    let Some(group) = self.group(&fix.group_id) else { continue };
                    let event = Event::new(
                        Some(format!("L{}", fix.id)),
                        EventKind::Location,
                        serde_json::to_string(&fix.event).expect("serializes"),
                        Some(notices.stored_at),
                    );
                    group.publish(Arc::new(event), &self.settings);
                }
            }
            LiveNotice::Resync => self.interrupted(),
            LiveNotice::Member(notice) => {
                let Some(group) = self.group(&notice.group_id) else { return };
                let event = Event::new(
                    Some(format!("M{}", notice.id)),
                    EventKind::Member,
                    serde_json::to_string(&notice.event).expect("serializes"),
                    None,
                );
                group.publish(Arc::new(event), &self.settings);
            }
        }
    }

    /// Notices may have been missed (the listener lost its connection): every stream starts
    /// over from a snapshot, and nothing buffered so far can be trusted for resumption.
    pub fn interrupted(&self) {
        let groups: Vec<Arc<Group>> = self.groups.lock().expect("not poisoned").values().cloned().collect();
        for group in groups {
            let mut replay = group.replay.lock().expect("not poisoned");
            replay.events.clear();
            replay.origin = Some(new_origin());
            let _ = group.sender.send(Event::resync(ResyncReason::Interrupted));
        }
    }

    /// A new stream of `group_id`, resuming after `last_event_id` when this replica still holds
    /// everything since it.
    pub fn subscribe(&self, group_id: &str, last_event_id: Option<&str>) -> Subscription {
        // The map stays locked until the stream holds a receiver, so the sweep cannot forget
        // the group in between.
        let mut groups = self.groups.lock().expect("not poisoned");
        let group = groups.entry(group_id.to_owned()).or_insert_with(|| {
            Arc::new(Group {
                sender: broadcast::channel(self.settings.buffer.max(1)).0,
                replay: Mutex::new(Replay {
                    events: VecDeque::new(),
                    origin: Some(new_origin()),
                    idle_since: None,
                }),
            })
        });
        let mut replay = group.replay.lock().expect("not poisoned");
        replay.expire(&self.settings);
        replay.idle_since = None;
        let events = group.sender.subscribe();
        let start = match last_event_id.and_then(|id| replay.after(id)) {
            Some(missed) => Start::Resume(missed),
            None => Start::Snapshot { id: replay.latest_id() },
        };
        Subscription { events, start }
    }

    /// The id a snapshot of `group_id` taken now is up to date with (None: no stream has
    /// subscribed to the group).
    pub fn position(&self, group_id: &str) -> Option<String> {
        let group = self.group(group_id)?;
        let mut replay = group.replay.lock().expect("not poisoned");
        Some(replay.latest_id())
    }

    /// Takes a place for a stream of `holders`, each allowed `limit` open streams, the replica
    /// `replica_limit`.
    pub fn register(
        self: &Arc<Self>,
        holders: Vec<(Holder, usize)>,
        replica_limit: usize,
    ) -> Result<Ticket, Refused> {
        if *self.closing.borrow() {
            return Err(Refused::Closing);
        }
        let mut streams = self.streams.lock().expect("not poisoned");
        if streams.open >= replica_limit {
            return Err(Refused::Replica { limit: replica_limit });
        }
        for &(holder, limit) in &holders {
            if streams.by_holder.get(&holder).map_or(0, HashMap::len) >= limit {
                return Err(Refused::Holder { holder, limit });
            }
        }
        streams.next += 1;
        streams.open += 1;
        let id = streams.next;
        let recheck = Arc::new(Notify::new());
        for &(holder, _) in &holders {
            streams.by_holder.entry(holder).or_default().insert(id, recheck.clone());
        }
        metrics::sse_stream(true);
        Ok(Ticket {
            hub: Arc::downgrade(self),
            id,
            holders: holders.into_iter().map(|(holder, _)| holder).collect(),
            recheck,
        })
    }

    /// A credential changed: its streams check theirs again.
    pub fn invalidated(&self, invalidation: Invalidation) {
        let holder = match invalidation {
            Invalidation::ApiKey(id) => Holder::Key(id),
            Invalidation::Device(id) => Holder::Device(id),
        };
        let streams = self.streams.lock().expect("not poisoned");
        for recheck in streams.by_holder.get(&holder).into_iter().flat_map(HashMap::values) {
            recheck.notify_one();
        }
    }

    /// Ends every stream (shutdown); no new one opens.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Changes to true when the server shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Streams open on this replica.
    pub fn open_streams(&self) -> usize {
        self.streams.lock().expect("not poisoned").open
    }

    fn group(&self, group_id: &str) -> Option<Arc<Group>> {
        self.groups.lock().expect("not poisoned").get(group_id).cloned()
    }

    fn sweep(&self) {
        let now = Instant::now();
        let window = self.settings.replay_window;
        self.groups.lock().expect("not poisoned").retain(|_, group| {
            let mut replay = group.replay.lock().expect("not poisoned");
            replay.expire(&self.settings);
            if group.sender.receiver_count() > 0 {
                replay.idle_since = None;
                return true;
            }
            let idle_since = *replay.idle_since.get_or_insert(now);
            now.duration_since(idle_since) < window
        });
    }

    fn release(&self, ticket: &Ticket) {
        let mut streams = self.streams.lock().expect("not poisoned");
        streams.open -= 1;
        for holder in &ticket.holders {
            if let Some(tickets) = streams.by_holder.get_mut(holder) {
                tickets.remove(&ticket.id);
                if tickets.is_empty() {
                    streams.by_holder.remove(holder);
                }
            }
        }
        metrics::sse_stream(false);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.release(self);
        }
    }
}

impl Group {
    fn publish(&self, event: Arc<Event>, settings: &HubSettings) {
        let mut replay = self.replay.lock().expect("not poisoned");
        replay.events.push_back(event.clone());
        replay.expire(settings);
        // No receiver is not an error: the group is kept for resumption a while.
        let _ = self.sender.send(event);
    }
}

impl Replay {
    /// Drops events beyond the count or age limits; resumption from before them is over.
    fn expire(&mut self, settings: &HubSettings) {
        let now = Instant::now();
        while let Some(oldest) = self.events.front() {
            let too_many = self.events.len() > settings.replay_events;
            let too_old = now.duration_since(oldest.received) > settings.replay_window;
            if !(too_many || too_old) {
                break;
            }
            self.events.pop_front();
            self.origin = None;
        }
    }

    /// The events after `id`, if everything since it is here.
    fn after(&self, id: &str) -> Option<Vec<Arc<Event>>> {
        if self.origin.as_deref() == Some(id) {
            return Some(self.events.iter().cloned().collect());
        }
        let position = self.events.iter().rposition(|event| event.id.as_deref() == Some(id))?;
        Some(self.events.iter().skip(position + 1).cloned().collect())
    }

    /// What a snapshot taken now is up to date with.
    fn latest_id(&mut self) -> String {
        match self.events.back().and_then(|event| event.id.clone()) {
            Some(id) => id,
            None => self.origin.get_or_insert_with(new_origin).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LocationEvent, LocationNotice, LocationNotices};

    fn settings() -> HubSettings {
        HubSettings { replay_events: 3, replay_window: Duration::from_secs(300), buffer: 8 }
    }

    fn fix(id: i64, group: &str) -> LiveNotice {
        LiveNotice::Locations(LocationNotices {
            stored_at: 0,
            fixes: vec![LocationNotice {
                id,
                group_id: group.into(),
                event: LocationEvent {
                    device_id: Uuid::nil(),
                    latitude: 1.0,
                    longitude: 2.0,
                    accuracy: 3.0,
                    timestamp: chrono::Utc::now(),
                    altitude: None,
                    bearing: None,
                    speed: None,
                    provider: None,
                    battery_level: None,
                    network_type: None,
                },
            }],
        })
    }

    fn ids(events: &[Arc<Event>]) -> Vec<&str> {
        events.iter().map(|event| event.id.as_deref().unwrap_or("-")).collect()
    }

    #[tokio::test]
    async fn resumes_inside_the_window_and_snapshots_beyond_it() {
        let hub = Hub::start(settings());
        hub.publish(fix(1, "family")); // no channel yet: dropped
        let Start::Snapshot { id: origin } = hub.subscribe("family", None).start else { panic!() };
        assert!(origin.starts_with('S'));
        hub.publish(fix(2, "family"));
        hub.publish(fix(3, "family"));
        hub.publish(fix(9, "other"));
        let Start::Resume(missed) = hub.subscribe("family", Some(&origin)).start else { panic!() };
        assert_eq!(ids(&missed), ["L2", "L3"]);
        let Start::Resume(missed) = hub.subscribe("family", Some("L2")).start else { panic!() };
        assert_eq!(ids(&missed), ["L3"]);
        let Start::Snapshot { id } = hub.subscribe("family", Some("L1")).start else { panic!() };
        assert_eq!(id, "L3", "a snapshot is up to date with the newest event");
        hub.publish(fix(4, "family"));
        hub.publish(fix(5, "family"));
        // Three kept: L2 was evicted, and with it the origin.
        assert!(matches!(hub.subscribe("family", Some("L2")).start, Start::Snapshot { .. }));
        assert!(matches!(hub.subscribe("family", Some(&origin)).start, Start::Snapshot { .. }));
        let Start::Resume(missed) = hub.subscribe("family", Some("L3")).start else { panic!() };
        assert_eq!(ids(&missed), ["L4", "L5"]);
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_is_told_and_loses_only_the_oldest() {
        let hub = Hub::start(settings());
        let mut stream = hub.subscribe("family", None).events;
        for id in 1..=20 {
            hub.publish(fix(id, "family"));
        }
        assert!(matches!(stream.recv().await, Err(broadcast::error::RecvError::Lagged(12))));
        assert_eq!(stream.recv().await.unwrap().id.as_deref(), Some("L13"));
    }

    #[tokio::test]
    async fn caps_count_per_holder_and_places_are_freed() {
        let hub = Hub::start(settings());
        let phone = Holder::Device(Uuid::nil());
        let first = hub.register(vec![(phone, 2), (Holder::Key(1), 100)], 10).unwrap();
        let _second = hub.register(vec![(phone, 2), (Holder::Key(1), 100)], 10).unwrap();
        assert_eq!(
            hub.register(vec![(phone, 2)], 10).err(),
            Some(Refused::Holder { holder: phone, limit: 2 })
        );
        drop(first);
        assert_eq!(hub.open_streams(), 1);
        let _third = hub.register(vec![(phone, 2)], 10).unwrap();
        assert_eq!(hub.register(vec![(Holder::Key(2), 5)], 2).err(), Some(Refused::Replica { limit: 2 }));
        hub.close();
        assert_eq!(hub.register(vec![(Holder::Key(2), 5)], 10).err(), Some(Refused::Closing));
    }

    #[tokio::test]
    async fn a_credential_change_wakes_its_holders_streams() {
        let hub = Hub::start(settings());
        let phone = Uuid::new_v4();
        let ticket = hub.register(vec![(Holder::Device(phone), 2), (Holder::Key(7), 100)], 10).unwrap();
        hub.invalidated(Invalidation::ApiKey(7));
        tokio::time::timeout(Duration::from_secs(1), ticket.recheck.notified()).await.unwrap();
        hub.invalidated(Invalidation::Device(phone));
        tokio::time::timeout(Duration::from_secs(1), ticket.recheck.notified()).await.unwrap();
    }
}
