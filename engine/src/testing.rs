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
