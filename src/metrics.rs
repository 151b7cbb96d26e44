//! Prometheus metrics: one process-wide recorder (the `metrics` facade), rendered at `/metrics`.
//! Metric names are the ones SRE dashboards expect, without a prefix.

use std::{sync::OnceLock, time::Duration};

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
pub const DB_QUERY_DURATION: &str = "database_query_duration_seconds";
pub const DB_CONNECTIONS_ACTIVE: &str = "database_connections_active";
pub const DB_CONNECTIONS_IDLE: &str = "database_connections_idle";
pub const LOCATIONS_UPLOADED_TOTAL: &str = "locations_uploaded_total";
pub const LOCATIONS_NOT_STORED_TOTAL: &str = "locations_not_stored_total";
pub const DEVICES_REGISTERED_TOTAL: &str = "devices_registered_total";
pub const RATE_LIMITED_TOTAL: &str = "rate_limit_rejections_total";
pub const JOB_DURATION: &str = "background_job_duration_seconds";
pub const JOB_LAST_SUCCESS: &str = "background_job_last_success_timestamp";
pub const JOB_FAILURES_TOTAL: &str = "background_job_failures_total";
pub const INGEST_STATEMENT_REQUESTS: &str = "ingest_statement_requests";
pub const INGEST_QUEUE_WAIT: &str = "ingest_queue_wait_seconds";
pub const SSE_SUBSCRIBERS: &str = "sse_subscribers";
pub const SSE_EVENTS_SENT_TOTAL: &str = "sse_events_sent_total";
pub const SSE_FANOUT_LATENCY: &str = "sse_fanout_latency_seconds";
pub const LIVE_NOTICES_DROPPED_TOTAL: &str = "live_notices_dropped_total";

/// Request latency buckets, in seconds: 1 ms to 5 s, dense around the 50–200 ms a phone notices.
const HTTP_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];
const DB_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
const INGEST_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
/// Fan-out latency buckets, in seconds: 1 ms to 5 s, dense below the 100 ms target.
const FANOUT_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 5.0];
const JOB_BUCKETS: &[f64] = &[0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder on first use and returns its handle. Every app built in one process
/// (tests build many) shares it: the facade allows one global recorder per process.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), HTTP_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(DB_QUERY_DURATION.into()), DB_BUCKETS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(JOB_DURATION.into()), JOB_BUCKETS))
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(INGEST_STATEMENT_REQUESTS.into()), INGEST_BUCKETS)
                })
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(INGEST_QUEUE_WAIT.into()), DB_BUCKETS))
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(SSE_FANOUT_LATENCY.into()), FANOUT_BUCKETS)
                })
                .expect("bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests by method, route template and status");
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by method, route and status"
    );
    describe_histogram!(DB_QUERY_DURATION, Unit::Seconds, "SQL statement latency by operation and table");
    describe_gauge!(DB_CONNECTIONS_ACTIVE, "Pool connections in use");
    describe_gauge!(DB_CONNECTIONS_IDLE, "Pool connections idle");
    describe_counter!(LOCATIONS_UPLOADED_TOTAL, "Locations stored (replays not counted)");
    describe_counter!(
        LOCATIONS_NOT_STORED_TOTAL,
        "Uploaded locations acknowledged without storing, by reason (duplicate, expired)"
    );
    describe_counter!(
        DEVICES_REGISTERED_TOTAL,
        "Successful device registrations, by whether the device was new"
    );
    describe_counter!(RATE_LIMITED_TOTAL, "Requests refused by a rate limit, by scope");
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Background job run time");
    describe_gauge!(JOB_LAST_SUCCESS, "Unix time of the last successful run of a background job");
    describe_counter!(JOB_FAILURES_TOTAL, "Failed background job runs");
    describe_histogram!(
        INGEST_STATEMENT_REQUESTS,
        "Uploads written together by one statement (group commit of uploads without an Idempotency-Key)"
    );
    describe_histogram!(
        INGEST_QUEUE_WAIT,
        Unit::Seconds,
        "How long the oldest upload of a statement waited for a writer"
    );
    describe_gauge!(SSE_SUBSCRIBERS, "Open live streams (GET /api/v1/groups/{group_id}/stream)");
    describe_counter!(SSE_EVENTS_SENT_TOTAL, "Live stream events written, by event type");
    describe_counter!(
        LIVE_NOTICES_DROPPED_TOTAL,
        "Stored fixes whose live notices could not be published (streams were sent resync instead)"
    );
    describe_histogram!(
        SSE_FANOUT_LATENCY,
        Unit::Seconds,
        "From the commit of a stored fix to its event written to a stream"
    );
}

