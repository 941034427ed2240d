//! `otf-tui` is the administrator's terminal UI: a client of otfd's public
//! HTTP API only. It must not depend on `otf-store` (no database access).
//!
//! Not built yet (issue 6).

#![forbid(unsafe_code)]
