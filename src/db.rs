//! Everything that speaks SQL: the pool, the embedded migrations and one repository per table
//! family. Nothing outside this module writes a query, and every statement a repository sends
//! goes through [`observe!`], so each one has a span and a duration metric.

/// Runs a `sqlx` query through [`observe`]:
/// `observe!("SELECT", "devices", sqlx::query!(...), fetch_one(executor))`.
macro_rules! observe {
    ($operation:literal, $table:literal, $query:expr, $fetch:ident($executor:expr)) => {{
        let query = $query;
        let statement = sqlx::Execute::sql(&query);
        $crate::db::observe($operation, $table, statement, query.$fetch($executor)).await
    }};
}

pub mod api_keys;
pub mod audit;
pub mod devices;
pub mod health;
pub mod idempotency;
pub mod invites;
pub mod locations;
pub mod notify;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use anyhow::Context;
use sqlx::{
    ConnectOptions, Connection, Executor, PgConnection, PgPool,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use tracing::{Instrument, field::Empty};

use crate::{config::DatabaseSettings, metrics};

/// The numbered migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// SQLSTATE of "database does not exist" and "duplicate database".
const INVALID_CATALOG_NAME: &str = "3D000";
const DUPLICATE_DATABASE: &str = "42P04";

/// Connects the pool, first creating the database if it is missing and allowed to.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let options = connect_options(settings)?;
    if settings.create_if_missing {
        ensure_database_exists(&options).await?;
    }
    pool_options(settings).connect_with(options).await.map_err(|e| unreachable_error(settings, e))
}

/// Applies every pending migration. Concurrent callers are serialised by sqlx's advisory lock.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("applying database migrations")
}

pub fn connect_options(settings: &DatabaseSettings) -> anyhow::Result<PgConnectOptions> {
    let options: PgConnectOptions =
        settings.url.parse().with_context(|| format!("invalid database.url {}", settings.redacted_url()))?;
    // Statements are logged at debug level with their duration; slow ones at warn.
    Ok(options
        .log_statements(tracing::log::LevelFilter::Debug)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500)))
}

pub fn pool_options(settings: &DatabaseSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .min_connections(settings.min_connections)
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
        .idle_timeout(Some(Duration::from_secs(settings.idle_timeout_secs)))
}

/// Creates the target database through the server's `postgres` database when it is missing.
/// Racing creators are fine: "already exists" counts as success.
async fn ensure_database_exists(options: &PgConnectOptions) -> anyhow::Result<()> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    match PgConnection::connect_with(options).await {
        Ok(conn) => {
            conn.close().await.ok();
            return Ok(());
        }
        Err(err) if sqlstate(&err).as_deref() == Some(INVALID_CATALOG_NAME) => {}
        // Anything else (unreachable server, bad password) is reported by the pool connect.
        Err(_) => return Ok(()),
    }
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .with_context(|| format!("database \"{name}\" does not exist and the server's \"postgres\" database is not reachable to create it"))?;
    let created = admin.execute(format!("CREATE DATABASE {}", quote_ident(&name)).as_str()).await;
    admin.close().await.ok();
    match created {
        Ok(_) => {
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        Err(err) if sqlstate(&err).as_deref() == Some(DUPLICATE_DATABASE) => Ok(()),
        Err(err) => Err(anyhow::Error::new(err).context(format!(
            "database \"{name}\" does not exist and could not be created (does the role have CREATEDB?)"
        ))),
    }
}

fn sqlstate(err: &sqlx::Error) -> Option<String> {
    err.as_database_error().and_then(|db| db.code()).map(|code| code.into_owned())
}

/// Starts a transaction, traced and timed like any statement.
pub async fn begin(pool: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    observe("BEGIN", "transaction", "BEGIN", pool.begin()).await
}

/// Commits, traced and timed: COMMIT waits for the WAL flush, often a write's largest cost.
pub async fn commit(tx: sqlx::Transaction<'_, sqlx::Postgres>) -> sqlx::Result<()> {
    observe("COMMIT", "transaction", "COMMIT", tx.commit()).await
}

/// A read-only transaction on one consistent snapshot, for long reads (data exports) that must
/// not see concurrent writes half-way. Owned, so it can move into a streaming task; it rolls
/// back when dropped.
pub async fn begin_read_snapshot(pool: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    observe("BEGIN", "transaction", BEGIN, pool.begin_with(BEGIN)).await
}

/// Runs one statement inside a `db.query` client span carrying the OpenTelemetry database
/// attributes (statement text with placeholders, never values) and records its duration in
/// `database_query_duration_seconds{operation,table}`. Errors are recorded on the span.
pub async fn observe<T>(
    operation: &'static str,
    table: &'static str,
    statement: &str,
    query: impl Future<Output = sqlx::Result<T>>,
) -> sqlx::Result<T> {
    let span = tracing::info_span!(
        "db.query",
        otel.name = %format_args!("{operation} {table}"),
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.collection.name = table,
        db.query.text = statement,
        error.type = Empty,
    );
    let started = Instant::now();
    let result = query.instrument(span.clone()).await;
    metrics::record_query(operation, table, started.elapsed());
    if let Err(err) = &result {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", error_type(err));
    }
    result
}

fn error_type(err: &sqlx::Error) -> &'static str {
    match err {
        sqlx::Error::Database(_) => "database_error",
        sqlx::Error::RowNotFound => "row_not_found",
        sqlx::Error::PoolTimedOut => "pool_timed_out",
        sqlx::Error::PoolClosed => "pool_closed",
        sqlx::Error::Io(_) => "io",
        sqlx::Error::Tls(_) => "tls",
        sqlx::Error::Protocol(_) => "protocol",
        _ => "other",
    }
}

/// Quotes an SQL identifier: `my"db` → `"my""db"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn unreachable_error(settings: &DatabaseSettings, err: sqlx::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot connect to PostgreSQL at {url}: {err}. Start the local server \
         (`pg_ctlcluster 15 main start`, or `sudo systemctl start postgresql`), or run one with \
         Docker (`docker compose up -d db`), or point PM__DATABASE__URL at a reachable server.",
        url = settings.redacted_url()
    )
}

#[cfg(test)]
mod tests {
    use super::quote_ident;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("phone_manager"), "\"phone_manager\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
