//! TFE API v2 handlers: decode, call one core service, encode.

mod jobs;
pub mod meta;
mod orgs;
mod pools;
mod runs;
mod state;
mod workspaces;

use otf_core::auth::Subject;
use otf_core::store::Store;

use crate::app::App;
use crate::errors::ApiError;
use crate::request::Req;
use crate::response::Resp;
use crate::router::Route;

/// Authenticated API routes.
pub async fn handle<S: Store>(
    app: &App<S>,
    route: Route,
    req: &Req,
    subject: &Subject,
) -> Result<Resp, ApiError> {
    use Route::*;
    match route {
        Organizations | Organization | Entitlements | RunQueue | Capacity | OrgToken => {
            orgs::handle(app, route, req, subject).await
        }
        OrgWorkspaces | OrgWorkspace | Workspace | WorkspaceAction => {
            workspaces::handle(app, route, req, subject).await
        }
        OrgJobs => jobs::handle(app, route, req, subject).await,
        OrgPools | Pool | PoolAgents | PoolQueue | PoolTokens | PoolAction | Token | Agent
        | AgentAction => pools::handle(app, route, req, subject).await,
        WorkspaceConfigs | WorkspaceRuns | Config | ConfigUpload | Runs | Run | RunAction
        | Plan | PlanJson | Apply | RunPlan | RunPlanJson | RunApply => {
            runs::handle(app, route, req, subject).await
        }
        WorkspaceVars | WorkspaceVar | CurrentState | CurrentStateOutputs | WorkspaceStates
        | StateVersions | StateVersion | StateDownload | StateOutputs | StateOutput => {
            state::handle(app, route, req, subject).await
        }
        _ => Err(ApiError::not_found("no such endpoint")),
    }
}

/// Capability routes (signed URLs, no token).
pub async fn capability<S: Store>(app: &App<S>, route: Route, req: &Req) -> Result<Resp, ApiError> {
    runs::capability(app, route, req).await
}
