//! Fresh databases for tests: a SQLite file in a temp dir, or a new database on the PostgreSQL server named by
//! `DAGCTL_TEST_PG_URL` (default `postgres://postgres:postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use crate::store::Store;

/// A store on a fresh database, removed on drop.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

pub fn pg_admin_url() -> String {
    std::env::var("DAGCTL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_string())
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("dagctl.db").display());
        let store = Store::connect(&url).await.unwrap();
        TestDb {
            store,
            url,
            _dir: Some(dir),
            pg_name: None,
        }
    }

    pub async fn postgres() -> TestDb {
        let (url, name) = create_pg_database().await;
        let store = Store::connect(&url).await.unwrap();
        TestDb {
            store,
            url,
            _dir: None,
            pg_name: Some(name),
        }
    }
}

/// Creates an empty PostgreSQL database and returns its URL and name.
pub async fn create_pg_database() -> (String, String) {
    let admin = pg_admin_url();
    crate::scratch::create_pg_database(&admin).await.unwrap_or_else(|err| {
        panic!("PostgreSQL must answer at {admin} for the store tests (.ci/run starts it): {err}")
    })
}

/// Drops a database made by [`create_pg_database`].
pub async fn drop_pg_database(name: &str) {
    crate::scratch::drop_pg_database(&pg_admin_url(), name).await
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs inside the test's runtime, which is blocked here: use a runtime of our own, and leave
            // the store's connections alone (FORCE ends them).
            std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(drop_pg_database(&name));
                }
            })
            .join()
            .ok();
        }
    }
}

/// Runs one async test function against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! each_backend {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::testing::TestDb::sqlite().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$name($crate::testing::TestDb::postgres().await).await;
            }
        }
    };
}

/// Runs one statement on the test server's admin database (for faults a test injects: terminating sessions,
/// refusing connections).
async fn pg_admin(sql: &str) -> u64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&pg_admin_url())
        .await
        .unwrap_or_else(|err| panic!("PostgreSQL must answer at {} for this test: {err}", pg_admin_url()));
    let rows = sqlx::query(sql)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|err| panic!("`{sql}` failed: {err}"));
    rows.len() as u64
}

/// Ends every session on database `name` (made by [`create_pg_database`]), as an administrator's
/// `pg_terminate_backend` would; returns how many were ended.
pub async fn terminate_pg_sessions(name: &str) -> u64 {
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    pg_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .await
}

/// Lets database `name` accept new connections or not (sessions already open are not ended by this).
pub async fn allow_pg_connections(name: &str, allow: bool) {
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    pg_admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}")).await;
}

/// Holds the write lock of the SQLite database at `path` for `hold` (as another program, e.g. a backup tool,
/// would), from a connection of its own; returns once the lock is taken and releases it from a thread.
pub fn hold_sqlite_lock(path: &std::path::Path, hold: std::time::Duration) -> std::thread::JoinHandle<()> {
    use sqlx::Connection;
    let url = format!("sqlite://{}", path.display());
    let (taken, is_taken) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("PRAGMA busy_timeout = 60000")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await.unwrap();
            let _ = taken.send(());
            tokio::time::sleep(hold).await;
            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
        });
    });
    is_taken
        .recv_timeout(std::time::Duration::from_secs(90))
        .expect("the SQLite lock was taken");
    handle
}

/// Ends the listening connections (`LISTEN` for changes) on database `name`; returns how many.
pub async fn terminate_pg_listeners(name: &str) -> u64 {
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    pg_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND application_name = '{}'",
        crate::store::events::LISTENER_APPLICATION
    ))
    .await
}

/// How many listening connections database `name` has.
pub async fn count_pg_listeners(name: &str) -> u64 {
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    pg_admin(&format!(
        "SELECT pid FROM pg_stat_activity WHERE datname = '{name}' AND application_name = '{}'",
        crate::store::events::LISTENER_APPLICATION
    ))
    .await
}
