//! A device's trail over a time range: paged (keyset on capture time), simplified
//! (Ramer–Douglas–Peucker in metres), measured (haversine length), or downloaded whole as
//! GeoJSON or GPX, streamed.
//!
//! Who may see it ([`access`]): a `full` key, any device's; an `app` key, the trail of an active
//! member of its device's group (its own included); anything else is 404.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt;
use geo::{Bearing, Distance, Haversine, LineString, Point, SimplifyIdx};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    db,
    domain::access,
    error::{ApiError, ApiResult},
    model::{Caller, Fix, Order, StoredFix},
};

/// Page sizes.
pub const LIMIT_DEFAULT: u32 = 100;
pub const LIMIT_MAX: u32 = 1000;
/// Simplification tolerances, in metres.
pub const TOLERANCE_MAX: f64 = 10_000.0;
/// The most fixes a simplification reads (all of them are in memory at once).
pub const SIMPLIFY_MAX_FIXES: i64 = 100_000;

/// The capture times a query covers, both inclusive (milliseconds since the epoch, as uploads
/// send them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Range {
    /// From `from_ms` to `to_ms` (either open when absent); 400 when `from` is after `to`.
    pub fn new(from_ms: Option<i64>, to_ms: Option<i64>) -> ApiResult<Self> {
        let at = |ms: i64, field: &str| {
            DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| ApiError::field(field, "must be milliseconds since the Unix epoch"))
        };
        let from = from_ms.map(|ms| at(ms, "from")).transpose()?.unwrap_or(DateTime::UNIX_EPOCH);
        let to = to_ms.map(|ms| at(ms, "to")).transpose()?.unwrap_or(DateTime::<Utc>::MAX_UTC);
        if from > to {
            return Err(ApiError::field("from", "must not be after to"));
        }
        Ok(Self { from, to })
    }
}

/// Where the next page starts: after the fix captured at `after`, in `order`, of `device_id`,
/// within the range the first page was asked for. Capture instants are unique per device
/// (uq_locations_device_captured), so the instant alone is the keyset position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub device_id: Uuid,
    pub order: Order,
    pub range: Range,
    pub after: DateTime<Utc>,
}

const CURSOR_VERSION: u8 = 1;
/// Payload bytes: version, order, device (16), from, to, after (8 each, µs), then a checksum.
const CURSOR_PAYLOAD: usize = 1 + 1 + 16 + 8 * 3;
const CURSOR_CHECK: usize = 8;

impl Cursor {
    /// Opaque to clients: base64url of the fields and a SHA-256 check over them.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_PAYLOAD + CURSOR_CHECK);
        bytes.push(CURSOR_VERSION);
        bytes.push(matches!(self.order, Order::Desc) as u8);
        bytes.extend_from_slice(self.device_id.as_bytes());
        for at in [self.range.from, self.range.to, self.after] {
            bytes.extend_from_slice(&at.timestamp_micros().to_be_bytes());
        }
        let check = Sha256::digest(&bytes);
        bytes.extend_from_slice(&check[..CURSOR_CHECK]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A cursor this endpoint handed out, for this device and order; 400 for anything else
    /// (malformed, modified, or from another query).
    pub fn decode(text: &str, device_id: Uuid, order: Order) -> ApiResult<Self> {
        let invalid =
            || ApiError::field("cursor", "is not a cursor returned by this endpoint for this query");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        if bytes.len() != CURSOR_PAYLOAD + CURSOR_CHECK || bytes[0] != CURSOR_VERSION {
            return Err(invalid());
        }
        let (payload, check) = bytes.split_at(CURSOR_PAYLOAD);
        if Sha256::digest(payload)[..CURSOR_CHECK] != *check {
            return Err(invalid());
        }
        let micros = |at: usize| i64::from_be_bytes(payload[at..at + 8].try_into().expect("8 bytes"));
        let time = |at: usize| DateTime::from_timestamp_micros(micros(at)).ok_or_else(invalid);
        let cursor = Cursor {
            order: if payload[1] == 1 { Order::Desc } else { Order::Asc },
            device_id: Uuid::from_slice(&payload[2..18]).map_err(|_| invalid())?,
            range: Range { from: time(18)?, to: time(26)? },
            after: time(34)?,
        };
        if cursor.device_id != device_id || cursor.order != order {
            return Err(invalid());
        }
        Ok(cursor)
    }
}

/// One page of a trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub fixes: Vec<StoredFix>,
    pub next: Option<Cursor>,
    /// The length of this page's trail, in metres.
    pub distance_m: f64,
}

