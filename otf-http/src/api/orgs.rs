//! Organizations, entitlements, the run queue and capacity, organization
//! tokens.

use hyper::{Method, StatusCode};
use otf_core::auth::Subject;
use otf_core::store::Store;
use serde_json::json;

use crate::app::{method_not_allowed, App};
use crate::errors::ApiError;
use crate::jsonapi::{many, one, resource, Page};
use crate::request::Req;
use crate::response::{self, Resp};
use crate::router::Route;
use crate::wire;

pub async fn handle<S: Store>(
    app: &App<S>,
    route: Route,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    let core = &app.core;
    let org = req.param("org");
    match (route, &req.method) {
        (Route::Organizations, &Method::GET) => {
            let page = Page::from_request(req)?;
            let (orgs, total) = page.slice(core.list_organizations(subject).await?);
            let docs = orgs.iter().map(wire::organization).collect();
            Ok(response::jsonapi(StatusCode::OK, many(docs, page, total)))
        }
        (Route::Organizations, &Method::POST) => {
            let body = req.json()?;
            let data = body.data(&["organizations"])?;
            let name = data
                .str("name")?
                .ok_or_else(|| ApiError::unprocessable("attribute `name` is required"))?;
            let email = data.str("email")?.unwrap_or_default();
            let org = core
                .create_organization(subject, &name.parse()?, &email)
                .await?;
            Ok(response::jsonapi(
                StatusCode::CREATED,
                one(wire::organization(&org)),
            ))
        }
        (Route::Organization, &Method::GET) => {
            let org = core.get_organization(subject, &req.org()?).await?;
            Ok(response::jsonapi(
                StatusCode::OK,
                one(wire::organization(&org)),
            ))
        }
        (Route::Organization, &Method::DELETE) => {
            core.delete_organization(subject, &req.org()?).await?;
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        (Route::Entitlements, &Method::GET) => {
            let org = core.get_organization(subject, &req.org()?).await?;
            Ok(response::jsonapi(
                StatusCode::OK,
                one(wire::entitlements(&org)),
            ))
        }
        (Route::RunQueue, &Method::GET) => {
            // Runs do not wait behind other workspaces' runs: the queue the
            // CLI asks about is always empty.
            core.get_organization(subject, &req.org()?).await?;
            let page = Page::from_request(req)?;
            Ok(response::jsonapi(StatusCode::OK, many(vec![], page, 0)))
        }
        (Route::Capacity, &Method::GET) => {
            core.get_organization(subject, &req.org()?).await?;
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
        (Route::OrgToken, &Method::POST) => {
            let body = req.json()?;
            let description = body
                .loose()
                .str("description")?
                .unwrap_or_else(|| "organization token".into());
            let (token, secret) = core
                .create_org_token(subject, &req.org()?, &description)
                .await?;
            Ok(response::jsonapi(
                StatusCode::CREATED,
                one(wire::org_token(&token, Some(secret.expose()))),
            ))
        }
        (Route::OrgToken, &Method::GET) => {
            // The newest token of the organization, without its secret.
            let token = core
                .list_org_tokens(subject, &req.org()?)
                .await?
                .into_iter()
                .max_by_key(|t| t.created_at)
                .ok_or_else(|| ApiError::not_found(format!("organization {org} has no token")))?;
            Ok(response::jsonapi(
                StatusCode::OK,
                one(wire::org_token(&token, None)),
            ))
        }
        (Route::OrgToken, &Method::DELETE) => {
            for t in core.list_org_tokens(subject, &req.org()?).await? {
                core.delete_org_token(subject, &t.id).await?;
            }
            Ok(response::empty(StatusCode::NO_CONTENT))
        }
        (_, m) => Err(method_not_allowed(m)),
    }
}
