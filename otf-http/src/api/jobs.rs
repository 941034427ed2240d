//! The organization's job queue: which job runs on which agent, which wait
//! and why (read-only, for administrators' frontends).

use hyper::StatusCode;
use otf_core::auth::Subject;
use otf_core::store::Store;

use crate::app::App;
use crate::errors::ApiError;
use crate::jsonapi::many;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::wire;

pub async fn list<S: Store>(app: &App<S>, req: &Req, subject: &Subject) -> Result<Resp, ApiError> {
    let page = req.page()?;
    let jobs = app.core.list_queue(subject, &req.org()?).await?;
    let (jobs, total) = page.slice(jobs);
    Ok(response::jsonapi(
        StatusCode::OK,
        many(jobs.iter().map(wire::queued_job).collect(), page, total),
    ))
}
