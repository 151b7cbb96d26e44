//! Devices and groups: registration rules, the group size limit, deactivation, listing.

use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use validator::ValidationError;

use crate::{
    db,
    domain::{access, audit, credentials, secrets},
    error::{ApiError, ApiResult},
    infra::{
        credential_cache::TokenCache,
        rate_limit::{RateLimiter, Scope, Subject},
    },
    metrics,
    model::{
        Caller, Device, GroupMember, Invalidation, Invite, KeyScope, NewAuditEntry, Platform, Registration,
    },
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
        return Err(group_full(max_per_group));
    }
    Ok(())
}

/// Invitations: the default and the largest number of uses, and lifetimes in hours.
pub const INVITE_USES_DEFAULT: i32 = 1;
pub const INVITE_USES_MAX: i32 = 20;
pub const INVITE_HOURS_DEFAULT: u32 = 24;
pub const INVITE_HOURS_MAX: u32 = 168;

/// What a registration answers: the device, and its device token when one was issued (a new
/// device, or one registered before tokens existed claiming its first).
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub device: Device,
    pub device_token: Option<String>,
}

/// Registration, device tokens, invitations, deactivation and group listings.
#[derive(Clone)]
pub struct Devices {
    pool: PgPool,
    max_per_group: u32,
    limiter: Arc<RateLimiter>,
    tokens: Arc<TokenCache>,
}

impl Devices {
    /// `max_per_group`: active devices a group may hold (`limits.max_devices_per_group`);
    /// `limiter` counts wrong invite codes; `tokens` is this replica's device-token cache.
    pub fn new(pool: PgPool, max_per_group: u32, limiter: Arc<RateLimiter>, tokens: Arc<TokenCache>) -> Self {
        Self { pool, max_per_group, limiter, tokens }
    }

    /// Creates or updates a device by `device_id`, reactivating it if it was deactivated.
    ///
    /// The group limit counts active devices only and is race-free: the transaction takes an
    /// advisory lock on the *target group* (other groups proceed in parallel), so two devices
    /// joining a group of 19 at once cannot make 21. A device already active in the group never
    /// trips the limit.
    ///
    /// A new device gets a device token (in the answer, once). Through an `app` key
    /// ([`access`]): re-registering an existing device needs its token (401), except a device
    /// registered before tokens existed, which claims one (trust on first use, audited); and
    /// joining a group that has active members needs one of the group's invitation codes (403
    /// without, 403 for a wrong, expired or used-up one, 429 after too many wrong ones), except
    /// for a device coming back to its own group with its token. A `full` key registers any
    /// device into any group.
    pub async fn register(
        &self,
        caller: &Caller,
        registration: Registration,
        invite_code: Option<&str>,
    ) -> ApiResult<Registered> {
        let app = caller.key.scope == KeyScope::App;
        let device_id = registration.device_id;
        let mut tx = db::begin(&self.pool).await?;
        db::devices::lock_group(&mut tx, &registration.group_id).await?;
        let current = db::devices::find_membership_for_update(&mut tx, device_id).await?;
        let own_token = caller.device.as_ref().is_some_and(|device| device.device_id == device_id);
        let mut audit_entries = Vec::new();
        let device_token = match &current {
            None => Some(credentials::generate_token()),
            Some(existing) if app && existing.has_token && !own_token => {
                return Err(ApiError::UnauthorizedDevice(
                    "This device is registered: re-registering it needs its device token (Authorization: Bearer)"
                        .into(),
                ));
            }
            Some(existing) if app && !existing.has_token => {
                audit_entries.push(device_entry("device.token_claim", device_id, json!({})));
                Some(credentials::generate_token())
            }
            Some(_) => None,
        };
        let same_group = current.as_ref().is_some_and(|m| m.group_id == registration.group_id);
        let already_member = same_group && current.as_ref().is_some_and(|m| m.active);
        if !already_member {
            let members = db::devices::count_active_in_group(&mut tx, &registration.group_id).await?;
            // A device coming back to its own group (it had deactivated itself, say) proves who
            // it is with its token; any other newcomer needs an invitation.
            let returning = same_group && own_token;
            if app && members > 0 && !returning {
                let code = invite_code.ok_or_else(|| {
                    ApiError::Forbidden(
                        "This group already has members: joining it needs an invite code from one of them"
                            .into(),
                    )
                })?;
                self.take_invite(&mut tx, caller, &registration.group_id, code).await?;
                audit_entries.push(device_entry(
                    "device.join",
                    device_id,
                    json!({"group_id": registration.group_id, "by": "invite"}),
                ));
            }
            if members >= i64::from(self.max_per_group) {
                return Err(group_full(self.max_per_group));
            }
        }
        let token_hash = device_token.as_deref().map(secrets::sha256_hex);
        let device = db::devices::upsert(&mut tx, &registration, token_hash.as_deref()).await?;
        let actor = caller.actor();
        for entry in audit_entries {
            audit::record(&mut tx, &actor, entry).await?;
        }
        if current.is_some() {
            // Its group, state or token may have changed: replicas forget what they cached.
            announce(&mut tx, &self.tokens, device_id).await?;
        }
        db::commit(tx).await?;
        metrics::device_registered(current.is_none());
        Ok(Registered { device, device_token })
    }