/// A simplified trail.
#[derive(Debug, Clone, PartialEq)]
pub struct Simplified {
    pub fixes: Vec<StoredFix>,
    pub original_count: usize,
    pub tolerance_m: f64,
    /// The length of the simplified trail, in metres.
    pub distance_m: f64,
}

/// Download formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 7946 FeatureCollection: the trail as a LineString, then a Point per fix.
    GeoJson,
    /// GPX 1.1: one track, one segment, a point per fix.
    Gpx,
}

/// A running download: chunks of the document, in order; an `Err` means it broke off and the
/// response must be aborted, never completed.
pub type Download = mpsc::Receiver<Result<Bytes, std::io::Error>>;

/// Trails of devices.
#[derive(Clone)]
pub struct History {
    pool: PgPool,
}

impl History {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// 404 unless the caller may see `device_id`'s trail.
    async fn check(&self, caller: &Caller, device_id: Uuid) -> ApiResult<()> {
        let device = db::devices::find(&self.pool, device_id).await?;
        let own = caller.device.as_ref().is_some_and(|d| d.device_id == device_id);
        // A deactivated device has left its group: only it still sees its trail.
        let group = device.filter(|d| d.active || own).map(|d| d.group_id);
        access::see_member(&self.pool, caller, device_id, group.as_deref(), "device.history").await
    }

    /// Up to `limit` fixes of the range in `order`, after `cursor` when given (its range wins),
    /// read by one index range scan whatever the page: page N costs what page 1 costs.
    pub async fn page(
        &self,
        caller: &Caller,
        device_id: Uuid,
        range: Range,
        order: Order,
        limit: u32,
        cursor: Option<Cursor>,
    ) -> ApiResult<Page> {
        self.check(caller, device_id).await?;
        let range = cursor.map_or(range, |cursor| cursor.range);
        let (lower, upper) = bounds(range, order, cursor.map(|cursor| cursor.after));
        let mut fixes =
            db::locations::page(&self.pool, device_id, lower, upper, order, i64::from(limit) + 1).await?;
        let has_more = fixes.len() > limit as usize;
        fixes.truncate(limit as usize);
        let next = has_more.then(|| Cursor {
            device_id,
            order,
            range,
            after: fixes.last().expect("a page with more has fixes").fix.captured_at,
        });
        let distance_m = length(fixes.iter().map(|stored| &stored.fix));
        Ok(Page { fixes, next, distance_m })
    }

    /// The whole range in `order`, simplified with Ramer–Douglas–Peucker: every fix the trail
    /// passes within `tolerance_m` metres of is dropped, distances measured on the sphere at
    /// every latitude. A range of more than [`SIMPLIFY_MAX_FIXES`] fixes is a 400.
    pub async fn simplified(
        &self,
        caller: &Caller,
        device_id: Uuid,
        range: Range,
        order: Order,
        tolerance_m: f64,
    ) -> ApiResult<Simplified> {
        self.check(caller, device_id).await?;
        let (lower, upper) = bounds(range, order, None);
        let count = db::locations::count_range(&self.pool, device_id, lower, upper).await?;
        if count > SIMPLIFY_MAX_FIXES {
            return Err(ApiError::field(
                "tolerance",
                format!(
                    "the range holds {count} fixes; at most {SIMPLIFY_MAX_FIXES} can be simplified in one \
                     request: narrow it with from and to"
                ),
            ));
        }
        let fixes =
            db::locations::page(&self.pool, device_id, lower, upper, order, SIMPLIFY_MAX_FIXES).await?;
        let original_count = fixes.len();
        let kept = simplify(&fixes, tolerance_m);
        let fixes: Vec<StoredFix> = kept.into_iter().map(|index| fixes[index].clone()).collect();
        let distance_m = length(fixes.iter().map(|stored| &stored.fix));
        Ok(Simplified { fixes, original_count, tolerance_m, distance_m })
    }

