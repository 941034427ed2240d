//! Configuration versions, runs, plans, applies and their logs.

use hyper::StatusCode;
use otf_core::artifacts::ArtifactKind;
use otf_core::auth::Subject;
use otf_core::ids::{run_of_phase_id, ConfigVersionId, RunId};
use otf_core::job::JobPhase;
use otf_core::run::{Run, RunOptions};
use otf_core::services::{ConfigSpec, RunSpec};
use otf_core::store::Store;
use serde_json::json;

use crate::app::App;
use crate::errors::ApiError;
use crate::jsonapi::{many, one};
use crate::request::Req;
use crate::response::{self, Resp};
use crate::wire;

fn log_url<S: Store>(app: &App<S>, run: &RunId, phase: JobPhase) -> String {
    app.signed_url(&format!("/runs/{run}/logs/{phase}"))
}

fn upload_url<S: Store>(app: &App<S>, cv: &ConfigVersionId) -> String {
    app.signed_url(&format!("/configuration-versions/{cv}/upload"))
}

fn run_doc<S: Store>(app: &App<S>, run: &Run) -> serde_json::Value {
    wire::run(run, app.core.now(), app.core.config().force_cancel_cool_off)
}

/// Run documents with `wait-message` (otf's addition: why a queued run's
/// job waits, e.g. "no agent of pool gpu has labels region=eu").
async fn run_docs<S: Store>(
    app: &App<S>,
    subject: &Subject,
    runs: &[Run],
) -> Result<Vec<serde_json::Value>, ApiError> {
    let waits = app.core.run_waits(subject, runs).await?;
    Ok(runs
        .iter()
        .map(|r| {
            let mut doc = run_doc(app, r);
            doc["attributes"]["wait-message"] = json!(waits.get(&r.id));
            doc
        })
        .collect())
}

/// The run a `plan-...`/`apply-...` id belongs to.
async fn run_of_phase<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Run, ApiError> {
    let id = req.param("id");
    let run = run_of_phase_id(id).ok_or_else(|| ApiError::not_found(format!("{id} not found")))?;
    Ok(app.core.get_run(subject, &run).await?)
}

/// The run of the `runs/{id}/plan|apply` routes.
async fn run_of_path<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Run, ApiError> {
    Ok(app.core.get_run(subject, &req.param("id").parse()?).await?)
}

fn run_options(data: &crate::jsonapi::Data<'_>) -> Result<RunOptions, ApiError> {
    Ok(RunOptions {
        is_destroy: data.bool("is-destroy")?.unwrap_or(false),
        refresh: data.bool("refresh")?.unwrap_or(true),
        refresh_only: data.bool("refresh-only")?.unwrap_or(false),
        plan_only: data.bool("plan-only")?.unwrap_or(false),
        auto_apply: data.bool("auto-apply")?,
        message: data.str("message")?.unwrap_or_default(),
        target_addrs: data.str_list("target-addrs")?.unwrap_or_default(),
        replace_addrs: data.str_list("replace-addrs")?.unwrap_or_default(),
    })
}

pub async fn create_config<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let data = body.loose();
    if body_type_is_wrong(req, "configuration-versions")? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "expected a configuration-versions resource",
        ));
    }
    let spec = ConfigSpec {
        speculative: data.bool("speculative")?.unwrap_or(false),
        auto_queue_runs: data.bool("auto-queue-runs")?.unwrap_or(true),
    };
    let cv = app
        .core
        .create_configuration_version(subject, &req.param("id").parse()?, spec)
        .await?;
    let url = upload_url(app, &cv.id);
    Ok(response::jsonapi(
        StatusCode::CREATED,
        one(wire::config_version(&cv, Some(url))),
    ))
}

pub async fn config<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let cv = app
        .core
        .get_configuration_version(subject, &req.param("id").parse()?)
        .await?;
    let url =
        (cv.status == otf_core::artifacts::ConfigStatus::Pending).then(|| upload_url(app, &cv.id));
    Ok(response::jsonapi(
        StatusCode::OK,
        one(wire::config_version(&cv, url)),
    ))
}

pub async fn upload_config<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    app.core
        .upload_configuration(subject, &req.param("id").parse()?, &req.body)
        .await?;
    Ok(response::empty(StatusCode::OK))
}

pub async fn create<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let data = body.data(&["runs"])?;
    let workspace = data
        .rel_id("workspace")?
        .ok_or_else(|| ApiError::unprocessable("relationship `workspace` is required"))?;
    let spec = RunSpec {
        workspace: workspace.parse()?,
        configuration_version: data
            .rel_id("configuration-version")?
            .map(|id| id.parse())
            .transpose()?,
        options: run_options(&data)?,
    };
    let run = app.core.create_run(subject, spec).await?;
    Ok(response::jsonapi(
        StatusCode::CREATED,
        one(run_doc(app, &run)),
    ))
}

