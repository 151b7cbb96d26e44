//! The `locations` table.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::model::{Fix, IdempotencyKey, Order, StoredFix};

/// The uploads of one statement, as the arrays it binds: one entry per request, per fix and
/// per `Idempotency-Key`. Requests are numbered by the caller; no two may carry the same fix
/// (device and instant) or the same key, so that each stored row and claimed key names one.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    requests: Vec<i32>,
    devices: Vec<Uuid>,
    fix_requests: Vec<i32>,
    fixes: Vec<&'a Fix>,
    key_requests: Vec<i32>,
    api_keys: Vec<i64>,
    key_hashes: Vec<&'a str>,
    request_hashes: Vec<&'a str>,
}

impl<'a> Batch<'a> {
    /// Adds request `request`: its device's fixes, and the key to claim for them if any.
    pub fn push(
        &mut self,
        request: i32,
        device_id: Uuid,
        fixes: &'a [Fix],
        key: Option<(i64, &'a IdempotencyKey)>,
    ) {
        self.requests.push(request);
        self.devices.push(device_id);
        for fix in fixes {
            self.fix_requests.push(request);
            self.fixes.push(fix);
        }
        if let Some((api_key_id, key)) = key {
            self.key_requests.push(request);
            self.api_keys.push(api_key_id);
            self.key_hashes.push(&key.key_hash);
            self.request_hashes.push(&key.request_hash);
        }
    }
}

/// What [`insert_batch`] did, by request number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Requests whose device exists and is active; the others wrote nothing.
    pub active: Vec<i32>,
    /// Requests whose key this statement claimed, with the idempotency record's id; a keyed
    /// request not listed found its key held by a live record and wrote nothing.
    pub claimed: Vec<(i32, i64)>,
    /// The rows stored (a fix already stored is not listed).
    pub stored: Vec<StoredRow>,
}

/// A row [`insert_batch`] stored: the fix's row id, device and instant, and the device's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub id: i64,
    pub device_id: Uuid,
    pub captured_at: DateTime<Utc>,
    pub group_id: String,
}