    /// One use of the group's invitation `code`; a wrong code counts against the caller's key
    /// and address (429 once either has had too many).
    async fn take_invite(
        &self,
        tx: &mut sqlx::PgConnection,
        caller: &Caller,
        group_id: &str,
        code: &str,
    ) -> ApiResult<()> {
        if let Some(code) = normalize_invite(code)
            && db::invites::take_use(tx, group_id, &secrets::sha256_hex(&code)).await?
        {
            return Ok(());
        }
        let mut subjects = vec![Subject::Key(caller.key.id)];
        subjects.extend(caller.ip.map(Subject::Address));
        for subject in subjects {
            let decision = self.limiter.check(Scope::InviteFailure, subject).await;
            if !decision.allowed {
                metrics::rate_limited(Scope::InviteFailure.name());
                return Err(decision.refusal());
            }
        }
        Err(ApiError::Forbidden(
            "The invite code is not valid for this group (wrong, expired or used up)".into(),
        ))
    }

    /// Creates an invitation into `group_id` (a member's device token, or a `full` key):
    /// `max_uses` 1–20 (1 by default), valid for `expires_in_hours` 1–168 (24 by default).
    pub async fn create_invite(
        &self,
        caller: &Caller,
        group_id: &str,
        max_uses: Option<i32>,
        expires_in_hours: Option<u32>,
    ) -> ApiResult<Invite> {
        access::see_group(&self.pool, caller, group_id, "invite.create").await?;
        let max_uses = max_uses.unwrap_or(INVITE_USES_DEFAULT);
        let hours = expires_in_hours.unwrap_or(INVITE_HOURS_DEFAULT);
        let expires_at = Utc::now() + chrono::Duration::hours(hours.into());
        let code = generate_invite();
        let mut tx = db::begin(&self.pool).await?;
        let created_by = caller.device.as_ref().map(|device| device.device_id);
        let id = db::invites::insert(
            &mut tx,
            group_id,
            &secrets::sha256_hex(&code),
            created_by,
            max_uses,
            expires_at,
        )
        .await?;
        let entry = NewAuditEntry {
            action: "invite.create",
            resource_type: "group",
            resource_id: Some(group_id.to_owned()),
            metadata: json!({"invite_id": id, "max_uses": max_uses, "expires_at": expires_at}),
        };
        audit::record(&mut tx, &caller.actor(), entry).await?;
        db::commit(tx).await?;
        Ok(Invite { code: display_invite(&code), group_id: group_id.to_owned(), max_uses, expires_at })
    }

    /// A new device token for `device_id`; the old one stops working at once on every replica.
    /// With the device's own token: a rotation. With a `full` key: a reset (for a device that
    /// lost its token). Audited either way.
    pub async fn renew_token(&self, caller: &Caller, device_id: Uuid) -> ApiResult<String> {
        access::act_for(&self.pool, caller, device_id, access::NO_DEVICE, "device.token_rotate").await?;
        let action =
            if caller.key.scope == KeyScope::Full { "device.token_reset" } else { "device.token_rotate" };
        let token = credentials::generate_token();
        let mut tx = db::begin(&self.pool).await?;
        if !db::devices::set_token(&mut tx, device_id, &secrets::sha256_hex(&token)).await? {
            return Err(ApiError::NotFound("Device not found".into()));
        }
        audit::record(&mut tx, &caller.actor(), device_entry(action, device_id, json!({}))).await?;
        announce(&mut tx, &self.tokens, device_id).await?;
        db::commit(tx).await?;
        Ok(token)
    }

