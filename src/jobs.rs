//! Periodic maintenance jobs, each on its own task. A run is logged with its duration and
//! result; a failing run is logged and retried at the next tick without touching the service.
//! On shutdown, a run in progress may finish within the grace period.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::{sync::watch, task::JoinSet};
use tracing::Instrument;

use crate::{config::Settings, db, metrics};

/// A periodic job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Removes locations older than the retention period: drops the partitions that are wholly
    /// expired, then deletes the rest in batches.
    LocationRetention,
    /// Creates the daily partitions of `locations` ahead of time.
    PartitionMaintenance,
    /// Refreshes the `group_member_counts` materialized view.
    GroupStatsRefresh,
    /// Deletes idempotency records past their lifetime, and expired invitations.
    IdempotencyExpiry,
    /// Deletes audit log entries past their retention period.
    AuditRetention,
}

impl Job {
    pub const ALL: [Job; 5] = [
        Job::LocationRetention,
        Job::PartitionMaintenance,
        Job::GroupStatsRefresh,
        Job::IdempotencyExpiry,
        Job::AuditRetention,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::LocationRetention => "location_retention",
            Job::PartitionMaintenance => "partition_maintenance",
            Job::GroupStatsRefresh => "group_stats_refresh",
            Job::IdempotencyExpiry => "idempotency_expiry",
            Job::AuditRetention => "audit_retention",
        }
    }

    fn interval(self, settings: &Settings) -> Duration {
        let jobs = &settings.jobs;
        Duration::from_secs(match self {
            Job::LocationRetention => jobs.location_retention_interval_secs,
            Job::PartitionMaintenance => jobs.partition_maintenance_interval_secs,
            Job::GroupStatsRefresh => jobs.group_stats_refresh_interval_secs,
            Job::IdempotencyExpiry => jobs.idempotency_cleanup_interval_secs,
            Job::AuditRetention => jobs.audit_retention_interval_secs,
        })
    }

    /// Runs the job once; returns how many rows it affected (groups, for the view refresh;
    /// partitions created, for the partition maintenance).
    pub async fn run_once(self, pool: &PgPool, settings: &Settings) -> anyhow::Result<u64> {
        let batch = i64::from(settings.jobs.delete_batch_size);
        let days = |value: u32| i32::try_from(value);
        Ok(match self {
            Job::LocationRetention => {
                let days = days(settings.limits.location_retention_days)?;
                db::locations::drop_expired_partitions(pool, days).await?
                    + drain(batch, || db::locations::cleanup_old_batch(pool, days, batch)).await?
            }
            Job::PartitionMaintenance => {
                let today = chrono::Utc::now().date_naive();
                db::locations::create_partitions(pool, today, settings.jobs.location_partitions_ahead_days)
                    .await?
            }
            Job::GroupStatsRefresh => {
                db::devices::refresh_group_stats(pool).await?;
                db::devices::count_group_stats(pool).await?
            }
            Job::IdempotencyExpiry => {
                drain(batch, || db::idempotency::delete_expired(pool, batch)).await?
                    + drain(batch, || db::invites::delete_expired(pool, batch)).await?
            }
            Job::AuditRetention => {
                let days = days(settings.limits.audit_retention_days)?;
                drain(batch, || db::audit::delete_older_than(pool, days, batch)).await?
            }
        })
    }
}

/// Deletes batch after batch (each its own short transaction, so a large backlog never holds
/// long locks) until one comes back short; returns the total.
async fn drain<F, Fut>(batch: i64, mut delete_batch: F) -> sqlx::Result<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<u64>>,
{
    let mut total = 0;
    loop {
        let deleted = delete_batch().await?;
        total += deleted;
        if deleted < batch as u64 {
            return Ok(total);
        }
    }
}

/// The running jobs. Dropping it without [`Scheduler::shutdown`] aborts them.
pub struct Scheduler {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Scheduler {
    /// Starts every job on its own task (nothing when `jobs.enabled` is false).
    pub fn start(pool: PgPool, settings: &Settings) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        if settings.jobs.enabled {
            for job in Job::ALL {
                let (pool, settings, stopped) = (pool.clone(), settings.clone(), stopped.clone());
                tasks.spawn(run_periodically(job, pool, settings, stopped));
            }
        }
        Self { stop, tasks }
    }

    /// Stops scheduling; waits up to `grace` for runs in progress, then abandons them.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::warn!("jobs still running after the grace period; abandoning them");
            self.tasks.abort_all();
        }
    }
}

async fn run_periodically(job: Job, pool: PgPool, settings: Settings, mut stopped: watch::Receiver<bool>) {
    let interval = job.interval(&settings);
    // The first run comes one interval after start-up, not during it.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stopped.changed() => return,
        }
        // Each run is its own root span, so its logs (and later its trace) stand alone.
        let span = tracing::info_span!(
            parent: None,
            "job",
            otel.name = %format_args!("job {}", job.name()),
            job = job.name(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        crate::telemetry::record_trace_ids(&span);
        execute(job, &pool, &settings).instrument(span).await;
    }
}

async fn execute(job: Job, pool: &PgPool, settings: &Settings) {
    tracing::info!("job started");
    let started = Instant::now();
    let result = job.run_once(pool, settings).await;
    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_millis() as u64;
    metrics::job_finished(job.name(), elapsed, result.is_ok());
    match result {
        Ok(rows) => tracing::info!(rows, duration_ms, "job finished"),
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), duration_ms, "job failed; will retry next interval")
        }
    }
}
