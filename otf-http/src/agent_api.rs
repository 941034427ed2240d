//! The agent protocol (see `otf_agent::protocol`): registration, pings,
//! long-polls for jobs and signals, and the job-token endpoints.

use base64::Engine;
use hyper::StatusCode;
use otf_agent::protocol::*;
use otf_core::agent::ReportedStatus;
use otf_core::artifacts::ArtifactKind;
use otf_core::auth::Subject;
use otf_core::ids::AgentId;
use otf_core::services::RegisterAgent;
use otf_core::store::Store;

use crate::app::App;
use crate::errors::ApiError;
use crate::request::Req;
use crate::response::{self, Resp};

fn decode<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, ApiError> {
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::unprocessable(format!("invalid request body: {e}")))
}

fn ok<T: serde::Serialize>(v: &T) -> Result<Resp, ApiError> {
    Ok(response::json(StatusCode::OK, v))
}

/// The calling agent, from its header (parsed once, here).
fn agent_id(req: &Req) -> Result<AgentId, ApiError> {
    let id = req.header(AGENT_ID_HEADER).ok_or_else(|| {
        ApiError::bad_request(format!(
            "the `{AGENT_ID_HEADER}` header is required: register first"
        ))
    })?;
    Ok(id.parse()?)
}

pub async fn register<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let core = &app.core;
    let body: RegisterRequest = decode(req)?;
    let labels = otf_core::labels::Labels::from_pairs(body.labels)
        .map_err(|e| ApiError::unprocessable(format!("labels: {e}")))?;
    let ip = req.peer.to_string();
    let agent = core
        .register_agent(
            subject,
            RegisterAgent {
                name: body.name,
                version: body.version,
                max_jobs: body.concurrency,
                ip_address: ip.clone(),
                protocol: body.protocol,
                single: body.single,
                labels,
            },
        )
        .await?;
    ok(&RegisterResponse {
        id: agent.id.to_string(),
        pool_id: agent.pool.map(|p| p.to_string()),
        status: agent.status.to_string(),
        ip_address: ip,
        ping_interval_ms: core.config().liveness.ping_interval.as_millis() as u64,
    })
}

/// A ping: the agent's status and its jobs; answers what it must cancel.
pub async fn status<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body: StatusRequest = decode(req)?;
    let status: ReportedStatus = body
        .status
        .parse()
        .map_err(|e: otf_core::UnknownVariant| ApiError::unprocessable(e.to_string()))?;
    let jobs = body
        .jobs
        .map(|jobs| {
            jobs.iter()
                .map(|j| j.parse::<otf_core::ids::JobId>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| ApiError::unprocessable(format!("jobs: {e}")))?;
    let answer = app
        .core
        .ping(subject, &agent_id(req)?, status, jobs.as_deref())
        .await?;
    ok(&StatusResponse {
        status: answer.status.to_string(),
        cancel: answer.cancel.iter().map(|j| j.to_string()).collect(),
        drained: answer.drained,
    })
}

/// The agent token's own pool's queue, for autoscalers: any agent token of
/// the pool will do (a KEDA scaler or a cron script needs no agent
/// registered).
pub async fn queue<S: Store>(app: &App<S>, _: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let Subject::AgentToken { pool, .. } = subject else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the queue is read with an agent token of the pool",
        ));
    };
    let q = app
        .metrics
        .pool_queue(pool.as_str(), app.core.now())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the queue is not read yet; retry in a moment",
            )
        })?;
    ok(&QueueResponse::of(pool.as_str(), &q))
}

/// The long-poll for jobs allocated to the agent.
pub async fn jobs<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let agent = agent_id(req)?;
    let wait = app.core.await_allocated_jobs(subject, &agent);
    let jobs = match tokio::time::timeout(app.long_poll, wait).await {
        Ok(jobs) => jobs?,
        Err(_) => Vec::new(),
    };
    ok(&JobsResponse {
        jobs: jobs.iter().map(JobSummary::from).collect(),
    })
}

pub async fn start<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let started = app
        .core
        .start_job(subject, &agent_id(req)?, &req.param("job").parse()?)
        .await?;
    ok(&StartResponse::from(&started))
}

/// The long-poll for a job's signal.
pub async fn signal<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let (agent, job) = (agent_id(req)?, req.param("job").parse()?);
    let wait = app.core.await_signal(subject, &agent, &job);
    let signal = match tokio::time::timeout(app.long_poll, wait).await {
        Ok(s) => s?,
        Err(_) => None,
    };
    ok(&SignalResponse {
        signal: signal.map(|s| s.to_string()),
    })
}

// Endpoints of a job token, for its own run only: every job service
// authorizes the job token itself, in the transaction that reads or writes.

pub async fn config<S: Store>(app: &App<S>, _: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    Ok(response::bytes(
        StatusCode::OK,
        app.core.job_config(subject).await?,
        "application/octet-stream",
    ))
}

pub async fn variables<S: Store>(
    app: &App<S>,
    _: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let vars = app.core.job_variables(subject).await?;
    ok(&VariablesResponse {
        variables: vars.into_iter().map(VariableSpec::from).collect(),
    })
}

pub async fn state<S: Store>(app: &App<S>, _: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    match app.core.job_current_state(subject).await? {
        Some((_, bytes)) => Ok(response::bytes(StatusCode::OK, bytes, "application/json")),
        None => Ok(response::empty(StatusCode::NO_CONTENT)),
    }
}

pub async fn upload_state<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body: StateUpload = decode(req)?;
    let state = base64::engine::general_purpose::STANDARD
        .decode(body.state.trim())
        .map_err(|e| ApiError::unprocessable(format!("state is not base64: {e}")))?;
    let sv = app
        .core
        .job_create_state_version(subject, body.serial, &body.lineage, &state)
        .await?;
    ok(&serde_json::json!({ "id": sv.id.to_string() }))
}

fn artifact_kind(req: &Req) -> Result<ArtifactKind, ApiError> {
    req.param("kind")
        .parse()
        .map_err(|e: otf_core::UnknownVariant| ApiError::not_found(e.to_string()))
}

pub async fn upload_artifact<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    app.core
        .upload_artifact(subject, artifact_kind(req)?, &req.body)
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

pub async fn artifact<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    match app
        .core
        .download_artifact(subject, artifact_kind(req)?)
        .await?
    {
        Some(bytes) => Ok(response::bytes(
            StatusCode::OK,
            bytes,
            "application/octet-stream",
        )),
        None => Ok(response::empty(StatusCode::NO_CONTENT)),
    }
}

pub async fn logs<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let end = app.core.append_job_log(subject, &req.body).await?;
    ok(&serde_json::json!({ "end": end }))
}

pub async fn finish<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body: FinishRequest = decode(req)?;
    let outcome = body.outcome().ok_or_else(|| {
        ApiError::unprocessable(format!(
            "outcome {:?} must be finished, errored or canceled",
            body.outcome
        ))
    })?;
    let run = app.core.finish_job(subject, outcome).await?;
    ok(&FinishResponse {
        run_status: run.status.to_string(),
    })
}
