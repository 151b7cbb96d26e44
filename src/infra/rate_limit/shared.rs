//! The shared limiter: the same GCRA as the local one, evaluated atomically in Redis by a Lua
//! script that uses Redis' own clock, so replicas with skewed clocks still agree.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::{Script, aio::ConnectionManager};

use super::{Decision, Quota, Scope, Subject};

/// Redis gets this long to answer before a request is decided locally instead.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// At most one "Redis unreachable" warning per this many seconds.
const WARN_EVERY_SECS: u64 = 30;

/// KEYS[1]: the key's limiter state (its theoretical arrival time, in µs).
/// ARGV[1]: emission interval (µs); ARGV[2]: limit (burst).
/// Returns {allowed, remaining, retry_after_µs, reset_after_µs}.
const GCRA: &str = r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local emission = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tolerance = emission * (limit - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, 0, tat - now - tolerance, tat - now}
end
local new_tat = tat + emission
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((tolerance - (new_tat - now) + emission) / emission)
return {1, remaining, 0, new_tat - now}
"#;

pub struct RedisLimiter {
    manager: Option<ConnectionManager>,
    script: Script,
    prefix: String,
    connected: AtomicBool,
    last_warning: AtomicU64,
}

impl RedisLimiter {
    /// Connects lazily: the service starts (on its local limiter) even when Redis is down.
    pub fn new(url: &str, prefix: &str) -> Self {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let manager = redis::Client::open(url)
            .and_then(|client| ConnectionManager::new_lazy_with_config(client, config))
            .map_err(
                |err| tracing::error!(error = %err, "invalid Redis configuration; using local rate limits"),
            )
            .ok();
        Self {
            manager,
            script: Script::new(GCRA),
            prefix: prefix.to_owned(),
            connected: AtomicBool::new(false),
            last_warning: AtomicU64::new(0),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The shared decision, or None when Redis cannot decide (the caller then decides locally).
    pub async fn check(&self, scope: Scope, subject: &Subject, quota: Quota) -> Option<Decision> {
        let mut connection = self.manager.clone()?;
        // Keys as before for API keys (`prefix:standard:7`), so limits carry over an upgrade.
        let key = match subject {
            Subject::Key(id) => format!("{}:{}:{id}", self.prefix, scope.name()),
            other => format!("{}:{}:{other}", self.prefix, scope.name()),
        };
        let emission = quota.emission_interval().as_micros() as u64;
        let mut invocation = self.script.key(key);
        invocation.arg(emission).arg(quota.limit);
        let answer = tokio::time::timeout(
            REDIS_TIMEOUT,
            invocation.invoke_async::<(i64, i64, i64, i64)>(&mut connection),
        )
        .await;
        match answer {
            Ok(Ok((allowed, remaining, retry_after, reset_after))) => {
                if !self.connected.swap(true, Ordering::Relaxed) {
                    tracing::info!("shared rate limiting through Redis is active");
                }
                Some(Decision {
                    allowed: allowed == 1,
                    quota,
                    remaining: remaining.clamp(0, i64::from(quota.limit)) as u32,
                    reset_after: micros(reset_after),
                    retry_after: micros(retry_after),
                })
            }
            Ok(Err(err)) => self.unreachable(&err.to_string()),
            Err(_) => self.unreachable("no answer in time"),
        }
    }

    fn unreachable(&self, reason: &str) -> Option<Decision> {
        let was_connected = self.connected.swap(false, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_warning.load(Ordering::Relaxed);
        if was_connected || now.saturating_sub(last) >= WARN_EVERY_SECS {
            self.last_warning.store(now, Ordering::Relaxed);
            tracing::warn!(%reason, "Redis unreachable: rate limits are enforced per replica until it is back");
        }
        None
    }
}

fn micros(value: i64) -> Duration {
    Duration::from_micros(value.max(0) as u64)
}
