//! How a runner talks to the server: one trait, two homes. [`http::HttpTransport`]
//! for pool agents (the agent protocol over HTTP(S)), and
//! [`in_process::InProcess`] for the server runner inside otfd (core services
//! called directly). The runner code above it is the same.

pub mod http;
pub mod in_process;

use async_trait::async_trait;
use otf_core::agent::ReportedStatus;
use otf_core::artifacts::ArtifactKind;
use std::time::Duration;

use otf_core::agent::AgentStatus;
use otf_core::ids::{
    AgentId, ConfigVersionId, JobId, OrganizationName, PoolId, RunId, WorkspaceId,
};
use otf_core::job::{JobPhase, Signal};
use otf_core::run::RunStatus;
use otf_core::services::{JobOutcome, PingAnswer};

use crate::protocol::*;

/// Why a call to the server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The token was refused: an agent token revoked, or a job token whose
    /// attempt is over.
    #[error("the server refused the token: {0}")]
    Unauthorized(String),
    /// The agent is no longer known as live: register again.
    #[error("the server no longer accepts this agent: {0}")]
    Gone(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The server cannot be reached or failed; retrying may help.
    #[error("the server is unavailable: {0}")]
    Unavailable(String),
    /// The server refused the request for another reason.
    #[error("the server refused the request: {0}")]
    Refused(String),
}

pub type TResult<T> = Result<T, TransportError>;

/// The agent as the server registered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: AgentId,
    /// None for the server runner.
    pub pool: Option<PoolId>,
    pub status: AgentStatus,
    /// The agent's address as the server saw it.
    pub ip_address: String,
    /// How often the server expects a status ping.
    pub ping_interval: Duration,
}

/// A job allocated to the agent, to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOffer {
    pub id: JobId,
    pub run: RunId,
    pub workspace: WorkspaceId,
    pub phase: JobPhase,
    pub attempt: u32,
}

impl From<&otf_core::job::Job> for JobOffer {
    fn from(j: &otf_core::job::Job) -> Self {
        JobOffer {
            id: j.id.clone(),
            run: j.run.clone(),
            workspace: j.workspace.clone(),
            phase: j.phase,
            attempt: j.attempt,
        }
    }
}

/// What a runner needs to know of the run it executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTask {
    pub id: RunId,
    pub is_destroy: bool,
    pub refresh: bool,
    pub refresh_only: bool,
    pub plan_only: bool,
    pub target_addrs: Vec<String>,
    pub replace_addrs: Vec<String>,
    pub terraform_version: String,
    /// None from an otfd too old to say.
    pub configuration_version: Option<ConfigVersionId>,
}

impl From<&otf_core::run::Run> for RunTask {
    fn from(r: &otf_core::run::Run) -> Self {
        RunTask {
            id: r.id.clone(),
            is_destroy: r.options.is_destroy,
            refresh: r.options.refresh,
            refresh_only: r.options.refresh_only,
            plan_only: r.options.plan_only,
            target_addrs: r.options.target_addrs.clone(),
            replace_addrs: r.options.replace_addrs.clone(),
            terraform_version: r.terraform_version.clone(),
            configuration_version: Some(r.configuration_version.clone()),
        }
    }
}

/// What a runner needs to know of the run's workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceTask {
    pub id: WorkspaceId,
    pub name: String,
    pub organization: OrganizationName,
    /// The configuration's subdirectory to run in (empty: its root).
    pub working_directory: String,
    pub terraform_version: String,
}

impl From<&otf_core::workspace::Workspace> for WorkspaceTask {
    fn from(w: &otf_core::workspace::Workspace) -> Self {
        WorkspaceTask {
            id: w.id.clone(),
            name: w.name.clone(),
            organization: w.organization.clone(),
            working_directory: w.working_directory.clone(),
            terraform_version: w.terraform_version.clone(),
        }
    }
}

/// A started job: the token of its attempt and what the runner needs of
/// its run and workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The job token of this attempt: valid while the attempt runs.
    pub token: String,
    pub job: JobOffer,
    pub run: RunTask,
    pub workspace: WorkspaceTask,
}

impl From<&otf_core::services::StartedJob> for Started {
    fn from(s: &otf_core::services::StartedJob) -> Self {
        Started {
            token: s.token.expose().to_string(),
            job: JobOffer::from(&s.job),
            run: RunTask::from(&s.run),
            workspace: WorkspaceTask::from(&s.workspace),
        }
    }
}

/// The agent protocol, as a runner uses it: typed values only; the wire
/// spellings belong to the HTTP transport (and otfd's agent API).
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn register(&self, req: &RegisterRequest) -> TResult<Registration>;
    /// A status ping listing the jobs the agent holds.
    async fn status(
        &self,
        agent: &AgentId,
        status: ReportedStatus,
        jobs: &[JobId],
    ) -> TResult<PingAnswer>;
    /// Jobs allocated to the agent; empty after the server's bounded wait.
    async fn await_jobs(&self, agent: &AgentId) -> TResult<Vec<JobOffer>>;
    async fn start_job(&self, agent: &AgentId, job: &JobId) -> TResult<Started>;
    /// A signal for the job; `None` after the server's bounded wait with
    /// none, or when the job ended (the caller checks which).
    async fn await_signal(&self, agent: &AgentId, job: &JobId) -> TResult<Option<Signal>>;

    async fn config(&self, token: &str) -> TResult<Vec<u8>>;
    async fn variables(&self, token: &str) -> TResult<Vec<VariableSpec>>;
    async fn current_state(&self, token: &str) -> TResult<Option<Vec<u8>>>;
    async fn put_artifact(&self, token: &str, kind: ArtifactKind, data: Vec<u8>) -> TResult<()>;
    async fn get_artifact(&self, token: &str, kind: ArtifactKind) -> TResult<Option<Vec<u8>>>;
    async fn append_log(&self, token: &str, data: Vec<u8>) -> TResult<()>;
    async fn upload_state(&self, token: &str, state: &StateUpload) -> TResult<()>;
    /// Report the job's end; the run's status after it.
    async fn finish(&self, token: &str, outcome: &JobOutcome) -> TResult<RunStatus>;
}
