//! Devices and groups: registration rules, the group size limit, deactivation, listing.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;
use validator::ValidationError;

use crate::{
    db::{self, devices::DeviceRow},
    domain::locations::LastLocation,
    error::{ApiError, ApiResult},
    metrics,
};

/// Platforms a device may declare. Omitted on first registration means `android`.
pub const PLATFORMS: [&str; 2] = ["android", "ios"];
pub const DEFAULT_PLATFORM: &str = "android";
pub const DISPLAY_NAME_MAX: usize = 50;
pub const GROUP_ID_MAX: usize = 50;
pub const FCM_TOKEN_MAX: usize = 4096;
/// JSON Schema pattern of [`rules::display_name`]: optional surrounding whitespace around 2–50
/// characters that start and end with a visible one; no control characters anywhere.
pub const DISPLAY_NAME_PATTERN: &str = r"^[^\S\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]{0,48}[^\s\x00-\x1f\x7f-\x9f][^\S\x00-\x1f\x7f-\x9f]*$";

/// Rules for request fields, used by the HTTP DTOs' `#[validate(custom(...))]` attributes so
/// that every problem of a request is reported at once.
pub mod rules {
    use super::*;

    use crate::domain::text::{self, problem};

    pub fn device_id(value: &str) -> Result<(), ValidationError> {
        Uuid::parse_str(value).map(drop).map_err(|_| problem("uuid", "must be a UUID"))
    }

    /// No control characters anywhere, and 2–50 characters once surrounding whitespace is
    /// trimmed ([`DISPLAY_NAME_PATTERN`]).
    pub fn display_name(value: &str) -> Result<(), ValidationError> {
        if text::has_control_characters(value) {
            return Err(problem("control_characters", "must not contain control characters"));
        }
        let length = value.trim().chars().count();
        if !(2..=DISPLAY_NAME_MAX).contains(&length) {
            return Err(problem("length", format!("must be 2 to {DISPLAY_NAME_MAX} characters")));
        }
        Ok(())
    }

    /// 2–50 characters from `A-Z a-z 0-9 _ -`.
    pub fn group_id(value: &str) -> Result<(), ValidationError> {
        let valid = (2..=GROUP_ID_MAX).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(())
        } else {
            Err(problem(
                "group_id",
                format!("must be 2 to {GROUP_ID_MAX} characters of letters, digits, '-' and '_'"),
            ))
        }
    }

    pub fn platform(value: &str) -> Result<(), ValidationError> {
        if PLATFORMS.contains(&value) {
            Ok(())
        } else {
            Err(problem("platform", format!("must be one of: {}", PLATFORMS.join(", "))))
        }
    }

    pub fn fcm_token(value: &str) -> Result<(), ValidationError> {
        text::plain(value, 1, FCM_TOKEN_MAX)
    }
}

