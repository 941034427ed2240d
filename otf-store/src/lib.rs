//! `otf-store` maps otf-core's aggregates to database rows and back: it
//! implements [`otf_core::store::Store`] on SQLite (the embedded default: one
//! file, WAL, foreign keys on, writers serialised in-process and committed in
//! groups that share one fsync) and on
//! PostgreSQL (several otfd replicas: row locks with `SELECT ... FOR UPDATE`),
//! with the same sea-orm code and migrations for both. It also carries change
//! events between replicas ([`PgBus`], LISTEN/NOTIFY) and elects the replica
//! that runs the scheduler ([`PgLeader`], an advisory lock).
//!
//! Entry type: [`DbStore`] (`DbStore::connect(url)`); [`Runtime`] bundles a
//! store with the event bus and leader election that suit its backend.
//!
//! It depends on `otf-core` only; sea-orm entities (`entity`) never leave
//! this crate and all row <-> core conversions live in `convert`. It must not
//! depend on `otf-http`, `otf-agent` or `otf-tui`.

#![forbid(unsafe_code)]

mod convert;
mod entity;
mod error;
mod leader;
mod migration;
mod pg_bus;
mod repo;
mod runtime;
mod sql_cache;
mod sqlite_conn;
mod store;

pub use leader::{PgLeader, LEADER_LOCK};
pub use otf_core::memory::MemoryStore;
pub use pg_bus::PgBus;
pub use runtime::Runtime;
pub use sql_cache::texts_built_each_time;
pub use store::{Backend, DbStore, DbTx};
