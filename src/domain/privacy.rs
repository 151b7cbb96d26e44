//! Data subject rights: export everything stored about a device, or erase it for good.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    db,
    domain::{access, audit, devices},
    error::{ApiError, ApiResult},
    infra::credential_cache::TokenCache,
    model::{Caller, Device, NewAuditEntry},
};

/// Export chunks are flushed at about this size; with the channel bound below, an export holds
/// at most a few hundred KiB whatever the number of locations.
const CHUNK_BYTES: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// A running export: its chunks of JSON, in order. An `Err` means the export broke off
/// (database error); the response must then be aborted, never completed.
pub type ExportStream = mpsc::Receiver<Result<Bytes, std::io::Error>>;

/// Data export and erasure.
#[derive(Clone)]
pub struct Privacy {
    pool: PgPool,
    tokens: Arc<TokenCache>,
}

impl Privacy {
    /// `tokens`: this replica's device-token cache (an erased device's token dies at once).
    pub fn new(pool: PgPool, tokens: Arc<TokenCache>) -> Self {
        Self { pool, tokens }
    }

    /// Starts exporting the device and all its locations as one JSON document
    /// ([`DataExport`](crate::model::DataExport)).
    ///
    /// The device is checked (404) and the export audited before anything is streamed; then
    /// rows are read from one consistent snapshot (REPEATABLE READ, read only) and written out
    /// as they arrive, never collected.
    pub async fn export(&self, caller: &Caller, device_id: Uuid) -> ApiResult<ExportStream> {
        access::act_for(&self.pool, caller, device_id, access::NO_DEVICE, "device.data_export").await?;
        let actor = &caller.actor();
        let mut tx = db::begin(&self.pool).await?;
        let device = db::devices::find(&mut *tx, device_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("Device not found".into()))?;
        audit::record(&mut tx, actor, device_event("device.data_export", device_id)).await?;
        db::commit(tx).await?;

        let mut snapshot = db::begin_read_snapshot(&self.pool).await?;
        db::locations::prefer_index_order(&mut snapshot).await?;
        let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let span = tracing::info_span!("export", %device_id);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let started = std::time::Instant::now();
                let result = write_export(&mut snapshot, &device, &sender).await;
                // Read only: rolling back (on drop) ends the snapshot.
                drop(snapshot);
                match result {
                    Ok(count) => tracing::info!(
                        locations = count,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "export finished"
                    ),
                    Err(ExportError::ClientGone) => tracing::info!("export abandoned by the client"),
                    Err(ExportError::Database(err)) => {
                        tracing::error!(error = %err, "export failed part-way; aborting the response");
                        let _ = sender.send(Err(std::io::Error::other("export failed"))).await;
                    }
                }
            },
            span,
        ));
        Ok(receiver)
    }

    /// Erases the device with every location and idempotency record of it (ON DELETE
    /// CASCADE). Irreversible; audited in the same transaction.
    pub async fn erase(&self, caller: &Caller, device_id: Uuid) -> ApiResult<()> {
        access::act_for(&self.pool, caller, device_id, access::NO_DEVICE, "device.data_delete").await?;
        let mut tx = db::begin(&self.pool).await?;
        if !db::devices::delete(&mut tx, device_id).await? {
            return Err(ApiError::NotFound("Device not found".into()));
        }
        audit::record(&mut tx, &caller.actor(), device_event("device.data_delete", device_id)).await?;
        // Its token dies with it, on every replica.
        devices::announce(&mut tx, &self.tokens, device_id).await?;
        db::commit(tx).await?;
        Ok(())
    }
}

fn device_event(action: &'static str, device_id: Uuid) -> NewAuditEntry {
    NewAuditEntry {
        action,
        resource_type: "device",
        resource_id: Some(device_id.to_string()),
        metadata: json!({}),
    }
}

enum ExportError {
    ClientGone,
    Database(sqlx::Error),
}

/// Writes `{"exported_at", "device", "locations": [...], "location_count"}` in chunks: the
/// fields of [`DataExport`](crate::model::DataExport) in its order, the locations as they arrive.
async fn write_export(
    conn: &mut sqlx::PgConnection,
    device: &Device,
    sender: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<u64, ExportError> {
    let mut buffer = Vec::with_capacity(CHUNK_BYTES + 1024);
    buffer.extend_from_slice(b"{\"exported_at\":");
    serde_json::to_writer(&mut buffer, &Utc::now()).expect("a timestamp serializes");
    buffer.extend_from_slice(b",\"device\":");
    serde_json::to_writer(&mut buffer, device).expect("a device serializes");
    buffer.extend_from_slice(b",\"locations\":[");
    let mut count: u64 = 0;
    let mut rows = db::locations::stream_for_device(conn, device.device_id);
    while let Some(row) = rows.next().await {
        let row = row.map_err(ExportError::Database)?;
        if count > 0 {
            buffer.push(b',');
        }
        serde_json::to_writer(&mut buffer, &row).expect("a location serializes");
        count += 1;
        if buffer.len() >= CHUNK_BYTES {
            let chunk = Bytes::from(std::mem::replace(&mut buffer, Vec::with_capacity(CHUNK_BYTES + 1024)));
            sender.send(Ok(chunk)).await.map_err(|_| ExportError::ClientGone)?;
        }
    }
    drop(rows);
    buffer.extend_from_slice(format!("],\"location_count\":{count}}}").as_bytes());
    sender.send(Ok(Bytes::from(buffer))).await.map_err(|_| ExportError::ClientGone)?;
    Ok(count)
}
