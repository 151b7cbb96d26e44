//! Per-API-key rate limits (GCRA: a smooth sliding window that also allows a burst of the full
//! limit). Each replica limits in memory by default; with `security.rate_limit_backend =
//! "redis"` every replica shares one limit through Redis, and falls back to its local limiter
//! (saying so in the logs and `/api/health`) while Redis is unreachable.

mod shared;

use std::{num::NonZeroU32, time::Duration};

use governor::{
    Quota as GcraQuota, RateLimiter as Gcra,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

use crate::config::{RateLimitBackend, SecuritySettings};

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every authenticated request of a standard key.
    Standard,
    /// Every authenticated request of an admin key.
    Admin,
    /// Data exports (in addition to the per-minute limit).
    Export,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Standard => "standard",
            Scope::Admin => "admin",
            Scope::Export => "export",
        }
    }
}

/// `limit` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period: Period,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Minute,
    Hour,
}

impl Period {
    pub fn name(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
        }
    }

    fn duration(self) -> Duration {
        match self {
            Period::Minute => Duration::from_secs(60),
            Period::Hour => Duration::from_secs(3600),
        }
    }
}

impl Quota {
    /// Time between two requests once the burst is spent.
    fn emission_interval(self) -> Duration {
        self.period.duration() / self.limit.max(1)
    }
}

/// The verdict on one request, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub quota: Quota,
    /// Requests still allowed right now.
    pub remaining: u32,
    /// Until the full limit is available again.
    pub reset_after: Duration,
    /// When refused: until the next request may pass.
    pub retry_after: Duration,
}

/// Where decisions are being made right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStatus {
    pub configured: RateLimitBackend,
    /// False while a configured Redis is unreachable (the local limiter is then in use).
    pub connected: bool,
}

type KeyedGcra = Gcra<i64, DefaultKeyedStateStore<i64>, DefaultClock, StateInformationMiddleware>;

pub struct RateLimiter {
    standard: (Quota, KeyedGcra),
    admin: (Quota, KeyedGcra),
    export: (Quota, KeyedGcra),
    shared: Option<shared::RedisLimiter>,
}

impl RateLimiter {
    pub fn new(settings: &SecuritySettings) -> Self {
        let quota = |limit, period| Quota { limit, period };
        let local = |q: Quota| (q, local_limiter(q));
        let shared = match settings.rate_limit_backend {
            RateLimitBackend::Local => None,
            RateLimitBackend::Redis => {
                Some(shared::RedisLimiter::new(&settings.redis_url, &settings.redis_key_prefix))
            }
        };
        Self {
            standard: local(quota(settings.rate_limit_per_minute, Period::Minute)),
            admin: local(quota(settings.admin_rate_limit_per_minute, Period::Minute)),
            export: local(quota(settings.export_rate_limit_per_hour, Period::Hour)),
            shared,
        }
    }

    pub fn quota(&self, scope: Scope) -> Quota {
        self.local(scope).0
    }

    /// Counts one request of `key_id` against `scope` and says whether it may pass.
    pub async fn check(&self, scope: Scope, key_id: i64) -> Decision {
        let (quota, local) = self.local(scope);
        if let Some(shared) = &self.shared
            && let Some(decision) = shared.check(scope, key_id, *quota).await
        {
            return decision;
        }
        decide_locally(local, *quota, key_id)
    }

    pub fn status(&self) -> BackendStatus {
        match &self.shared {
            None => BackendStatus { configured: RateLimitBackend::Local, connected: true },
            Some(shared) => {
                BackendStatus { configured: RateLimitBackend::Redis, connected: shared.is_connected() }
            }
        }
    }

    fn local(&self, scope: Scope) -> &(Quota, KeyedGcra) {
        match scope {
            Scope::Standard => &self.standard,
            Scope::Admin => &self.admin,
            Scope::Export => &self.export,
        }
    }
}

fn local_limiter(quota: Quota) -> KeyedGcra {
    let burst = NonZeroU32::new(quota.limit.max(1)).expect("at least 1");
    let gcra =
        GcraQuota::with_period(quota.emission_interval()).expect("a non-zero period").allow_burst(burst);
    Gcra::keyed(gcra).with_middleware::<StateInformationMiddleware>()
}

fn decide_locally(limiter: &KeyedGcra, quota: Quota, key_id: i64) -> Decision {
    let emission = quota.emission_interval();
    match limiter.check_key(&key_id) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity().min(quota.limit);
            Decision {
                allowed: true,
                quota,
                remaining,
                reset_after: emission * (quota.limit - remaining),
                retry_after: Duration::ZERO,
            }
        }
        Err(not_until) => {
            let retry_after = not_until.wait_time_from(limiter.clock().now());
            Decision { allowed: false, quota, remaining: 0, reset_after: emission * quota.limit, retry_after }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_per_key() {
        let quota = Quota { limit: 3, period: Period::Minute };
        let limiter = local_limiter(quota);
        let verdicts: Vec<(bool, u32)> =
            (0..4).map(|_| decide_locally(&limiter, quota, 1)).map(|d| (d.allowed, d.remaining)).collect();
        assert_eq!(verdicts, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        let refused = decide_locally(&limiter, quota, 1);
        assert!(
            refused.retry_after > Duration::from_secs(19) && refused.retry_after <= Duration::from_secs(20)
        );
        assert!(decide_locally(&limiter, quota, 2).allowed, "another key is unaffected");
    }
}
