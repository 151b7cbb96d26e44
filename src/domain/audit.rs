//! The audit trail of admin and privacy operations: who (API key and client address) did what
//! to which resource, recorded in the same transaction as the change and as a structured log
//! line (target `audit`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::{
    db,
    error::{ApiError, ApiResult},
    model::{Actor, AuditFilter, AuditPage, NewAuditEntry},
};

/// Records the entry in `tx`: it is kept only if the transaction commits.
pub async fn record(tx: &mut PgConnection, actor: &Actor, entry: NewAuditEntry) -> ApiResult<()> {
    let id = db::audit::insert(tx, actor, &entry).await?;
    tracing::info!(
        target: "audit",
        audit_id = id,
        api_key_id = actor.api_key_id,
        action = entry.action,
        resource_type = entry.resource_type,
        resource_id = entry.resource_id.as_deref().unwrap_or("-"),
        ip = %actor.ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        metadata = %entry.metadata,
        "audit"
    );
    Ok(())
}

/// Newest first, filtered, one page of at most `filter.limit` entries; `cursor` is the
/// `next_cursor` of the previous page.
pub async fn list(pool: &PgPool, mut filter: AuditFilter, cursor: Option<&str>) -> ApiResult<AuditPage> {
    check_window(filter.since, filter.until)?;
    if let Some(cursor) = cursor {
        filter.before_id = Some(parse_cursor(cursor)?);
    }
    let entries = db::audit::list(pool, &filter).await?;
    let next_cursor =
        (entries.len() as i64 == filter.limit).then(|| entries.last().map(|e| e.id.to_string())).flatten();
    Ok(AuditPage { entries, next_cursor })
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
fn check_window(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> ApiResult<()> {
    match (since, until) {
        (Some(since), Some(until)) if since >= until => Err(ApiError::field("until", "must be after since")),
        _ => Ok(()),
    }
}