    /// Starts a download of the whole range in `order`, written as it is read (constant
    /// memory): from one consistent snapshot, in two passes for GeoJSON (the LineString, then
    /// the points), one for GPX. The trail's length closes the document.
    pub async fn download(
        &self,
        caller: &Caller,
        device_id: Uuid,
        range: Range,
        order: Order,
        format: Format,
    ) -> ApiResult<Download> {
        self.check(caller, device_id).await?;
        let (lower, upper) = bounds(range, order, None);
        let mut snapshot = db::begin_read_snapshot(&self.pool).await?;
        // As the export: rows in index order, never a sort of the whole range spilled to disk
        // before the first byte (docs/query-plans.md showed the download sorting 100k rows).
        db::locations::prefer_index_order(&mut snapshot).await?;
        let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let span = tracing::info_span!("history.download", %device_id, ?format);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let mut out = Chunks { buffer: Vec::with_capacity(CHUNK_BYTES + 1024), sender: &sender };
                let written = match format {
                    Format::GeoJson => {
                        write_geojson(&mut snapshot, device_id, lower, upper, order, &mut out).await
                    }
                    Format::Gpx => write_gpx(&mut snapshot, device_id, lower, upper, order, &mut out).await,
                };
                drop(snapshot);
                match written {
                    Ok(()) => {}
                    Err(WriteError::ClientGone) => tracing::info!("download abandoned by the client"),
                    Err(WriteError::Failed(err)) => {
                        tracing::error!(error = %err, "download failed part-way; aborting the response");
                        let _ = sender.send(Err(std::io::Error::other("download failed"))).await;
                    }
                }
            },
            span,
        ));
        Ok(receiver)
    }
}

/// The scan's bounds as `[lower, upper)`: a range is inclusive at both ends (at the
/// microsecond, PostgreSQL's precision), a cursor excludes the instant it points at.
fn bounds(range: Range, order: Order, after: Option<DateTime<Utc>>) -> (DateTime<Utc>, DateTime<Utc>) {
    let micro = TimeDelta::microseconds(1);
    let end = range.to.checked_add_signed(micro).unwrap_or(range.to);
    match (order, after) {
        (Order::Asc, Some(after)) => (after + micro, end),
        (Order::Desc, Some(after)) => (range.from, after),
        (_, None) => (range.from, end),
    }
}

fn point(fix: &Fix) -> Point<f64> {
    Point::new(fix.longitude, fix.latitude)
}

/// A trail's length as its fixes go by: the haversine distance between consecutive fixes.
#[derive(Debug, Default)]
struct Odometer {
    previous: Option<Point<f64>>,
    /// Metres so far.
    metres: f64,
    /// Fixes so far.
    fixes: u64,
}

impl Odometer {
    fn pass(&mut self, fix: &Fix) {
        let here = point(fix);
        if let Some(previous) = self.previous {
            self.metres += Haversine.distance(previous, here);
        }
        self.previous = Some(here);
        self.fixes += 1;
    }
}

/// The trail's length in metres: the haversine distance between consecutive fixes.
pub fn length<'a>(fixes: impl IntoIterator<Item = &'a Fix>) -> f64 {
    let mut odometer = Odometer::default();
    fixes.into_iter().for_each(|fix| odometer.pass(fix));
    odometer.metres
}

/// The indices of the fixes Ramer–Douglas–Peucker keeps at `tolerance_m` metres (geo's
/// `SimplifyIdx`), on the fixes projected to a plane in metres: azimuthal equidistant around the
/// trail's middle fix (haversine distance and bearing from it), so a tolerance means the same at
/// every latitude. The first and last fixes are always kept.
pub fn simplify(fixes: &[StoredFix], tolerance_m: f64) -> Vec<usize> {
    if fixes.len() <= 2 {
        return (0..fixes.len()).collect();
    }
    let centre = point(&fixes[fixes.len() / 2].fix);
    let plane: LineString<f64> = fixes
        .iter()
        .map(|stored| {
            let here = point(&stored.fix);
            let distance = Haversine.distance(centre, here);
            let bearing = Haversine.bearing(centre, here).to_radians();
            (distance * bearing.sin(), distance * bearing.cos())
        })
        .collect::<Vec<_>>()
        .into();
    plane.simplify_idx(tolerance_m)
}

/// Chunks of a download are flushed at about this size; with the channel bound below, a
/// download holds at most a few hundred KiB whatever its length.
const CHUNK_BYTES: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

enum WriteError {
    ClientGone,
    Failed(String),
}

impl From<sqlx::Error> for WriteError {
    fn from(err: sqlx::Error) -> Self {
        WriteError::Failed(err.to_string())
    }
}

impl From<std::io::Error> for WriteError {
    fn from(err: std::io::Error) -> Self {
        WriteError::Failed(err.to_string())
    }
}

/// The output of a download: a buffer flushed to the response in chunks.
struct Chunks<'a> {
    buffer: Vec<u8>,
    sender: &'a mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Chunks<'_> {
    async fn flush_if_full(&mut self) -> Result<(), WriteError> {
        if self.buffer.len() >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), WriteError> {
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES + 1024)));
        self.sender.send(Ok(chunk)).await.map_err(|_| WriteError::ClientGone)
    }
}

