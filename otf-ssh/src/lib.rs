//! `otf-ssh` is otfd's SSH server: an administrator runs `ssh -p PORT
//! HOST` and gets the same TUI `otf-tui` shows, in that terminal, as the
//! key they logged in with (a site administrator, or one organization's
//! administrator with `otf-organization="NAME"` in the authorized keys).
//!
//! It owns the SSH side only: the host key ([`host_key`]), who may enter
//! ([`authorized_keys`], watched for changes), the russh server and its
//! refusals ([`server`]) and the wiring of one session's channel to the
//! TUI ([`session`]). The screens are `otf-tui`'s ([`otf_tui::remote`]);
//! what a session may do is decided by otf-core's authorization for the
//! key's [`otf_core::auth::Subject`], through the API otfd hands it
//! ([`server::SessionApi`]). It must not depend on `otf-store`,
//! `otf-http` or `otf-agent`.

#![forbid(unsafe_code)]

pub mod authorized_keys;
pub mod host_key;
pub mod server;
mod session;
pub mod stats;

pub use authorized_keys::{AuthorizedKey, AuthorizedKeys};
pub use host_key::HostKey;
pub use server::{serve, SessionApi, SshConfig};
pub use stats::Stats;