/// Stores the uploads of many requests in ONE statement: for each request whose device exists
/// and is active, claims its `Idempotency-Key` (when it has one: a new key, or one whose record
/// expired; a live holder is waited for, then left alone) and inserts its fixes if it has no key
/// or claimed it. A fix already stored for the device at that instant is skipped
/// (`ON CONFLICT DO NOTHING` on uq_locations_device_captured), so retries never store twice.
/// Claimed records get a placeholder answer; the caller stores the real one
/// ([`idempotency::set_answers`](super::idempotency::set_answers)) in the same transaction.
///
/// The stored rows come back with their ids and groups, for the live streams' notices
/// (`infra::publish`), which are sent after the commit, not in this transaction.
///
/// Rows and keys are written in index order, so two statements that overlap wait for each other
/// instead of deadlocking. The fixes travel as one array of the composite type `fix`, which
/// UNNEST expands into its columns.
pub async fn insert_batch(conn: &mut PgConnection, batch: &Batch<'_>) -> sqlx::Result<Inserted> {
    let row = observe!(
        "INSERT",
        "locations",
        sqlx::query!(
            r#"WITH requests AS (
                   SELECT r.request, r.device_id, d.group_id
                   FROM UNNEST($1::int4[], $2::uuid[]) AS r(request, device_id)
                   JOIN devices d ON d.device_id = r.device_id AND d.active
               ),
               claims AS (
                   INSERT INTO idempotency_keys (api_key_id, key_hash, request_hash, device_id,
                                                 response_status, response_body)
                   SELECT k.api_key_id, k.key_hash, k.request_hash, r.device_id, 200, '{}'::jsonb
                   FROM UNNEST($5::int4[], $6::int8[], $7::text[], $8::text[])
                        AS k(request, api_key_id, key_hash, request_hash)
                   JOIN requests r USING (request)
                   ORDER BY k.api_key_id, k.key_hash
                   ON CONFLICT ON CONSTRAINT uq_idempotency_keys_api_key_key DO UPDATE SET
                       request_hash = EXCLUDED.request_hash,
                       device_id = EXCLUDED.device_id,
                       response_status = EXCLUDED.response_status,
                       response_body = EXCLUDED.response_body,
                       created_at = now(),
                       expires_at = now() + INTERVAL '24 hours'
                   WHERE idempotency_keys.expires_at <= now()
                   RETURNING id, api_key_id, key_hash
               ),
               claimed AS (
                   SELECT k.request, c.id
                   FROM UNNEST($5::int4[], $6::int8[], $7::text[]) AS k(request, api_key_id, key_hash)
                   JOIN claims c USING (api_key_id, key_hash)
               ),
               stored AS (
                   INSERT INTO locations (device_id, captured_at, latitude, longitude, accuracy, altitude,
                                          bearing, speed, provider, battery_level, network_type)
                   SELECT r.device_id, f.captured_at, f.latitude, f.longitude, f.accuracy, f.altitude,
                          f.bearing, f.speed, f.provider, f.battery_level, f.network_type
                   FROM UNNEST($3::int4[], $4::fix[]) AS f(request)
                   JOIN requests r USING (request)
                   WHERE f.request <> ALL ($5::int4[]) OR f.request IN (SELECT request FROM claimed)
                   ORDER BY r.device_id, f.captured_at
                   ON CONFLICT (device_id, captured_at) DO NOTHING
                   RETURNING id, device_id, captured_at
               )
               SELECT ARRAY(SELECT request FROM requests) AS "active!",
                      ARRAY(SELECT group_id FROM requests) AS "active_groups!",
                      ARRAY(SELECT request FROM claimed) AS "claimed_requests!",
                      ARRAY(SELECT id FROM claimed) AS "claimed_records!",
                      ARRAY(SELECT device_id FROM stored) AS "stored_devices!",
                      ARRAY(SELECT captured_at FROM stored) AS "stored_at!",
                      ARRAY(SELECT id FROM stored) AS "stored_ids!""#,
            &batch.requests,
            &batch.devices,
            &batch.fix_requests,
            &batch.fixes as &[&Fix],
            &batch.key_requests,
            &batch.api_keys,
            &batch.key_hashes as &[&str],
            &batch.request_hashes as &[&str],
        ),
        fetch_one(conn)
    )?;
    // Each stored row's group: its device's, as the statement found it.
    let device_of: HashMap<i32, Uuid> =
        batch.requests.iter().copied().zip(batch.devices.iter().copied()).collect();
    let group_of: HashMap<Uuid, String> = row
        .active
        .iter()
        .zip(row.active_groups)
        .map(|(request, group)| (device_of[request], group))
        .collect();
    Ok(Inserted {
        active: row.active,
        claimed: row.claimed_requests.into_iter().zip(row.claimed_records).collect(),
        stored: (row.stored_devices.into_iter().zip(row.stored_at))
            .zip(row.stored_ids)
            .map(|((device_id, captured_at), id)| StoredRow {
                id,
                device_id,
                captured_at,
                group_id: group_of[&device_id].clone(),
            })
            .collect(),
    })
}

/// One retention batch: deletes at most `batch` locations captured more than `retention_days`
/// ago (oldest first, via idx_locations_captured_at) and returns how many it deleted. Whole
/// expired partitions go first ([`drop_expired_partitions`]); this deletes what is left, the
/// rows of the one partition that is only partly expired.
pub async fn cleanup_old_batch(pool: &PgPool, retention_days: i32, batch: i64) -> sqlx::Result<u64> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let deleted = observe!(
        "SELECT",
        "locations",
        sqlx::query_scalar!(r#"SELECT cleanup_old_locations($1, $2) AS "deleted!""#, retention_days, batch),
        fetch_one(pool)
    )?;
    Ok(deleted.max(0) as u64)
}

/// Creates the daily partitions of `locations` (UTC days, `locations_pYYYYMMDD`) for `first` and
/// the `ahead` days after it that have none, and returns how many it created. A day the legacy
/// partition covers gets none. Safe on several replicas at once (see
/// `create_locations_partition` in migration 0013, which also bounds the wait for the lock).
pub async fn create_partitions(pool: &PgPool, first: NaiveDate, ahead: u32) -> sqlx::Result<u64> {
    let days: Vec<NaiveDate> =
        (0..=ahead).filter_map(|n| first.checked_add_days(Days::new(n.into()))).collect();
    create_partitions_for(pool, &days).await
}

/// Creates the partitions of these days that have none; returns how many it created.
pub async fn create_partitions_for(pool: &PgPool, days: &[NaiveDate]) -> sqlx::Result<u64> {
    let created = observe!(
        "SELECT",
        "locations",
        sqlx::query_scalar!(
            r#"SELECT count(*) FILTER (WHERE create_locations_partition(day)) AS "created!"
               FROM UNNEST($1::date[]) AS day"#,
            days
        ),
        fetch_one(pool)
    )?;
    Ok(created.max(0) as u64)
}