/// `{"type": "FeatureCollection", "features": [<the trail>, <a Point per fix>…], "distance_m"}`:
/// the trail is a LineString feature whose coordinates (`[longitude, latitude(, altitude)]`)
/// are streamed from a first pass; each fix is a Point feature (geojson's types) with the fix's
/// other fields as properties, from a second pass over the same snapshot. `distance_m`, the
/// trail's length, closes the trail's properties and the collection (a foreign member).
async fn write_geojson(
    conn: &mut sqlx::PgConnection,
    device_id: Uuid,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
    order: Order,
    out: &mut Chunks<'_>,
) -> Result<(), WriteError> {
    out.buffer.extend_from_slice(
        br#"{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"LineString","coordinates":["#,
    );
    let mut odometer = Odometer::default();
    {
        let mut rows = db::locations::stream_range(&mut *conn, device_id, lower, upper, order);
        while let Some(row) = rows.next().await {
            let fix = row?.fix;
            if odometer.fixes > 0 {
                out.buffer.push(b',');
            }
            odometer.pass(&fix);
            let position: Vec<f64> = [fix.longitude, fix.latitude].into_iter().chain(fix.altitude).collect();
            serde_json::to_writer(&mut out.buffer, &position)
                .map_err(|e| WriteError::Failed(e.to_string()))?;
            out.flush_if_full().await?;
        }
    }
    let distance = odometer.metres;
    out.buffer.extend_from_slice(b"]},\"properties\":");
    let trail =
        serde_json::json!({"device_id": device_id, "fix_count": odometer.fixes, "distance_m": distance});
    serde_json::to_writer(&mut out.buffer, &trail).map_err(|e| WriteError::Failed(e.to_string()))?;
    out.buffer.push(b'}');
    let mut rows = db::locations::stream_range(&mut *conn, device_id, lower, upper, order);
    while let Some(row) = rows.next().await {
        let stored = row?;
        let fix = &stored.fix;
        let position: Vec<f64> = [fix.longitude, fix.latitude].into_iter().chain(fix.altitude).collect();
        let mut properties = geojson::JsonObject::new();
        let mut property = |name: &str, value: serde_json::Value| {
            properties.insert(name.to_owned(), value);
        };
        property("captured_at", serde_json::json!(fix.captured_at));
        property("accuracy", serde_json::json!(fix.accuracy));
        property("bearing", serde_json::json!(fix.bearing));
        property("speed", serde_json::json!(fix.speed));
        property("provider", serde_json::json!(fix.provider));
        property("battery_level", serde_json::json!(fix.battery_level));
        property("network_type", serde_json::json!(fix.network_type));
        property("created_at", serde_json::json!(stored.created_at));
        let feature = geojson::Feature {
            bbox: None,
            geometry: Some(geojson::Geometry::new_point(position)),
            id: None,
            properties: Some(properties),
            foreign_members: None,
        };
        out.buffer.push(b',');
        serde_json::to_writer(&mut out.buffer, &feature).map_err(|e| WriteError::Failed(e.to_string()))?;
        out.flush_if_full().await?;
    }
    drop(rows);
    out.buffer.extend_from_slice(format!("],\"distance_m\":{}}}", serde_json::json!(distance)).as_bytes());
    out.flush().await
}

