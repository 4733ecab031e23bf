//! DAGs, their versions (by content hash) and import errors.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{micros, opt_time, time, Store};
use crate::error::DagFileError;
use crate::parse::ParsedFile;
use crate::spec::DagSpec;
use crate::timetable::DataInterval;
use crate::{Error, Result};

/// A DAG as the store knows it, with the spec of its latest version.
#[derive(Debug, Clone)]
pub struct DagRow {
    pub dag_id: String,
    pub fileloc: String,
    pub is_paused: bool,
    /// Its file no longer defines it.
    pub is_stale: bool,
    pub version_hash: String,
    pub version_id: String,
    pub version_number: i64,
    /// The commit its file was last read at (a git-synced DAGs folder).
    pub bundle_version: Option<String>,
    pub next_dagrun: Option<DateTime<Utc>>,
    pub next_dagrun_create_after: Option<DateTime<Utc>>,
    pub last_parsed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub spec: DagSpec,
}

/// One stored import error.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportErrorRow {
    pub id: i64,
    pub filename: String,
    pub line: Option<i64>,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub key: Option<String>,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

/// What a sync of the DAGs folder changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub new_versions: Vec<String>,
    pub stale: Vec<String>,
    pub import_errors: usize,
}

/// What the store keeps about a version besides its spec (Airflow's `DagVersionResponse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub id: String,
    pub number: i64,
    pub created_at: DateTime<Utc>,
    /// The commit the version first came from, when the DAGs folder is a git checkout.
    pub bundle_version: Option<String>,
}

