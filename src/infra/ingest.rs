//! Group commit for uploads.
//!
//! A location upload is one small INSERT, and on a busy server most of PostgreSQL's work per
//! request is not the row but the statement around it: parse, plan, snapshot, commit record,
//! WAL flush. So uploads are handed to a few writer tasks instead of each taking a connection:
//! a writer takes every upload waiting in the queue (up to `max_rows_per_statement` rows),
//! stores them with ONE statement (one commit), and answers each request. While it writes, the
//! next uploads queue up for the next statement, so statements grow with the load and a quiet
//! server still writes each upload at once (a statement of one).
//!
//! Uploads with an `Idempotency-Key` share the statement too: it claims their keys and inserts
//! only the fixes of uploads that are unkeyed or whose key it claimed; a second statement in the
//! same transaction stores each claimed key's answer (which counts the fixes the first one
//! stored). A key held by a live record is left alone: its upload stores nothing and replays
//! that record's answer.
//!
//! What each request keeps: it answers only after its rows are committed (nothing is
//! acknowledged that a crash could lose); its rows are stored all together or not at all (one
//! transaction); a fix already stored for its device and instant is skipped, not an error
//! (`ON CONFLICT DO NOTHING` on the unique index), and counted as a duplicate; an unknown or
//! inactive device gets its 404 alone, the others in the statement are stored. When a shared
//! statement fails for any other reason (a device deleted meanwhile trips the foreign key, say),
//! each upload in it is retried in a statement of its own, so one request's problem never
//! becomes another's error. A request whose client has gone away before its turn is skipped.
//!
//! Which request stored a row is known from the rows the statement returns, so a statement
//! never carries two requests with the same fix (device and instant) or the same key: a request
//! that would repeat one waits for the next statement.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Instant,
};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    config::IngestSettings,
    db::{self, locations::Batch},
    error::{ApiError, ApiResult, ResultExt},
    infra::publish::Publisher,
    metrics,
    model::{Fix, IdempotencyKey, LocationEvent, LocationNotice, UploadReceipt},
};

/// Uploads waiting for a writer at most; beyond it a request waits for room (backpressure).
const QUEUE_CAPACITY: usize = 8192;
/// Spans of the other requests in a shared statement are linked to its span, up to this many.
const MAX_LINKS: usize = 32;

/// One upload, as the writers store it.
#[derive(Debug, Clone)]
pub struct Write {
    pub device_id: Uuid,
    /// The fixes to store: no two at the same instant, none past the retention period.
    pub fixes: Vec<Fix>,
    /// The API key and the `Idempotency-Key` to claim, if any.
    pub key: Option<(i64, IdempotencyKey)>,
    /// The answer so far (fixes the caller already set aside as expired or repeated);
    /// completed with what the statement stores.
    pub receipt: UploadReceipt,
}

/// What became of a [`Write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Committed; the answer counts the fixes stored and those already there.
    Stored(UploadReceipt),
    /// A live record holds the key: nothing was written; replay it.
    KeyTaken,
}

/// The handle requests use; cheap to share. The writers stop once every handle is dropped
/// and the queue is empty.
pub struct Ingest {
    queue: mpsc::Sender<Pending>,
}

struct Pending {
    write: Write,
    /// The request's span: the statement's span is its child (or linked to it).
    span: tracing::Span,
    enqueued: Instant,
    answer: oneshot::Sender<ApiResult<Written>>,
}

impl Ingest {
    /// Starts the writer tasks on the current runtime. What they store is published to live
    /// streams through `publisher` once committed.
    pub fn start(pool: PgPool, settings: &IngestSettings, publisher: Publisher) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        let max_rows = settings.max_rows_per_statement.max(1) as usize;
        let publisher = Arc::new(publisher);
        for _ in 0..settings.writers.max(1) {
            tokio::spawn(write_forever(pool.clone(), receiver.clone(), max_rows, publisher.clone()));
        }
        Self { queue }
    }

    /// Stores the upload, sharing a statement with whatever else is waiting; returns once it is
    /// committed. 404 for an unknown or inactive device.
    pub async fn store(&self, write: Write) -> ApiResult<Written> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending { write, span: tracing::Span::current(), enqueued: Instant::now(), answer };
        self.queue.send(pending).await.map_err(|_| shutting_down())?;
        answered.await.map_err(|_| shutting_down())?
    }
}

fn shutting_down() -> ApiError {
    ApiError::ServiceUnavailable("The service is shutting down; retry shortly".into())
}

