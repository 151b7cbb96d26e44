//! The audit trail of admin and privacy operations: who (API key and client address) did what
//! to which resource, recorded in the same transaction as the change and as a structured log
//! line (target `audit`).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::{
    db::{self, audit::EntryRow},
    error::{ApiError, ApiResult},
};

pub const PAGE_MAX: i64 = 200;

/// Who is acting: the authenticated key and the client's address.
#[derive(Debug, Clone)]
pub struct Actor {
    pub api_key_id: i64,
    pub ip: Option<IpAddr>,
}

/// What to record.
pub struct Event<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Option<String>,
    pub metadata: serde_json::Value,
}

/// Records the event in `tx`: it is kept only if the transaction commits.
pub async fn record(tx: &mut PgConnection, actor: &Actor, event: Event<'_>) -> ApiResult<()> {
    let id = db::audit::insert(
        tx,
        db::audit::NewEntry {
            api_key_id: actor.api_key_id,
            action: event.action,
            resource_type: event.resource_type,
            resource_id: event.resource_id.as_deref(),
            metadata: &event.metadata,
            ip_address: actor.ip,
        },
    )
    .await?;
    tracing::info!(
        target: "audit",
        audit_id = id,
        api_key_id = actor.api_key_id,
        action = event.action,
        resource_type = event.resource_type,
        resource_id = event.resource_id.as_deref().unwrap_or("-"),
        ip = %actor.ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        metadata = %event.metadata,
        "audit"
    );
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Page {
    pub entries: Vec<EntryRow>,
    /// Pass as `cursor` to get the next (older) page; None on the last page.
    pub next_cursor: Option<String>,
}

/// Newest first, filtered, one page of at most `filter.limit` entries.
pub async fn list(pool: &PgPool, mut filter: db::audit::Filter, cursor: Option<&str>) -> ApiResult<Page> {
    if let Some(cursor) = cursor {
        filter.before_id = Some(parse_cursor(cursor)?);
    }
    let entries = db::audit::list(pool, &filter).await?;
    let next_cursor =
        (entries.len() as i64 == filter.limit).then(|| entries.last().map(|e| e.id.to_string())).flatten();
    Ok(Page { entries, next_cursor })
}

/// A cursor is the id of the last entry of a page: 1–18 digits, no leading zero.
fn parse_cursor(cursor: &str) -> ApiResult<i64> {
    let canonical = (1..=18).contains(&cursor.len())
        && cursor.bytes().all(|b| b.is_ascii_digit())
        && !cursor.starts_with('0');
    canonical
        .then(|| cursor.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| ApiError::field("cursor", "is not a cursor returned by this endpoint"))
}

/// Time bounds of a listing, checked.
pub fn check_window(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> ApiResult<()> {
    match (since, until) {
        (Some(since), Some(until)) if since >= until => Err(ApiError::field("until", "must be after since")),
        _ => Ok(()),
    }
}