/// Histograms keep their raw samples until the next render; without a scrape they would grow
/// for ever, so they are drained on a timer too.
pub async fn upkeep_forever() {
    let handle = handle();
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

pub fn record_http(method: &str, path: &str, status: u16, elapsed: Duration) {
    let labels = [("method", method.to_owned()), ("path", path.to_owned()), ("status", status.to_string())];
    counter!(HTTP_REQUESTS_TOTAL, &labels).increment(1);
    histogram!(HTTP_REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
}

pub fn record_query(operation: &'static str, table: &'static str, elapsed: Duration) {
    histogram!(DB_QUERY_DURATION, "operation" => operation, "table" => table).record(elapsed.as_secs_f64());
}

pub fn record_pool(size: u32, idle: usize) {
    let idle = idle as f64;
    gauge!(DB_CONNECTIONS_IDLE).set(idle);
    gauge!(DB_CONNECTIONS_ACTIVE).set((f64::from(size) - idle).max(0.0));
}

/// Counts what an upload did with its fixes: stored, or acknowledged without storing.
pub fn locations_uploaded(receipt: &crate::model::UploadReceipt) {
    counter!(LOCATIONS_UPLOADED_TOTAL).increment(receipt.stored_count as u64);
    for (reason, count) in [("duplicate", receipt.duplicate_count), ("expired", receipt.expired_count)] {
        if count > 0 {
            counter!(LOCATIONS_NOT_STORED_TOTAL, "reason" => reason).increment(count as u64);
        }
    }
}

pub fn ingest_statement(requests: usize, queue_wait: Duration) {
    histogram!(INGEST_STATEMENT_REQUESTS).record(requests as f64);
    histogram!(INGEST_QUEUE_WAIT).record(queue_wait.as_secs_f64());
}

pub fn device_registered(created: bool) {
    counter!(DEVICES_REGISTERED_TOTAL, "created" => if created { "true" } else { "false" }).increment(1);
}

pub fn rate_limited(scope: &'static str) {
    counter!(RATE_LIMITED_TOTAL, "scope" => scope).increment(1);
}

pub fn job_finished(job: &'static str, elapsed: Duration, succeeded: bool) {
    histogram!(JOB_DURATION, "job" => job).record(elapsed.as_secs_f64());
    if succeeded {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        gauge!(JOB_LAST_SUCCESS, "job" => job).set(now);
    } else {
        counter!(JOB_FAILURES_TOTAL, "job" => job).increment(1);
    }
}

/// A live stream opened (`true`) or closed.
pub fn sse_stream(opened: bool) {
    if opened {
        gauge!(SSE_SUBSCRIBERS).increment(1.0);
    } else {
        gauge!(SSE_SUBSCRIBERS).decrement(1.0);
    }
}

/// Stored fixes whose live notices were dropped.
pub fn live_notices_dropped(fixes: usize) {
    counter!(LIVE_NOTICES_DROPPED_TOTAL).increment(fixes as u64);
}

/// A live stream event written; `stored_at_micros`: when the fix it carries was stored.
pub fn sse_event_sent(event: &'static str, stored_at_micros: Option<i64>) {
    counter!(SSE_EVENTS_SENT_TOTAL, "event" => event).increment(1);
    if let Some(stored_at) = stored_at_micros {
        let now = chrono::Utc::now().timestamp_micros();
        histogram!(SSE_FANOUT_LATENCY).record((now - stored_at).max(0) as f64 / 1e6);
    }
}
