//! The route table: path patterns to [`Route`]s. Methods are matched by the
//! dispatcher.

use std::sync::OnceLock;

/// Every endpoint family otfd serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Discovery,
    Ping,
    Healthz,
    Metrics,
    Organizations,
    Organization,
    Entitlements,
    RunQueue,
    /// The organization's active jobs and why they wait (read-only).
    OrgJobs,
    Capacity,
    OrgToken,
    OrgWorkspaces,
    OrgWorkspace,
    Workspace,
    WorkspaceAction,
    WorkspaceConfigs,
    WorkspaceRuns,
    WorkspaceVars,
    WorkspaceVar,
    CurrentState,
    CurrentStateOutputs,
    WorkspaceStates,
    OrgPools,
    Pool,
    PoolAgents,
    PoolTokens,
    /// `drain` / `undrain` of every agent of a pool.
    PoolAction,
    /// otf's own: the pool's queue numbers, as `/api/agent/queue` gives
    /// them to agent tokens.
    PoolQueue,
    Token,
    Agent,
    /// `drain` / `undrain` of one agent.
    AgentAction,
    Config,
    ConfigUpload,
    Runs,
    Run,
    RunAction,
    Plan,
    PlanJson,
    Apply,
    /// The plan, JSON plan and apply of a run, by run id (pytfe's
    /// `read_for_run`).
    RunPlan,
    RunPlanJson,
    RunApply,
    StateVersions,
    StateVersion,
    StateDownload,
    StateOutputs,
    StateOutput,
    AgentRegister,
    AgentStatus,
    /// The agent token's own pool's queue, for autoscalers.
    AgentQueue,
    AgentJobs,
    AgentJobStart,
    AgentJobSignal,
    JobConfig,
    JobVariables,
    JobState,
    JobArtifact,
    JobLogs,
    JobFinish,
    /// Capability routes, under a signed prefix.
    SignedUpload,
    SignedLogs,
}

const TABLE: &[(&str, Route)] = &[
    ("/.well-known/terraform.json", Route::Discovery),
    ("/api/v2/ping", Route::Ping),
    ("/healthz", Route::Healthz),
    ("/metrics", Route::Metrics),
    ("/api/v2/organizations", Route::Organizations),
    ("/api/v2/organizations/{org}", Route::Organization),
    (
        "/api/v2/organizations/{org}/entitlement-set",
        Route::Entitlements,
    ),
    ("/api/v2/organizations/{org}/runs/queue", Route::RunQueue),
    ("/api/v2/organizations/{org}/jobs", Route::OrgJobs),
    ("/api/v2/organizations/{org}/capacity", Route::Capacity),
    (
        "/api/v2/organizations/{org}/authentication-token",
        Route::OrgToken,
    ),
    (
        "/api/v2/organizations/{org}/workspaces",
        Route::OrgWorkspaces,
    ),
    (
        "/api/v2/organizations/{org}/workspaces/{name}",
        Route::OrgWorkspace,
    ),
    ("/api/v2/organizations/{org}/agent-pools", Route::OrgPools),
    ("/api/v2/workspaces/{id}", Route::Workspace),
    (
        "/api/v2/workspaces/{id}/actions/{action}",
        Route::WorkspaceAction,
    ),
    (
        "/api/v2/workspaces/{id}/configuration-versions",
        Route::WorkspaceConfigs,
    ),
    ("/api/v2/workspaces/{id}/runs", Route::WorkspaceRuns),
    ("/api/v2/workspaces/{id}/vars", Route::WorkspaceVars),
    ("/api/v2/workspaces/{id}/vars/{var}", Route::WorkspaceVar),
    (
        "/api/v2/workspaces/{id}/current-state-version",
        Route::CurrentState,
    ),
    (
        "/api/v2/workspaces/{id}/current-state-version-outputs",
        Route::CurrentStateOutputs,
    ),
    (
        "/api/v2/workspaces/{id}/state-versions",
        Route::WorkspaceStates,
    ),
    ("/api/v2/agent-pools/{id}", Route::Pool),
    ("/api/v2/agent-pools/{id}/agents", Route::PoolAgents),
    ("/api/v2/agent-pools/{id}/queue", Route::PoolQueue),
    (
        "/api/v2/agent-pools/{id}/actions/{action}",
        Route::PoolAction,
    ),
    (
        "/api/v2/agent-pools/{id}/authentication-tokens",
        Route::PoolTokens,
    ),
    ("/api/v2/authentication-tokens/{id}", Route::Token),
    ("/api/v2/agents/{id}", Route::Agent),
    ("/api/v2/agents/{id}/actions/{action}", Route::AgentAction),
    ("/api/v2/configuration-versions/{id}", Route::Config),
    (
        "/api/v2/configuration-versions/{id}/upload",
        Route::ConfigUpload,
    ),
    ("/api/v2/runs", Route::Runs),
    ("/api/v2/runs/{id}", Route::Run),
    ("/api/v2/runs/{id}/actions/{action}", Route::RunAction),
    ("/api/v2/runs/{id}/plan", Route::RunPlan),
    ("/api/v2/runs/{id}/plan/json-output", Route::RunPlanJson),
    ("/api/v2/runs/{id}/apply", Route::RunApply),
    ("/api/v2/plans/{id}", Route::Plan),
    ("/api/v2/plans/{id}/json-output", Route::PlanJson),
    ("/api/v2/applies/{id}", Route::Apply),
    ("/api/v2/state-versions", Route::StateVersions),
    ("/api/v2/state-versions/{id}", Route::StateVersion),
    ("/api/v2/state-versions/{id}/download", Route::StateDownload),
    ("/api/v2/state-versions/{id}/outputs", Route::StateOutputs),
    ("/api/v2/state-version-outputs/{id}", Route::StateOutput),
    ("/api/agent/register", Route::AgentRegister),
    ("/api/agent/status", Route::AgentStatus),
    ("/api/agent/queue", Route::AgentQueue),
    ("/api/agent/jobs", Route::AgentJobs),
    ("/api/agent/jobs/{job}/start", Route::AgentJobStart),
    ("/api/agent/jobs/{job}/signal", Route::AgentJobSignal),
    ("/api/agent/job/config", Route::JobConfig),
    ("/api/agent/job/variables", Route::JobVariables),
    ("/api/agent/job/state", Route::JobState),
    ("/api/agent/job/artifacts/{kind}", Route::JobArtifact),
    ("/api/agent/job/logs", Route::JobLogs),
    ("/api/agent/job/finish", Route::JobFinish),
];

