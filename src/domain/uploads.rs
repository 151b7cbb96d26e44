//! Uploads of GPS fixes: the field rules, and storing an upload (single or batch) once.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use tracing::Instrument;
use validator::ValidationError;

use crate::{
    db::{self, locations::KeyedInsert},
    domain::idempotency,
    error::{ApiError, ApiResult, ResultExt},
    infra::{ingest::Ingest, last_seen::LastSeen},
    metrics,
    model::{IdempotencyKey, Upload, UploadReceipt},
};

/// A fix may be this far in the future (phone clocks drift).
pub const MAX_CLOCK_SKEW: Duration = Duration::seconds(60);
/// Older fixes are refused: offline batches older than this are stale for a live map.
pub const MAX_AGE: Duration = Duration::days(7);
pub const TEXT_FIELD_MAX: usize = 50;
/// Altitude bounds in metres (mirrors chk_altitude): below the deepest mine, above any aircraft.
pub const ALTITUDE_LIMIT: f64 = 1_000_000.0;
/// Largest accuracy or speed: a round number just below the largest REAL (3.4028235e38), so the
/// bound can be stated exactly in the API document.
pub const REAL_MAX: f64 = 3.4e38;

/// Field rules, used by the HTTP DTOs' `#[validate(custom(...))]` attributes. Bounds are
/// inclusive; NaN and infinities are always rejected.
pub mod rules {
    use super::*;

    use crate::domain::text::{self, problem};

    fn within(value: f64, min: f64, max: f64) -> bool {
        value.is_finite() && (min..=max).contains(&value)
    }

    /// Non-negative and at most [`REAL_MAX`], so it fits a PostgreSQL REAL.
    fn measurement(value: f64, name: &str) -> Result<(), ValidationError> {
        if !value.is_finite() || value < 0.0 {
            return Err(problem("range", format!("{name} must be non-negative")));
        }
        if value > REAL_MAX {
            return Err(problem("range", format!("{name} must be at most 3.4e38")));
        }
        Ok(())
    }

    pub fn latitude(value: f64) -> Result<(), ValidationError> {
        within(value, -90.0, 90.0)
            .then_some(())
            .ok_or_else(|| problem("range", "Latitude must be between -90 and 90"))
    }

    pub fn longitude(value: f64) -> Result<(), ValidationError> {
        within(value, -180.0, 180.0)
            .then_some(())
            .ok_or_else(|| problem("range", "Longitude must be between -180 and 180"))
    }

    pub fn accuracy(value: f64) -> Result<(), ValidationError> {
        measurement(value, "Accuracy")
    }

    pub fn altitude(value: f64) -> Result<(), ValidationError> {
        within(value, -ALTITUDE_LIMIT, ALTITUDE_LIMIT)
            .then_some(())
            .ok_or_else(|| problem("range", "Altitude must be between -1000000 and 1000000"))
    }

    pub fn bearing(value: f64) -> Result<(), ValidationError> {
        within(value, 0.0, 360.0)
            .then_some(())
            .ok_or_else(|| problem("range", "Bearing must be between 0 and 360"))
    }

    pub fn speed(value: f64) -> Result<(), ValidationError> {
        measurement(value, "Speed")
    }

    pub fn battery_level(value: i64) -> Result<(), ValidationError> {
        (0..=100)
            .contains(&value)
            .then_some(())
            .ok_or_else(|| problem("range", "Battery level must be between 0 and 100"))
    }

    /// Provider and network type: 1–50 characters, no control characters.
    pub fn short_text(value: &str) -> Result<(), ValidationError> {
        text::plain(value, 1, TEXT_FIELD_MAX)
    }

    /// Milliseconds since the Unix epoch, no more than 60 s ahead of the server's clock and
    /// no more than 7 days old.
    pub fn timestamp(value: i64) -> Result<(), ValidationError> {
        timestamp_at(value, Utc::now())
    }

    pub fn timestamp_at(value: i64, now: DateTime<Utc>) -> Result<(), ValidationError> {
        let Some(at) = DateTime::from_timestamp_millis(value) else {
            return Err(problem("timestamp", "must be milliseconds since the Unix epoch"));
        };
        if at > now + MAX_CLOCK_SKEW {
            return Err(problem("timestamp", "Timestamp must not be in the future"));
        }
        if at < now - MAX_AGE {
            return Err(problem("timestamp", "Timestamp must not be older than 7 days"));
        }
        Ok(())
    }
}

/// The answer to an upload: fresh, or the stored answer to an earlier request with the same
/// `Idempotency-Key` (replayed as it was, status and body).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Fresh(UploadReceipt),
    Replayed { status: u16, body: serde_json::Value },
}

/// Stores uploads: the group-commit writers for uploads without a key, one statement of their
/// own for uploads with one, and the `last_seen_at` write-behind for both.
pub struct Uploads {
    pool: PgPool,
    ingest: Ingest,
    last_seen: Arc<LastSeen>,
    max_batch: usize,
}

impl Uploads {
    /// `max_batch`: the most fixes one upload may carry (`limits.max_batch_size`).
    pub fn new(pool: PgPool, ingest: Ingest, last_seen: Arc<LastSeen>, max_batch: usize) -> Self {
        Self { pool, ingest, last_seen, max_batch }
    }