/// A registration that passed validation.
#[derive(Debug, Clone)]
pub struct Registration {
    pub device_id: Uuid,
    pub display_name: String,
    pub group_id: String,
    /// `None` keeps the stored platform (or `android` for a new device).
    pub platform: Option<String>,
    /// `None` keeps the stored token.
    pub fcm_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: Uuid,
    pub display_name: String,
    pub group_id: String,
    pub platform: String,
    pub active: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DeviceRow> for Device {
    fn from(row: DeviceRow) -> Self {
        Self {
            device_id: row.device_id,
            display_name: row.display_name,
            group_id: row.group_id,
            platform: row.platform,
            active: row.active,
            last_seen_at: row.last_seen_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Refuses (409) a device joining `group_id` when the group already has `max_per_group` active
/// devices. The caller must hold the group's lock (`db::devices::lock_group`) in `tx`, so the
/// count cannot change before the device joins.
pub async fn ensure_room_in_group(
    tx: &mut sqlx::PgConnection,
    group_id: &str,
    max_per_group: u32,
) -> ApiResult<()> {
    let active = db::devices::count_active_in_group(tx, group_id).await?;
    if active >= i64::from(max_per_group) {
        return Err(ApiError::Conflict(format!("Group has reached maximum device limit ({max_per_group})")));
    }
    Ok(())
}

/// Creates or updates a device by `device_id`, reactivating it if it was deactivated.
///
/// The group limit counts active devices only and is race-free: the transaction takes an
/// advisory lock on the *target group* (other groups proceed in parallel), so two devices
/// joining a group of 19 at once cannot make 21. A device already active in the group never
/// trips the limit.
pub async fn register(pool: &PgPool, registration: Registration, max_per_group: u32) -> ApiResult<Device> {
    let mut tx = db::begin(pool).await?;
    db::devices::lock_group(&mut tx, &registration.group_id).await?;
    let current = db::devices::find_membership_for_update(&mut tx, registration.device_id).await?;
    let already_member = current.is_some_and(|m| m.active && m.group_id == registration.group_id);
    if !already_member {
        ensure_room_in_group(&mut tx, &registration.group_id, max_per_group).await?;
    }
    let (row, created) = db::devices::upsert(
        &mut tx,
        db::devices::Upsert {
            device_id: registration.device_id,
            display_name: &registration.display_name,
            group_id: &registration.group_id,
            platform: registration.platform.as_deref(),
            default_platform: DEFAULT_PLATFORM,
            fcm_token: registration.fcm_token.as_deref(),
        },
    )
    .await?;
    db::commit(tx).await?;
    metrics::device_registered(created);
    Ok(row.into())
}

/// Soft-deletes a device: it leaves listings and stops counting toward its group's limit, but
/// keeps its locations. Deactivating an inactive device succeeds (the request is idempotent).
pub async fn deactivate(pool: &PgPool, device_id: Uuid) -> ApiResult<()> {
    if db::devices::deactivate(pool, device_id).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound("Device not found".into()))
    }
}

/// A group member as listings show it: the device and its newest fix, if any.
#[derive(Debug, Clone)]
pub struct Member {
    pub device: Device,
    pub last_location: Option<LastLocation>,
}

/// Active devices of a group by display name, each with its newest fix by `captured_at`, in
/// one query. An unknown group is simply empty.
pub async fn list_group(pool: &PgPool, group_id: &str) -> ApiResult<Vec<Member>> {
    let rows = db::devices::list_active_in_group(pool, group_id).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let last_location =
                match (row.last_latitude, row.last_longitude, row.last_accuracy, row.last_captured_at) {
                    (Some(latitude), Some(longitude), Some(accuracy), Some(captured_at)) => {
                        Some(LastLocation { latitude, longitude, accuracy, captured_at })
                    }
                    _ => None,
                };
            Member { device: row.device.into(), last_location }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::rules::*;

    #[test]
    fn display_name_bounds_are_inclusive_after_trimming() {
        assert!(display_name("ab").is_ok());
        assert!(display_name(&"x".repeat(50)).is_ok());
        assert!(display_name("a").is_err());
        assert!(display_name(&"x".repeat(51)).is_err());
        assert!(display_name("  a  ").is_err(), "trimmed before counting");
        assert!(display_name("  ab  ").is_ok());
        assert!(display_name("Zoë's 📱").is_ok(), "counts characters, not bytes");
        assert!(display_name("tab\there").is_err());
    }

    #[test]
    fn group_id_allows_letters_digits_dash_underscore() {
        assert!(group_id("ab").is_ok());
        assert!(group_id("family-group_123").is_ok());
        assert!(group_id(&"g".repeat(50)).is_ok());
        assert!(group_id("a").is_err());
        assert!(group_id(&"g".repeat(51)).is_err());
        assert!(group_id("has space").is_err());
        assert!(group_id("émigré").is_err());
    }

    #[test]
    fn platform_and_token() {
        assert!(platform("android").is_ok());
        assert!(platform("ios").is_ok());
        assert!(platform("Android").is_err());
        assert!(fcm_token(&"t".repeat(4096)).is_ok());
        assert!(fcm_token(&"t".repeat(4097)).is_err());
        assert!(fcm_token("").is_err());
    }

    #[test]
    fn display_name_pattern_matches_the_rule() {
        let pattern = regex::Regex::new(super::DISPLAY_NAME_PATTERN).unwrap();
        let long = "x".repeat(50);
        let too_long = "x".repeat(51);
        for sample in [
            "ab",
            "  ab  ",
            "a",
            "  a  ",
            "",
            "   ",
            "Zoë's 📱",
            "a b",
            "a\tb",
            "\tab",
            "ab\n",
            "a\u{0}b",
            long.as_str(),
            too_long.as_str(),
            "\u{a0}ab\u{a0}",
            "a\u{85}b",
        ] {
            assert_eq!(pattern.is_match(sample), display_name(sample).is_ok(), "{sample:?}");
        }
    }

    #[test]
    fn device_id_must_be_a_uuid() {
        assert!(device_id("550e8400-e29b-41d4-a716-446655440000").is_ok());
        assert!(device_id("550e8400").is_err());
    }
}