/// Whether `err` is PostgreSQL's "no partition of relation … found for row": a row for a day
/// that has no partition yet. It is a check_violation (23514) like a CHECK constraint's, but
/// names no constraint (every CHECK of `locations` is named), which tells the two apart
/// whatever the server's message language.
pub fn is_missing_partition(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.code().as_deref() == Some("23514") && db.constraint().is_none())
}

/// A partition of `locations` and the end of its range (exclusive; None for an unbounded one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub upper: Option<DateTime<Utc>>,
}

/// The partitions of `locations`, oldest range first. The bounds come from the catalog's text
/// form (`FOR VALUES FROM (…) TO ('2026-12-01 00:00:00+00')`), whose literal reads back as a
/// timestamptz in any session time zone.
pub async fn partitions(pool: &PgPool) -> sqlx::Result<Vec<Partition>> {
    observe!(
        "SELECT",
        "pg_inherits",
        sqlx::query_as!(
            Partition,
            r#"SELECT c.relname::text AS "name!",
                      (regexp_match(pg_get_expr(c.relpartbound, c.oid), $$TO \('([^']+)'\)$$))[1]::timestamptz
                          AS upper
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'locations'::regclass
               ORDER BY upper NULLS LAST"#
        ),
        fetch_all(pool)
    )
}

/// Drops every partition of `locations` whose whole range was captured more than
/// `retention_days` ago (its upper bound at or before the cutoff), the legacy one included once
/// it is entirely expired, and returns how many rows they held (counted exactly before the drop).
/// Each partition goes in a transaction of its own: its rows counted under a lock that keeps
/// writers out of it, then DETACH and DROP. DETACH locks the whole table for a moment; the lock
/// is waited for at most 2 s (an export holds the table for longer), after which this fails and
/// the next run tries again. A partition another replica dropped meanwhile is skipped.
pub async fn drop_expired_partitions(pool: &PgPool, retention_days: i32) -> sqlx::Result<u64> {
    let cutoff = Utc::now() - chrono::Duration::days(retention_days.into());
    let mut removed = 0;
    for partition in partitions(pool).await? {
        if partition.upper.is_none_or(|upper| upper > cutoff) {
            continue;
        }
        match drop_partition(pool, &partition.name).await {
            Ok(rows) => removed += rows,
            // undefined_table: gone already (another replica's retention run).
            Err(err) if err.as_database_error().and_then(|db| db.code()).as_deref() == Some("42P01") => {}
            Err(err) => return Err(err),
        }
    }
    Ok(removed)
}

async fn drop_partition(pool: &PgPool, name: &str) -> sqlx::Result<u64> {
    let table = crate::db::quote_ident(name);
    let mut tx = crate::db::begin(pool).await?;
    let statements =
        ["SET LOCAL lock_timeout = '2s'".to_owned(), format!("LOCK TABLE {table} IN SHARE MODE")];
    for statement in &statements {
        crate::db::observe("LOCK", "locations", statement, sqlx::query(statement).execute(&mut *tx)).await?;
    }
    let count = format!("SELECT count(*) FROM {table}");
    let rows: i64 =
        crate::db::observe("SELECT", "locations", &count, sqlx::query_scalar(&count).fetch_one(&mut *tx))
            .await?;
    let detach = format!("ALTER TABLE locations DETACH PARTITION {table}");
    crate::db::observe("ALTER", "locations", &detach, sqlx::query(&detach).execute(&mut *tx)).await?;
    let drop = format!("DROP TABLE {table}");
    crate::db::observe("DROP", "locations", &drop, sqlx::query(&drop).execute(&mut *tx)).await?;
    crate::db::commit(tx).await?;
    tracing::info!(partition = name, rows, "dropped an expired partition of locations");
    Ok(rows.max(0) as u64)
}

/// Makes the rest of the transaction read rows in index order rather than sort them: for an
/// export, PostgreSQL otherwise prefers a bitmap scan plus a sort of the device's whole history
/// (spilling to disk) before sending the first row. Scoped to the transaction (`SET LOCAL`).
pub async fn prefer_index_order(tx: &mut PgConnection) -> sqlx::Result<()> {
    const STATEMENT: &str = "SET LOCAL enable_sort = off";
    crate::db::observe("SET", "session", STATEMENT, sqlx::query(STATEMENT).execute(tx)).await.map(drop)
}

/// Every location of a device, oldest capture first, as a stream: rows arrive as PostgreSQL
/// sends them, never collected (idx_locations_device_captured, scanned backwards; see
/// [`prefer_index_order`]). `ROW(…)::fix` lists the columns in the type's order.
pub fn stream_for_device(
    conn: &mut PgConnection,
    device_id: Uuid,
) -> impl futures_util::Stream<Item = sqlx::Result<StoredFix>> + Send + '_ {
    sqlx::query_as!(
        StoredFix,
        r#"SELECT ROW(captured_at, latitude, longitude, accuracy, altitude, bearing, speed, provider,
                      battery_level, network_type)::fix AS "fix!: Fix",
                  created_at
           FROM locations WHERE device_id = $1
           ORDER BY captured_at"#,
        device_id
    )
    .fetch(conn)
}

