//! `otf-agent` executes jobs: registration, heartbeats, the job loop
//! ([`runtime`]), and the operation that drives terraform ([`operation`]).
//! The same code runs in-process inside otfd (the server runner, over
//! [`transport::in_process::InProcess`]) and as the `otf-agent` binary (a
//! pool agent, over [`transport::http::HttpTransport`]). [`protocol`] holds
//! the agent protocol's wire types, shared with otf-http.
//!
//! It depends on `otf-core` only; never on `otf-store` or `otf-tui`.

#![forbid(unsafe_code)]

pub mod acked;
pub mod cli;
pub mod engine;
pub mod hooks;
mod job;
pub mod job_env;
mod logs;
pub mod operation;
pub mod plugin_cache;
mod process;
pub mod protocol;
pub mod recovery;
pub mod runtime;
pub mod sandbox;
pub mod transport;
mod unpack;
pub mod warm;
pub mod workdir;

pub use runtime::{run, AgentError, PhaseTimeouts, RunnerConfig};
