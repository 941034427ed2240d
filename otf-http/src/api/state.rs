//! State versions, their outputs, and workspace variables.

use base64::Engine;
use hyper::{Method, StatusCode};
use otf_core::artifacts::{StateVersion, VariableCategory};
use otf_core::auth::Subject;
use otf_core::services::{StateSpec, VariableSpec};
use otf_core::store::Store;
use serde_json::Value;

use crate::app::{method_not_allowed, App};
use crate::errors::ApiError;
use crate::jsonapi::{many, one, Data, Page};
use crate::request::Req;
use crate::response::{self, Resp};
use crate::router::Route;
use crate::wire;

async fn sv_doc<S: Store>(
    app: &App<S>,
    subject: &Subject,
    sv: &StateVersion,
) -> Result<Value, ApiError> {
    let state = app.core.download_state(subject, &sv.id).await?;
    let url = app.url(&format!("/api/v2/state-versions/{}/download", sv.id));
    Ok(wire::state_version(sv, &url, &state))
}

/// Outputs of a state version; sensitive values hidden when `redact`.
async fn outputs<S: Store>(
    app: &App<S>,
    subject: &Subject,
    sv: &StateVersion,
    redact: bool,
) -> Result<Vec<Value>, ApiError> {
    let state = app.core.download_state(subject, &sv.id).await?;
    Ok(wire::state_outputs(&state)
        .iter()
        .enumerate()
        .map(|(i, (name, value, ty, sensitive))| {
            let shown = (!(redact && *sensitive)).then_some(value);
            wire::output(&wire::output_id(sv, i), name, shown, ty, *sensitive)
        })
        .collect())
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

pub async fn handle<S: Store>(
    app: &App<S>,
    route: Route,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let core = &app.core;
    let id = req.param("id");
    match (route, &req.method) {
        (Route::CurrentState, &Method::GET) => {
            match core.current_state_version(subject, &id.parse()?).await? {
                Some(sv) => Ok(response::jsonapi(
                    StatusCode::OK,
                    one(sv_doc(app, subject, &sv).await?),
                )),
                None => Err(ApiError::not_found(format!(
                    "workspace {id} has no state yet"
                ))),
            }
        }
        (Route::CurrentStateOutputs, &Method::GET) => {
            let page = Page::from_request(req)?;
            let Some(sv) = core.current_state_version(subject, &id.parse()?).await? else {
                return Ok(response::jsonapi(StatusCode::OK, many(vec![], page, 0)));
            };
            let (list, total) = page.slice(outputs(app, subject, &sv, true).await?);
            Ok(response::jsonapi(StatusCode::OK, many(list, page, total)))
        }
        (Route::WorkspaceStates, &Method::POST) => {
            let body = req.json()?;
            let data = body.data(&["state-versions"])?;
            let serial = data
                .i64("serial")?
                .ok_or_else(|| ApiError::unprocessable("attribute `serial` is required"))?;
            let encoded = data.str("state")?.ok_or_else(|| {
                ApiError::unprocessable("attribute `state` (the base64 state file) is required")
            })?;
            let state = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| {
                    ApiError::unprocessable(format!("attribute `state` is not base64: {e}"))
                })?;
            let spec = StateSpec {
                serial,
                lineage: data.str("lineage")?.unwrap_or_default(),
                md5: data.str("md5")?,
                state,
                force: data.bool("force")?.unwrap_or(false),
                run: data
                    .rel_id("run")?
                    .map(|r| {
                        r.parse().map_err(|e: otf_core::ids::InvalidId| {
                            ApiError::unprocessable(e.to_string())
                        })
                    })
                    .transpose()?,
            };
            let sv = core
                .create_state_version(subject, &id.parse()?, spec)
                .await?;
            Ok(response::jsonapi(
                StatusCode::CREATED,
                one(sv_doc(app, subject, &sv).await?),
            ))
        }
        (Route::WorkspaceStates | Route::StateVersions, &Method::GET) => {
            let page = Page::from_request(req)?;
            let ws = if route == Route::StateVersions {
                let (Some(org), Some(name)) = (
                    req.query("filter[organization][name]"),
                    req.query("filter[workspace][name]"),
                ) else {
                    return Err(ApiError::unprocessable(
                        "filter[organization][name] and filter[workspace][name] are required",
                    ));
                };
                core.get_workspace_by_name(subject, &otf_core::services::parse_org(org)?, name)
                    .await?
                    .id
            } else {
                id.parse()?
            };
            let (list, total) = page.slice(core.list_state_versions(subject, &ws).await?);
            let mut docs = Vec::new();
            for sv in &list {
                docs.push(sv_doc(app, subject, sv).await?);
            }
            Ok(response::jsonapi(StatusCode::OK, many(docs, page, total)))
        }
        (Route::StateVersion, &Method::GET) => {
            let sv = core.get_state_version(subject, &id.parse()?).await?;
            Ok(response::jsonapi(
                StatusCode::OK,
                one(sv_doc(app, subject, &sv).await?),
            ))
        }
        (Route::StateDownload, &Method::GET) => {
            let state = core.download_state(subject, &id.parse()?).await?;
            Ok(response::bytes(StatusCode::OK, state, "application/json"))
        }
        (Route::StateOutputs, &Method::GET) => {
            let page = Page::from_request(req)?;
            let sv = core.get_state_version(subject, &id.parse()?).await?;
            let (list, total) = page.slice(outputs(app, subject, &sv, false).await?);
            Ok(response::jsonapi(StatusCode::OK, many(list, page, total)))
        }
        (Route::StateOutput, &Method::GET) => {
            let (sv, index) = wire::parse_output_id(id)
                .ok_or_else(|| ApiError::not_found(format!("output {id} not found")))?;
            let sv = core.get_state_version(subject, &sv.parse()?).await?;
            let out = outputs(app, subject, &sv, false)
                .await?
                .into_iter()
                .nth(index)
                .ok_or_else(|| ApiError::not_found(format!("output {id} not found")))?;
            Ok(response::jsonapi(StatusCode::OK, one(out)))
        }
        (Route::WorkspaceVars, &Method::GET) => {
            let vars = core.list_variables(subject, &id.parse()?).await?;
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
        (Route::WorkspaceVars, &Method::POST) => {
            let body = req.json()?;
            let data = body.data(&["vars"])?;
            let var = core
                .create_variable(subject, &id.parse()?, variable_spec(&data)?)
                .await?;
            Ok(response::jsonapi(
                StatusCode::CREATED,
                one(wire::variable(&var)),
            ))
        }
        (Route::WorkspaceVar, m) => {
            let var_id = req.param("var");
            // Changes to another organization's workspace are forbidden,
            // not hidden.
            if *m != Method::GET {
                core.get_workspace_to_change(subject, &id.parse()?).await?;
            }
            // The variable must belong to the workspace of the path.
            let var = core.get_variable(subject, &var_id.parse()?).await?;
            if var.workspace.as_str() != id {
                return Err(ApiError::not_found(format!("variable {var_id} not found")));
            }
            match *m {
                Method::GET => Ok(response::jsonapi(StatusCode::OK, one(wire::variable(&var)))),
                Method::PATCH => {
                    let body = req.json()?;
                    let data = body.data(&["vars"])?;
                    let var = core
                        .update_variable(subject, &var_id.parse()?, variable_spec(&data)?)
                        .await?;
                    Ok(response::jsonapi(StatusCode::OK, one(wire::variable(&var))))
                }
                Method::DELETE => {
                    core.delete_variable(subject, &var_id.parse()?).await?;
                    Ok(response::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(method_not_allowed(m)),
            }
        }
        (_, m) => Err(method_not_allowed(m)),
    }
}