/// One writer: takes what is queued, writes it, answers, and again, until the queue closes.
/// The receiver is shared: while one writer's statement runs, another collects the next batch.
/// Requests that cannot share this writer's statement wait in `held` for its next one; while any
/// wait, the writer never blocks on the queue (another writer may be parked on it), it only
/// takes what is already there.
async fn write_forever(
    pool: PgPool,
    queue: Arc<Mutex<mpsc::Receiver<Pending>>>,
    max_rows: usize,
    publisher: Arc<Publisher>,
) {
    let mut held: VecDeque<Pending> = VecDeque::new();
    loop {
        let mut waiting = std::mem::take(&mut held);
        let mut receiver = if waiting.is_empty() {
            let mut receiver = queue.lock().await;
            let Some(first) = receiver.recv().await else { return };
            waiting.push_back(first);
            Some(receiver)
        } else {
            queue.try_lock().ok()
        };
        let mut batch = Statement::default();
        while batch.rows < max_rows {
            let next = match waiting.pop_front() {
                Some(next) => next,
                None => match receiver.as_mut().map(|receiver| receiver.try_recv()) {
                    Some(Ok(next)) => next,
                    _ => break,
                },
            };
            if batch.fits(&next.write) {
                batch.push(next);
            } else {
                held.push_back(next);
            }
        }
        drop(receiver);
        held.extend(waiting);
        // Nobody is waiting for these any more (the client left, or its request timed out).
        let batch: Vec<Pending> = batch.requests.into_iter().filter(|p| !p.answer.is_closed()).collect();
        if !batch.is_empty() {
            write_batch(&pool, &publisher, batch).await;
        }
    }
}

/// The requests of one statement, none repeating another's fix or key.
#[derive(Default)]
struct Statement {
    requests: Vec<Pending>,
    rows: usize,
    fixes: HashSet<(Uuid, DateTime<Utc>)>,
    keys: HashSet<(i64, String)>,
}

impl Statement {
    /// Whether `write` may join: it repeats no fix or key of the statement's (a first one
    /// always joins).
    fn fits(&self, write: &Write) -> bool {
        let repeats_key = (write.key.as_ref())
            .is_some_and(|(api_key, key)| self.keys.contains(&(*api_key, key.key_hash.clone())));
        let repeats_fix =
            write.fixes.iter().any(|fix| self.fixes.contains(&(write.device_id, fix.captured_at)));
        self.requests.is_empty() || !(repeats_key || repeats_fix)
    }

    fn push(&mut self, pending: Pending) {
        let write = &pending.write;
        self.keys.extend(write.key.as_ref().map(|(api_key, key)| (*api_key, key.key_hash.clone())));
        self.fixes.extend(write.fixes.iter().map(|fix| (write.device_id, fix.captured_at)));
        self.rows += write.fixes.len().max(1);
        self.requests.push(pending);
    }
}

async fn write_batch(pool: &PgPool, publisher: &Publisher, batch: Vec<Pending>) {
    let rows: usize = batch.iter().map(|p| p.write.fixes.len()).sum();
    let span = tracing::info_span!(parent: &batch[0].span, "locations.write", requests = batch.len(), rows);
    for other in batch.iter().skip(1).take(MAX_LINKS) {
        span.follows_from(&other.span);
    }
    let oldest = batch.iter().map(|p| p.enqueued).min().expect("a batch is never empty");
    metrics::ingest_statement(batch.len(), oldest.elapsed());

    let writes: Vec<&Write> = batch.iter().map(|p| &p.write).collect();
    match store(pool, publisher, &writes).instrument(span.clone()).await {
        Ok(results) => {
            for (pending, result) in batch.into_iter().zip(results) {
                let _ = pending.answer.send(result);
            }
        }
        Err(err) if is_unavailable(&err) => {
            tracing::warn!(parent: &span, error = %err, requests = batch.len(), "database unavailable");
            for pending in batch {
                let _ = pending.answer.send(Err(ApiError::database_unavailable()));
            }
        }
        Err(err) if batch.len() == 1 => {
            let pending = batch.into_iter().next().expect("one upload");
            let _ = pending.answer.send(Err(refused(err)));
        }
        Err(err) => {
            tracing::info!(parent: &span, error = %err, requests = batch.len(),
                "shared upload statement failed; retrying each upload alone");
            for pending in batch {
                let alone = store(pool, publisher, &[&pending.write]).instrument(span.clone()).await;
                let result = alone.map_err(refused).and_then(|mut results| results.remove(0));
                let _ = pending.answer.send(result);
            }
        }
    }
}

