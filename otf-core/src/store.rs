//! The persistence contract the core needs, split by aggregate.
//!
//! A [`Store`] hands out transactions ([`Tx`]). Reads see the transaction's
//! own writes. `lock_*` methods read a row and hold a write lock on it until
//! the transaction ends (row lock on PostgreSQL; SQLite and the in-memory store
//! serialise writers). Services lock in one order: pool, then workspace (the
//! lock root of its runs and jobs), then agent. Nothing is visible to others
//! before [`Tx::commit`]; dropping a transaction rolls it back.

use async_trait::async_trait;

use crate::agent::Agent;
use crate::agent_token::AgentToken;
use crate::artifacts::{ArtifactKind, ConfigurationVersion, LogChunk, StateVersion, Variable};
use crate::clock::Timestamp;
use crate::ids::*;
use crate::job::{Job, JobPhase};
use crate::organization::{Organization, OrganizationToken};
use crate::pool::AgentPool;
use crate::run::Run;
use crate::workspace::Workspace;

/// What can go wrong in a store, without driver types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// An update or delete of a row that does not exist.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// A uniqueness violation or a serialisation failure; retrying may help.
    #[error("conflicting change: {0}")]
    Conflict(#[source] Cause),
    /// The database cannot be reached or failed.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Cause),
}

/// Why a database failed: what the store says, and the driver's error
/// behind it when there is one (kept as the error's source; causes compare
/// by their message).
#[derive(Debug, Clone)]
pub struct Cause {
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// A cause the store states itself.
    pub fn new(message: impl Into<String>) -> Self {
        Cause {
            message: message.into(),
            source: None,
        }
    }

    /// A driver's error, kept whole.
    pub fn of(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause::saying(e.to_string(), e)
    }