/// Up to `limit` fixes of a device captured in `[lower, upper)`, in `order`: one range scan of
/// uq_locations_device_captured (forwards or backwards), never a sort, and never rows skipped
/// with OFFSET, so every page of a trail costs what the first does.
pub async fn page(
    pool: &PgPool,
    device_id: Uuid,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
    order: Order,
    limit: i64,
) -> sqlx::Result<Vec<StoredFix>> {
    match order {
        Order::Asc => observe!(
            "SELECT",
            "locations",
            sqlx::query_as!(
                StoredFix,
                r#"SELECT ROW(captured_at, latitude, longitude, accuracy, altitude, bearing, speed, provider,
                              battery_level, network_type)::fix AS "fix!: Fix",
                          created_at
                   FROM locations
                   WHERE device_id = $1 AND captured_at >= $2 AND captured_at < $3
                   ORDER BY captured_at LIMIT $4"#,
                device_id,
                lower,
                upper,
                limit
            ),
            fetch_all(pool)
        ),
        Order::Desc => observe!(
            "SELECT",
            "locations",
            sqlx::query_as!(
                StoredFix,
                r#"SELECT ROW(captured_at, latitude, longitude, accuracy, altitude, bearing, speed, provider,
                              battery_level, network_type)::fix AS "fix!: Fix",
                          created_at
                   FROM locations
                   WHERE device_id = $1 AND captured_at >= $2 AND captured_at < $3
                   ORDER BY captured_at DESC LIMIT $4"#,
                device_id,
                lower,
                upper,
                limit
            ),
            fetch_all(pool)
        ),
    }
}

/// How many fixes of a device were captured in `[lower, upper)` (an index-only scan).
pub async fn count_range(
    pool: &PgPool,
    device_id: Uuid,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
) -> sqlx::Result<i64> {
    observe!(
        "SELECT",
        "locations",
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM locations
               WHERE device_id = $1 AND captured_at >= $2 AND captured_at < $3"#,
            device_id,
            lower,
            upper
        ),
        fetch_one(pool)
    )
}

/// Every fix of a device captured in `[lower, upper)`, in `order`, as a stream (a download).
pub fn stream_range(
    conn: &mut PgConnection,
    device_id: Uuid,
    lower: DateTime<Utc>,
    upper: DateTime<Utc>,
    order: Order,
) -> futures_util::stream::BoxStream<'_, sqlx::Result<StoredFix>> {
    use futures_util::StreamExt;
    match order {
        Order::Asc => sqlx::query_as!(
            StoredFix,
            r#"SELECT ROW(captured_at, latitude, longitude, accuracy, altitude, bearing, speed, provider,
                          battery_level, network_type)::fix AS "fix!: Fix",
                      created_at
               FROM locations
               WHERE device_id = $1 AND captured_at >= $2 AND captured_at < $3
               ORDER BY captured_at"#,
            device_id,
            lower,
            upper
        )
        .fetch(conn)
        .boxed(),
        Order::Desc => sqlx::query_as!(
            StoredFix,
            r#"SELECT ROW(captured_at, latitude, longitude, accuracy, altitude, bearing, speed, provider,
                          battery_level, network_type)::fix AS "fix!: Fix",
                      created_at
               FROM locations
               WHERE device_id = $1 AND captured_at >= $2 AND captured_at < $3
               ORDER BY captured_at DESC"#,
            device_id,
            lower,
            upper
        )
        .fetch(conn)
        .boxed(),
    }
}
