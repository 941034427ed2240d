//! One conformance story for every store, written once and run against the
//! in-memory store, SQLite (a fresh file per test) and PostgreSQL (a fresh
//! database per test, when `OTF_TEST_DATABASE_URL` is set), always through
//! the real migrations.
//!
//! `checks` holds the story; `conformance!` instantiates each check for
//! each backend. `postgres_only` and `sqlite_only` cover what only one
//! backend has: events and leader hand-over between replicas, and a file
//! that survives a restart or a killed writer.

mod checks;
mod concurrency;
mod fixtures;
mod harness;
mod postgres_only;
mod sqlite_only;

/// Instantiate checks for every backend: `memory::x`, `sqlite::x`,
/// `postgres::x`.
macro_rules! conformance {
    ($($module:ident :: $check:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let store = otf_store::MemoryStore::new();
                    crate::$module::$check(&store).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let db = crate::harness::SqliteDb::new();
                    let store = db.open().await;
                    crate::$module::$check(&store).await;
                    store.close().await;
                    crate::harness::assert_sql_texts_kept();
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(db) = crate::harness::PgDb::create().await else { return };
                    let store = db.open().await;
                    crate::$module::$check(&store).await;
                    store.close().await;
                    db.remove().await;
                    crate::harness::assert_sql_texts_kept();
                }
            )*
        }
    };
}

conformance!(
    checks::organizations_and_their_tokens,
    checks::workspaces,
    checks::pools_grants_and_agent_tokens,
    checks::agents,
    checks::agents_due,
    checks::jobs,
    checks::runs,
    checks::configuration_and_state_versions,
    checks::variables,
    checks::logs_and_artifacts,
    checks::deletes_cascade,
    checks::dropped_transactions_roll_back,
    checks::leader_reigns_fence_each_other,
    concurrency::concurrent_updates_never_lose_a_change,
);
