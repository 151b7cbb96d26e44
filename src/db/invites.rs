//! The `group_invites` table: invitation codes, by hash.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Stores an invitation; returns when it expires.
pub async fn insert(
    tx: &mut PgConnection,
    group_id: &str,
    code_hash: &str,
    created_by: Option<Uuid>,
    max_uses: i32,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<i64> {
    observe!(
        "INSERT",
        "group_invites",
        sqlx::query_scalar!(
            "INSERT INTO group_invites (group_id, code_hash, created_by_device, max_uses, expires_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            group_id,
            code_hash,
            created_by,
            max_uses,
            expires_at,
        ),
        fetch_one(tx)
    )
}

/// Takes one use of the invitation with this code for this group, if it is unexpired and not
/// used up; false otherwise. The row lock makes concurrent joins take uses one at a time.
pub async fn take_use(tx: &mut PgConnection, group_id: &str, code_hash: &str) -> sqlx::Result<bool> {
    let taken = observe!(
        "UPDATE",
        "group_invites",
        sqlx::query!(
            "UPDATE group_invites SET uses = uses + 1
             WHERE code_hash = $1 AND group_id = $2 AND uses < max_uses AND expires_at > now()",
            code_hash,
            group_id,
        ),
        execute(tx)
    )?;
    Ok(taken.rows_affected() == 1)
}

/// Deletes up to `batch` expired invitations; the expiry job calls it until it returns less.
pub async fn delete_expired(pool: &PgPool, batch: i64) -> sqlx::Result<u64> {
    let result = observe!(
        "DELETE",
        "group_invites",
        sqlx::query!(
            "DELETE FROM group_invites WHERE id = ANY (ARRAY(
                 SELECT id FROM group_invites WHERE expires_at <= now() LIMIT $1
             ))",
            batch,
        ),
        execute(pool)
    )?;
    Ok(result.rows_affected())
}
