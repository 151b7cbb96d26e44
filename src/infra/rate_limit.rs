//! Rate limits (GCRA: a smooth sliding window that also allows a burst of the full limit), each
//! counted per subject: an API key, a device (requests with its token), or a client address.
//! Each replica limits in memory by default; with `security.rate_limit_backend = "redis"` every
//! replica shares one limit through Redis, and falls back to its local limiter (saying so in the
//! logs and `/api/health`) while Redis is unreachable.

mod shared;

use std::{fmt, net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    Quota as GcraQuota, RateLimiter as Gcra,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};

use crate::{
    config::{RateLimitBackend, SecuritySettings},
    error::ApiError,
};

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every request of a standard key without a device token, per key.
    Standard,
    /// Every request of an admin key, per key.
    Admin,
    /// Every request with a device token, per device: the app key that every install shares
    /// never caps the whole user base.
    Device,
    /// Data exports (in addition to the per-minute limit), per key or device.
    Export,
    /// Registrations through an `app` key, per client address.
    Registration,
    /// Wrong invite codes, per key and per client address: codes cannot be guessed.
    InviteFailure,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Standard => "standard",
            Scope::Admin => "admin",
            Scope::Device => "device",
            Scope::Export => "export",
            Scope::Registration => "registration",
            Scope::InviteFailure => "invite_failure",
        }
    }
}

/// Who a limit is counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Key(i64),
    Device(uuid::Uuid),
    Address(IpAddr),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Key(id) => write!(f, "key:{id}"),
            Subject::Device(id) => write!(f, "device:{id}"),
            Subject::Address(ip) => write!(f, "ip:{ip}"),
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

impl Decision {
    /// The 429 for a refused request: `Retry-After` never 0 (a client would come straight back).
    pub fn refusal(&self) -> ApiError {
        ApiError::RateLimited {
            limit: self.quota.limit,
            per: self.quota.period.name(),
            retry_after: (self.retry_after.as_secs_f64().ceil() as u64).max(1),
            reset_after: self.reset_after_secs(),
        }
    }

    /// Seconds until the full limit is available again (`X-RateLimit-Reset`).
    pub fn reset_after_secs(&self) -> u64 {
        self.reset_after.as_secs_f64().ceil() as u64
    }
}

/// Where decisions are being made right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendStatus {
    pub configured: RateLimitBackend,
    /// False while a configured Redis is unreachable (the local limiter is then in use).
    pub connected: bool,
}

type KeyedGcra = Gcra<Subject, DefaultKeyedStateStore<Subject>, DefaultClock, StateInformationMiddleware>;

pub struct RateLimiter {
    standard: (Quota, KeyedGcra),
    admin: (Quota, KeyedGcra),
    device: (Quota, KeyedGcra),
    export: (Quota, KeyedGcra),
    registration: (Quota, KeyedGcra),
    invite_failure: (Quota, KeyedGcra),
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
            device: local(quota(settings.rate_limit_per_minute, Period::Minute)),
            export: local(quota(settings.export_rate_limit_per_hour, Period::Hour)),
            registration: local(quota(settings.registration_rate_limit_per_minute, Period::Minute)),
            invite_failure: local(quota(settings.invite_failures_per_hour, Period::Hour)),
            shared,
        }
    }

    pub fn quota(&self, scope: Scope) -> Quota {
        self.local(scope).0
    }

    /// Counts one request of `subject` against `scope` and says whether it may pass.
    pub async fn check(&self, scope: Scope, subject: Subject) -> Decision {
        let (quota, local) = self.local(scope);
        if let Some(shared) = &self.shared
            && let Some(decision) = shared.check(scope, &subject, *quota).await
        {
            return decision;
        }
        decide_locally(local, *quota, subject)
    }

    /// Forgets the subjects whose limits are back to full (a phone idle for a period): without
    /// this every device, key and address a replica ever saw would stay in memory for good.
    pub fn forget_idle(&self) {
        for (_, limiter) in [
            &self.standard,
            &self.admin,
            &self.device,
            &self.export,
            &self.registration,
            &self.invite_failure,
        ] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Calls [`forget_idle`](Self::forget_idle) every `every` until the limiter is dropped.
    pub fn start_forgetting(limiter: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(limiter);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(limiter) = weak.upgrade() else { return };
                limiter.forget_idle();
            }
        });
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
            Scope::Device => &self.device,
            Scope::Export => &self.export,
            Scope::Registration => &self.registration,
            Scope::InviteFailure => &self.invite_failure,
        }
    }
}

fn local_limiter(quota: Quota) -> KeyedGcra {
    let burst = NonZeroU32::new(quota.limit.max(1)).expect("at least 1");
    let gcra =
        GcraQuota::with_period(quota.emission_interval()).expect("a non-zero period").allow_burst(burst);
    Gcra::keyed(gcra).with_middleware::<StateInformationMiddleware>()
}

fn decide_locally(limiter: &KeyedGcra, quota: Quota, subject: Subject) -> Decision {
    let emission = quota.emission_interval();
    match limiter.check_key(&subject) {
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
        let key = Subject::Key(1);
        let verdicts: Vec<(bool, u32)> =
            (0..4).map(|_| decide_locally(&limiter, quota, key)).map(|d| (d.allowed, d.remaining)).collect();
        assert_eq!(verdicts, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        let refused = decide_locally(&limiter, quota, key);
        assert!(
            refused.retry_after > Duration::from_secs(19) && refused.retry_after <= Duration::from_secs(20)
        );
        assert!(decide_locally(&limiter, quota, Subject::Key(2)).allowed, "another key is unaffected");
        assert!(
            decide_locally(&limiter, quota, Subject::Device(uuid::Uuid::nil())).allowed,
            "a device is counted apart"
        );
    }
}
