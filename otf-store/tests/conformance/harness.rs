//! Fresh databases for tests: a SQLite file in its own directory, or a
//! PostgreSQL database created for one test and dropped after it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Once;

use otf_store::DbStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

fn random_hex() -> String {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).expect("random bytes");
    hex::encode(b)
}

/// Say something the test harness does not capture (so it shows in CI
/// output even when the test passes).
pub fn announce(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// A directory removed with everything in it when dropped.
pub struct SqliteDb {
    dir: PathBuf,
}

impl SqliteDb {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("otf-store-test-{}", random_hex()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("otf.db")
    }

    pub async fn open(&self) -> DbStore {
        open_sqlite(&self.path()).await
    }
}

pub async fn open_sqlite(path: &Path) -> DbStore {
    DbStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open the SQLite store")
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A database of its own on the PostgreSQL server of `OTF_TEST_DATABASE_URL`.
pub struct PgDb {
    admin: PgConnectOptions,
    name: String,
    pub url: String,
    removed: bool,
}

/// The server to test against, or None (after saying so) when there is none.
/// Under CI a missing server is a failure, never a silent skip.
fn server_url() -> Option<String> {
    static NOTE: Once = Once::new();
    match std::env::var("OTF_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            NOTE.call_once(|| {
                announce(&format!(
                    "note: PostgreSQL leg of the store conformance suite runs against {url}"
                ))
            });
            Some(url)
        }
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "OTF_TEST_DATABASE_URL is not set: CI must run the PostgreSQL leg (scripts/test sets it)"
            );
            NOTE.call_once(|| {
                announce(
                    "note: PostgreSQL was NOT tested: set OTF_TEST_DATABASE_URL \
                     (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run the PostgreSQL leg",
                )
            });
            None
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl PgDb {
    pub async fn create() -> Option<Self> {
        let url = server_url()?;
        let admin =
            PgConnectOptions::from_str(&url).expect("OTF_TEST_DATABASE_URL is a PostgreSQL URL");
        let name = format!("otf_test_{}", random_hex());
        let mut conn = admin
            .connect()
            .await
            .expect("connect to OTF_TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create a test database");
        let _ = conn.close().await;
        Some(Self {
            url: with_database(&url, &name),
            admin,
            name,
            removed: false,
        })
    }

    pub async fn open(&self) -> DbStore {
        DbStore::connect(&self.url)
            .await
            .expect("open the PostgreSQL store")
    }

    /// Drop the database (connections still open to it are terminated).
    pub async fn remove(mut self) {
        self.removed = true;
        drop_database(&self.admin, &self.name).await;
    }
}

async fn drop_database(admin: &PgConnectOptions, name: &str) {
    if let Ok(mut conn) = admin.connect().await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

impl Drop for PgDb {
    /// A test that panicked still removes its database.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let admin = self.admin.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&admin, &name));
            }
        })
        .join();
    }
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/postgres?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

/// Every statement the store built so far reuses its SQL text (a shape that
/// cannot is still correct, only slow; see `otf_store::texts_built_each_time`).
pub fn assert_sql_texts_kept() {
    let rebuilt = otf_store::texts_built_each_time();
    assert!(
        rebuilt.is_empty(),
        "statements whose SQL text is written for every execution: {rebuilt:?}"
    );
}
