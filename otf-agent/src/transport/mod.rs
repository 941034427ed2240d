//! How a runner talks to the server: one trait, two homes. [`http::HttpTransport`]
//! for pool agents (the agent protocol over HTTP(S)), and
//! [`in_process::InProcess`] for the server runner inside otfd (core services
//! called directly). The runner code above it is the same.

pub mod http;
pub mod in_process;

use async_trait::async_trait;

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

/// The agent protocol, as a runner uses it.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn register(&self, req: &RegisterRequest) -> TResult<RegisterResponse>;
    /// A status ping listing the jobs the agent holds.
    async fn status(&self, agent: &str, status: &str, jobs: &[String]) -> TResult<StatusResponse>;
    /// Jobs allocated to the agent; empty after the server's bounded wait.
    async fn await_jobs(&self, agent: &str) -> TResult<Vec<JobSummary>>;
    async fn start_job(&self, agent: &str, job: &str) -> TResult<StartResponse>;
    /// A signal for the job; `None` after the server's bounded wait with
    /// none, or when the job ended (the caller checks which).
    async fn await_signal(&self, agent: &str, job: &str) -> TResult<Option<String>>;

    async fn config(&self, token: &str) -> TResult<Vec<u8>>;
    async fn variables(&self, token: &str) -> TResult<Vec<VariableSpec>>;
    async fn current_state(&self, token: &str) -> TResult<Option<Vec<u8>>>;
    async fn put_artifact(&self, token: &str, kind: &str, data: Vec<u8>) -> TResult<()>;
    async fn get_artifact(&self, token: &str, kind: &str) -> TResult<Option<Vec<u8>>>;
    async fn append_log(&self, token: &str, data: Vec<u8>) -> TResult<()>;
    async fn upload_state(&self, token: &str, state: &StateUpload) -> TResult<()>;
    /// Report the job's end; the run's status after it.
    async fn finish(&self, token: &str, req: &FinishRequest) -> TResult<String>;
}
