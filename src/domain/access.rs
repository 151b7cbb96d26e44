//! Who may act on what.
//!
//! A `full` key may do everything the API offers. An `app` key (the one every install of the app
//! ships) may register a new device without a device token, and otherwise only what the device
//! whose token came with the request may do: act for itself (upload its fixes, deactivate,
//! export or erase itself, rotate its token) and see its own group (list it, invite into it,
//! read its members' history, stream it). Another device's or group's resources answer 404, so
//! their existence is not revealed; an upload naming another device is 403. A deactivated
//! device's token may only re-register it.
//!
//! Every refusal is audited (`access.refused`), at most a few a minute per device so that a
//! misbehaving client cannot flood the trail.

use std::{num::NonZeroU32, sync::OnceLock};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    db,
    domain::audit,
    error::{ApiError, ApiResult},
    model::{Caller, DeviceCredential, KeyScope, NewAuditEntry},
};

/// How a refusal answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 404 with this message, the same as for a resource that does not exist.
    NotFound(&'static str),
    /// 403: the request names another device as its own (an upload's `device_id`).
    Forbidden,
}

/// The answer for a device that does not exist, or is not the caller's to know about.
pub const NO_DEVICE: Refusal = Refusal::NotFound("Device not found");

/// The device an `app` key acts as: its token's, if active. 401 without a token.
fn acting_device(caller: &Caller) -> ApiResult<Option<&DeviceCredential>> {
    if caller.key.scope == KeyScope::Full {
        return Ok(None);
    }
    match &caller.device {
        Some(device) => Ok(Some(device)),
        None => Err(needs_token()),
    }
}

/// 401 for an `app` key without a device token.
pub fn needs_token() -> ApiError {
    ApiError::UnauthorizedDevice(
        "This API key acts for a device: send its device token (Authorization: Bearer pmd_...)".into(),
    )
}

/// The caller may act for `device_id`: any device with a `full` key, its own active device with
/// an `app` key.
pub async fn act_for(
    pool: &PgPool,
    caller: &Caller,
    device_id: Uuid,
    refusal: Refusal,
    action: &'static str,
) -> ApiResult<()> {
    match acting_device(caller)? {
        None => Ok(()),
        Some(device) if device.active && device.device_id == device_id => Ok(()),
        Some(_) => Err(refuse(pool, caller, refusal, action, format!("device:{device_id}"))),
    }
}

/// The caller may see `group_id`: any group with a `full` key, its active device's group with
/// an `app` key (404 otherwise).
pub async fn see_group(
    pool: &PgPool,
    caller: &Caller,
    group_id: &str,
    action: &'static str,
) -> ApiResult<()> {
    match acting_device(caller)? {
        None => Ok(()),
        Some(device) if device.active && device.group_id == group_id => Ok(()),
        Some(_) => Err(refuse(
            pool,
            caller,
            Refusal::NotFound("Group not found"),
            action,
            format!("group:{group_id}"),
        )),
    }
}

/// The caller may see `device_id` as a member of its group (history): `member_group` is the
/// group the device is in, or `None` when there is no such device (404 either way).
pub async fn see_member(
    pool: &PgPool,
    caller: &Caller,
    device_id: Uuid,
    member_group: Option<&str>,
    action: &'static str,
) -> ApiResult<()> {
    let Some(group) = member_group else {
        return Err(ApiError::NotFound("Device not found".into()));
    };
    match acting_device(caller)? {
        None => Ok(()),
        Some(device) if device.active && device.group_id == group => Ok(()),
        Some(_) => Err(refuse(pool, caller, NO_DEVICE, action, format!("device:{device_id}"))),
    }
}

/// The refusal's answer; audited off the request path, rate-limited per device.
fn refuse(
    pool: &PgPool,
    caller: &Caller,
    refusal: Refusal,
    action: &'static str,
    target: String,
) -> ApiError {
    let subject = caller.device.as_ref().map(|device| device.device_id).unwrap_or_default();
    if audit_allowed(subject) {
        let (pool, actor) = (pool.clone(), caller.actor());
        tokio::spawn(async move {
            let entry = NewAuditEntry {
                action: "access.refused",
                resource_type: "request",
                resource_id: Some(target),
                metadata: json!({"attempted": action}),
            };
            let recorded = async {
                let mut tx = db::begin(&pool).await?;
                audit::record(&mut tx, &actor, entry).await?;
                db::commit(tx).await.map_err(ApiError::from)
            };
            if let Err(err) = recorded.await {
                tracing::warn!(error = %err, "could not audit a refused request");
            }
        });
    }
    match refusal {
        Refusal::NotFound(message) => ApiError::NotFound(message.into()),
        Refusal::Forbidden => ApiError::Forbidden("A device token may only act for its own device".into()),
    }
}

/// At most 5 refusals a minute per device reach the audit trail (a burst of 5).
fn audit_allowed(device: Uuid) -> bool {
    static LIMITER: OnceLock<DefaultKeyedRateLimiter<Uuid>> = OnceLock::new();
    LIMITER
        .get_or_init(|| {
            let five = NonZeroU32::new(5).expect("non-zero");
            RateLimiter::keyed(Quota::per_minute(five))
        })
        .check_key(&device)
        .is_ok()
}
