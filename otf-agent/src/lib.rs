//! `otf-agent` executes jobs: registration, heartbeats, the job loop and the
//! operation that drives terraform. The same code runs in-process inside
//! otfd (server runner) and as the `otf-agent` binary (pool agent), talking to
//! the server through a transport trait with in-process and HTTP
//! implementations. [`protocol`] holds the agent protocol's wire types.
//!
//! It depends on `otf-core` only; never on `otf-store` or `otf-tui`.
//!
//! The runner itself is not built yet (issue 5).

#![forbid(unsafe_code)]

pub mod protocol;
