//! The organization's job queue: which job runs on which agent, which wait
//! and why (read-only, for administrators' frontends).

use hyper::{Method, StatusCode};
use otf_core::auth::Subject;
use otf_core::store::Store;

use crate::app::{method_not_allowed, App};
use crate::errors::ApiError;
use crate::jsonapi::{many, Page};
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
    match (route, &req.method) {
        (Route::OrgJobs, &Method::GET) => {
            let page = Page::from_request(req)?;
            let jobs = app.core.list_queue(subject, &req.org()?).await?;
            let (jobs, total) = page.slice(jobs);
            Ok(response::jsonapi(
                StatusCode::OK,
                many(jobs.iter().map(wire::queued_job).collect(), page, total),
            ))
        }
        (_, m) => Err(method_not_allowed(m)),
    }
}
