//! Uploads of GPS fixes: the field rules, and storing an upload (single or batch) once.
//!
//! Every fix of an upload is accounted for in its answer: stored, a duplicate of one already
//! stored for that device and capture instant (acknowledged, not stored again), or captured
//! before the retention period (acknowledged, not stored). A retry, a resent offline buffer or
//! an old fix therefore never costs the phone an error, and never a second row.

use std::{collections::HashSet, sync::Arc};

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use tracing::Instrument;
use validator::ValidationError;

use crate::{
    config::LimitsSettings,
    db,
    domain::{
        access::{self, Refusal},
        idempotency,
    },
    error::{ApiError, ApiResult},
    infra::{
        ingest::{Ingest, Write, Written},
        last_seen::LastSeen,
    },
    metrics,
    model::{Caller, IdempotencyKey, Upload, UploadReceipt},
};

pub const TEXT_FIELD_MAX: usize = 50;
/// Altitude bounds in metres (mirrors chk_altitude): below the deepest mine, above any aircraft.
pub const ALTITUDE_LIMIT: f64 = 1_000_000.0;
/// Largest accuracy or speed (mirrors chk_accuracy and chk_speed): a round number far beyond any
/// real measurement, stated exactly in the API document.
pub const MEASUREMENT_MAX: f64 = 3.4e38;

/// The server's clock and how far ahead of it a fix's timestamp may be: the context the
/// timestamp rule is checked in (`limits.max_clock_skew_secs`, 300 s by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: DateTime<Utc>,
    pub max_skew: Duration,
}

/// Field rules, used by the HTTP DTOs' `#[validate(custom(...))]` attributes. Bounds are
/// inclusive; NaN and infinities are always rejected.
///
/// Optional telemetry has "unknown" conventions that must never cost a phone its position:
/// Android reports `battery_level` -1 (or `Integer.MIN_VALUE`) when it cannot read the battery,
/// iOS `speed` and `course` (our `bearing`) -1 when they are invalid, and apps send `""` for a
/// provider or network type they do not know. A negative battery level, bearing or speed and an
/// empty (or blank) provider or network type therefore pass here and are stored as unknown
/// (NULL); values that are out of range without being such a marker (battery 101, bearing 361)
/// are refused.
pub mod rules {
    use super::*;

    use crate::domain::text::{self, problem};