/// GPX 1.1 (quick-xml's writer): `<gpx><trk><name/><trkseg><trkpt lat lon><ele/><time/>
/// </trkpt>…</trkseg></trk><extensions><pm:distance_m/></extensions></gpx>`, written as the rows
/// arrive.
async fn write_gpx(
    conn: &mut sqlx::PgConnection,
    device_id: Uuid,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
    order: Order,
    out: &mut Chunks<'_>,
) -> Result<(), WriteError> {
    use quick_xml::{
        Writer,
        events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event},
    };
    let element = |writer: &mut Writer<&mut Vec<u8>>, name: &str, text: &str| -> std::io::Result<()> {
        writer.write_event(Event::Start(BytesStart::new(name)))?;
        writer.write_event(Event::Text(BytesText::new(text)))?;
        writer.write_event(Event::End(BytesEnd::new(name)))
    };
    {
        let mut writer = Writer::new(&mut out.buffer);
        writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let gpx = BytesStart::new("gpx").with_attributes([
            ("version", "1.1"),
            ("creator", "Phone Manager"),
            ("xmlns", "http://www.topografix.com/GPX/1/1"),
            ("xmlns:pm", "https://phone-manager.example/gpx/1"),
        ]);
        writer.write_event(Event::Start(gpx))?;
        writer.write_event(Event::Start(BytesStart::new("trk")))?;
        element(&mut writer, "name", &format!("device {device_id}"))?;
        writer.write_event(Event::Start(BytesStart::new("trkseg")))?;
    }
    let mut odometer = Odometer::default();
    let mut rows = db::locations::stream_range(&mut *conn, device_id, lower, upper, order);
    while let Some(row) = rows.next().await {
        let fix = row?.fix;
        odometer.pass(&fix);
        {
            let mut writer = Writer::new(&mut out.buffer);
            let (lat, lon) = (fix.latitude.to_string(), fix.longitude.to_string());
            let trkpt =
                BytesStart::new("trkpt").with_attributes([("lat", lat.as_str()), ("lon", lon.as_str())]);
            writer.write_event(Event::Start(trkpt))?;
            if let Some(altitude) = fix.altitude {
                element(&mut writer, "ele", &altitude.to_string())?;
            }
            element(
                &mut writer,
                "time",
                &fix.captured_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            )?;
            writer.write_event(Event::End(BytesEnd::new("trkpt")))?;
        }
        out.flush_if_full().await?;
    }
    drop(rows);
    {
        let mut writer = Writer::new(&mut out.buffer);
        writer.write_event(Event::End(BytesEnd::new("trkseg")))?;
        writer.write_event(Event::End(BytesEnd::new("trk")))?;
        writer.write_event(Event::Start(BytesStart::new("extensions")))?;
        element(&mut writer, "pm:distance_m", &odometer.metres.to_string())?;
        writer.write_event(Event::End(BytesEnd::new("extensions")))?;
        writer.write_event(Event::End(BytesEnd::new("gpx")))?;
    }
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(latitude: f64, longitude: f64) -> StoredFix {
        StoredFix {
            fix: Fix {
                captured_at: DateTime::UNIX_EPOCH,
                latitude,
                longitude,
                accuracy: 5.0,
                altitude: None,
                bearing: None,
                speed: None,
                provider: None,
                battery_level: None,
                network_type: None,
            },
            created_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let device_id = Uuid::new_v4();
        let range = Range::new(Some(1_000), Some(9_000_000)).unwrap();
        let after = DateTime::from_timestamp_millis(5_000).unwrap();
        let cursor = Cursor { device_id, order: Order::Desc, range, after };
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&text, device_id, Order::Desc).unwrap(), cursor);
        assert!(Cursor::decode(&text, Uuid::new_v4(), Order::Desc).is_err(), "another device");
        assert!(Cursor::decode(&text, device_id, Order::Asc).is_err(), "another order");
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        bytes[40] ^= 1;
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(&bytes), device_id, Order::Desc).is_err(), "modified");
        assert!(Cursor::decode("not a cursor", device_id, Order::Desc).is_err());
        assert!(Cursor::decode("", device_id, Order::Desc).is_err());
    }

    #[test]
    fn ranges_are_checked() {
        assert!(Range::new(Some(10), Some(10)).is_ok());
        assert!(Range::new(Some(11), Some(10)).is_err());
        assert!(Range::new(None, None).is_ok());
    }

    #[test]
    fn lengths_are_haversine_metres() {
        // One degree of longitude is ~111 km at the equator and ~55.6 km at 60°N.
        let equator = length([&stored(0.0, 0.0).fix, &stored(0.0, 1.0).fix]);
        let north = length([&stored(60.0, 0.0).fix, &stored(60.0, 1.0).fix]);
        assert!((equator - 111_195.0).abs() < 50.0, "{equator}");
        assert!((north - 55_597.0).abs() < 50.0, "{north}");
        assert_eq!(length([&stored(1.0, 1.0).fix]), 0.0);
    }

    #[test]
    fn simplification_keeps_corners_and_drops_collinear_points() {
        let line: Vec<StoredFix> = (0..50).map(|i| stored(48.0, 11.0 + f64::from(i) * 0.001)).collect();
        assert_eq!(simplify(&line, 1.0), vec![0, 49]);
        // A zig-zag north of 60° whose corners stand 50 m off the line between them.
        let zigzag: Vec<StoredFix> = (0..9)
            .map(|i| stored(60.0 + if i % 2 == 0 { 0.0 } else { 0.00045 }, 10.0 + f64::from(i) * 0.002))
            .collect();
        assert_eq!(simplify(&zigzag, 10.0).len(), 9, "corners 50 m off survive a 10 m tolerance");
        assert_eq!(simplify(&zigzag, 100.0), vec![0, 8], "and go at 100 m");
    }
}
