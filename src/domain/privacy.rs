//! Data subject rights: export everything stored about a device, or erase it for good.

use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    db::{self, devices::DeviceRecord, locations::LocationRecord},
    domain::audit::{self, Actor, Event},
    error::{ApiError, ApiResult},
};

/// Export chunks are flushed at about this size; with the channel bound below, an export holds
/// at most a few hundred KiB whatever the number of locations.
const CHUNK_BYTES: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// A running export: its chunks of JSON, in order. An `Err` means the export broke off
/// (database error); the response must then be aborted, never completed.
pub type ExportStream = mpsc::Receiver<Result<Bytes, std::io::Error>>;

/// Starts exporting the device and all its locations as one JSON document:
/// `{"exported_at", "device": {...}, "locations": [...], "location_count"}`.
///
/// The device is checked (404) and the export audited before anything is streamed; then rows
/// are read from one consistent snapshot (REPEATABLE READ, read only) and written out as they
/// arrive, never collected.
pub async fn export(pool: &PgPool, actor: &Actor, device_id: Uuid) -> ApiResult<ExportStream> {
    let mut tx = db::begin(pool).await?;
    let device = db::devices::find_record(&mut *tx, device_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Device not found".into()))?;
    let event = Event {
        action: "device.data_export",
        resource_type: "device",
        resource_id: Some(device_id.to_string()),
        metadata: json!({}),
    };
    audit::record(&mut tx, actor, event).await?;
    db::commit(tx).await?;

    let mut snapshot = db::begin_read_snapshot(pool).await?;
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

enum ExportError {
    ClientGone,
    Database(sqlx::Error),
}

async fn write_export(
    conn: &mut sqlx::PgConnection,
    device: &DeviceRecord,
    sender: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<u64, ExportError> {
    let mut buffer = Vec::with_capacity(CHUNK_BYTES + 1024);
    buffer.extend_from_slice(b"{\"exported_at\":");
    serde_json::to_writer(&mut buffer, &Utc::now()).expect("a timestamp serializes");
    buffer.extend_from_slice(b",\"device\":");
    serde_json::to_writer(&mut buffer, &ExportedDevice::from(device)).expect("a device serializes");
    buffer.extend_from_slice(b",\"locations\":[");
    let mut count: u64 = 0;
    let mut rows = db::locations::stream_for_device(conn, device.device_id);
    while let Some(row) = rows.next().await {
        let row = row.map_err(ExportError::Database)?;
        if count > 0 {
            buffer.push(b',');
        }
        serde_json::to_writer(&mut buffer, &ExportedLocation::from(&row)).expect("a location serializes");
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

/// The device as exported: everything stored about it.
#[derive(Serialize)]
pub struct ExportedDevice<'a> {
    pub device_id: Uuid,
    pub display_name: &'a str,
    pub group_id: &'a str,
    pub platform: &'a str,
    pub fcm_token: Option<&'a str>,
    pub active: bool,
    pub last_seen_at: Option<chrono::DateTime<Utc>>,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

impl<'a> From<&'a DeviceRecord> for ExportedDevice<'a> {
    fn from(d: &'a DeviceRecord) -> Self {
        Self {
            device_id: d.device_id,
            display_name: &d.display_name,
            group_id: &d.group_id,
            platform: &d.platform,
            fcm_token: d.fcm_token.as_deref(),
            active: d.active,
            last_seen_at: d.last_seen_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Serialize)]
pub struct ExportedLocation<'a> {
    pub captured_at: chrono::DateTime<Utc>,
    pub latitude: f64,
    pub longitude: f64,
    pub accuracy: f32,
    pub altitude: Option<f64>,
    pub bearing: Option<f32>,
    pub speed: Option<f32>,
    pub provider: Option<&'a str>,
    pub battery_level: Option<i16>,
    pub network_type: Option<&'a str>,
    pub created_at: chrono::DateTime<Utc>,
}

impl<'a> From<&'a LocationRecord> for ExportedLocation<'a> {
    fn from(l: &'a LocationRecord) -> Self {
        Self {
            captured_at: l.captured_at,
            latitude: l.latitude,
            longitude: l.longitude,
            accuracy: l.accuracy,
            altitude: l.altitude,
            bearing: l.bearing,
            speed: l.speed,
            provider: l.provider.as_deref(),
            battery_level: l.battery_level,
            network_type: l.network_type.as_deref(),
            created_at: l.created_at,
        }
    }
}

/// Erases the device with every location and idempotency record of it (ON DELETE CASCADE).
/// Irreversible; audited in the same transaction.
pub async fn erase(pool: &PgPool, actor: &Actor, device_id: Uuid) -> ApiResult<()> {
    let mut tx = db::begin(pool).await?;
    if !db::devices::delete(&mut tx, device_id).await? {
        return Err(ApiError::NotFound("Device not found".into()));
    }
    let event = Event {
        action: "device.data_delete",
        resource_type: "device",
        resource_id: Some(device_id.to_string()),
        metadata: json!({}),
    };
    audit::record(&mut tx, actor, event).await?;
    db::commit(tx).await?;
    Ok(())
}