/// [`store_once`], and once more when a fix's day had no partition of `locations` (a phone's
/// offline buffer from days ago, a clock far ahead): the statement failed whole and stored
/// nothing, so its days' partitions are created and it runs again. Every upload path (single,
/// batch, keyed, a shared statement or one retried alone) comes through here, so no fix is
/// refused for want of a partition.
async fn store(
    pool: &PgPool,
    publisher: &Publisher,
    writes: &[&Write],
) -> sqlx::Result<Vec<ApiResult<Written>>> {
    match store_once(pool, publisher, writes).await {
        Err(err) if db::locations::is_missing_partition(&err) => {
            let days: Vec<chrono::NaiveDate> = writes
                .iter()
                .flat_map(|write| write.fixes.iter().map(|fix| fix.captured_at.date_naive()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let created = db::locations::create_partitions_for(pool, &days).await?;
            tracing::info!(created, days = days.len(), "created partitions of locations for an upload");
            store_once(pool, publisher, writes).await
        }
        result => result,
    }
}

/// Stores the writes in one transaction and says what became of each, in order; once
/// committed, publishes the stored fixes.
async fn store_once(
    pool: &PgPool,
    publisher: &Publisher,
    writes: &[&Write],
) -> sqlx::Result<Vec<ApiResult<Written>>> {
    let mut batch = Batch::default();
    for (request, write) in writes.iter().enumerate() {
        let request = i32::try_from(request).expect("a statement holds fewer than 2^31 requests");
        batch.push(
            request,
            write.device_id,
            &write.fixes,
            write.key.as_ref().map(|(api_key, key)| (*api_key, key)),
        );
    }
    // Unkeyed uploads need one statement, committed on its own; keys need a second statement
    // (their answers) in the same transaction.
    let keyed = writes.iter().any(|write| write.key.is_some());
    let mut tx = if keyed { Some(db::begin(pool).await?) } else { None };
    let mut conn = if keyed { None } else { Some(pool.acquire().await?) };
    let connection: &mut sqlx::PgConnection = match (&mut tx, &mut conn) {
        (Some(tx), _) => tx,
        (None, Some(conn)) => conn,
        (None, None) => unreachable!("one of the two is set"),
    };
    let outcome = db::locations::insert_batch(connection, &batch).await?;

    let mut stored: HashMap<Uuid, HashSet<DateTime<Utc>>> = HashMap::new();
    for row in &outcome.stored {
        stored.entry(row.device_id).or_default().insert(row.captured_at);
    }
    let claimed: HashMap<i32, i64> = outcome.claimed.into_iter().collect();
    let mut answers = Vec::with_capacity(writes.len());
    let mut records = Vec::new();
    for (request, write) in writes.iter().enumerate() {
        let request = request as i32;
        if !outcome.active.contains(&request) {
            answers.push(Err(ApiError::device_not_registered()));
            continue;
        }
        let claim = claimed.get(&request);
        if write.key.is_some() && claim.is_none() {
            answers.push(Ok(Written::KeyTaken));
            continue;
        }
        let new = stored.get(&write.device_id).map_or(0, |instants| {
            write.fixes.iter().filter(|fix| instants.contains(&fix.captured_at)).count()
        });
        let mut receipt = write.receipt;
        receipt.stored_count = new;
        receipt.duplicate_count += write.fixes.len() - new;
        if let Some(record) = claim {
            records.push((*record, serde_json::to_value(receipt).expect("a receipt serializes")));
        }
        answers.push(Ok(Written::Stored(receipt)));
    }
    if let Some(mut tx) = tx {
        if !records.is_empty() {
            db::idempotency::set_answers(&mut tx, &records).await?;
        }
        db::commit(tx).await?;
    }
    publisher.publish(Utc::now().timestamp_micros(), live_notices(writes, outcome.stored));
    Ok(answers)
}

/// The stored rows as live notices: each with its fix, in the order stored.
fn live_notices(writes: &[&Write], stored: Vec<db::locations::StoredRow>) -> Vec<LocationNotice> {
    let fixes: HashMap<(Uuid, DateTime<Utc>), &Fix> = writes
        .iter()
        .flat_map(|write| write.fixes.iter().map(|fix| ((write.device_id, fix.captured_at), fix)))
        .collect();
    stored
        .into_iter()
        .filter_map(|row| {
            let fix = fixes.get(&(row.device_id, row.captured_at))?;
            Some(LocationNotice {
                id: row.id,
                group_id: row.group_id,
                event: LocationEvent {
                    device_id: row.device_id,
                    latitude: fix.latitude,
                    longitude: fix.longitude,
                    accuracy: fix.accuracy,
                    timestamp: row.captured_at,
                    altitude: fix.altitude,
                    bearing: fix.bearing,
                    speed: fix.speed,
                    provider: fix.provider.clone(),
                    battery_level: fix.battery_level,
                    network_type: fix.network_type.clone(),
                },
            })
        })
        .collect()
}

/// A statement that failed for one upload alone: its device was deleted meanwhile (404), or
/// the database refused it.
fn refused(err: sqlx::Error) -> ApiError {
    Err::<(), _>(err)
        .on_constraints(
            &["fk_locations_device", "fk_idempotency_keys_device"],
            ApiError::device_not_registered,
        )
        .expect_err("an error stays an error")
}

fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
    )
}