pub async fn show<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let run = run_of_path(app, req, subject).await?;
    let docs = run_docs(app, subject, std::slice::from_ref(&run)).await?;
    let mut doc = one(docs.into_iter().next().unwrap_or_default());
    let mut included = Vec::new();
    if req.includes("plan") {
        included.push(wire::plan(&run, &log_url(app, &run.id, JobPhase::Plan)));
    }
    if req.includes("apply") {
        included.push(wire::apply(&run, &log_url(app, &run.id, JobPhase::Apply)));
    }
    if !included.is_empty() {
        doc["included"] = json!(included);
    }
    Ok(response::jsonapi(StatusCode::OK, doc))
}

pub async fn list<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let (runs, total) = app
        .core
        .list_runs(subject, &req.param("id").parse()?, page.offset(), page.size)
        .await?;
    Ok(response::jsonapi(
        StatusCode::OK,
        many(run_docs(app, subject, &runs).await?, page, total),
    ))
}

/// `apply`, `discard`, `cancel` and `force-cancel`.
pub async fn action<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    // Any body shape is accepted: none, plain JSON, or JSON:API.
    req.json()?;
    let core = &app.core;
    let id = req.param("id");
    match req.param("action") {
        "apply" => core.confirm_run(subject, &id.parse()?).await?,
        "discard" => core.discard_run(subject, &id.parse()?).await?,
        "cancel" => core.cancel_run(subject, &id.parse()?).await?,
        "force-cancel" => core.force_cancel_run(subject, &id.parse()?).await?,
        other => return Err(ApiError::not_found(format!("no run action {other:?}"))),
    };
    Ok(response::empty(StatusCode::ACCEPTED))
}

fn plan_of<S: Store>(app: &App<S>, run: &Run) -> Resp {
    response::jsonapi(
        StatusCode::OK,
        one(wire::plan(run, &log_url(app, &run.id, JobPhase::Plan))),
    )
}

fn apply_of<S: Store>(app: &App<S>, run: &Run) -> Resp {
    response::jsonapi(
        StatusCode::OK,
        one(wire::apply(run, &log_url(app, &run.id, JobPhase::Apply))),
    )
}

async fn json_plan_of<S: Store>(
    app: &App<S>,
    subject: &Subject,
    run: &Run,
) -> Result<Resp, ApiError> {
    match app
        .core
        .run_artifact(subject, &run.id, ArtifactKind::JsonPlan)
        .await?
    {
        Some(json) => Ok(response::bytes(StatusCode::OK, json, "application/json")),
        None => Ok(response::empty(StatusCode::NO_CONTENT)),
    }
}

/// `plans/{id}`.
pub async fn plan<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    Ok(plan_of(app, &run_of_phase(app, req, subject).await?))
}

/// `runs/{id}/plan` (pytfe's `read_for_run`).
pub async fn run_plan<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    Ok(plan_of(app, &run_of_path(app, req, subject).await?))
}

/// `applies/{id}`.
pub async fn apply<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    Ok(apply_of(app, &run_of_phase(app, req, subject).await?))
}

/// `runs/{id}/apply`.
pub async fn run_apply<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    Ok(apply_of(app, &run_of_path(app, req, subject).await?))
}

/// `plans/{id}/json-output`.
pub async fn plan_json<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let run = run_of_phase(app, req, subject).await?;
    json_plan_of(app, subject, &run).await
}

/// `runs/{id}/plan/json-output`.
pub async fn run_plan_json<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let run = run_of_path(app, req, subject).await?;
    json_plan_of(app, subject, &run).await
}

/// Whether a JSON:API body names a type other than `kind` (an empty type,
/// or no `data`, is accepted).
fn body_type_is_wrong(req: &Req, kind: &str) -> Result<bool, ApiError> {
    let v: serde_json::Value = if req.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    };
    let t = v
        .pointer("/data/type")
        .and_then(|t| t.as_str())
        .unwrap_or("");
    Ok(!t.is_empty() && t != kind)
}

/// A configuration upload through its capability URL, without a token.
pub async fn signed_upload<S: Store>(app: &App<S>, req: &Req) -> Result<Resp, ApiError> {
    let id: ConfigVersionId = req
        .param("id")
        .parse()
        .map_err(|e: otf_core::ids::InvalidId| ApiError::not_found(e.to_string()))?;
    app.core
        .upload_configuration_by_capability(&id, &req.body)
        .await?;
    Ok(response::empty(StatusCode::OK))
}

/// A phase's log through its capability URL, without a token.
pub async fn signed_logs<S: Store>(app: &App<S>, req: &Req) -> Result<Resp, ApiError> {
    let run: RunId = req
        .param("run")
        .parse()
        .map_err(|e: otf_core::ids::InvalidId| ApiError::not_found(e.to_string()))?;
    let phase: JobPhase = req
        .param("phase")
        .parse()
        .map_err(|e: otf_core::UnknownVariant| ApiError::not_found(e.to_string()))?;
    let number = |k: &str, default: u64| -> Result<u64, ApiError> {
        req.query(k).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::unprocessable(format!("{k} must be a number")))
        })
    };
    let offset = number("offset", 0)?;
    let limit = number("limit", 65_536)?.min(1 << 20);
    let data = app
        .core
        .read_log_by_capability(&run, phase, offset, limit)
        .await?;
    Ok(response::bytes(StatusCode::OK, data, "text/plain"))
}
