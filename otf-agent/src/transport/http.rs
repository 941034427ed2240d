//! The agent protocol over HTTP(S), for pool agents.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use otf_core::agent::ReportedStatus;
use otf_core::artifacts::ArtifactKind;
use otf_core::ids::{AgentId, JobId};
use otf_core::job::Signal;
use otf_core::run::RunStatus;
use otf_core::services::{JobOutcome, PingAnswer};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::{
    JobOffer, Registration, RunTask, Started, TResult, Transport, TransportError, WorkspaceTask,
};
use crate::protocol::*;

/// A client of one otfd.
#[derive(Clone)]
pub struct HttpTransport {
    base: String,
    agent_token: String,
    client: reqwest::Client,
}

pub use otf_client::base_url;

/// Longest wait for the answer to a status ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The first error detail of a JSON:API error document, or the status line.
async fn detail(resp: Response) -> String {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    otf_client::error_detail(&body).unwrap_or_else(|| format!("HTTP {status}"))
}

async fn check(resp: Result<Response, reqwest::Error>) -> TResult<Response> {
    let resp = resp.map_err(|e| TransportError::Unavailable(otf_client::error_chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let d = detail(resp).await;
    Err(match status {
        StatusCode::UNAUTHORIZED => TransportError::Unauthorized(d),
        StatusCode::CONFLICT => TransportError::Gone(d),
        StatusCode::NOT_FOUND => TransportError::NotFound(d),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            TransportError::Unavailable(d)
        }
        _ => TransportError::Refused(d),
    })
}

async fn json<T: serde::de::DeserializeOwned>(resp: Response) -> TResult<T> {
    resp.json::<T>()
        .await
        .map_err(|e| TransportError::Unavailable(format!("unreadable answer: {e}")))
}

async fn body(resp: Response) -> TResult<Vec<u8>> {
    resp.bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| TransportError::Unavailable(format!("unreadable answer: {e}")))
}

