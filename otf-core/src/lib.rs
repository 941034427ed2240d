//! `otf-core` owns every rule of otf: the domain types and their state
//! machines (organizations, workspaces, agent pools, agent tokens, agents,
//! jobs, runs), the scheduler, the liveness manager, authorization, token
//! hashing, and the use cases ([`services::Core`]) generic over the traits it
//! defines for persistence ([`store::Store`]), events ([`events::EventBus`]),
//! time ([`clock::Clock`]) and randomness ([`random::Random`]).
//!
//! It does no I/O and must not depend on any other otf crate, nor on HTTP,
//! SQL or terminal crates (hyper, sea-orm, sqlx, ratatui, crossterm, clap).
//! An in-memory store ([`memory::MemoryStore`]) makes it embeddable as is.

#![forbid(unsafe_code)]

pub mod agent;
pub mod agent_token;
pub mod artifacts;
pub mod auth;
pub mod clock;
pub mod duration;
pub(crate) mod enums;
pub mod events;
pub mod gauges;
pub mod ids;
pub mod job;
pub mod labels;
pub mod liveness;
pub mod log_limit;
pub mod memory;
pub mod organization;
pub mod pool;
pub mod random;
pub mod run;
pub mod scheduler;
pub mod secret;
pub mod services;
pub mod state_file;
pub mod store;
pub mod tarball;
pub mod transition;
pub mod workspace;

pub use enums::UnknownVariant;

/// The version of otf (every crate of the workspace shares it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub use services::{Core, CoreConfig, Dispatcher, Error};
