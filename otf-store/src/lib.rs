//! `otf-store` maps otf-core's aggregates to database rows and back: it will
//! implement [`otf_core::store::Store`] on SQLite (the embedded default) and
//! PostgreSQL (several otfd replicas), with events and a leader lock.
//!
//! It depends on `otf-core` only; database entities never leave this crate.
//! It must not depend on `otf-http`, `otf-agent` or `otf-tui`.
//!
//! Not built yet (issue 3): until then the in-memory store of `otf-core` is
//! the only implementation.

#![forbid(unsafe_code)]

pub use otf_core::memory::MemoryStore;
