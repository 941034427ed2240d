//! The route table: every endpoint otfd serves, declared once, with its
//! metrics name, path, body bound and one handler per method. Adding an
//! endpoint is one entry here and one handler function.

use otf_core::store::Store;

use crate::agent_api as agent;
use crate::api::{jobs, meta, orgs, pools, runs, state, workspaces};
use crate::app::App;
use crate::router::{Endpoint, Routes, Serve};

/// A handler that needs a caller.
macro_rules! caller {
    ($f:path) => {
        Serve::Caller(|app, req, subject| Box::pin($f(app, req, subject)))
    };
}

/// A handler that answers anyone, or a capability URL's.
macro_rules! open {
    ($f:path) => {
        Serve::Open(|app, req| Box::pin($f(app, req)))
    };
}

/// Every route of the application.
pub fn table<S: Store>() -> Routes<App<S>> {
    Routes::new(
        api_v2::<S>().into_iter().chain(agent_protocol()).collect(),
        signed(),
    )
}

/// The TFE API v2 (and otf's additions to it), by family.
fn api_v2<S: Store>() -> Vec<Endpoint<App<S>>> {
    [
        meta(),
        organizations(),
        workspaces(),
        pools(),
        runs(),
        state(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Discovery, ping, health and metrics: open to anyone.
fn meta<S: Store>() -> Vec<Endpoint<App<S>>> {
    let e = Endpoint::new;
    vec![
        e("Discovery", "/.well-known/terraform.json")
            .public()
            .get(open!(meta::discovery)),
        e("Ping", "/api/v2/ping").public().get(open!(meta::ping)),
        e("Healthz", "/healthz").public().get(open!(meta::healthz)),
        e("Metrics", "/metrics").public().get(open!(meta::metrics)),
    ]
}

/// Organizations, their entitlements, queue, capacity, jobs and tokens.
fn organizations<S: Store>() -> Vec<Endpoint<App<S>>> {
    let e = Endpoint::new;
    vec![
        e("Organizations", "/api/v2/organizations")
            .get(caller!(orgs::list))
            .post(caller!(orgs::create)),
        e("Organization", "/api/v2/organizations/{org}")
            .get(caller!(orgs::show))
            .delete(caller!(orgs::delete)),
        e(
            "Entitlements",
            "/api/v2/organizations/{org}/entitlement-set",
        )
        .get(caller!(orgs::entitlements)),
        e("RunQueue", "/api/v2/organizations/{org}/runs/queue").get(caller!(orgs::run_queue)),
        // The organization's active jobs and why they wait (read-only).
        e("OrgJobs", "/api/v2/organizations/{org}/jobs").get(caller!(jobs::list)),
        e("Capacity", "/api/v2/organizations/{org}/capacity").get(caller!(orgs::capacity)),
        e(
            "OrgToken",
            "/api/v2/organizations/{org}/authentication-token",
        )
        .post(caller!(orgs::create_token))
        .get(caller!(orgs::show_token))
        .delete(caller!(orgs::delete_tokens)),
    ]
}

/// Workspaces, by name and by id, and their lock.
fn workspaces<S: Store>() -> Vec<Endpoint<App<S>>> {
    let e = Endpoint::new;
    vec![
        e("OrgWorkspaces", "/api/v2/organizations/{org}/workspaces")
            .get(caller!(workspaces::list))
            .post(caller!(workspaces::create)),
        e(
            "OrgWorkspace",
            "/api/v2/organizations/{org}/workspaces/{name}",
        )
        .get(caller!(workspaces::show_by_name))
        .patch(caller!(workspaces::update_by_name))
        .delete(caller!(workspaces::delete_by_name)),
        e("Workspace", "/api/v2/workspaces/{id}")
            .get(caller!(workspaces::show))
            .patch(caller!(workspaces::update))
            .delete(caller!(workspaces::delete)),
        e(
            "WorkspaceAction",
            "/api/v2/workspaces/{id}/actions/{action}",
        )
        .post(caller!(workspaces::action)),
    ]
}

/// Agent pools, their agents and agent tokens.
fn pools<S: Store>() -> Vec<Endpoint<App<S>>> {
    let e = Endpoint::new;
    vec![
        e("OrgPools", "/api/v2/organizations/{org}/agent-pools")
            .get(caller!(pools::list))
            .post(caller!(pools::create)),
        e("Pool", "/api/v2/agent-pools/{id}")
            .get(caller!(pools::show))
            .patch(caller!(pools::update))
            .delete(caller!(pools::delete)),
        e("PoolAgents", "/api/v2/agent-pools/{id}/agents").get(caller!(pools::agents)),
        // otf's own: the pool's queue numbers, as `/api/agent/queue` gives
        // them to agent tokens.
        e("PoolQueue", "/api/v2/agent-pools/{id}/queue").get(caller!(pools::queue)),
        // `drain` / `undrain` of every agent of a pool.
        e("PoolAction", "/api/v2/agent-pools/{id}/actions/{action}")
            .post(caller!(pools::pool_action)),
        e(
            "PoolTokens",
            "/api/v2/agent-pools/{id}/authentication-tokens",
        )
        .get(caller!(pools::tokens))
        .post(caller!(pools::create_token)),
        e("Token", "/api/v2/authentication-tokens/{id}")
            .get(caller!(pools::token))
            .delete(caller!(pools::delete_token)),
        e("Agent", "/api/v2/agents/{id}")
            .get(caller!(pools::agent))
            .delete(caller!(pools::delete_agent)),
        // `drain` / `undrain` of one agent.
        e("AgentAction", "/api/v2/agents/{id}/actions/{action}").post(caller!(pools::agent_action)),
    ]
}

/// Configuration versions, runs, plans and applies.
fn runs<S: Store>() -> Vec<Endpoint<App<S>>> {
    let e = Endpoint::new;
    vec![
        e(
            "WorkspaceConfigs",
            "/api/v2/workspaces/{id}/configuration-versions",
        )
        .post(caller!(runs::create_config)),
        e("WorkspaceRuns", "/api/v2/workspaces/{id}/runs").get(caller!(runs::list)),
        e("Config", "/api/v2/configuration-versions/{id}").get(caller!(runs::config)),
        e("ConfigUpload", "/api/v2/configuration-versions/{id}/upload")
            .upload()
            .put(caller!(runs::upload_config)),
        e("Runs", "/api/v2/runs").post(caller!(runs::create)),
        e("Run", "/api/v2/runs/{id}").get(caller!(runs::show)),
        e("RunAction", "/api/v2/runs/{id}/actions/{action}").post(caller!(runs::action)),
        // The plan, JSON plan and apply of a run, by run id (pytfe's
        // `read_for_run`).
        e("RunPlan", "/api/v2/runs/{id}/plan").get(caller!(runs::run_plan)),
        e("RunPlanJson", "/api/v2/runs/{id}/plan/json-output").get(caller!(runs::run_plan_json)),
        e("RunApply", "/api/v2/runs/{id}/apply").get(caller!(runs::run_apply)),
        e("Plan", "/api/v2/plans/{id}").get(caller!(runs::plan)),
        e("PlanJson", "/api/v2/plans/{id}/json-output").get(caller!(runs::plan_json)),
        e("Apply", "/api/v2/applies/{id}").get(caller!(runs::apply)),
    ]
}

/// Variables and state versions (with outputs).
fn state<S: Store>() -> Vec<Endpoint<App<S>>> {
    let e = Endpoint::new;
    vec![
        e("WorkspaceVars", "/api/v2/workspaces/{id}/vars")
            .get(caller!(state::vars))
            .post(caller!(state::create_var)),
        e("WorkspaceVar", "/api/v2/workspaces/{id}/vars/{var}")
            .get(caller!(state::var))
            .patch(caller!(state::update_var))
            .delete(caller!(state::delete_var)),
        e(
            "CurrentState",
            "/api/v2/workspaces/{id}/current-state-version",
        )
        .get(caller!(state::current)),
        e(
            "CurrentStateOutputs",
            "/api/v2/workspaces/{id}/current-state-version-outputs",
        )
        .get(caller!(state::current_outputs)),
        e("WorkspaceStates", "/api/v2/workspaces/{id}/state-versions")
            .get(caller!(state::list))
            .post(caller!(state::create)),
        e("StateVersions", "/api/v2/state-versions").get(caller!(state::list_by_name)),
        e("StateVersion", "/api/v2/state-versions/{id}").get(caller!(state::show)),
        e("StateDownload", "/api/v2/state-versions/{id}/download").get(caller!(state::download)),
        e("StateOutputs", "/api/v2/state-versions/{id}/outputs").get(caller!(state::list_outputs)),
        e("StateOutput", "/api/v2/state-version-outputs/{id}").get(caller!(state::output)),
    ]
}

/// The agent protocol (`otf_agent::protocol`): agent tokens, then the job
/// tokens of the jobs they were handed.
fn agent_protocol<S: Store>() -> Vec<Endpoint<App<S>>> {
    let e = Endpoint::new;
    vec![
        e("AgentRegister", "/api/agent/register").post(caller!(agent::register)),
        e("AgentStatus", "/api/agent/status").post(caller!(agent::status)),
        // The agent token's own pool's queue, for autoscalers.
        e("AgentQueue", "/api/agent/queue").get(caller!(agent::queue)),
        e("AgentJobs", "/api/agent/jobs").get(caller!(agent::jobs)),
        e("AgentJobStart", "/api/agent/jobs/{job}/start").post(caller!(agent::start)),
        e("AgentJobSignal", "/api/agent/jobs/{job}/signal").get(caller!(agent::signal)),
        e("JobConfig", "/api/agent/job/config").get(caller!(agent::config)),
        e("JobVariables", "/api/agent/job/variables").get(caller!(agent::variables)),
        e("JobState", "/api/agent/job/state")
            .upload()
            .get(caller!(agent::state))
            .post(caller!(agent::upload_state)),
        e("JobArtifact", "/api/agent/job/artifacts/{kind}")
            .upload()
            .put(caller!(agent::upload_artifact))
            .get(caller!(agent::artifact)),
        e("JobLogs", "/api/agent/job/logs")
            .upload()
            .post(caller!(agent::logs)),
        e("JobFinish", "/api/agent/job/finish")
            .upload()
            .post(caller!(agent::finish)),
    ]
}

/// Inner paths of capability URLs, served once their signature is checked.
fn signed<S: Store>() -> Vec<Endpoint<App<S>>> {
    let e = Endpoint::new;
    vec![
        e("SignedUpload", "/configuration-versions/{id}/upload")
            .upload()
            .put(open!(runs::signed_upload)),
        e("SignedLogs", "/runs/{run}/logs/{phase}").get(open!(runs::signed_logs)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::BodySize;
    use otf_core::memory::MemoryStore;

    #[test]
    fn table_builds_and_matches() {
        let routes = table::<MemoryStore>();
        let name = |f: Option<crate::router::Found>| f.map(|(i, _)| routes.endpoint(i).name);
        assert_eq!(name(routes.find("/api/v2/ping")), Some("Ping"));
        let (i, params) = routes
            .find("/api/v2/organizations/acme/workspaces/dev/")
            .unwrap();
        assert_eq!(routes.endpoint(i).name, "OrgWorkspace");
        assert_eq!(
            params,
            vec![("org".into(), "acme".into()), ("name".into(), "dev".into())]
        );
        assert_eq!(name(routes.find("/api/v2/nope")), None);
        assert_eq!(
            name(routes.find_signed("/runs/run-x/logs/plan")),
            Some("SignedLogs")
        );
        // Signed paths are not plain routes.
        assert_eq!(name(routes.find("/runs/run-x/logs/plan")), None);
    }

    #[test]
    fn names_are_unique_and_only_public_routes_are_open() {
        let routes = table::<MemoryStore>();
        let mut names: Vec<_> = routes.iter().map(|e| e.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "every route has its own metrics name");
        for e in routes.iter() {
            let signed = e.name.starts_with("Signed");
            assert_eq!(
                e.is_open(),
                signed || e.body == BodySize::Public,
                "{}: open routes are the public and the signed ones",
                e.path
            );
        }
    }
}