    fn within(value: f64, min: f64, max: f64) -> bool {
        value.is_finite() && (min..=max).contains(&value)
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

    /// Required, so no unknown marker: a negative horizontal accuracy is how iOS says the
    /// position itself is invalid.
    pub fn accuracy(value: f64) -> Result<(), ValidationError> {
        if !value.is_finite() || value < 0.0 {
            return Err(problem("range", "Accuracy must be non-negative"));
        }
        if value > MEASUREMENT_MAX {
            return Err(problem("range", "Accuracy must be at most 3.4e38"));
        }
        Ok(())
    }

    pub fn altitude(value: f64) -> Result<(), ValidationError> {
        within(value, -ALTITUDE_LIMIT, ALTITUDE_LIMIT)
            .then_some(())
            .ok_or_else(|| problem("range", "Altitude must be between -1000000 and 1000000"))
    }

    /// 0 to 360; negative means unknown.
    pub fn bearing(value: f64) -> Result<(), ValidationError> {
        (value.is_finite() && value <= 360.0).then_some(()).ok_or_else(|| {
            problem("range", "Bearing must be between 0 and 360 (a negative value means unknown)")
        })
    }

    /// At most 3.4e38; negative means unknown.
    pub fn speed(value: f64) -> Result<(), ValidationError> {
        (value.is_finite() && value <= MEASUREMENT_MAX)
            .then_some(())
            .ok_or_else(|| problem("range", "Speed must be at most 3.4e38 (a negative value means unknown)"))
    }

    /// At most 100; negative means unknown.
    pub fn battery_level(value: i32) -> Result<(), ValidationError> {
        (value <= 100).then_some(()).ok_or_else(|| {
            problem("range", "Battery level must be between 0 and 100 (a negative value means unknown)")
        })
    }

    /// Provider and network type: at most 50 characters, no control characters; empty or blank
    /// means unknown.
    pub fn short_text(value: &str) -> Result<(), ValidationError> {
        if value.trim().is_empty() {
            return Ok(());
        }
        text::plain(value, 1, TEXT_FIELD_MAX)
    }

    /// Milliseconds since the Unix epoch, not negative, at most `clock.max_skew` ahead of the
    /// server's clock. There is no lower bound: an old fix is acknowledged (and stored if it is
    /// within the retention period).
    pub fn timestamp(value: i64, clock: &Clock) -> Result<(), ValidationError> {
        let Some(at) = DateTime::from_timestamp_millis(value).filter(|_| value >= 0) else {
            return Err(problem("timestamp", "must be milliseconds since the Unix epoch"));
        };
        if at > clock.now + clock.max_skew {
            return Err(problem(
                "timestamp",
                format!(
                    "Timestamp must not be more than {} s ahead of the server's clock",
                    clock.max_skew.num_seconds()
                ),
            ));
        }
        Ok(())
    }

    /// Optional telemetry as stored: an unknown marker (negative number) is no value.
    pub fn known<T: Copy + PartialOrd + Default>(value: Option<T>) -> Option<T> {
        value.filter(|v| *v >= T::default())
    }

    /// Optional text as stored: empty or blank is no value; anything else exactly as sent.
    pub fn known_text(value: Option<&str>) -> Option<String> {
        value.filter(|v| !v.trim().is_empty()).map(str::to_owned)
    }
}

/// The answer to an upload: fresh, or the stored answer to an earlier request with the same
/// `Idempotency-Key` (replayed as it was, status and body).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Fresh(UploadReceipt),
    Replayed { status: u16, body: serde_json::Value },
}

/// Stores uploads through the group-commit writers ([`Ingest`]), and marks devices seen.
pub struct Uploads {
    pool: PgPool,
    ingest: Ingest,
    last_seen: Arc<LastSeen>,
    max_batch: usize,
    retention: Duration,
    max_clock_skew: Duration,
}

impl Uploads {
    pub fn new(pool: PgPool, ingest: Ingest, last_seen: Arc<LastSeen>, limits: &LimitsSettings) -> Self {
        Self {
            pool,
            ingest,
            last_seen,
            max_batch: limits.max_batch_size as usize,
            retention: limits.location_retention(),
            max_clock_skew: limits.max_clock_skew(),
        }
    }

    /// The clock an upload's timestamps are checked against, now.
    pub fn clock(&self) -> Clock {
        Clock { now: Utc::now(), max_skew: self.max_clock_skew }
    }

