//! Per-replica caches of successful credential lookups (API keys, device tokens), so an
//! authenticated request does not cost a database round trip. A key deactivated or rotated, or a
//! device deactivated, erased, moved or given a new token, elsewhere (the CLI, another replica)
//! is dropped from the cache within a second, by a notice over PostgreSQL `LISTEN`/`NOTIFY`
//! (`infra::listener`). While that listener is connected, an entry is trusted for
//! [`LISTENING_TTL`]; while it is reconnecting (notices could be missed), for the configured TTL
//! only, and everything cached before the connection was lost is dropped. An API key's expiry
//! (`expires_at`) is checked exactly on every use. Failed lookups are never cached. Entries are
//! keyed by the credential's SHA-256, never the credential.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;

use crate::model::{ApiKey, DeviceCredential};

/// What a cache holds: a credential's resolution, which may expire on its own.
pub trait Cached: Clone {
    /// Whether the credential stopped working by itself (a key past its `expires_at`).
    fn expired(&self) -> bool {
        false
    }
}

impl Cached for ApiKey {
    fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Utc::now())
    }
}

impl Cached for DeviceCredential {}

/// API keys by hash.
pub type KeyCache = CredentialCache<ApiKey>;
/// Device tokens by hash.
pub type TokenCache = CredentialCache<DeviceCredential>;

/// Beyond this many cached credentials, stale entries are dropped, and everything if more than
/// half is still fresh: the next sweep is then at least half the cap of inserts away, so
/// sweeping costs O(1) per insert (a sweep that freed a few entries would otherwise run again
/// on the next insert, as `infra::last_seen`'s fixed threshold did). Device tokens are one per phone: at 200,000 phones a replica sees ~15,000 distinct
/// tokens within the trust period (polling maps), so 10,000 emptied the cache every few
/// seconds and sent those phones' requests to the database. 100,000 entries are ~20 MiB.
const MAX_ENTRIES: usize = 100_000;
/// How long an entry is trusted while invalidations arrive: changes reach the cache by notice,
/// so this only bounds how long a change made behind the service's back (raw SQL) can go
/// unnoticed.
pub const LISTENING_TTL: Duration = Duration::from_secs(300);

pub struct CredentialCache<T> {
    /// Configured; zero disables the cache.
    ttl: Duration,
    /// Whether the notice listener is connected.
    listening: AtomicBool,
    entries: Mutex<HashMap<String, Entry<T>>>,
}

struct Entry<T> {
    value: T,
    fetched: Instant,
    /// When this replica last recorded `last_used_at` for the key.
    recorded_use: Option<Instant>,
}

impl<T: Cached> CredentialCache<T> {
    /// A TTL of zero disables the cache (every request looks the key up).
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, listening: AtomicBool::new(false), entries: Mutex::new(HashMap::new()) }
    }

    /// No cache: every request looks its key up (the CLI, which authenticates nothing).
    pub fn disabled() -> Self {
        Self::new(Duration::ZERO)
    }

    /// The cached value for this hash, if fresh and not expired.
    pub fn get(&self, hash: &str) -> Option<T> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut entries = self.lock();
        let entry = entries.get(hash)?;
        if entry.value.expired() || entry.fetched.elapsed() >= self.trusted_for() {
            entries.remove(hash);
            return None;
        }
        Some(entry.value.clone())
    }

    pub fn insert(&self, hash: String, value: T) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            let trusted = self.trusted_for();
            entries.retain(|_, entry| entry.fetched.elapsed() < trusted);
            if entries.len() > MAX_ENTRIES / 2 {
                entries.clear();
            }
        }
        let recorded_use = entries.get(&hash).and_then(|entry| entry.recorded_use);
        entries.insert(hash, Entry { value, fetched: Instant::now(), recorded_use });
    }

    /// Forgets every entry `stale` picks (a key or device changed elsewhere).
    pub fn forget(&self, stale: impl Fn(&T) -> bool) {
        self.lock().retain(|_, entry| !stale(&entry.value));
    }

    /// The notice listener connected (`true`) or lost its connection (`false`: notices
    /// may have been missed, so everything cached is dropped).
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Relaxed);
        if !listening {
            self.lock().clear();
        }
    }

    fn trusted_for(&self) -> Duration {
        if self.listening.load(Ordering::Relaxed) { self.ttl.max(LISTENING_TTL) } else { self.ttl }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this replica should record a use of the key now (at most once per `every`);
    /// without the cache, the caller decides from the database's `last_used_at`.
    pub fn should_record_use(&self, hash: &str, every: Duration) -> Option<bool> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut entries = self.lock();
        let entry = entries.get_mut(hash)?;
        let due = entry.recorded_use.is_none_or(|at| at.elapsed() >= every);
        if due {
            entry.recorded_use = Some(Instant::now());
        }
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(expires_in: Option<chrono::Duration>) -> ApiKey {
        ApiKey {
            id: 1,
            prefix: "pm_abcde".into(),
            name: "k".into(),
            is_active: true,
            is_admin: false,
            scope: crate::model::KeyScope::Full,
            created_at: Utc::now(),
            last_used_at: None,
            expires_at: expires_in.map(|d| Utc::now() + d),
        }
    }

    #[test]
    fn serves_fresh_entries_only() {
        let cache = KeyCache::new(Duration::from_millis(50));
        cache.insert("h".into(), key(None));
        assert!(cache.get("h").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("h").is_none(), "past the TTL the key is looked up again");
    }

    #[test]
    fn expiry_is_exact_even_when_cached() {
        let cache = KeyCache::new(Duration::from_secs(60));
        cache.insert("h".into(), key(Some(chrono::Duration::milliseconds(30))));
        assert!(cache.get("h").is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get("h").is_none());
    }

    #[test]
    fn notices_forget_keys_and_a_lost_listener_forgets_everything() {
        let cache = KeyCache::new(Duration::from_millis(50));
        cache.set_listening(true);
        cache.insert("h".into(), key(None));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("h").is_some(), "trusted beyond the TTL while notices arrive");
        cache.forget(|key| key.id == 1);
        assert!(cache.get("h").is_none(), "a notice drops the key");
        cache.insert("h".into(), key(None));
        cache.set_listening(false);
        assert!(cache.get("h").is_none(), "notices may have been missed");
        cache.insert("h".into(), key(None));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("h").is_none(), "back to the TTL while reconnecting");
    }

    #[test]
    fn a_zero_ttl_disables_it() {
        let cache = KeyCache::new(Duration::ZERO);
        cache.insert("h".into(), key(None));
        assert!(cache.get("h").is_none());
        assert_eq!(cache.should_record_use("h", Duration::from_secs(60)), None);
    }

    #[test]
    fn records_use_once_per_interval() {
        let cache = KeyCache::new(Duration::from_secs(60));
        cache.insert("h".into(), key(None));
        assert_eq!(cache.should_record_use("h", Duration::from_secs(60)), Some(true));
        assert_eq!(cache.should_record_use("h", Duration::from_secs(60)), Some(false));
        cache.insert("h".into(), key(None));
        assert_eq!(cache.should_record_use("h", Duration::from_secs(60)), Some(false), "survives a refresh");
    }
}
