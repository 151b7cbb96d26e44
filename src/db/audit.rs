//! The `audit_log` table.

use sqlx::{PgConnection, PgPool};

use crate::model::{Actor, AuditEntry, AuditFilter, NewAuditEntry};

/// Writes an entry in the caller's transaction: it commits or rolls back with the change.
pub async fn insert(tx: &mut PgConnection, actor: &Actor, entry: &NewAuditEntry) -> sqlx::Result<i64> {
    observe!(
        "INSERT",
        "audit_log",
        sqlx::query_scalar!(
            "INSERT INTO audit_log (api_key_id, device_id, action, resource_type, resource_id, metadata, ip_address)
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::inet) RETURNING id",
            actor.api_key_id,
            actor.device_id,
            entry.action,
            entry.resource_type,
            entry.resource_id,
            entry.metadata,
            actor.ip.map(|ip| ip.to_string()),
        ),
        fetch_one(tx)
    )
}

/// Newest first, one page. Walks the primary key backwards (ids grow with time), filtering.
pub async fn list(pool: &PgPool, filter: &AuditFilter) -> sqlx::Result<Vec<AuditEntry>> {
    observe!(
        "SELECT",
        "audit_log",
        sqlx::query_as!(
            AuditEntry,
            r#"SELECT id, api_key_id, device_id, action, resource_type, resource_id, metadata,
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
