//! The store: every durable fact of dagctl, in SQLite (embedded default) or PostgreSQL (production, several
//! schedulers). One code path through sqlx's `Any` driver; the few places where SQL must differ branch on
//! [`Backend`]. Times are stored as microseconds since the Unix epoch (UTC) so both databases compare them
//! the same way.
//!
//! Architecture invariant: callers see domain types and [`crate::Error`], never `sqlx::Error`; every state
//! change is a compare-and-set on the state it was decided from.

mod alerts;
pub(crate) mod assets;
mod changes;
mod chaos;
mod dags;
pub mod events;
mod kpis;
mod misc;
pub mod networks;
pub mod runs;
pub mod samples;
mod task_logs;
pub mod tis;
mod users;
mod vault;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};

pub use alerts::NodeAlert;
pub use assets::{AssetEventFilter, AssetEventRow, AssetRefRow, AssetRow, EventRun, NewAssetEvent};
pub use chaos::ChaosFaultRow;
pub use dags::{DagRow, ImportErrorRow, SyncReport, VersionInfo};
pub use events::{Change, Changes};
pub use kpis::RunKpiRow;
pub use misc::{EventFilter, EventRow, PoolRow, SchedulerJobRow, XcomRow};
pub use networks::{NetworkRow, NewNetwork};
pub use runs::{
    validate_manual_run_id, CursorValue, NewRun, RunFilter, RunOrder, RunRow, RunType, ScheduledRun, TimeRange,
};
pub use samples::{NodeSample, SampleFilter, SamplePage};
pub use task_logs::LogRef;
pub use tis::{ClaimLimits, FinishedTry, TiRow, TryRow};
pub use users::UserRow;
pub use vault::{ConnectionRow, Existing, VariableRow};

use crate::{Error, Result};

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where writes go. On SQLite, one connection of its own: writers of this process queue for it in turn
    /// (woken at once) instead of colliding on the database's write lock, where SQLite's busy handler sleeps
    /// 1, 2, 5, 10 ms ... before each retry. On PostgreSQL, the same pool as reads.
    writer: AnyPool,
    backend: Backend,
    bus: std::sync::Arc<events::Bus>,
}

/// The SQL of one schema migration: the same script for both databases (`migrations/common/`), or one per
/// database (`migrations/<backend>/`).
enum MigrationSql {
    Common(&'static str),
    PerBackend {
        sqlite: &'static str,
        postgres: &'static str,
    },
}

/// The migrations, applied in this order. Only the version is recorded as applied (no checksum, no file name),
/// so a released version's SQL must never change, wherever its file lives: a test pins the bytes of each.
const MIGRATIONS: &[(i64, MigrationSql)] = &[
    (
        1,
        MigrationSql::PerBackend {
            sqlite: include_str!("../../../migrations/sqlite/0001_init.sql"),
            postgres: include_str!("../../../migrations/postgres/0001_init.sql"),
        },
    ),
    (
        2,
        MigrationSql::Common(include_str!("../../../migrations/common/0002_networks.sql")),
    ),
    (
        3,
        MigrationSql::Common(include_str!("../../../migrations/common/0003_users.sql")),
    ),
    (
        4,
        MigrationSql::Common(include_str!("../../../migrations/common/0004_revoked_tokens.sql")),
    ),
    (
        5,
        MigrationSql::Common(include_str!("../../../migrations/common/0005_user_external_id.sql")),
    ),
    (
        6,
        MigrationSql::Common(include_str!("../../../migrations/common/0006_node_samples.sql")),
    ),
    (
        7,
        MigrationSql::Common(include_str!("../../../migrations/common/0007_node_alerts.sql")),
    ),
    (
        8,
        MigrationSql::Common(include_str!("../../../migrations/common/0008_node_sample_time.sql")),
    ),
    (
        9,
        MigrationSql::Common(include_str!("../../../migrations/common/0009_run_kpis.sql")),
    ),
    (
        10,
        MigrationSql::Common(include_str!("../../../migrations/common/0010_chaos_faults.sql")),
    ),
    (
        11,
        MigrationSql::Common(include_str!("../../../migrations/common/0011_scheduler_api_url.sql")),
    ),
    (
        12,
        MigrationSql::Common(include_str!(
            "../../../migrations/common/0012_variables_connections.sql"
        )),
    ),
    (
        13,
        MigrationSql::PerBackend {
            sqlite: include_str!("../../../migrations/sqlite/0013_assets.sql"),
            postgres: include_str!("../../../migrations/postgres/0013_assets.sql"),
        },
    ),
    (
        14,
        MigrationSql::PerBackend {
            sqlite: include_str!("../../../migrations/sqlite/0014_task_mapping.sql"),
            postgres: include_str!("../../../migrations/postgres/0014_task_mapping.sql"),
        },
    ),
    (
        15,
        MigrationSql::Common(include_str!("../../../migrations/common/0015_bundle_version.sql")),
    ),
    (
        16,
        MigrationSql::Common(include_str!("../../../migrations/common/0016_task_log_chunks.sql")),
    ),
];

impl MigrationSql {
    /// The script `backend` runs.
    fn for_backend(&self, backend: Backend) -> &'static str {
        match *self {
            MigrationSql::Common(script) => script,
            MigrationSql::PerBackend { sqlite, postgres } => {
                if backend == Backend::Sqlite {
                    sqlite
                } else {
                    postgres
                }
            }
        }
    }
}

