//! Agent pools, their agents and their tokens.

use hyper::StatusCode;
use otf_core::agent::AgentStatusFilter;
use otf_core::auth::Subject;
use otf_core::ids::WorkspaceId;
use otf_core::pool::AgentPool;
use otf_core::services::{PoolFilter, PoolSpec, PoolUpdate, PoolView};
use otf_core::store::Store;
use serde_json::{json, Value};

use crate::app::App;
use crate::errors::ApiError;
use crate::jsonapi::{many, one};
use crate::request::Req;
use crate::response::{self, Resp};
use crate::wire;

fn workspace_ids(ids: Option<Vec<String>>) -> Result<Option<Vec<WorkspaceId>>, ApiError> {
    ids.map(|ids| {
        ids.iter()
            .map(|i| {
                i.parse()
                    .map_err(|e: otf_core::ids::InvalidId| ApiError::unprocessable(e.to_string()))
            })
            .collect()
    })
    .transpose()
}

/// A pool's document, and its workspaces when `include=workspaces`.
fn pool_doc(view: &PoolView, req: &Req) -> (Value, Vec<Value>) {
    let included = if req.includes("workspaces") {
        view.assigned.iter().map(wire::workspace).collect()
    } else {
        vec![]
    };
    (
        wire::pool(&view.pool, &view.assigned, view.live_agents),
        included,
    )
}

/// The document of a pool just written.
async fn written<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
    pool: &AgentPool,
    status: StatusCode,
) -> Result<Resp, ApiError> {
    let view = app.core.pool_view(subject, &pool.id).await?;
    let (doc, _) = pool_doc(&view, req);
    Ok(response::jsonapi(status, one(doc)))
}

pub async fn list<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let filter = PoolFilter {
        name_contains: req.query("q").filter(|q| !q.is_empty()).map(str::to_string),
        allowed_workspace: req
            .query("filter[allowed_workspaces][name]")
            .filter(|q| !q.is_empty())
            .map(str::to_string),
    };
    let views = app
        .core
        .list_pool_views(subject, &req.org()?, &filter)
        .await?;
    let (views, total) = page.slice(views);
    let mut docs = Vec::new();
    let mut included = Vec::new();
    for v in &views {
        let (doc, inc) = pool_doc(v, req);
        docs.push(doc);
        included.extend(inc);
    }
    let mut doc = many(docs, page, total);
    if req.includes("workspaces") {
        doc["included"] = json!(included);
    }
    Ok(response::jsonapi(StatusCode::OK, doc))
}

pub async fn create<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let data = body.data(&["agent-pools"])?;
    let spec = PoolSpec {
        name: data
            .str("name")?
            .ok_or_else(|| ApiError::unprocessable("attribute `name` is required"))?,
        organization_scoped: data.bool("organization-scoped")?.unwrap_or(true),
        allowed_workspaces: workspace_ids(data.rel_ids("allowed-workspaces")?)?.unwrap_or_default(),
        excluded_workspaces: workspace_ids(data.rel_ids("excluded-workspaces")?)?
            .unwrap_or_default(),
    };
    let pool = app.core.create_pool(subject, &req.org()?, spec).await?;
    written(app, req, subject, &pool, StatusCode::CREATED).await
}

pub async fn show<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let view = app
        .core
        .pool_view(subject, &req.param("id").parse()?)
        .await?;
    let (doc, included) = pool_doc(&view, req);
    let mut doc = one(doc);
    if req.includes("workspaces") {
        doc["included"] = json!(included);
    }
    Ok(response::jsonapi(StatusCode::OK, doc))
}

pub async fn update<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let data = body.data(&["agent-pools"])?;
    let update = PoolUpdate {
        name: data.str("name")?,
        organization_scoped: data.bool("organization-scoped")?,
        allowed_workspaces: workspace_ids(data.rel_ids("allowed-workspaces")?)?,
        excluded_workspaces: workspace_ids(data.rel_ids("excluded-workspaces")?)?,
    };
    let pool = app
        .core
        .update_pool(subject, &req.param("id").parse()?, update)
        .await?;
    written(app, req, subject, &pool, StatusCode::OK).await
}

pub async fn delete<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    app.core
        .delete_pool(subject, &req.param("id").parse()?)
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

pub async fn agents<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let filter = AgentStatusFilter::parse(req.query("filter[status]"));
    let agents = app
        .core
        .list_agents(subject, &req.param("id").parse()?, &filter)
        .await?;
    let (agents, total) = page.slice(agents);
    Ok(response::jsonapi(
        StatusCode::OK,
        many(agents.iter().map(wire::agent).collect(), page, total),
    ))
}

/// otf's own: the pool's queue numbers, as `/api/agent/queue` gives them
/// to agent tokens.
pub async fn queue<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let pool = app
        .core
        .get_pool(subject, &req.param("id").parse()?)
        .await?;
    let q = app
        .metrics
        .pool_queue(pool.id.as_str(), app.core.now())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the queue is not read yet; retry in a moment",
            )
        })?;
    Ok(response::json(
        StatusCode::OK,
        &otf_agent::protocol::QueueResponse::of(pool.id.as_str(), &q),
    ))
}

/// `drain` / `undrain` of every agent of a pool.
pub async fn pool_action<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    req.json()?;
    let drained = drain_action(req.param("action"))?;
    let pool = app
        .core
        .drain_pool(subject, &req.param("id").parse()?, drained)
        .await?;
    written(app, req, subject, &pool, StatusCode::OK).await
}

pub async fn agent<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let agent = app
        .core
        .get_agent(subject, &req.param("id").parse()?)
        .await?;
    Ok(response::jsonapi(StatusCode::OK, one(wire::agent(&agent))))
}

/// `drain` / `undrain` of one agent.
pub async fn agent_action<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    req.json()?;
    let drained = drain_action(req.param("action"))?;
    let agent = app
        .core
        .drain_agent(subject, &req.param("id").parse()?, drained)
        .await?;
    Ok(response::jsonapi(StatusCode::OK, one(wire::agent(&agent))))
}

pub async fn delete_agent<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    app.core
        .delete_agent(subject, &req.param("id").parse()?)
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

pub async fn tokens<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let tokens = app
        .core
        .list_agent_tokens(subject, &req.param("id").parse()?)
        .await?;
    let (tokens, total) = page.slice(tokens);
    Ok(response::jsonapi(
        StatusCode::OK,
        many(
            tokens.iter().map(|t| wire::token(t, None)).collect(),
            page,
            total,
        ),
    ))
}

pub async fn create_token<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    // go-tfe says agent-tokens, pytfe authentication-tokens.
    let data = body.data(&["authentication-tokens", "agent-tokens"])?;
    let description = data.str("description")?.unwrap_or_default();
    let (token, secret) = app
        .core
        .create_agent_token(subject, &req.param("id").parse()?, &description)
        .await?;
    Ok(response::jsonapi(
        StatusCode::CREATED,
        one(wire::token(&token, Some(secret.expose()))),
    ))
}

pub async fn token<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let token = app
        .core
        .get_agent_token(subject, &req.param("id").parse()?)
        .await?;
    Ok(response::jsonapi(
        StatusCode::OK,
        one(wire::token(&token, None)),
    ))
}

pub async fn delete_token<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    app.core
        .delete_agent_token(subject, &req.param("id").parse()?)
        .await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

/// `drain` (true) or `undrain` (false).
fn drain_action(action: &str) -> Result<bool, ApiError> {
    match action {
        "drain" => Ok(true),
        "undrain" => Ok(false),
        other => Err(ApiError::not_found(format!(
            "no action {other:?}: use drain or undrain"
        ))),
    }
}
