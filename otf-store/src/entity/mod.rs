//! sea-orm entities: one module per table. They are crate-private; the rest
//! of otf sees only otf-core's types (see `convert`).

pub(crate) mod agent;
pub(crate) mod agent_token;
pub(crate) mod artifact;
pub(crate) mod config_tarball;
pub(crate) mod config_version;
pub(crate) mod job;
pub(crate) mod log_chunk;
pub(crate) mod org_token;
pub(crate) mod organization;
pub(crate) mod pool;
pub(crate) mod pool_exclusion;
pub(crate) mod pool_grant;
pub(crate) mod run;
pub(crate) mod state_blob;
pub(crate) mod state_version;
pub(crate) mod variable;
pub(crate) mod workspace;