    /// Stores the upload's new fixes atomically (one statement), or none; marks the device seen.
    /// 400 for an empty upload or one of more than `max_batch` fixes; 404 when the device is
    /// unknown or inactive; 403 when an `app` key's device token names another device.
    ///
    /// Uploads go to the group-commit writers: an upload may share its statement and commit
    /// with concurrent ones, and answers once they are committed. With an `Idempotency-Key`, the
    /// key is claimed in the same transaction as the rows and holds the answer: a retry within
    /// 24 h gets that answer again (a concurrent one waits for it), reusing the key for another
    /// request is refused with 422. Only successful answers are stored; a failed request (an
    /// unregistered device, say) leaves nothing behind and may be retried with the same key.
    pub async fn store(
        &self,
        caller: &Caller,
        upload: Upload,
        key: Option<IdempotencyKey>,
    ) -> ApiResult<Outcome> {
        access::act_for(&self.pool, caller, upload.device_id, Refusal::Forbidden, "locations.upload").await?;
        let api_key_id = caller.key.id;
        let count = upload.fixes.len();
        if !(1..=self.max_batch).contains(&count) {
            return Err(ApiError::field("locations", format!("must hold 1 to {} locations", self.max_batch)));
        }
        let device_id = upload.device_id;
        let mut receipt = UploadReceipt::new(count);
        let kept = Utc::now() - self.retention;
        let mut instants = HashSet::with_capacity(count);
        let fixes = upload
            .fixes
            .into_iter()
            .filter(|fix| {
                if fix.captured_at < kept {
                    receipt.expired_count += 1;
                    false
                } else if !instants.insert(fix.captured_at) {
                    receipt.duplicate_count += 1;
                    false
                } else {
                    true
                }
            })
            .collect();
        let write = Write { device_id, fixes, key: key.clone().map(|key| (api_key_id, key)), receipt };
        let store = tracing::info_span!("locations.store", device_check = true, fixes = count);
        match self.ingest.store(write).instrument(store).await? {
            Written::Stored(receipt) => {
                metrics::locations_uploaded(&receipt);
                self.last_seen.touch(device_id);
                Ok(Outcome::Fresh(receipt))
            }
            Written::KeyTaken => {
                let key = key.expect("only a keyed upload finds its key taken");
                let mut conn = self.pool.acquire().await?;
                let stored = db::idempotency::stored_response(&mut conn, api_key_id, &key)
                    .instrument(tracing::info_span!("idempotency.replay"))
                    .await?;
                let (status, body) = idempotency::replay(&key, stored)?;
                Ok(Outcome::Replayed { status, body })
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
        assert!(accuracy(-1.0).is_err(), "a negative accuracy is an invalid position, not unknown");
        assert_eq!(accuracy(1e39).unwrap_err().message.unwrap(), "Accuracy must be at most 3.4e38");
        assert!(accuracy(3.4e38).is_ok());
        assert!(altitude(-1_000_000.0).is_ok() && altitude(1_000_001.0).is_err());
    }

    #[test]
    fn unknown_markers_pass_and_are_stored_as_no_value() {
        assert!(bearing(0.0).is_ok() && bearing(360.0).is_ok() && bearing(-1.0).is_ok());
        assert!(bearing(360.01).is_err() && bearing(f64::NAN).is_err());
        assert!(speed(0.0).is_ok() && speed(-1.0).is_ok() && speed(f64::INFINITY).is_err());
        assert!(battery_level(0).is_ok() && battery_level(100).is_ok());
        assert!(battery_level(-1).is_ok() && battery_level(i32::MIN).is_ok());
        assert!(battery_level(101).is_err());
        assert_eq!(known(Some(-1)), None);
        assert_eq!(known(Some(i32::MIN)), None);
        assert_eq!(known(Some(0)), Some(0));
        assert_eq!(known(Some(-1.0)), None);
        assert_eq!(known(Some(-0.0)), Some(-0.0), "negative zero is zero");
        assert_eq!(known::<f64>(None), None);
        assert_eq!(known_text(Some("")), None);
        assert_eq!(known_text(Some("  ")), None);
        assert_eq!(known_text(Some(" gps ")).as_deref(), Some(" gps "), "kept exactly as sent");
    }

    #[test]
    fn text_fields_are_bounded() {
        assert!(short_text("gps").is_ok());
        assert!(short_text(&"x".repeat(50)).is_ok());
        assert!(short_text(&"x".repeat(51)).is_err());
        assert!(short_text("").is_ok(), "empty means unknown");
        assert!(short_text("wi\nfi").is_err());
    }

    #[test]
    fn timestamps_up_to_the_skew_ahead_and_any_age() {
        let now = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let clock = Clock { now, max_skew: Duration::seconds(300) };
        let ms = |at: DateTime<Utc>| at.timestamp_millis();
        assert!(timestamp(ms(now), &clock).is_ok());
        assert!(timestamp(ms(now + Duration::seconds(300)), &clock).is_ok());
        let ahead = timestamp(ms(now + Duration::seconds(300)) + 1, &clock).unwrap_err();
        assert_eq!(
            ahead.message.unwrap(),
            "Timestamp must not be more than 300 s ahead of the server's clock"
        );
        assert!(timestamp(ms(now - Duration::days(400)), &clock).is_ok(), "old fixes are acknowledged");
        assert!(timestamp(0, &clock).is_ok());
        assert!(timestamp(-1, &clock).is_err());
        assert!(timestamp(i64::MAX, &clock).is_err());
    }
}
