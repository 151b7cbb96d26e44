//! Group commit for uploads without an `Idempotency-Key`.
//!
//! A location upload is one small INSERT, and on a busy server most of PostgreSQL's work per
//! request is not the row but the statement around it: parse, plan, snapshot, commit record,
//! WAL flush. So uploads are handed to a few writer tasks instead of each taking a connection:
//! a writer takes every upload waiting in the queue (up to `max_rows_per_statement` rows),
//! stores them with ONE statement (one commit), and answers each request. While it writes, the
//! next uploads queue up for the next statement, so statements grow with the load and a quiet
//! server still writes each upload at once (a statement of one).
//!
//! What each request keeps: it answers only after its rows are committed (nothing is
//! acknowledged that a crash could lose); its rows are stored all together or not at all (one
//! statement); an unknown or inactive device gets its 404 alone, the others in the statement
//! are stored. When a shared statement fails for any other reason (a device deleted meanwhile
//! trips the foreign key, say), each upload in it is retried in a statement of its own, so one
//! request's problem never becomes another's error. A request whose client has gone away
//! before its turn is skipped.
//!
//! Uploads with an `Idempotency-Key` do not come here: their key claim, rows and stored answer
//! go together in one statement of their own (see `domain::uploads`).

use std::{collections::HashSet, sync::Arc, time::Instant};

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    config::IngestSettings,
    db,
    error::{ApiError, ApiResult, ResultExt},
    metrics,
    model::Upload,
};

/// Uploads waiting for a writer at most; beyond it a request waits for room (backpressure).
const QUEUE_CAPACITY: usize = 8192;
/// Spans of the other requests in a shared statement are linked to its span, up to this many.
const MAX_LINKS: usize = 32;

/// The handle requests use; cheap to share. The writers stop once every handle is dropped
/// and the queue is empty.
pub struct Ingest {
    queue: mpsc::Sender<Pending>,
}

struct Pending {
    upload: Upload,
    /// The request's span: the statement's span is its child (or linked to it).
    span: tracing::Span,
    enqueued: Instant,
    answer: oneshot::Sender<ApiResult<()>>,
}

impl Ingest {
    /// Starts the writer tasks on the current runtime.
    pub fn start(pool: PgPool, settings: &IngestSettings) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        let max_rows = settings.max_rows_per_statement.max(1) as usize;
        for _ in 0..settings.writers.max(1) {
            tokio::spawn(write_forever(pool.clone(), receiver.clone(), max_rows));
        }
        Self { queue }
    }

    /// Stores the upload's fixes, sharing a statement with whatever else is waiting; returns
    /// once they are committed. 404 for an unknown or inactive device.
    pub async fn store(&self, upload: Upload) -> ApiResult<()> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending { upload, span: tracing::Span::current(), enqueued: Instant::now(), answer };
        self.queue.send(pending).await.map_err(|_| shutting_down())?;
        answered.await.map_err(|_| shutting_down())?
    }
}

fn shutting_down() -> ApiError {
    ApiError::ServiceUnavailable("The service is shutting down; retry shortly".into())
}

/// One writer: takes what is queued, writes it, answers, and again, until the queue closes.
/// The receiver is shared: while one writer's statement runs, another collects the next batch.
async fn write_forever(pool: PgPool, queue: Arc<Mutex<mpsc::Receiver<Pending>>>, max_rows: usize) {
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else { return };
            let mut rows = first.upload.fixes.len();
            let mut batch = vec![first];
            while rows < max_rows {
                let Ok(next) = queue.try_recv() else { break };
                rows += next.upload.fixes.len();
                batch.push(next);
            }
            batch
        };
        // Nobody is waiting for these any more (the client left, or its request timed out).
        let batch: Vec<Pending> = batch.into_iter().filter(|p| !p.answer.is_closed()).collect();
        if !batch.is_empty() {
            write_batch(&pool, batch).await;
        }
    }
}

async fn write_batch(pool: &PgPool, batch: Vec<Pending>) {
    let rows: usize = batch.iter().map(|p| p.upload.fixes.len()).sum();
    let span = tracing::info_span!(parent: &batch[0].span, "locations.write", requests = batch.len(), rows);
    for other in batch.iter().skip(1).take(MAX_LINKS) {
        span.follows_from(&other.span);
    }
    let oldest = batch.iter().map(|p| p.enqueued).min().expect("a batch is never empty");
    metrics::ingest_statement(batch.len(), oldest.elapsed());

    match insert(pool, &batch).instrument(span.clone()).await {
        Ok(stored) => {
            let stored: HashSet<Uuid> = stored.into_iter().collect();
            for pending in batch {
                let result = outcome(Ok(stored.contains(&pending.upload.device_id)));
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
            let _ = pending.answer.send(outcome(Err(err)));
        }
        Err(err) => {
            tracing::info!(parent: &span, error = %err, requests = batch.len(),
                "shared upload statement failed; retrying each upload alone");
            for pending in batch {
                let alone = insert(pool, std::slice::from_ref(&pending)).instrument(span.clone()).await;
                let result = outcome(alone.map(|stored| stored.contains(&pending.upload.device_id)));
                let _ = pending.answer.send(result);
            }
        }
    }
}

async fn insert(pool: &PgPool, batch: &[Pending]) -> sqlx::Result<Vec<Uuid>> {
    let uploads = batch.iter().map(|pending| &pending.upload);
    let (devices, fixes): (Vec<Uuid>, Vec<_>) =
        uploads.flat_map(|upload| upload.fixes.iter().map(|fix| (upload.device_id, fix))).unzip();
    let mut conn = pool.acquire().await?;
    db::locations::insert(&mut conn, &devices, &fixes).await
}

/// One request's answer from the statement that carried its rows: were its device's rows stored?
fn outcome(stored: sqlx::Result<bool>) -> ApiResult<()> {
    let stored = stored.on_constraint("fk_locations_device", ApiError::device_not_registered)?;
    if stored { Ok(()) } else { Err(ApiError::device_not_registered()) }
}

fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
    )
}