/// Content hash of a DAG spec: the same spec always gets the same version.
pub fn spec_hash(spec: &DagSpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

const DAG_COLUMNS: &str = "d.dag_id, d.fileloc, d.is_paused, d.is_stale, d.version_hash, d.next_dagrun, \
     d.next_dagrun_create_after, d.last_parsed_at, d.created_at, d.bundle_version, v.id AS version_id, v.version_number, \
     v.spec_json";

fn dag_from_row(row: &AnyRow) -> Result<DagRow> {
    let spec_json: String = row.try_get("spec_json")?;
    let spec: DagSpec = serde_json::from_str(&spec_json)
        .map_err(|err| Error::Database(format!("stored DAG spec is unreadable: {err}")))?;
    Ok(DagRow {
        dag_id: row.try_get("dag_id")?,
        fileloc: row.try_get("fileloc")?,
        is_paused: row.try_get::<i64, _>("is_paused")? != 0,
        is_stale: row.try_get::<i64, _>("is_stale")? != 0,
        version_hash: row.try_get("version_hash")?,
        version_id: row.try_get("version_id")?,
        version_number: row.try_get("version_number")?,
        bundle_version: row.try_get("bundle_version")?,
        next_dagrun: opt_time(row, "next_dagrun")?,
        next_dagrun_create_after: opt_time(row, "next_dagrun_create_after")?,
        last_parsed_at: time(row, "last_parsed_at")?,
        created_at: time(row, "created_at")?,
        spec,
    })
}

impl Store {
    /// Records the result of reading the DAGs folder: new versions, import errors per file (replacing the
    /// file's old ones), and DAGs whose file no longer defines them (stale). A DAG in a file that now fails to
    /// parse keeps its last good version. `bundle_version` is the commit the files were read at (None for a
    /// plain folder): a new version records it, and so does every DAG read. `complete` says the files are
    /// the whole folder; when they are not (a git checkout not made yet), no DAG becomes stale and the import
    /// errors of other files stay.
    pub async fn sync_dags(
        &self,
        files: &[ParsedFile],
        paused_at_creation: bool,
        bundle_version: Option<&str>,
        complete: bool,
        now: DateTime<Utc>,
    ) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let mut tx = self.begin().await?;
        let mut defined: HashSet<String> = HashSet::new();
        let broken_files: HashSet<&str> = files
            .iter()
            .filter(|f| !f.errors.is_empty())
            .map(|f| f.path.as_str())
            .collect();
        for file in files {
            sqlx::query("DELETE FROM import_error WHERE filename = $1")
                .bind(&file.path)
                .execute(&mut *tx)
                .await?;
            for error in &file.errors {
                insert_import_error(&mut tx, &file.path, error, now).await?;
                report.import_errors += 1;
            }
            for spec in &file.dags {
                defined.insert(spec.dag_id.clone());
                if upsert_dag(&mut tx, spec, paused_at_creation, bundle_version, now).await? {
                    report.new_versions.push(spec.dag_id.clone());
                }
                super::assets::sync_references(&mut tx, spec, now).await?;
            }
        }
        if !complete {
            tx.commit().await?;
            return Ok(report);
        }
        // Import errors of files that are gone.
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let stored: Vec<String> = sqlx::query("SELECT DISTINCT filename FROM import_error")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        for filename in stored.iter().filter(|f| !paths.contains(&f.as_str())) {
            sqlx::query("DELETE FROM import_error WHERE filename = $1")
                .bind(filename)
                .execute(&mut *tx)
                .await?;
        }
        // DAGs no longer defined by any readable file.
        let rows = sqlx::query("SELECT dag_id, fileloc, is_stale FROM dag")
            .fetch_all(&mut *tx)
            .await?;
        for row in rows {
            let dag_id: String = row.try_get(0)?;
            let fileloc: String = row.try_get(1)?;
            let was_stale = row.try_get::<i64, _>(2)? != 0;
            let stale = !defined.contains(&dag_id) && !broken_files.contains(fileloc.as_str());
            if stale != was_stale {
                sqlx::query("UPDATE dag SET is_stale = $1 WHERE dag_id = $2")
                    .bind(i64::from(stale))
                    .bind(&dag_id)
                    .execute(&mut *tx)
                    .await?;
                if stale {
                    super::assets::drop_references(&mut tx, &dag_id).await?;
                    report.stale.push(dag_id);
                }
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Stores one DAG spec (a new version if its content changed). Returns its version hash.
    pub async fn put_dag(&self, spec: &DagSpec, paused_at_creation: bool) -> Result<String> {
        let mut tx = self.begin().await?;
        upsert_dag(&mut tx, spec, paused_at_creation, None, Utc::now()).await?;
        tx.commit().await?;
        Ok(spec_hash(spec))
    }

    pub async fn list_dags(&self, include_stale: bool) -> Result<Vec<DagRow>> {
        let sql = format!(
            "SELECT {DAG_COLUMNS} FROM dag d JOIN dag_version v ON v.version_hash = d.version_hash {} ORDER BY d.dag_id",
            if include_stale { "" } else { "WHERE d.is_stale = 0" }
        );
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(dag_from_row)
            .collect()
    }

    pub async fn get_dag(&self, dag_id: &str) -> Result<DagRow> {
        let sql = format!(
            "SELECT {DAG_COLUMNS} FROM dag d JOIN dag_version v ON v.version_hash = d.version_hash WHERE d.dag_id = $1"
        );
        let row = sqlx::query(&sql).bind(dag_id).fetch_optional(&self.pool).await?;
        match row {
            Some(row) => dag_from_row(&row),
            None => Err(Error::NotFound(format!("dag `{dag_id}`"))),
        }
    }

    /// The spec of one stored version.
    pub async fn dag_version(&self, version_hash: &str) -> Result<(DagSpec, i64, String)> {
        let row = sqlx::query("SELECT spec_json, version_number, id FROM dag_version WHERE version_hash = $1")
            .bind(version_hash)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::NotFound(format!("dag version {version_hash}")))?;
        let spec: DagSpec = serde_json::from_str(&row.try_get::<String, _>(0)?)
            .map_err(|err| Error::Database(format!("stored DAG spec is unreadable: {err}")))?;
        Ok((spec, row.try_get(1)?, row.try_get(2)?))
    }

    /// What is kept about a stored version besides its spec.
    pub async fn version_info(&self, version_hash: &str) -> Result<VersionInfo> {
        let row = sqlx::query(
            "SELECT id, version_number, created_at, bundle_version FROM dag_version WHERE version_hash = $1",
        )
        .bind(version_hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| Error::NotFound(format!("dag version {version_hash}")))?;
        Ok(VersionInfo {
            id: row.try_get(0)?,
            number: row.try_get(1)?,
            created_at: time(&row, "created_at")?,
            bundle_version: row.try_get(3)?,
        })
    }

    /// Every stored version of a DAG, oldest first.
    pub async fn list_versions(&self, dag_id: &str) -> Result<Vec<VersionInfo>> {
        sqlx::query(
            "SELECT id, version_number, created_at, bundle_version FROM dag_version WHERE dag_id = $1 \
             ORDER BY version_number",
        )
        .bind(dag_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(VersionInfo {
                id: row.try_get(0)?,
                number: row.try_get(1)?,
                created_at: time(row, "created_at")?,
                bundle_version: row.try_get(3)?,
            })
        })
        .collect()
    }

    /// Pauses or unpauses a DAG.
    pub async fn set_paused(&self, dag_id: &str, paused: bool, user: Option<&str>) -> Result<()> {
        let mut tx = self.begin().await?;
        let result = sqlx::query("UPDATE dag SET is_paused = $1 WHERE dag_id = $2")
            .bind(i64::from(paused))
            .bind(dag_id)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound(format!("dag `{dag_id}`")));
        }
        super::misc::log_event(
            &mut tx,
            if paused { "paused" } else { "unpaused" },
            Some(dag_id),
            None,
            None,
            user,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the next scheduled interval for display (the scheduler recomputes it from runs).
    pub async fn set_next_dagrun(&self, dag_id: &str, next: Option<DataInterval>) -> Result<()> {
        sqlx::query("UPDATE dag SET next_dagrun = $1, next_dagrun_create_after = $2 WHERE dag_id = $3")
            .bind(next.map(|i| micros(i.start)))
            .bind(next.map(|i| micros(i.end)))
            .bind(dag_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn import_errors(&self) -> Result<Vec<ImportErrorRow>> {
        let rows = sqlx::query("SELECT id, filename, line, dag_id, task_id, key_name, message, created_at FROM import_error ORDER BY filename, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ImportErrorRow {
                    id: row.try_get("id")?,
                    filename: row.try_get("filename")?,
                    line: row.try_get("line")?,
                    dag_id: row.try_get("dag_id")?,
                    task_id: row.try_get("task_id")?,
                    key: row.try_get("key_name")?,
                    message: row.try_get("message")?,
                    created_at: time(row, "created_at")?,
                })
            })
            .collect()
    }
}

