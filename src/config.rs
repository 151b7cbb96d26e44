//! Settings, layered: the compiled-in `config/default.toml`, then `config/local.toml` (optional),
//! then `PM__SECTION__KEY` environment variables. A bad value stops start-up with one line
//! that names the key and the problem.

use std::{fmt, path::PathBuf, time::Duration};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub logging: LoggingSettings,
    pub security: SecuritySettings,
    pub limits: LimitsSettings,
    pub telemetry: TelemetrySettings,
    pub jobs: JobSettings,
    pub ingest: IngestSettings,
    pub live: LiveSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    pub header_read_timeout_secs: u64,
    pub max_concurrent_requests: usize,
    pub read_buffer_bytes: usize,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub min_connections: u32,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub create_if_missing: bool,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub cors_origins: Vec<String>,
    pub rate_limit_per_minute: u32,
    pub admin_rate_limit_per_minute: u32,
    pub export_rate_limit_per_hour: u32,
    pub registration_rate_limit_per_minute: u32,
    pub invite_failures_per_hour: u32,
    pub rate_limit_backend: RateLimitBackend,
    pub redis_url: String,
    pub redis_key_prefix: String,
    pub hsts_max_age_secs: u64,
    pub trust_forwarded_for: bool,
    pub api_key_cache_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    Local,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    pub max_devices_per_group: u32,
    pub max_batch_size: u32,
    pub location_retention_days: u32,
    pub max_clock_skew_secs: u32,
    pub audit_retention_days: u32,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub otlp_endpoint: String,
    pub otlp_protocol: OtlpProtocol,
    pub sampling_ratio: f64,
    pub service_name: String,
    pub service_version: String,
    pub environment: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    pub enabled: bool,
    pub location_retention_interval_secs: u64,
    pub group_stats_refresh_interval_secs: u64,
    pub idempotency_cleanup_interval_secs: u64,
    pub audit_retention_interval_secs: u64,
    pub delete_batch_size: u32,
    /// How often the daily partitions of `locations` are created ahead.
    pub partition_maintenance_interval_secs: u64,
    /// Partitions exist for today and this many days after it.
    pub location_partitions_ahead_days: u32,
}

/// Group commit of uploads (see `infra::ingest`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub writers: u32,
    pub max_rows_per_statement: u32,
}

/// Live streams (see `domain::live`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSettings {
    pub heartbeat_secs: u64,
    pub recheck_secs: u64,
    pub replay_events: usize,
    pub replay_window_secs: u64,
    pub buffer_events: usize,
    pub max_streams_per_device: usize,
    pub max_streams_per_key: usize,
    pub max_streams: usize,
}

/// A configuration problem, printed as one line: `configuration error: <key>: <problem>`.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn invalid(key: &str, problem: impl fmt::Display) -> Self {
        Self(format!("`{key}`: {problem}"))
    }
}

