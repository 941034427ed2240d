//! The agent protocol (see `otf_agent::protocol`): registration, pings,
//! long-polls for jobs and signals, and the job-token endpoints.

use base64::Engine;
use hyper::{Method, StatusCode};
use otf_agent::protocol::*;
use otf_core::agent::ReportedStatus;
use otf_core::artifacts::ArtifactKind;
use otf_core::auth::Subject;
use otf_core::ids::AgentId;
use otf_core::services::RegisterAgent;
use otf_core::store::Store;

use crate::app::{method_not_allowed, App};
use crate::errors::ApiError;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::router::Route;

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

pub async fn handle<S: Store>(app: &App<S>, route: Route, req: &Req) -> Result<Resp, ApiError> {
    let subject = app.subject(req).await?;
    let core = &app.core;
    match (route, &req.method) {
        (Route::AgentRegister, &Method::POST) => {
            let body: RegisterRequest = decode(req)?;
            let labels = otf_core::labels::Labels::from_pairs(body.labels)
                .map_err(|e| ApiError::unprocessable(format!("labels: {e}")))?;
            let ip = req.peer.to_string();
            let agent = core
                .register_agent(
                    &subject,
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
        (Route::AgentStatus, &Method::POST) => {
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
            let answer = core
                .ping(&subject, &agent_id(req)?, status, jobs.as_deref())
                .await?;
            ok(&StatusResponse {
                status: answer.status.to_string(),
                cancel: answer.cancel.iter().map(|j| j.to_string()).collect(),
                drained: answer.drained,
            })
        }
        (Route::AgentQueue, &Method::GET) => {
            // Any agent token of the pool will do: a KEDA scaler or a cron
            // script needs no agent registered.
            let Subject::AgentToken { pool, .. } = &subject else {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "the queue is read with an agent token of the pool",
                ));
            };
            let q = app
                .metrics
                .pool_queue(pool.as_str(), core.now())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the queue is not read yet; retry in a moment",
                    )
                })?;
            ok(&QueueResponse::of(pool.as_str(), &q))
        }
        (Route::AgentJobs, &Method::GET) => {
            let agent = agent_id(req)?;
            let wait = core.await_allocated_jobs(&subject, &agent);
            let jobs = match tokio::time::timeout(app.long_poll, wait).await {
                Ok(jobs) => jobs?,
                Err(_) => Vec::new(),
            };
            ok(&JobsResponse {
                jobs: jobs.iter().map(JobSummary::from).collect(),
            })
        }
        (Route::AgentJobStart, &Method::POST) => {
            let started = core
                .start_job(&subject, &agent_id(req)?, &req.param("job").parse()?)
                .await?;
            ok(&StartResponse::from(&started))
        }
        (Route::AgentJobSignal, &Method::GET) => {
            let (agent, job) = (agent_id(req)?, req.param("job").parse()?);
            let wait = core.await_signal(&subject, &agent, &job);
            let signal = match tokio::time::timeout(app.long_poll, wait).await {
                Ok(s) => s?,
                Err(_) => None,
            };
            ok(&SignalResponse {
                signal: signal.map(|s| s.to_string()),
            })
        }
        _ => job_endpoints(app, route, req, &subject).await,
    }
}

/// Endpoints of a job token, for its own run only (the core decides).
async fn job_endpoints<S: Store>(
    app: &App<S>,
    route: Route,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    // Every job service authorizes the job token itself, in the
    // transaction that reads or writes.
    let core = &app.core;
    let artifact = || -> Result<ArtifactKind, ApiError> {
        req.param("kind")
            .parse()
            .map_err(|e: otf_core::UnknownVariant| ApiError::not_found(e.to_string()))
    };
    match (route, &req.method) {
        (Route::JobConfig, &Method::GET) => Ok(response::bytes(
            StatusCode::OK,
            core.job_config(subject).await?,
            "application/octet-stream",
        )),
        (Route::JobVariables, &Method::GET) => {
            let vars = core.job_variables(subject).await?;
            ok(&VariablesResponse {
                variables: vars.into_iter().map(VariableSpec::from).collect(),
            })
        }
        (Route::JobState, &Method::GET) => match core.job_current_state(subject).await? {
            Some((_, bytes)) => Ok(response::bytes(StatusCode::OK, bytes, "application/json")),
            None => Ok(response::empty(StatusCode::NO_CONTENT)),
        },
        (Route::JobState, &Method::POST) => {
            let body: StateUpload = decode(req)?;
            let state = base64::engine::general_purpose::STANDARD
                .decode(body.state.trim())
                .map_err(|e| ApiError::unprocessable(format!("state is not base64: {e}")))?;
            let sv = core
                .job_create_state_version(subject, body.serial, &body.lineage, &state)
                .await?;
            ok(&serde_json::json!({ "id": sv.id.to_string() }))
        }
        (Route::JobArtifact, &Method::PUT) => {
            core.upload_artifact(subject, artifact()?, &req.body)
                .await?;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        (Route::JobArtifact, &Method::GET) => {
            match core.download_artifact(subject, artifact()?).await? {
                Some(bytes) => Ok(response::bytes(
                    StatusCode::OK,
                    bytes,
                    "application/octet-stream",
                )),
                None => Ok(response::empty(StatusCode::NO_CONTENT)),
            }
        }
        (Route::JobLogs, &Method::POST) => {
            let end = core.append_job_log(subject, &req.body).await?;
            ok(&serde_json::json!({ "end": end }))
        }
        (Route::JobFinish, &Method::POST) => {
            let body: FinishRequest = decode(req)?;
            let outcome = body.outcome().ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "outcome {:?} must be finished, errored or canceled",
                    body.outcome
                ))
            })?;
            let run = core.finish_job(subject, outcome).await?;
            ok(&FinishResponse {
                run_status: run.status.to_string(),
            })
        }
        (_, m) => Err(method_not_allowed(m)),
    }
}