impl Store {
    /// Connects to `url` (`sqlite://PATH` or `postgres://...`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::invalid(format!(
                "unsupported database URL `{}`; expected sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )));
        };
        let connect_error = |err: sqlx::Error| Error::Database(format!("cannot connect to {}: {err}", redact_url(url)));
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                // The writer first: it creates the file and sets WAL before readers open it.
                let writer = sqlite_pool(1).connect(&url).await.map_err(connect_error)?;
                let pool = sqlite_pool(3).connect(&url).await.map_err(connect_error)?;
                (pool, writer)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .acquire_timeout(Duration::from_secs(30))
                    .max_connections(10)
                    .connect(url)
                    .await
                    .map_err(connect_error)?;
                (pool.clone(), pool)
            }
        };
        let store = Store {
            pool,
            writer,
            backend,
            bus: events::Bus::new(backend, url),
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// Whether every migration is applied already (one read; the usual case for a CLI command).
    async fn schema_is_current(&self) -> bool {
        let Ok(rows) = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&self.pool)
            .await
        else {
            return false;
        };
        let applied: Vec<i64> = rows.iter().filter_map(|row| row.try_get::<i64, _>(0).ok()).collect();
        MIGRATIONS.iter().all(|(version, _)| applied.contains(version))
    }

    async fn migrate(&self) -> Result<()> {
        if self.schema_is_current().await {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            // Several schedulers may start at once: one migrates, the others wait.
            sqlx::query("SELECT pg_advisory_xact_lock(4242001)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let script = sql.for_backend(self.backend);
            for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(micros(Utc::now()))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Begins a write transaction (SQLite takes the write lock at once, so two writers queue instead of
    /// failing on upgrade).
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>> {
        let tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        };
        Ok(tx)
    }

    /// `FOR UPDATE SKIP LOCKED` on PostgreSQL; nothing on SQLite, whose write lock already serializes writers.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// A pool of SQLite connections, each in WAL mode and waiting up to 30 s for another process's write lock.
fn sqlite_pool(connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(30))
        .max_connections(connections)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                for pragma in [
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA synchronous = NORMAL",
                    "PRAGMA busy_timeout = 30000",
                    "PRAGMA foreign_keys = ON",
                ] {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

/// Hides the password of a database URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &credentials[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Microseconds since the epoch.
pub fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The instant `micros` microseconds after the epoch.
pub fn from_micros(value: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(value).single().unwrap_or_default()
}

fn opt_time(row: &AnyRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(from_micros))
}

fn time(row: &AnyRow, column: &str) -> Result<DateTime<Utc>> {
    Ok(from_micros(row.try_get::<i64, _>(column)?))
}

/// `$first, $first+1, ...` placeholders for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows are changed in chunks so no statement has more parameters than either database allows.
const CHUNK: usize = 500;

#[cfg(test)]
mod chain_tests;
#[cfg(test)]
mod tests;