    /// Soft-deletes a device: it leaves listings, stops counting toward its group's limit and
    /// its token stops working (on every replica, at once), but its locations are kept.
    /// Deactivating an inactive device succeeds (the request is idempotent); an unknown one is
    /// 404.
    pub async fn deactivate(&self, caller: &Caller, device_id: Uuid) -> ApiResult<()> {
        let deactivating_itself = caller.device.as_ref().is_some_and(|device| device.device_id == device_id);
        if !deactivating_itself {
            access::act_for(&self.pool, caller, device_id, access::NO_DEVICE, "device.deactivate").await?;
        }
        let mut tx = db::begin(&self.pool).await?;
        if !db::devices::deactivate(&mut *tx, device_id).await? {
            return Err(ApiError::NotFound("Device not found".into()));
        }
        announce(&mut tx, &self.tokens, device_id).await?;
        db::commit(tx).await?;
        Ok(())
    }

    /// Active devices of a group by display name, each with its newest fix by `captured_at`, in
    /// one query. An unknown group is simply empty (for a `full` key; an `app` key sees only its
    /// device's group, 404 for any other).
    pub async fn list_group(&self, caller: &Caller, group_id: &str) -> ApiResult<Vec<GroupMember>> {
        access::see_group(&self.pool, caller, group_id, "group.list").await?;
        Ok(db::devices::list_active_in_group(&self.pool, group_id).await?)
    }
}

/// 409 for a group at its limit.
pub fn group_full(max_per_group: u32) -> ApiError {
    ApiError::Conflict(format!("Group has reached maximum device limit ({max_per_group})"))
}

/// Forgets what the device's token authenticated as: on this replica at once (`tokens`), on
/// every other when the transaction commits (a notice).
pub async fn announce(tx: &mut sqlx::PgConnection, tokens: &TokenCache, device_id: Uuid) -> ApiResult<()> {
    tokens.forget(|device| device.device_id == device_id);
    let notice = Invalidation::Device(device_id).to_string();
    Ok(db::notify::send(tx, db::notify::INVALIDATIONS, &notice).await?)
}

fn device_entry(action: &'static str, device_id: Uuid, metadata: serde_json::Value) -> NewAuditEntry {
    NewAuditEntry { action, resource_type: "device", resource_id: Some(device_id.to_string()), metadata }
}

/// Invitation codes: Crockford's base32 alphabet (no I, L, O, U: nothing to confuse when read
/// out), nine characters, 45 bits.
const INVITE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const INVITE_LEN: usize = 9;

fn generate_invite() -> String {
    let mut bytes = [0u8; INVITE_LEN];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| INVITE_ALPHABET[usize::from(b & 31)] as char).collect()
}

/// `7KQM4DXR9` as people read it: `7KQ-M4D-XR9`.
fn display_invite(code: &str) -> String {
    code.as_bytes().chunks(3).map(|c| std::str::from_utf8(c).expect("ASCII")).collect::<Vec<_>>().join("-")
}

/// A code as typed: case, dashes and spaces do not matter, and O, I and L read as 0, 1 and 1
/// (Crockford). None when it cannot be a code.
pub fn normalize_invite(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    (code.len() == INVITE_LEN && code.bytes().all(|b| INVITE_ALPHABET.contains(&b))).then_some(code)
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
    fn invite_codes_read_out_and_typed_back() {
        let code = super::generate_invite();
        assert_eq!(code.len(), 9);
        let shown = super::display_invite(&code);
        assert_eq!(shown.len(), 11);
        assert_eq!(super::normalize_invite(&shown).as_deref(), Some(code.as_str()));
        assert_eq!(
            super::normalize_invite(&shown.to_lowercase().replace('-', " ")).as_deref(),
            Some(code.as_str())
        );
        assert_eq!(super::normalize_invite("7kq-m4d-xr9").as_deref(), Some("7KQM4DXR9"));
        assert_eq!(
            super::normalize_invite("OIL-000-000").as_deref(),
            Some("011000000"),
            "Crockford's look-alikes"
        );
        assert_eq!(super::normalize_invite("7KQ-M4D-XR"), None, "too short");
        assert_eq!(super::normalize_invite("7KQ-M4D-XRU"), None, "U is not in the alphabet");
    }

    #[test]
    fn device_id_must_be_a_uuid() {
        assert!(device_id("550e8400-e29b-41d4-a716-446655440000").is_ok());
        assert!(device_id("550e8400").is_err());
    }
}
