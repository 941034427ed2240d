//! `otf-http` adapts otf-core to HTTP: the TFE API v2 (JSON:API), the agent
//! protocol under `/api/agent/`, authentication of bearer tokens, and the
//! `otfd` binary that hosts them with the built-in server runner.
//!
//! Handlers decode, authenticate, call one core service and encode; no rule
//! lives here. It must not depend on `otf-tui`.
//!
//! Not built yet (issue 4).

#![forbid(unsafe_code)]

/// The version reported by otfd.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
