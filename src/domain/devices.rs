//! Devices and groups: registration rules, the group size limit, deactivation, listing.

use sqlx::PgPool;
use uuid::Uuid;
use validator::ValidationError;

use crate::{
    db,
    error::{ApiError, ApiResult},
    metrics,
    model::{Device, GroupMember, Platform, Registration},
};

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
        if Platform::parse(value).is_some() {
            return Ok(());
        }
        let names: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
        Err(problem("platform", format!("must be one of: {}", names.join(", "))))
    }

    pub fn fcm_token(value: &str) -> Result<(), ValidationError> {
        text::plain(value, 1, FCM_TOKEN_MAX)
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

/// Registration, deactivation and group listings.
#[derive(Clone)]
pub struct Devices {
    pool: PgPool,
    max_per_group: u32,
}

impl Devices {
    /// `max_per_group`: active devices a group may hold (`limits.max_devices_per_group`).
    pub fn new(pool: PgPool, max_per_group: u32) -> Self {
        Self { pool, max_per_group }
    }

    /// Creates or updates a device by `device_id`, reactivating it if it was deactivated.
    ///
    /// The group limit counts active devices only and is race-free: the transaction takes an
    /// advisory lock on the *target group* (other groups proceed in parallel), so two devices
    /// joining a group of 19 at once cannot make 21. A device already active in the group never
    /// trips the limit.
    pub async fn register(&self, registration: Registration) -> ApiResult<Device> {
        let mut tx = db::begin(&self.pool).await?;
        db::devices::lock_group(&mut tx, &registration.group_id).await?;
        let current = db::devices::find_membership_for_update(&mut tx, registration.device_id).await?;
        let already_member =
            current.as_ref().is_some_and(|m| m.active && m.group_id == registration.group_id);
        if !already_member {
            ensure_room_in_group(&mut tx, &registration.group_id, self.max_per_group).await?;
        }
        let device = db::devices::upsert(&mut tx, &registration).await?;
        db::commit(tx).await?;
        metrics::device_registered(current.is_none());
        Ok(device)
    }

    /// Soft-deletes a device: it leaves listings and stops counting toward its group's limit,
    /// but keeps its locations. Deactivating an inactive device succeeds (the request is
    /// idempotent); an unknown one is 404.
    pub async fn deactivate(&self, device_id: Uuid) -> ApiResult<()> {
        if db::devices::deactivate(&self.pool, device_id).await? {
            Ok(())
        } else {
            Err(ApiError::NotFound("Device not found".into()))
        }
    }

    /// Active devices of a group by display name, each with its newest fix by `captured_at`, in
    /// one query. An unknown group is simply empty.
    pub async fn list_group(&self, group_id: &str) -> ApiResult<Vec<GroupMember>> {
        Ok(db::devices::list_active_in_group(&self.pool, group_id).await?)
    }
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