async fn insert_import_error(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    path: &str,
    error: &DagFileError,
    now: DateTime<Utc>,
) -> Result<()> {
    let loc = &error.location;
    sqlx::query("INSERT INTO import_error (filename, line, dag_id, task_id, key_name, message, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(path)
        .bind(loc.line.map(|l| l as i64))
        .bind(loc.dag_id.clone())
        .bind(loc.task_id.clone())
        .bind(loc.key.clone())
        .bind(error.to_string())
        .bind(micros(now))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Inserts the version if new and points the DAG at it. Returns true when a new version was created.
async fn upsert_dag(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    spec: &DagSpec,
    paused_at_creation: bool,
    bundle_version: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let hash = spec_hash(spec);
    let exists = sqlx::query("SELECT 1 FROM dag_version WHERE version_hash = $1")
        .bind(&hash)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if !exists {
        let number: i64 = sqlx::query("SELECT COALESCE(MAX(version_number), 0) + 1 FROM dag_version WHERE dag_id = $1")
            .bind(&spec.dag_id)
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
        let json = serde_json::to_string(spec).map_err(|err| Error::Database(err.to_string()))?;
        sqlx::query("INSERT INTO dag_version (version_hash, id, dag_id, version_number, spec_json, created_at, bundle_version) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
            .bind(&hash)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&spec.dag_id)
            .bind(number)
            .bind(json)
            .bind(micros(now))
            .bind(bundle_version.map(str::to_string))
            .execute(&mut **tx)
            .await?;
    }
    let paused = spec.is_paused_upon_creation.unwrap_or(paused_at_creation);
    sqlx::query(
        "INSERT INTO dag (dag_id, fileloc, is_paused, is_stale, version_hash, last_parsed_at, created_at, bundle_version) VALUES ($1, $2, $3, 0, $4, $5, $5, $6) \
         ON CONFLICT (dag_id) DO UPDATE SET fileloc = excluded.fileloc, is_stale = 0, version_hash = excluded.version_hash, last_parsed_at = excluded.last_parsed_at, \
         bundle_version = excluded.bundle_version",
    )
    .bind(&spec.dag_id)
    .bind(&spec.fileloc)
    .bind(i64::from(paused))
    .bind(&hash)
    .bind(micros(now))
    .bind(bundle_version.map(str::to_string))
    .execute(&mut **tx)
    .await?;
    Ok(!exists)
}