impl HttpTransport {
    /// A transport to `address` with the pool's `agent_token`; `ca_cert` is an
    /// extra PEM certificate to trust besides the system's (`SSL_CERT_FILE`
    /// and `SSL_CERT_DIR` are honoured).
    pub fn new(address: &str, agent_token: &str, ca_cert: Option<&[u8]>) -> Result<Self, String> {
        let client = otf_client::http_client(
            concat!("otf-agent/", env!("CARGO_PKG_VERSION")),
            Duration::from_secs(120),
            ca_cert,
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            base: base_url(address),
            agent_token: agent_token.to_string(),
            client,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn req(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    fn agent_req(&self, method: Method, path: &str, agent: &str) -> RequestBuilder {
        self.req(method, path, &self.agent_token)
            .header(AGENT_ID_HEADER, agent)
    }
}

#[async_trait]
impl Transport for HttpTransport {
    async fn register(&self, req: &RegisterRequest) -> TResult<Registration> {
        let r: RegisterResponse = json(
            check(
                self.req(Method::POST, "/api/agent/register", &self.agent_token)
                    .json(req)
                    .send()
                    .await,
            )
            .await?,
        )
        .await?;
        Ok(Registration {
            id: wire(&r.id)?,
            pool: r.pool_id.as_deref().map(wire).transpose()?,
            status: wire(&r.status)?,
            ip_address: r.ip_address,
            ping_interval: Duration::from_millis(r.ping_interval_ms),
        })
    }

    async fn status(
        &self,
        agent: &AgentId,
        status: ReportedStatus,
        jobs: &[JobId],
    ) -> TResult<PingAnswer> {
        let body = StatusRequest {
            status: status.to_string(),
            jobs: Some(jobs.iter().map(|j| j.to_string()).collect()),
        };
        let r: StatusResponse = json(
            check(
                self.agent_req(Method::POST, "/api/agent/status", agent.as_str())
                    // A ping that hangs (a partition) must not hold up the
                    // runner's loop for the whole request timeout.
                    .timeout(PING_TIMEOUT)
                    .json(&body)
                    .send()
                    .await,
            )
            .await?,
        )
        .await?;
        Ok(PingAnswer {
            status: wire(&r.status)?,
            cancel: r.cancel.iter().map(|j| wire(j)).collect::<TResult<_>>()?,
            drained: r.drained,
        })
    }

    async fn await_jobs(&self, agent: &AgentId) -> TResult<Vec<JobOffer>> {
        let r: JobsResponse = json(
            check(
                self.agent_req(Method::GET, "/api/agent/jobs", agent.as_str())
                    .send()
                    .await,
            )
            .await?,
        )
        .await?;
        r.jobs.iter().map(offer).collect()
    }

    async fn start_job(&self, agent: &AgentId, job: &JobId) -> TResult<Started> {
        let r: StartResponse = json(
            check(
                self.agent_req(
                    Method::POST,
                    &format!("/api/agent/jobs/{job}/start"),
                    agent.as_str(),
                )
                .send()
                .await,
            )
            .await?,
        )
        .await?;
        Ok(Started {
            token: r.token,
            job: offer(&r.job)?,
            run: run_task(r.run)?,
            workspace: workspace_task(r.workspace)?,
        })
    }

    async fn await_signal(&self, agent: &AgentId, job: &JobId) -> TResult<Option<Signal>> {
        let r: SignalResponse = json(
            check(
                self.agent_req(
                    Method::GET,
                    &format!("/api/agent/jobs/{job}/signal"),
                    agent.as_str(),
                )
                .send()
                .await,
            )
            .await?,
        )
        .await?;
        r.signal.as_deref().map(wire).transpose()
    }

    async fn config(&self, token: &str) -> TResult<Vec<u8>> {
        body(
            check(
                self.req(Method::GET, "/api/agent/job/config", token)
                    .send()
                    .await,
            )
            .await?,
        )
        .await
    }

    async fn variables(&self, token: &str) -> TResult<Vec<VariableSpec>> {
        let r: VariablesResponse = json(
            check(
                self.req(Method::GET, "/api/agent/job/variables", token)
                    .send()
                    .await,
            )
            .await?,
        )
        .await?;
        Ok(r.variables)
    }

    async fn current_state(&self, token: &str) -> TResult<Option<Vec<u8>>> {
        let resp = check(
            self.req(Method::GET, "/api/agent/job/state", token)
                .send()
                .await,
        )
        .await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        body(resp).await.map(Some)
    }

    async fn put_artifact(&self, token: &str, kind: ArtifactKind, data: Vec<u8>) -> TResult<()> {
        check(
            self.req(
                Method::PUT,
                &format!("/api/agent/job/artifacts/{kind}"),
                token,
            )
            .body(data)
            .send()
            .await,
        )
        .await?;
        Ok(())
    }

    async fn get_artifact(&self, token: &str, kind: ArtifactKind) -> TResult<Option<Vec<u8>>> {
        let resp = check(
            self.req(
                Method::GET,
                &format!("/api/agent/job/artifacts/{kind}"),
                token,
            )
            .send()
            .await,
        )
        .await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        body(resp).await.map(Some)
    }

    async fn append_log(&self, token: &str, data: Vec<u8>) -> TResult<()> {
        check(
            self.req(Method::POST, "/api/agent/job/logs", token)
                .body(data)
                .send()
                .await,
        )
        .await?;
        Ok(())
    }

    async fn upload_state(&self, token: &str, state: &StateUpload) -> TResult<()> {
        check(
            self.req(Method::POST, "/api/agent/job/state", token)
                .json(state)
                .send()
                .await,
        )
        .await?;
        Ok(())
    }

    async fn finish(&self, token: &str, outcome: &JobOutcome) -> TResult<RunStatus> {
        let answer: FinishResponse = json(
            check(
                self.req(Method::POST, "/api/agent/job/finish", token)
                    .json(&FinishRequest::from(outcome))
                    .send()
                    .await,
            )
            .await?,
        )
        .await?;
        wire(&answer.run_status)
    }
}

/// A wire spelling otfd sent, as its typed value.
fn wire<T: std::str::FromStr>(s: &str) -> TResult<T>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| TransportError::Refused(format!("otfd answered {s:?}: {e}")))
}

/// A job of the long-poll or of a start answer, parsed once.
fn offer(j: &JobSummary) -> TResult<JobOffer> {
    Ok(JobOffer {
        id: wire(&j.id)?,
        run: wire(&j.run_id)?,
        workspace: wire(&j.workspace_id)?,
        phase: wire(&j.phase)?,
        attempt: j.attempt,
    })
}

/// The run of a start answer, its ids parsed once.
fn run_task(r: RunSpec) -> TResult<RunTask> {
    Ok(RunTask {
        id: wire(&r.id)?,
        is_destroy: r.is_destroy,
        refresh: r.refresh,
        refresh_only: r.refresh_only,
        plan_only: r.plan_only,
        target_addrs: r.target_addrs,
        replace_addrs: r.replace_addrs,
        terraform_version: r.terraform_version,
        configuration_version: (!r.configuration_version_id.is_empty())
            .then(|| wire(&r.configuration_version_id))
            .transpose()?,
    })
}

/// The workspace of a start answer, its ids parsed once.
fn workspace_task(w: WorkspaceSpec) -> TResult<WorkspaceTask> {
    Ok(WorkspaceTask {
        id: wire(&w.id)?,
        name: w.name,
        organization: wire(&w.organization)?,
        working_directory: w.working_directory,
        terraform_version: w.terraform_version,
    })
}

/// Standard base64, as the protocol carries state files.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}