/// Inner paths of capability URLs (after the signature is checked).
const SIGNED: &[(&str, Route)] = &[
    ("/configuration-versions/{id}/upload", Route::SignedUpload),
    ("/runs/{run}/logs/{phase}", Route::SignedLogs),
];

/// How much body a route may be sent (one table for every route; the
/// server reads no more, and reads it only after the caller is admitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// Routes anyone may call: a small bound.
    Public,
    /// JSON:API documents.
    Json,
    /// Uploads: configuration tarballs, state, plan and lock files, logs.
    Upload,
}

/// The body class of `route`.
pub fn body_size(route: Route) -> BodySize {
    use Route::*;
    match route {
        Discovery | Ping | Healthz | Metrics => BodySize::Public,
        ConfigUpload | SignedUpload | JobState | JobArtifact | JobLogs | JobFinish => {
            BodySize::Upload
        }
        _ => BodySize::Json,
    }
}

/// Whether `route` answers without a token (or is authorized by its
/// signed URL instead).
pub fn is_public(route: Route) -> bool {
    matches!(
        route,
        Route::Discovery
            | Route::Ping
            | Route::Healthz
            | Route::Metrics
            | Route::SignedUpload
            | Route::SignedLogs
    )
}

fn build(table: &[(&str, Route)]) -> matchit::Router<Route> {
    let mut r = matchit::Router::new();
    for (path, route) in table {
        // The table is static: a conflict is a programming error caught by
        // the router tests.
        r.insert(*path, *route)
            .expect("route table has no conflicts");
    }
    r
}

/// The route of `path` and its parameters.
pub fn find(path: &str) -> Option<(Route, Vec<(String, String)>)> {
    static ROUTER: OnceLock<matchit::Router<Route>> = OnceLock::new();
    lookup(ROUTER.get_or_init(|| build(TABLE)), path)
}

/// The route of a verified capability path.
pub fn find_signed(path: &str) -> Option<(Route, Vec<(String, String)>)> {
    static ROUTER: OnceLock<matchit::Router<Route>> = OnceLock::new();
    lookup(ROUTER.get_or_init(|| build(SIGNED)), path)
}

fn lookup(router: &matchit::Router<Route>, path: &str) -> Option<(Route, Vec<(String, String)>)> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let m = router.at(path).ok()?;
    let params = m
        .params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some((*m.value, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_builds_and_matches() {
        assert_eq!(find("/api/v2/ping").map(|r| r.0), Some(Route::Ping));
        let (route, params) = find("/api/v2/organizations/acme/workspaces/dev/").unwrap();
        assert_eq!(route, Route::OrgWorkspace);
        assert_eq!(
            params,
            vec![("org".into(), "acme".into()), ("name".into(), "dev".into())]
        );
        assert_eq!(find("/api/v2/nope"), None);
        assert_eq!(
            find_signed("/runs/run-x/logs/plan").map(|r| r.0),
            Some(Route::SignedLogs)
        );
    }
}
