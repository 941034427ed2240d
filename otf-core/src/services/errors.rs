//! The error of every service method. Each variant tells a person what went
//! wrong and what to do; adapters map variants to status codes once.

use crate::agent::AgentStatus;
use crate::agent_token::AgentTokenError;
use crate::artifacts::ConfigStatus;
use crate::ids::{InvalidId, InvalidName};
use crate::pool::PoolError;
use crate::store::StoreError;
use crate::transition::TransitionRefused;
use crate::workspace::LockError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the token is missing, malformed, wrong or revoked; check the token you use")]
    Unauthorized,
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{kind} {name} already exists; pick another name")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    AgentToken(#[from] AgentTokenError),
    #[error(transparent)]
    Transition(#[from] TransitionRefused),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("agent {agent} is {status} and no longer accepted; register again")]
    AgentGone { agent: String, status: AgentStatus },
    #[error("agent {agent} is {status}; only unknown, errored or exited agents can be deleted")]
    AgentStillLive { agent: String, status: AgentStatus },
    #[error("workspace {workspace} uses local execution: the Terraform CLI runs it and otf only keeps its state; set its execution mode to remote or agent to run it here")]
    LocalExecution { workspace: String },
    #[error("configuration version {id} is {status}; upload the configuration before starting a run with it")]
    ConfigNotReady { id: String, status: ConfigStatus },
    #[error("workspace {workspace} has an active run {run}; cancel or finish it first")]
    WorkspaceBusy { workspace: String, run: String },
    #[error(transparent)]
    Tarball(#[from] crate::tarball::TarballError),
    #[error("state conflict: {reason}")]
    StateConflict { reason: String },
    #[error(transparent)]
    LateState(#[from] crate::artifacts::LateStateRefusal),
    #[error(transparent)]
    IncompatibleAgent(#[from] crate::agent::IncompatibleAgent),
    #[error("this replica is no longer the leader (its reign {epoch} was superseded); it stops dispatching")]
    Deposed { epoch: u64 },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => Error::NotFound { kind, id },
            other => Error::Store(other),
        }
    }
}
