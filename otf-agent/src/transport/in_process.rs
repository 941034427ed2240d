//! The agent protocol as direct calls into the core, for the server runner
//! inside otfd. It acts as [`Subject::ServerRunner`] and authenticates job
//! tokens exactly as the HTTP endpoints do.

use async_trait::async_trait;
use base64::Engine as _;
use otf_core::agent::ReportedStatus;
use otf_core::artifacts::ArtifactKind;
use otf_core::auth::Subject;
use otf_core::ids::{AgentId, JobId};
use otf_core::job::Signal;
use otf_core::run::RunStatus;
use otf_core::services::{JobOutcome, PingAnswer, RegisterAgent};
use otf_core::store::Store;
use otf_core::{Core, Error};

use super::{JobOffer, Registration, Started, TResult, Transport, TransportError};
use crate::protocol::*;

/// The server runner's transport.
pub struct InProcess<S: Store> {
    core: Core<S>,
    /// Longest wait of `await_jobs` and `await_signal`, as the HTTP long-polls.
    long_poll: std::time::Duration,
    /// What a previous incarnation left behind, dealt with on registration.
    recovery: Option<crate::recovery::Recovery>,
    registered: std::sync::atomic::AtomicBool,
}

impl<S: Store> InProcess<S> {
    pub fn new(core: Core<S>, long_poll: std::time::Duration) -> Self {
        Self {
            core,
            long_poll,
            recovery: None,
            registered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Recover after a crash of otfd on registering
    /// ([`crate::recovery::Recovery`]).
    pub fn with_recovery(mut self, recovery: crate::recovery::Recovery) -> Self {
        self.recovery = Some(recovery);
        self
    }

    async fn job(&self, token: &str) -> TResult<Subject> {
        self.core.authenticate(token).await.map_err(map)
    }
}

fn map(e: Error) -> TransportError {
    let msg = e.to_string();
    match e {
        Error::Unauthorized => TransportError::Unauthorized(msg),
        Error::AgentGone { .. } | Error::Transition(_) => TransportError::Gone(msg),
        Error::NotFound { .. } | Error::InvalidId(_) => TransportError::NotFound(msg),
        Error::Store(_) => TransportError::Unavailable(msg),
        _ => TransportError::Refused(msg),
    }
}

#[async_trait]
impl<S: Store> Transport for InProcess<S> {
    async fn register(&self, req: &RegisterRequest) -> TResult<Registration> {
        if let Some(r) = &self.recovery {
            r.retire_previous(&self.core).await;
        }
        let labels = otf_core::labels::Labels::from_pairs(req.labels.clone())
            .map_err(|e| TransportError::Refused(format!("labels: {e}")))?;
        let agent = self
            .core
            .register_agent(
                &Subject::ServerRunner,
                RegisterAgent {
                    name: req.name.clone(),
                    version: req.version.clone(),
                    max_jobs: req.concurrency,
                    ip_address: "127.0.0.1".into(),
                    protocol: req.protocol,
                    single: req.single,
                    labels,
                },
            )
            .await
            .map_err(map)?;
        if let Some(r) = &self.recovery {
            let first = !self
                .registered
                .swap(true, std::sync::atomic::Ordering::SeqCst);
            r.registered(&self.core, agent.id.as_str(), first).await;
        }
        Ok(Registration {
            id: agent.id,
            pool: None,
            status: agent.status,
            ip_address: agent.ip_address,
            ping_interval: self.core.config().liveness.ping_interval,
        })
    }

    async fn status(
        &self,
        agent: &AgentId,
        status: ReportedStatus,
        jobs: &[JobId],
    ) -> TResult<PingAnswer> {
        self.core
            .ping(&Subject::ServerRunner, agent, status, Some(jobs))
            .await
            .map_err(map)
    }

    async fn await_jobs(&self, agent: &AgentId) -> TResult<Vec<JobOffer>> {
        let wait = self
            .core
            .await_allocated_jobs(&Subject::ServerRunner, agent);
        let jobs = match tokio::time::timeout(self.long_poll, wait).await {
            Ok(j) => j.map_err(map)?,
            Err(_) => Vec::new(),
        };
        Ok(jobs.iter().map(JobOffer::from).collect())
    }

    async fn start_job(&self, agent: &AgentId, job: &JobId) -> TResult<Started> {
        let s = self
            .core
            .start_job(&Subject::ServerRunner, agent, job)
            .await
            .map_err(map)?;
        Ok(Started::from(&s))
    }

    async fn await_signal(&self, agent: &AgentId, job: &JobId) -> TResult<Option<Signal>> {
        let wait = self.core.await_signal(&Subject::ServerRunner, agent, job);
        match tokio::time::timeout(self.long_poll, wait).await {
            Ok(s) => s.map_err(map),
            Err(_) => Ok(None),
        }
    }

    async fn config(&self, token: &str) -> TResult<Vec<u8>> {
        let s = self.job(token).await?;
        self.core.job_config(&s).await.map_err(map)
    }

    async fn variables(&self, token: &str) -> TResult<Vec<VariableSpec>> {
        let s = self.job(token).await?;
        Ok(self
            .core
            .job_variables(&s)
            .await
            .map_err(map)?
            .into_iter()
            .map(VariableSpec::from)
            .collect())
    }

    async fn current_state(&self, token: &str) -> TResult<Option<Vec<u8>>> {
        let s = self.job(token).await?;
        Ok(self
            .core
            .job_current_state(&s)
            .await
            .map_err(map)?
            .map(|(_, b)| b))
    }

    async fn put_artifact(&self, token: &str, kind: ArtifactKind, data: Vec<u8>) -> TResult<()> {
        let s = self.job(token).await?;
        self.core
            .upload_artifact(&s, kind, &data)
            .await
            .map_err(map)
    }

    async fn get_artifact(&self, token: &str, kind: ArtifactKind) -> TResult<Option<Vec<u8>>> {
        let s = self.job(token).await?;
        self.core.download_artifact(&s, kind).await.map_err(map)
    }

    async fn append_log(&self, token: &str, data: Vec<u8>) -> TResult<()> {
        let s = self.job(token).await?;
        self.core
            .append_job_log(&s, &data)
            .await
            .map_err(map)
            .map(|_| ())
    }

    async fn upload_state(&self, token: &str, state: &StateUpload) -> TResult<()> {
        let s = self.job(token).await?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(state.state.trim())
            .map_err(|e| TransportError::Refused(format!("state is not base64: {e}")))?;
        self.core
            .job_create_state_version(&s, state.serial, &state.lineage, &bytes)
            .await
            .map_err(map)
            .map(|_| ())
    }

    async fn finish(&self, token: &str, outcome: &JobOutcome) -> TResult<RunStatus> {
        let s = self.job(token).await?;
        self.core
            .finish_job(&s, outcome.clone())
            .await
            .map_err(map)
            .map(|run| run.status)
    }
}
