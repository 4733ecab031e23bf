//! Scratch databases for measurements and tests: a SQLite file in a directory of its own, or a new database
//! on a PostgreSQL server, removed when dropped.

use std::path::PathBuf;

use crate::store::Store;
use crate::{Error, Result};

/// A store on a fresh database, removed on drop.
pub struct ScratchDb {
    pub store: Store,
    pub url: String,
    dir: Option<PathBuf>,
    pg: Option<(String, String)>,
}

impl ScratchDb {
    /// A SQLite file under a new directory in the system's temp dir.
    pub async fn sqlite() -> Result<ScratchDb> {
        let dir = std::env::temp_dir().join(format!("dagctl-scratch-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let url = format!("sqlite://{}", dir.join("dagctl.db").display());
        let store = Store::connect(&url).await?;
        Ok(ScratchDb {
            store,
            url,
            dir: Some(dir),
            pg: None,
        })
    }

    /// A new database on the PostgreSQL server that `admin_url` (a database URL with the right to create
    /// databases) names.
    pub async fn postgres(admin_url: &str) -> Result<ScratchDb> {
        let (url, name) = create_pg_database(admin_url).await?;
        let store = Store::connect(&url).await?;
        Ok(ScratchDb {
            store,
            url,
            dir: None,
            pg: Some((admin_url.to_string(), name)),
        })
    }
}

/// Creates an empty PostgreSQL database beside `admin_url`'s and returns its URL and name.
pub async fn create_pg_database(admin_url: &str) -> Result<(String, String)> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("dagctl_scratch_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base.to_string())
        .unwrap_or_else(|| admin_url.to_string());
    Ok((format!("{base}/{name}"), name))
}

/// Drops a database made by [`create_pg_database`].
pub async fn drop_pg_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::AnyConnection::connect(admin_url).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((admin, name)) = self.pg.take() {
            // Drop may run inside a runtime that is blocked here: use a runtime of our own, and leave the
            // store's connections alone (FORCE ends them).
            std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(drop_pg_database(&admin, &name));
                }
            })
            .join()
            .ok();
        }
    }
}