impl Settings {
    /// Loads defaults, `config/local.toml` (from `PM_CONFIG_DIR` or `./config`) and the
    /// environment, then checks every value.
    pub fn load() -> Result<Self, ConfigError> {
        let dir = std::env::var_os("PM_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
        let settings: Settings = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .add_source(File::from(dir.join("local.toml")).required(false))
            .add_source(
                Environment::with_prefix("PM")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("security.cors_origins")
                    .try_parsing(true),
            )
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        fn at_least(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
            if value < min {
                return Err(ConfigError::invalid(key, format!("must be at least {min}, got {value}")));
            }
            Ok(())
        }
        if self.server.host.trim().is_empty() {
            return Err(ConfigError::invalid("server.host", "must not be empty"));
        }
        at_least("server.request_timeout_secs", self.server.request_timeout_secs, 1)?;
        at_least("server.header_read_timeout_secs", self.server.header_read_timeout_secs, 1)?;
        at_least("server.max_concurrent_requests", self.server.max_concurrent_requests as u64, 1)?;
        // hyper refuses (panics on) anything smaller.
        at_least("server.read_buffer_bytes", self.server.read_buffer_bytes as u64, 8192)?;
        let db = &self.database;
        if !(db.url.starts_with("postgres://") || db.url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid("database.url", "must be a postgres:// or postgresql:// URL"));
        }
        db.url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .map_err(|e| ConfigError::invalid("database.url", e))?;
        at_least("database.max_connections", db.max_connections.into(), 1)?;
        if db.min_connections > db.max_connections {
            return Err(ConfigError::invalid(
                "database.min_connections",
                format!("must not exceed database.max_connections ({})", db.max_connections),
            ));
        }
        at_least("database.acquire_timeout_secs", db.acquire_timeout_secs, 1)?;
        tracing_subscriber::EnvFilter::try_new(&self.logging.level)
            .map_err(|e| ConfigError::invalid("logging.level", e))?;
        at_least("security.rate_limit_per_minute", self.security.rate_limit_per_minute.into(), 1)?;
        at_least(
            "security.admin_rate_limit_per_minute",
            self.security.admin_rate_limit_per_minute.into(),
            1,
        )?;
        at_least("security.export_rate_limit_per_hour", self.security.export_rate_limit_per_hour.into(), 1)?;
        at_least(
            "security.registration_rate_limit_per_minute",
            self.security.registration_rate_limit_per_minute.into(),
            1,
        )?;
        at_least("security.invite_failures_per_hour", self.security.invite_failures_per_hour.into(), 1)?;
        if self.security.rate_limit_backend == RateLimitBackend::Redis {
            redis::Client::open(self.security.redis_url.as_str())
                .map_err(|e| ConfigError::invalid("security.redis_url", e))?;
        }
        at_least("limits.max_devices_per_group", self.limits.max_devices_per_group.into(), 1)?;
        at_least("limits.max_batch_size", self.limits.max_batch_size.into(), 1)?;
        at_least("limits.location_retention_days", self.limits.location_retention_days.into(), 1)?;
        at_least("limits.max_body_bytes", self.limits.max_body_bytes as u64, 1024)?;
        let telemetry = &self.telemetry;
        if !(0.0..=1.0).contains(&telemetry.sampling_ratio) {
            return Err(ConfigError::invalid("telemetry.sampling_ratio", "must be between 0.0 and 1.0"));
        }
        let endpoint = telemetry.otlp_endpoint.trim();
        let valid_endpoint =
            endpoint.is_empty() || endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !valid_endpoint {
            return Err(ConfigError::invalid(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        if telemetry.service_name.trim().is_empty() {
            return Err(ConfigError::invalid("telemetry.service_name", "must not be empty"));
        }
        let jobs = &self.jobs;
        at_least("jobs.location_retention_interval_secs", jobs.location_retention_interval_secs, 1)?;
        at_least("jobs.group_stats_refresh_interval_secs", jobs.group_stats_refresh_interval_secs, 1)?;
        at_least("jobs.idempotency_cleanup_interval_secs", jobs.idempotency_cleanup_interval_secs, 1)?;
        at_least("jobs.audit_retention_interval_secs", jobs.audit_retention_interval_secs, 1)?;
        at_least("limits.audit_retention_days", self.limits.audit_retention_days.into(), 1)?;
        at_least("jobs.delete_batch_size", jobs.delete_batch_size.into(), 1)?;
        at_least("jobs.partition_maintenance_interval_secs", jobs.partition_maintenance_interval_secs, 1)?;
        // Tomorrow's partition must exist before midnight: fixes may come from clocks ahead.
        at_least("jobs.location_partitions_ahead_days", jobs.location_partitions_ahead_days.into(), 1)?;
        if jobs.location_partitions_ahead_days > 365 {
            return Err(ConfigError::invalid("jobs.location_partitions_ahead_days", "must be at most 365"));
        }
        at_least("ingest.writers", self.ingest.writers.into(), 1)?;
        if self.ingest.writers >= db.max_connections {
            return Err(ConfigError::invalid(
                "ingest.writers",
                format!(
                    "must be below database.max_connections ({}), so other requests always get a connection",
                    db.max_connections
                ),
            ));
        }
        at_least("ingest.max_rows_per_statement", self.ingest.max_rows_per_statement.into(), 1)?;
        let live = &self.live;
        at_least("live.heartbeat_secs", live.heartbeat_secs, 1)?;
        if live.heartbeat_secs > MAX_HEARTBEAT_SECS {
            return Err(ConfigError::invalid(
                "live.heartbeat_secs",
                format!("must be at most {MAX_HEARTBEAT_SECS} (proxies drop silent connections)"),
            ));
        }
        at_least("live.recheck_secs", live.recheck_secs, 1)?;
        at_least("live.replay_window_secs", live.replay_window_secs, 1)?;
        at_least("live.buffer_events", live.buffer_events as u64, 1)?;
        at_least("live.max_streams_per_device", live.max_streams_per_device as u64, 1)?;
        at_least("live.max_streams_per_key", live.max_streams_per_key as u64, 1)?;
        at_least("live.max_streams", live.max_streams as u64, 1)?;
        Ok(())
    }
}

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }
}

/// The longest silence a live stream allows itself (`live.heartbeat_secs`).
pub const MAX_HEARTBEAT_SECS: u64 = 25;

impl LiveSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }

    pub fn recheck(&self) -> Duration {
        Duration::from_secs(self.recheck_secs)
    }

    pub fn replay_window(&self) -> Duration {
        Duration::from_secs(self.replay_window_secs)
    }
}

impl LimitsSettings {
    pub fn location_retention(&self) -> chrono::Duration {
        chrono::Duration::days(self.location_retention_days.into())
    }

    pub fn max_clock_skew(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.max_clock_skew_secs.into())
    }
}

impl SecuritySettings {
    pub fn api_key_cache(&self) -> Duration {
        Duration::from_secs(self.api_key_cache_secs)
    }

    /// Configured CORS origins without blanks (an empty environment value means none).
    pub fn cors_origins(&self) -> Vec<&str> {
        self.cors_origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()).collect()
    }
}

impl DatabaseSettings {
    /// The URL with its password replaced, safe for logs and error messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// The database URL holds a password: it never reaches a log line through `{:?}`.
impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.redacted_url())
            .field("min_connections", &self.min_connections)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_secs", &self.acquire_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("create_if_missing", &self.create_if_missing)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_validate() {
        let settings: Settings = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .build()
            .and_then(Config::try_deserialize)
            .expect("defaults deserialize");
        settings.validate().expect("defaults are valid");
        assert_eq!(settings.limits.max_devices_per_group, 20);
        assert_eq!(settings.limits.max_batch_size, 50);
    }

    /// `.env.example` documents every setting: a new key in default.toml fails here until it is.
    #[test]
    fn env_example_documents_every_setting() {
        let example = include_str!("../.env.example");
        let defaults: toml::Table = DEFAULTS.parse().expect("default.toml parses");
        for (section, keys) in &defaults {
            for key in keys.as_table().expect("sections are tables").keys() {
                let variable = format!("PM__{}__{}=", section.to_uppercase(), key.to_uppercase());
                assert!(example.contains(&variable), ".env.example lacks {variable}");
            }
        }
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/d"), "postgres://u:***@h:5432/d");
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
    }
}
