//! Organizations, entitlements, the run queue and capacity, organization
//! tokens.

use hyper::StatusCode;
use otf_core::auth::Subject;
use otf_core::store::Store;
use serde_json::json;

use crate::app::App;
use crate::errors::ApiError;
use crate::jsonapi::{many, one, resource};
use crate::request::Req;
use crate::response::{self, Resp};
use crate::wire;

pub async fn list<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let (orgs, total) = page.slice(app.core.list_organizations(subject).await?);
    let docs = orgs.iter().map(wire::organization).collect();
    Ok(response::jsonapi(StatusCode::OK, many(docs, page, total)))
}

pub async fn create<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let data = body.data(&["organizations"])?;
    let name = data
        .str("name")?
        .ok_or_else(|| ApiError::unprocessable("attribute `name` is required"))?;
    let email = data.str("email")?.unwrap_or_default();
    let org = app
        .core
        .create_organization(subject, &name.parse()?, &email)
        .await?;
    Ok(response::jsonapi(
        StatusCode::CREATED,
        one(wire::organization(&org)),
    ))
}

pub async fn show<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let org = app.core.get_organization(subject, &req.org()?).await?;
    Ok(response::jsonapi(
        StatusCode::OK,
        one(wire::organization(&org)),
    ))
}

pub async fn delete<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    app.core.delete_organization(subject, &req.org()?).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}

pub async fn entitlements<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let org = app.core.get_organization(subject, &req.org()?).await?;
    Ok(response::jsonapi(
        StatusCode::OK,
        one(wire::entitlements(&org)),
    ))
}

/// Runs do not wait behind other workspaces' runs: the queue the CLI asks
/// about is always empty.
pub async fn run_queue<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    app.core.get_organization(subject, &req.org()?).await?;
    let page = req.page()?;
    Ok(response::jsonapi(StatusCode::OK, many(vec![], page, 0)))
}

pub async fn capacity<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let org = req.org()?;
    app.core.get_organization(subject, &org).await?;
    Ok(response::jsonapi(
        StatusCode::OK,
        one(resource(
            "organization-capacity",
            &format!("org-{org}"),
            json!({"pending": 0, "running": 0}),
            json!({}),
        )),
    ))
}

pub async fn create_token<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let body = req.json()?;
    let description = body
        .loose()
        .str("description")?
        .unwrap_or_else(|| "organization token".into());
    let (token, secret) = app
        .core
        .create_org_token(subject, &req.org()?, &description)
        .await?;
    Ok(response::jsonapi(
        StatusCode::CREATED,
        one(wire::org_token(&token, Some(secret.expose()))),
    ))
}

/// The newest token of the organization, without its secret.
pub async fn show_token<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let org = req.org()?;
    let token = app
        .core
        .newest_org_token(subject, &org)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("organization {org} has no token")))?;
    Ok(response::jsonapi(
        StatusCode::OK,
        one(wire::org_token(&token, None)),
    ))
}

pub async fn delete_tokens<S: Store>(
    app: &App<S>,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    app.core.delete_org_tokens(subject, &req.org()?).await?;
    Ok(response::empty(StatusCode::NO_CONTENT))
}
