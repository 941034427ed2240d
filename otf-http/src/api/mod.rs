//! TFE API v2 handlers: decode, call one core service, encode. One
//! function per endpoint and method; `routes.rs` says which.

pub mod jobs;
pub mod meta;
pub mod orgs;
pub mod pools;
pub mod runs;
pub mod state;
pub mod workspaces;
