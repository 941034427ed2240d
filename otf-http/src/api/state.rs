//! State versions, their outputs, and workspace variables.

use base64::Engine;
use hyper::StatusCode;
use otf_core::artifacts::{Variable, VariableCategory};
use otf_core::auth::Subject;
use otf_core::ids::{StateVersionId, WorkspaceId};
use otf_core::services::{StateSpec, VariableSpec};
use otf_core::state_file::{Redaction, StateOutputId};
use otf_core::store::Store;
use serde_json::Value;

use crate::app::App;
use crate::errors::ApiError;
use crate::jsonapi::{many, one, Data, Page};
use crate::request::Req;
use crate::response::{self, Resp};
use crate::wire;

async fn sv_doc<S: Store>(
    app: &App<S>,
    subject: &Subject,
    id: &StateVersionId,
) -> Result<Value, ApiError> {
    let (sv, summary) = app
        .core
        .read_state_version(subject, id, Redaction::ShowAll)
        .await?;
    let url = app.url(&format!("/api/v2/state-versions/{}/download", sv.id));
    Ok(wire::state_version(&sv, &url, &summary))
}

fn variable_spec(data: &Data<'_>) -> Result<VariableSpec, ApiError> {
    Ok(VariableSpec {
        key: data.str("key")?,
        value: data.str("value")?,
        description: data.str("description")?,
        category: data
            .str("category")?
            .map(|c| {
                c.parse::<VariableCategory>()
                    .map_err(|e| ApiError::unprocessable(e.to_string()))
            })
            .transpose()?,
        hcl: data.bool("hcl")?,
        sensitive: data.bool("sensitive")?,
    })
}

pub async fn current<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let id = req.param("id");
    match app
        .core
        .current_state_version(subject, &id.parse()?)
        .await?
    {
        Some(sv) => Ok(response::jsonapi(
            StatusCode::OK,
            one(sv_doc(app, subject, &sv.id).await?),
        )),
        None => Err(ApiError::not_found(format!(
            "workspace {id} has no state yet"
        ))),
    }
}

pub async fn current_outputs<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let outputs = app
        .core
        .current_outputs(subject, &req.param("id").parse()?)
        .await?;
    let (list, total) = page.slice(outputs.iter().map(wire::output).collect());
    Ok(response::jsonapi(StatusCode::OK, many(list, page, total)))
}

fn state_spec(data: &Data<'_>) -> Result<StateSpec, ApiError> {
    let serial = data
        .i64("serial")?
        .ok_or_else(|| ApiError::unprocessable("attribute `serial` is required"))?;
    let encoded = data.str("state")?.ok_or_else(|| {
        ApiError::unprocessable("attribute `state` (the base64 state file) is required")
    })?;
    let state = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| ApiError::unprocessable(format!("attribute `state` is not base64: {e}")))?;
    Ok(StateSpec {
        serial,
        lineage: data.str("lineage")?.unwrap_or_default(),
        md5: data.str("md5")?,
        state,
        force: data.bool("force")?.unwrap_or(false),
        run: data
            .rel_id("run")?
            .map(|r| {
                r.parse()
                    .map_err(|e: otf_core::ids::InvalidId| ApiError::unprocessable(e.to_string()))
            })
            .transpose()?,
    })
}

pub async fn create<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let spec = state_spec(&body.data(&["state-versions"])?)?;
    let sv = app
        .core
        .create_state_version(subject, &req.param("id").parse()?, spec)
        .await?;
    Ok(response::jsonapi(
        StatusCode::CREATED,
        one(sv_doc(app, subject, &sv.id).await?),
    ))
}

/// A workspace's state versions, a page of them.
async fn list_of<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
    workspace: &WorkspaceId,
) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let (list, total) = page.slice(app.core.list_state_versions(subject, workspace).await?);
    let mut docs = Vec::new();
    for sv in &list {
        docs.push(sv_doc(app, subject, &sv.id).await?);
    }
    Ok(response::jsonapi(StatusCode::OK, many(docs, page, total)))
}

/// `workspaces/{id}/state-versions`.
pub async fn list<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    list_of(app, req, subject, &req.param("id").parse()?).await
}

/// `state-versions?filter[organization][name]=…&filter[workspace][name]=…`.
pub async fn list_by_name<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let (Some(org), Some(name)) = (
        req.query("filter[organization][name]"),
        req.query("filter[workspace][name]"),
    ) else {
        return Err(ApiError::unprocessable(
            "filter[organization][name] and filter[workspace][name] are required",
        ));
    };
    let ws = app
        .core
        .get_workspace_by_name(subject, &otf_core::services::parse_org(org)?, name)
        .await?;
    list_of(app, req, subject, &ws.id).await
}

pub async fn show<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let doc = sv_doc(app, subject, &req.param("id").parse()?).await?;
    Ok(response::jsonapi(StatusCode::OK, one(doc)))
}

pub async fn download<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let state = app
        .core
        .download_state(subject, &req.param("id").parse()?)
        .await?;
    Ok(response::bytes(StatusCode::OK, state, "application/json"))
}

pub async fn list_outputs<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let (_, summary) = app
        .core
        .read_state_version(subject, &req.param("id").parse()?, Redaction::ShowAll)
        .await?;
    let (list, total) = page.slice(summary.outputs.iter().map(wire::output).collect());
    Ok(response::jsonapi(StatusCode::OK, many(list, page, total)))
}

pub async fn output<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let id = req.param("id");
    let id: StateOutputId = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("output {id} not found")))?;
    let out = app.core.get_state_output(subject, &id).await?;
    Ok(response::jsonapi(StatusCode::OK, one(wire::output(&out))))
}

pub async fn vars<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let vars = app
        .core
        .list_variables(subject, &req.param("id").parse()?)
        .await?;
    let page = Page {
        number: 1,
        size: vars.len().max(1) as u64,
    };
    let total = vars.len() as u64;
    Ok(response::jsonapi(
        StatusCode::OK,
        many(vars.iter().map(wire::variable).collect(), page, total),
    ))
}

pub async fn create_var<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let data = body.data(&["vars"])?;
    let var = app
        .core
        .create_variable(subject, &req.param("id").parse()?, variable_spec(&data)?)
        .await?;
    Ok(response::jsonapi(
        StatusCode::CREATED,
        one(wire::variable(&var)),
    ))
}

/// The variable of the path, which must belong to the workspace of the
/// path; for a change, another organization's workspace is forbidden, not
/// hidden.
async fn var_of<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
    to_change: bool,
) -> Result<Variable, ApiError> {
    let (id, var_id) = (req.param("id"), req.param("var"));
    if to_change {
        app.core
            .get_workspace_to_change(subject, &id.parse()?)
            .await?;
    }
    let var = app.core.get_variable(subject, &var_id.parse()?).await?;
    if var.workspace.as_str() != id {
        return Err(ApiError::not_found(format!("variable {var_id} not found")));
    }
    Ok(var)
}

pub async fn var<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let var = var_of(app, req, subject, false).await?;
    Ok(response::jsonapi(StatusCode::OK, one(wire::variable(&var))))
}

pub async fn update_var<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let var = var_of(app, req, subject, true).await?;
    let body = req.json()?;
    let data = body.data(&["vars"])?;
    let var = app
        .core
        .update_variable(subject, &var.id, variable_spec(&data)?)
        .await?;
    Ok(response::jsonapi(StatusCode::OK, one(wire::variable(&var))))
}

pub async fn delete_var<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let var = var_of(app, req, subject, true).await?;
    app.core.delete_variable(subject, &var.id).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}
