//! Workspaces: create, read (by name and id), list, update, delete, lock.

use hyper::StatusCode;
use otf_core::auth::Subject;
use otf_core::ids::PoolId;
use otf_core::services::{ModeRequest, WorkspaceFilter, WorkspaceSpec, WorkspaceUpdate};
use otf_core::store::Store;
use otf_core::workspace::{ExecutionMode, ExecutionModeKind, Workspace};

use crate::app::App;
use crate::errors::ApiError;
use crate::jsonapi::{many, one, Data};
use crate::request::Req;
use crate::response::{self, Resp};
use crate::wire;

/// The execution mode a request asks for, if it asks: `agent` with a pool
/// id (the attribute or the `agent-pool` relationship), `agent` alone (the
/// core keeps the current pool), a pool id alone (agent mode), or another
/// mode.
fn execution_mode(data: &Data<'_>) -> Result<Option<ModeRequest>, ApiError> {
    let kind = data
        .str("execution-mode")?
        .map(|m| {
            m.parse::<ExecutionModeKind>()
                .map_err(|e| ApiError::unprocessable(e.to_string()))
        })
        .transpose()?;
    let pool = match data.str("agent-pool-id")? {
        Some(p) if !p.is_empty() => Some(p),
        _ => data.rel_id("agent-pool")?,
    };
    let pool = pool
        .map(|p| {
            p.parse::<PoolId>()
                .map_err(|e| ApiError::unprocessable(e.to_string()))
        })
        .transpose()?;
    Ok(match (kind, pool) {
        (Some(ExecutionModeKind::Agent), Some(p)) | (None, Some(p)) => {
            Some(ExecutionMode::Agent(p).into())
        }
        (Some(ExecutionModeKind::Agent), None) => Some(ModeRequest::AgentWithCurrentPool),
        (Some(ExecutionModeKind::Remote), _) => Some(ExecutionMode::Remote.into()),
        (Some(ExecutionModeKind::Local), _) => Some(ExecutionMode::Local.into()),
        (None, None) => None,
    })
}

fn update_of(data: &Data<'_>) -> Result<WorkspaceUpdate, ApiError> {
    Ok(WorkspaceUpdate {
        agent_selector: data.labels("agent-selector")?,
        name: data.str("name")?,
        execution_mode: execution_mode(data)?,
        auto_apply: data.bool("auto-apply")?,
        terraform_version: data.str("terraform-version")?,
        working_directory: data.str("working-directory")?,
    })
}

fn ok(status: StatusCode, w: &Workspace) -> Result<Resp, ApiError> {
    Ok(response::jsonapi(status, one(wire::workspace(w))))
}

/// The workspace of a by-name route (`organizations/{org}/workspaces/{name}`).
async fn named<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Workspace, ApiError> {
    Ok(app
        .core
        .get_workspace_by_name(subject, &req.org()?, req.param("name"))
        .await?)
}

/// The same for a change: out of scope is forbidden, not hidden.
async fn named_to_change<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Workspace, ApiError> {
    Ok(app
        .core
        .get_workspace_by_name_to_change(subject, &req.org()?, req.param("name"))
        .await?)
}

pub async fn list<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let filter = WorkspaceFilter {
        name_contains: req.query("search[name]").map(str::to_string),
    };
    let all = app
        .core
        .list_workspaces(subject, &req.org()?, &filter)
        .await?;
    let (list, total) = page.slice(all);
    Ok(response::jsonapi(
        StatusCode::OK,
        many(list.iter().map(wire::workspace).collect(), page, total),
    ))
}

pub async fn create<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let data = body.data(&["workspaces"])?;
    let spec = WorkspaceSpec {
        agent_selector: data.labels("agent-selector")?,
        name: data
            .str("name")?
            .ok_or_else(|| ApiError::unprocessable("attribute `name` is required"))?,
        execution_mode: execution_mode(&data)?
            .map(ModeRequest::for_new_workspace)
            .transpose()?,
        auto_apply: data.bool("auto-apply")?,
        terraform_version: data.str("terraform-version")?,
        working_directory: data.str("working-directory")?,
    };
    let w = app
        .core
        .create_workspace(subject, &req.org()?, spec)
        .await?;
    ok(StatusCode::CREATED, &w)
}

pub async fn show_by_name<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    ok(StatusCode::OK, &named(app, req, subject).await?)
}

pub async fn show<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let w = app
        .core
        .get_workspace(subject, &req.param("id").parse()?)
        .await?;
    ok(StatusCode::OK, &w)
}

pub async fn update_by_name<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let current = named_to_change(app, req, subject).await?;
    update_one(app, req, subject, &current).await
}

pub async fn update<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let current = app
        .core
        .get_workspace_to_change(subject, &req.param("id").parse()?)
        .await?;
    update_one(app, req, subject, &current).await
}

async fn update_one<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
    current: &Workspace,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let data = body.data(&["workspaces"])?;
    let update = update_of(&data)?;
    let w = app
        .core
        .update_workspace(subject, &current.id, update)
        .await?;
    ok(StatusCode::OK, &w)
}

pub async fn delete_by_name<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let w = named_to_change(app, req, subject).await?;
    app.core.delete_workspace(subject, &w.id).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

pub async fn delete<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let w = app
        .core
        .get_workspace_to_change(subject, &req.param("id").parse()?)
        .await?;
    app.core.delete_workspace(subject, &w.id).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `lock`, `unlock` and `force-unlock`.
pub async fn action<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    // Any body shape is accepted (none, plain JSON, JSON:API), but not
    // malformed JSON.
    req.json()?;
    let core = &app.core;
    let id = req.param("id");
    let w = match req.param("action") {
        "lock" => core.lock_workspace(subject, &id.parse()?).await?,
        "unlock" => core.unlock_workspace(subject, &id.parse()?, false).await?,
        "force-unlock" => core.unlock_workspace(subject, &id.parse()?, true).await?,
        other => {
            return Err(ApiError::not_found(format!(
                "no workspace action {other:?}"
            )))
        }
    };
    ok(StatusCode::OK, &w)
}
