//! The `api_keys` table. Only hashes and prefixes go in; the hash never comes out.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};

use crate::model::{ApiKey, KeyScope};

/// A key to store: its hash, never the key.
pub struct NewKey<'a> {
    pub hash: &'a str,
    pub prefix: &'a str,
    pub name: &'a str,
    pub scope: KeyScope,
    pub is_admin: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(db: impl PgExecutor<'_>, key: NewKey<'_>) -> sqlx::Result<ApiKey> {
    observe!(
        "INSERT",
        "api_keys",
        sqlx::query_as!(
            ApiKey,
            r#"INSERT INTO api_keys (key_hash, key_prefix, name, scope, is_admin, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6)
               RETURNING id, key_prefix AS prefix, name, is_active, is_admin, scope AS "scope: KeyScope",
                         created_at, last_used_at, expires_at"#,
            key.hash,
            key.prefix,
            key.name,
            key.scope as KeyScope,
            key.is_admin,
            key.expires_at,
        ),
        fetch_one(db)
    )
}

/// The active, unexpired key with this hash. Uses the partial index `idx_api_keys_hash`.
pub async fn find_active_by_hash(pool: &PgPool, hash: &str) -> sqlx::Result<Option<ApiKey>> {
    observe!(
        "SELECT",
        "api_keys",
        sqlx::query_as!(
            ApiKey,
            r#"SELECT id, key_prefix AS prefix, name, is_active, is_admin, scope AS "scope: KeyScope", created_at,
                      last_used_at, expires_at
               FROM api_keys
               WHERE key_hash = $1 AND is_active AND (expires_at IS NULL OR expires_at > now())"#,
            hash,
        ),
        fetch_optional(pool)
    )
}

pub async fn touch_last_used(pool: &PgPool, id: i64) -> sqlx::Result<()> {
    observe!(
        "UPDATE",
        "api_keys",
        sqlx::query!("UPDATE api_keys SET last_used_at = now() WHERE id = $1", id),
        execute(pool)
    )
    .map(drop)
}

/// Every key (oldest first), or those with this id, or those whose prefix starts with
/// `prefix` (an administrator may type fewer than 8 characters). The table holds a handful of
/// keys: one statement serves all three lookups.
async fn select(db: impl PgExecutor<'_>, id: Option<i64>, prefix: Option<&str>) -> sqlx::Result<Vec<ApiKey>> {
    observe!(
        "SELECT",
        "api_keys",
        sqlx::query_as!(
            ApiKey,
            r#"SELECT id, key_prefix AS prefix, name, is_active, is_admin, scope AS "scope: KeyScope", created_at,
                      last_used_at, expires_at
               FROM api_keys
               WHERE ($1::bigint IS NULL OR id = $1) AND ($2::text IS NULL OR starts_with(key_prefix, $2))
               ORDER BY id"#,
            id,
            prefix,
        ),
        fetch_all(db)
    )
}

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<ApiKey>> {
    select(pool, None, None).await
}

pub async fn find_by_prefix(db: impl PgExecutor<'_>, prefix: &str) -> sqlx::Result<Vec<ApiKey>> {
    select(db, None, Some(prefix)).await
}

pub async fn find_by_id(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<ApiKey>> {
    Ok(select(db, Some(id), None).await?.pop())
}

/// Marks the key inactive; returns false when no such key exists.
pub async fn deactivate(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<bool> {
    let result = observe!(
        "UPDATE",
        "api_keys",
        sqlx::query!("UPDATE api_keys SET is_active = false WHERE id = $1", id),
        execute(db)
    )?;
    Ok(result.rows_affected() == 1)
}