    /// Stores every fix of the upload atomically (one statement), or none; marks the device
    /// seen. 400 for an empty upload or one of more than `max_batch` fixes; 404 when the device
    /// is unknown or inactive.
    ///
    /// Without an idempotency key, the upload goes to the group-commit writers ([`Ingest`]): it
    /// may share its statement and commit with concurrent uploads, and answers once they are
    /// committed.
    ///
    /// With one, the key is claimed (with its answer) and the fixes inserted by one statement of
    /// their own: a concurrent duplicate waits on that claim and then replays this request's
    /// stored answer, so it can never insert twice. Only successful answers are stored; a failed
    /// request (say, an unregistered device) leaves nothing behind and may be retried with the
    /// same key.
    pub async fn store(
        &self,
        api_key_id: i64,
        upload: Upload,
        idempotency: Option<&IdempotencyKey>,
    ) -> ApiResult<Outcome> {
        let (device_id, count) = (upload.device_id, upload.fixes.len());
        if !(1..=self.max_batch).contains(&count) {
            return Err(ApiError::field("locations", format!("must hold 1 to {} locations", self.max_batch)));
        }
        let store = tracing::info_span!("locations.store", device_check = true, fixes = count);
        let receipt = UploadReceipt { success: true, processed_count: count };
        match idempotency {
            None => self.ingest.store(upload).instrument(store).await?,
            Some(key) => {
                if let Some(replayed) = self.store_once(api_key_id, upload, key, receipt, store).await? {
                    return Ok(replayed);
                }
            }
        }
        metrics::locations_uploaded(count);
        self.last_seen.touch(device_id);
        Ok(Outcome::Fresh(receipt))
    }

    /// The idempotent path: key claim, rows and stored answer in one statement (see
    /// [`db::locations::insert_once`]); a key already held replays its stored answer.
    async fn store_once(
        &self,
        api_key_id: i64,
        upload: Upload,
        key: &IdempotencyKey,
        receipt: UploadReceipt,
        store: tracing::Span,
    ) -> ApiResult<Option<Outcome>> {
        let body = serde_json::to_value(receipt).expect("a receipt serializes");
        let mut conn = self.pool.acquire().await?;
        let inserted = db::locations::insert_once(
            &mut conn,
            upload.device_id,
            &upload.fixes,
            api_key_id,
            key,
            (200, &body),
        )
        .instrument(store)
        .await
        // A device deleted while the statement ran.
        .on_constraints(
            &["fk_locations_device", "fk_idempotency_keys_device"],
            ApiError::device_not_registered,
        )?;
        match inserted {
            KeyedInsert::Stored => Ok(None),
            KeyedInsert::NoDevice => Err(ApiError::device_not_registered()),
            KeyedInsert::KeyTaken => {
                let stored = db::idempotency::stored_response(&mut conn, api_key_id, key)
                    .instrument(tracing::info_span!("idempotency.replay"))
                    .await?;
                let (status, body) = idempotency::replay(key, stored)?;
                Ok(Some(Outcome::Replayed { status, body }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rules::*;
    use super::*;

    #[test]
    fn coordinates_are_inclusive_and_finite() {
        for ok in [-90.0, 0.0, 90.0] {
            assert!(latitude(ok).is_ok());
        }
        for bad in [-90.000_001, 90.000_001, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(latitude(bad).unwrap_err().message.unwrap(), "Latitude must be between -90 and 90");
        }
        assert!(longitude(-180.0).is_ok() && longitude(180.0).is_ok());
        assert!(longitude(180.000_001).is_err() && longitude(f64::NAN).is_err());
    }

    #[test]
    fn measurements() {
        assert!(accuracy(0.0).is_ok());
        assert_eq!(accuracy(-0.1).unwrap_err().message.unwrap(), "Accuracy must be non-negative");
        assert!(accuracy(1e300).is_err(), "would overflow REAL");
        assert_eq!(accuracy(1e39).unwrap_err().message.unwrap(), "Accuracy must be at most 3.4e38");
        assert!(accuracy(3.4e38).is_ok());
        assert!(bearing(0.0).is_ok() && bearing(360.0).is_ok());
        assert!(bearing(-0.01).is_err() && bearing(360.01).is_err());
        assert!(speed(0.0).is_ok() && speed(-1.0).is_err() && speed(f64::INFINITY).is_err());
        assert!(battery_level(0).is_ok() && battery_level(100).is_ok());
        assert!(battery_level(-1).is_err() && battery_level(101).is_err());
        assert!(altitude(-1_000_000.0).is_ok() && altitude(1_000_001.0).is_err());
    }

    #[test]
    fn text_fields_are_bounded() {
        assert!(short_text("gps").is_ok());
        assert!(short_text(&"x".repeat(50)).is_ok());
        assert!(short_text(&"x".repeat(51)).is_err());
        assert!(short_text("").is_err());
        assert!(short_text("wi\nfi").is_err());
    }

    #[test]
    fn timestamps_within_skew_and_age() {
        let now = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let ms = |at: DateTime<Utc>| at.timestamp_millis();
        assert!(timestamp_at(ms(now), now).is_ok());
        assert!(timestamp_at(ms(now + MAX_CLOCK_SKEW), now).is_ok());
        assert!(timestamp_at(ms(now + MAX_CLOCK_SKEW) + 1, now).is_err());
        assert!(timestamp_at(ms(now - MAX_AGE), now).is_ok());
        assert!(timestamp_at(ms(now - MAX_AGE) - 1, now).is_err());
        assert!(timestamp_at(i64::MAX, now).is_err());
    }
}