    /// A driver's error, kept whole, said as `message`.
    pub fn saying(
        message: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Cause {
            message: message.into(),
            source: Some(std::sync::Arc::new(e)),
        }
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Cause {}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl StoreError {
    /// The database is unavailable for a reason the store states.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable(Cause::new(message))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait OrganizationRepo {
    async fn insert_organization(&mut self, org: &Organization) -> StoreResult<()>;
    async fn get_organization(
        &mut self,
        name: &OrganizationName,
    ) -> StoreResult<Option<Organization>>;
    async fn list_organizations(&mut self) -> StoreResult<Vec<Organization>>;
    /// Deletes the organization and everything in it.
    async fn delete_organization(&mut self, name: &OrganizationName) -> StoreResult<()>;
    async fn insert_org_token(&mut self, token: &OrganizationToken) -> StoreResult<()>;
    async fn update_org_token(&mut self, token: &OrganizationToken) -> StoreResult<()>;
    async fn get_org_token(&mut self, id: &OrgTokenId) -> StoreResult<Option<OrganizationToken>>;
    async fn list_org_tokens(
        &mut self,
        org: &OrganizationName,
    ) -> StoreResult<Vec<OrganizationToken>>;
    async fn delete_org_token(&mut self, id: &OrgTokenId) -> StoreResult<()>;
}

#[async_trait]
pub trait WorkspaceRepo {
    async fn insert_workspace(&mut self, ws: &Workspace) -> StoreResult<()>;
    async fn update_workspace(&mut self, ws: &Workspace) -> StoreResult<()>;
    /// Write only the workspace's run bookkeeping (its lock, current run
    /// and update time), all that a run's creation, start or end changes:
    /// no name check, and the other columns (and their indexes) stay as
    /// they are. [`StoreError::NotFound`] when there is no such workspace.
    async fn update_workspace_runs(&mut self, ws: &Workspace) -> StoreResult<()>;
    async fn get_workspace(&mut self, id: &WorkspaceId) -> StoreResult<Option<Workspace>>;
    async fn lock_workspace(&mut self, id: &WorkspaceId) -> StoreResult<Option<Workspace>>;
    async fn get_workspace_by_name(
        &mut self,
        org: &OrganizationName,
        name: &str,
    ) -> StoreResult<Option<Workspace>>;
    /// Sorted by name.
    async fn list_workspaces(&mut self, org: &OrganizationName) -> StoreResult<Vec<Workspace>>;
    /// The workspaces assigned to `pool` (execution mode agent with that pool).
    async fn list_workspaces_in_pool(&mut self, pool: &PoolId) -> StoreResult<Vec<Workspace>>;
    /// Deletes the workspace with its runs, jobs, versions and variables.
    async fn delete_workspace(&mut self, id: &WorkspaceId) -> StoreResult<()>;
}

#[async_trait]
pub trait PoolRepo {
    async fn insert_pool(&mut self, pool: &AgentPool) -> StoreResult<()>;
    async fn update_pool(&mut self, pool: &AgentPool) -> StoreResult<()>;
    async fn get_pool(&mut self, id: &PoolId) -> StoreResult<Option<AgentPool>>;
    async fn lock_pool(&mut self, id: &PoolId) -> StoreResult<Option<AgentPool>>;
    /// Sorted by name.
    async fn list_pools(&mut self, org: &OrganizationName) -> StoreResult<Vec<AgentPool>>;
    /// Deletes the pool with its tokens.
    async fn delete_pool(&mut self, id: &PoolId) -> StoreResult<()>;
}

#[async_trait]
pub trait AgentTokenRepo {
    async fn insert_agent_token(&mut self, token: &AgentToken) -> StoreResult<()>;
    async fn update_agent_token(&mut self, token: &AgentToken) -> StoreResult<()>;
    async fn get_agent_token(&mut self, id: &AgentTokenId) -> StoreResult<Option<AgentToken>>;
    /// Oldest first.
    async fn list_agent_tokens(&mut self, pool: &PoolId) -> StoreResult<Vec<AgentToken>>;
    async fn delete_agent_token(&mut self, id: &AgentTokenId) -> StoreResult<()>;
}

#[async_trait]
pub trait AgentRepo {
    async fn insert_agent(&mut self, agent: &Agent) -> StoreResult<()>;
    /// Write the agent's changes. Its pool and token are its registration's
    /// and never change: stores may leave them as inserted.
    async fn update_agent(&mut self, agent: &Agent) -> StoreResult<()>;
    async fn get_agent(&mut self, id: &AgentId) -> StoreResult<Option<Agent>>;
    async fn lock_agent(&mut self, id: &AgentId) -> StoreResult<Option<Agent>>;
    /// Every agent, sorted by id.
    async fn list_agents(&mut self) -> StoreResult<Vec<Agent>>;
    /// The agents of one pool (None: server runners), sorted by id.
    async fn list_agents_in_pool(&mut self, pool: Option<&PoolId>) -> StoreResult<Vec<Agent>>;
    async fn list_agents_of_token(&mut self, token: &AgentTokenId) -> StoreResult<Vec<Agent>>;
    /// The agents `due` includes ([`crate::liveness::AgentsDue::includes`]),
    /// sorted by id.
    async fn list_agents_due(
        &mut self,
        due: &crate::liveness::AgentsDue,
    ) -> StoreResult<Vec<Agent>>;
    /// Raise `last_ping_at` of each listed agent to the given time (never
    /// lower it); unknown ids are ignored. One statement per batch.
    async fn touch_agents(&mut self, seen: &[(AgentId, Timestamp)]) -> StoreResult<()>;
    async fn delete_agent(&mut self, id: &AgentId) -> StoreResult<()>;
}

#[async_trait]
pub trait JobRepo {
    async fn insert_job(&mut self, job: &Job) -> StoreResult<()>;
    /// Write the job's changes. Its run never changes: stores may leave it
    /// as inserted.
    async fn update_job(&mut self, job: &Job) -> StoreResult<()>;
    async fn get_job(&mut self, id: &JobId) -> StoreResult<Option<Job>>;
    /// All jobs of a run, oldest attempt first.
    async fn list_jobs_of_run(&mut self, run: &RunId) -> StoreResult<Vec<Job>>;
    /// Every job that is not final, sorted by (queued_at, id).
    async fn list_active_jobs(&mut self) -> StoreResult<Vec<Job>>;
    /// The non-final jobs held by an agent, sorted by id.
    async fn list_jobs_of_agent(&mut self, agent: &AgentId) -> StoreResult<Vec<Job>>;
}

#[async_trait]
pub trait RunRepo {
    async fn insert_run(&mut self, run: &Run) -> StoreResult<()>;
    /// Write the run's changes. Its workspace and creation time never
    /// change: stores may leave them as inserted.
    async fn update_run(&mut self, run: &Run) -> StoreResult<()>;
    async fn get_run(&mut self, id: &RunId) -> StoreResult<Option<Run>>;
    /// Newest first, with the total count.
    async fn list_runs(
        &mut self,
        ws: &WorkspaceId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Run>, u64)>;
    /// When the workspace's newest run was created (its runs' creation
    /// times order its queue); None when it has none.
    async fn newest_run_created_at(
        &mut self,
        ws: &WorkspaceId,
    ) -> StoreResult<Option<crate::clock::Timestamp>>;
    /// The oldest `pending` non-speculative run of the workspace.
    async fn next_pending_run(&mut self, ws: &WorkspaceId) -> StoreResult<Option<Run>>;
    /// How many runs there are in each status (for metrics); statuses with
    /// no run may be missing.
    async fn count_runs_by_status(&mut self) -> StoreResult<Vec<(crate::run::RunStatus, u64)>>;
    /// The id and status of every run that is not final, sorted by id (for
    /// metrics kept up to date by events).
    async fn active_run_statuses(&mut self) -> StoreResult<Vec<(RunId, crate::run::RunStatus)>>;
}

#[async_trait]
pub trait ConfigRepo {
    async fn insert_config_version(&mut self, cv: &ConfigurationVersion) -> StoreResult<()>;
    async fn update_config_version(&mut self, cv: &ConfigurationVersion) -> StoreResult<()>;
    async fn get_config_version(
        &mut self,
        id: &ConfigVersionId,
    ) -> StoreResult<Option<ConfigurationVersion>>;
    /// The newest uploaded configuration version of a workspace.
    async fn latest_config_version(
        &mut self,
        ws: &WorkspaceId,
    ) -> StoreResult<Option<ConfigurationVersion>>;
    async fn put_config_tarball(&mut self, id: &ConfigVersionId, tarball: &[u8])
        -> StoreResult<()>;
    async fn get_config_tarball(&mut self, id: &ConfigVersionId) -> StoreResult<Option<Vec<u8>>>;
}

#[async_trait]
pub trait StateRepo {
    async fn insert_state_version(&mut self, sv: &StateVersion, state: &[u8]) -> StoreResult<()>;
    async fn get_state_version(&mut self, id: &StateVersionId)
        -> StoreResult<Option<StateVersion>>;
    /// The newest state version of the workspace.
    async fn current_state_version(
        &mut self,
        ws: &WorkspaceId,
    ) -> StoreResult<Option<StateVersion>>;
    /// Newest first.
    async fn list_state_versions(&mut self, ws: &WorkspaceId) -> StoreResult<Vec<StateVersion>>;
    async fn get_state_bytes(&mut self, id: &StateVersionId) -> StoreResult<Option<Vec<u8>>>;
}

#[async_trait]
pub trait VariableRepo {
    async fn insert_variable(&mut self, var: &Variable) -> StoreResult<()>;
    async fn update_variable(&mut self, var: &Variable) -> StoreResult<()>;
    async fn get_variable(&mut self, id: &VariableId) -> StoreResult<Option<Variable>>;
    /// Sorted by key.
    async fn list_variables(&mut self, ws: &WorkspaceId) -> StoreResult<Vec<Variable>>;
    async fn delete_variable(&mut self, id: &VariableId) -> StoreResult<()>;
}

#[async_trait]
pub trait LogRepo {
    /// Append at the end of the phase's log; returns the chunk as stored (with
    /// its offset).
    async fn append_log(
        &mut self,
        run: &RunId,
        phase: JobPhase,
        data: &[u8],
    ) -> StoreResult<LogChunk>;
    /// Up to `limit` bytes of the log starting at `offset`.
    async fn read_log(
        &mut self,
        run: &RunId,
        phase: JobPhase,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<u8>>;
}

#[async_trait]
pub trait ArtifactRepo {
    async fn put_artifact(
        &mut self,
        run: &RunId,
        kind: ArtifactKind,
        data: &[u8],
    ) -> StoreResult<()>;
    async fn get_artifact(
        &mut self,
        run: &RunId,
        kind: ArtifactKind,
    ) -> StoreResult<Option<Vec<u8>>>;
}

/// The leader's fencing token: an epoch that every new reign increments.
/// A dispatcher transaction first checks that its reign is still the
/// current one (holding the row shared, so a new reign waits for it), so a
/// deposed leader's writes cannot apply.
#[async_trait]
pub trait ReignRepo {
    /// Start a new reign: increment the epoch and return it.
    async fn begin_reign(&mut self) -> StoreResult<u64>;
    /// Whether `epoch` is still the current reign, holding it until the
    /// transaction ends.
    async fn holds_reign(&mut self, epoch: u64) -> StoreResult<bool>;
}

/// One transaction over every aggregate.
#[async_trait]
pub trait Tx:
    ReignRepo
    + OrganizationRepo
    + WorkspaceRepo
    + PoolRepo
    + AgentTokenRepo
    + AgentRepo
    + JobRepo
    + RunRepo
    + ConfigRepo
    + StateRepo
    + VariableRepo
    + LogRepo
    + ArtifactRepo
    + Send
{
    async fn commit(self) -> StoreResult<()>;

    /// Whether this transaction runs alone: nothing else writes between its
    /// first statement and its end (SQLite's single writer, the in-memory
    /// store's lock). Then a row read before taking a row lock is still
    /// what the lock would show, and need not be read again after it; on a
    /// store with concurrent writers (PostgreSQL) it must be.
    fn serialized(&self) -> bool {
        false
    }
}

/// A database: the source of transactions.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    type Tx: Tx + 'static;
    async fn begin(&self) -> StoreResult<Self::Tx>;

    /// A transaction that only reads: it sees one consistent snapshot of
    /// what was committed, and need not wait behind writers (SQLite's WAL
    /// readers). Writing in it is an error of the caller.
    async fn begin_read(&self) -> StoreResult<Self::Tx> {
        self.begin().await
    }
}
