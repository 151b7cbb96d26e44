//! The `audit_log` table.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

pub struct NewEntry<'a> {
    pub api_key_id: i64,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Option<&'a str>,
    pub metadata: &'a serde_json::Value,
    pub ip_address: Option<IpAddr>,
}

#[derive(Debug, Clone)]
pub struct EntryRow {
    pub id: i64,
    pub api_key_id: Option<i64>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub metadata: Option<serde_json::Value>,
    /// The client address, as text (`host(inet)`).
    pub ip_address: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Writes an entry in the caller's transaction: it commits or rolls back with the change.
pub async fn insert(tx: &mut PgConnection, entry: NewEntry<'_>) -> sqlx::Result<i64> {
    observe!(
        "INSERT",
        "audit_log",
        sqlx::query_scalar!(
            "INSERT INTO audit_log (api_key_id, action, resource_type, resource_id, metadata, ip_address)
             VALUES ($1, $2, $3, $4, $5, $6::text::inet) RETURNING id",
            entry.api_key_id,
            entry.action,
            entry.resource_type,
            entry.resource_id,
            entry.metadata,
            entry.ip_address.map(|ip| ip.to_string()),
        ),
        fetch_one(tx)
    )
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub api_key_id: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only entries older than this id (the cursor of the previous page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Newest first, one page. Walks the primary key backwards (ids grow with time), filtering.
pub async fn list(pool: &PgPool, filter: &Filter) -> sqlx::Result<Vec<EntryRow>> {
    observe!(
        "SELECT",
        "audit_log",
        sqlx::query_as!(
            EntryRow,
            r#"SELECT id, api_key_id, action, resource_type, resource_id, metadata,
                      host(ip_address) AS ip_address, created_at
               FROM audit_log
               WHERE ($1::text IS NULL OR action = $1)
                 AND ($2::text IS NULL OR resource_type = $2)
                 AND ($3::text IS NULL OR resource_id = $3)
                 AND ($4::bigint IS NULL OR api_key_id = $4)
                 AND ($5::timestamptz IS NULL OR created_at >= $5)
                 AND ($6::timestamptz IS NULL OR created_at < $6)
                 AND ($7::bigint IS NULL OR id < $7)
               ORDER BY id DESC
               LIMIT $8"#,
            filter.action,
            filter.resource_type,
            filter.resource_id,
            filter.api_key_id,
            filter.since,
            filter.until,
            filter.before_id,
            filter.limit,
        ),
        fetch_all(pool)
    )
}

/// Deletes up to `batch` entries older than `retention_days`; the retention job loops on it.
pub async fn delete_older_than(pool: &PgPool, retention_days: i32, batch: i64) -> sqlx::Result<u64> {
    let result = observe!(
        "DELETE",
        "audit_log",
        sqlx::query!(
            "DELETE FROM audit_log WHERE id = ANY (ARRAY(
                 SELECT id FROM audit_log
                 WHERE created_at < now() - make_interval(days => $1)
                 ORDER BY created_at LIMIT $2
             ))",
            retention_days,
            batch,
        ),
        execute(pool)
    )?;
    Ok(result.rows_affected())
}
