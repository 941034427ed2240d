//! Builders of aggregates with fresh ids and fixed times.

use std::collections::BTreeSet;

use otf_core::agent::{Agent, AgentStatus};
use otf_core::agent_token::AgentToken;
use otf_core::artifacts::{
    ConfigStatus, ConfigurationVersion, StateVersion, Variable, VariableCategory,
};
use otf_core::clock::Timestamp;
use otf_core::ids::*;
use otf_core::job::{Job, JobPhase, JobStatus};
use otf_core::organization::{Organization, OrganizationToken};
use otf_core::pool::AgentPool;
use otf_core::random::OsRandom;
use otf_core::run::{Run, RunOptions};
use otf_core::secret::SecretHash;
use otf_core::workspace::{ExecutionMode, Workspace};

pub fn org(name: &str) -> Organization {
    Organization {
        name: name.parse().expect("valid name"),
        email: format!("admin@{name}.example"),
        created_at: Timestamp(1_000),
    }
}

pub fn org_token(org: &Organization, created: i64) -> OrganizationToken {
    OrganizationToken {
        id: OrgTokenId::generate(&OsRandom),
        organization: org.name.clone(),
        description: "ci".into(),
        created_at: Timestamp(created),
        last_used_at: None,
        hash: SecretHash::of("secret"),
    }
}

pub fn workspace(org: &Organization, name: &str) -> Workspace {
    Workspace {
        agent_selector: "region=eu-west".parse().unwrap(),
        id: WorkspaceId::generate(&OsRandom),
        organization: org.name.clone(),
        name: name.into(),
        execution_mode: ExecutionMode::Remote,
        auto_apply: false,
        terraform_version: "1.0.3".into(),
        working_directory: String::new(),
        lock: None,
        current_run: None,
        created_at: Timestamp(2_000),
        updated_at: Timestamp(2_000),
    }
}

pub fn pool(org: &Organization, name: &str, allowed: &[&Workspace]) -> AgentPool {
    AgentPool {
        id: PoolId::generate(&OsRandom),
        organization: org.name.clone(),
        name: name.into(),
        organization_scoped: allowed.is_empty(),
        allowed_workspaces: allowed
            .iter()
            .map(|w| w.id.clone())
            .collect::<BTreeSet<_>>(),
        excluded_workspaces: BTreeSet::new(),
        created_at: Timestamp(3_000),
        drained: false,
    }
}

pub fn agent_token(pool: &AgentPool, created: i64) -> AgentToken {
    AgentToken {
        id: AgentTokenId::generate(&OsRandom),
        pool: pool.id.clone(),
        organization: pool.organization.clone(),
        description: format!("token made at {created}"),
        created_at: Timestamp(created),
        last_used_at: None,
        hash: SecretHash::of(&format!("secret {created}")),
    }
}

pub fn agent(pool: Option<&AgentPool>, token: Option<&AgentToken>) -> Agent {
    Agent {
        labels: "gpu=,region=eu-west,team/infra=a.b_c".parse().unwrap(),
        id: AgentId::generate(&OsRandom),
        name: "runner".into(),
        version: "0.1.0".into(),
        pool: pool.map(|p| p.id.clone()),
        organization: pool.map(|p| p.organization.clone()),
        status: AgentStatus::Idle,
        max_jobs: 5,
        ip_address: "127.0.0.1".into(),
        last_ping_at: Timestamp(10_000),
        last_status_at: Timestamp(10_000),
        token: token.map(|t| t.id.clone()),
        registered_at: Timestamp(9_000),
        drained: false,
        single: false,
    }
}

pub fn config_version(ws: &Workspace, created: i64, status: ConfigStatus) -> ConfigurationVersion {
    ConfigurationVersion {
        id: ConfigVersionId::generate(&OsRandom),
        workspace: ws.id.clone(),
        organization: ws.organization.clone(),
        status,
        speculative: false,
        auto_queue_runs: true,
        error: None,
        created_at: Timestamp(created),
    }
}

pub fn run(ws: &Workspace, cv: &ConfigurationVersion, created: i64) -> Run {
    Run::new(
        RunId::generate(&OsRandom),
        ws,
        cv.id.clone(),
        RunOptions {
            refresh: true,
            message: "triggered by a test".into(),
            ..RunOptions::default()
        },
        Timestamp(created),
    )
}

pub fn job(run: &Run, phase: JobPhase, attempt: u32, queued: i64) -> Job {
    Job {
        selector: "region=eu-west".parse().unwrap(),
        id: JobId::generate(&OsRandom),
        run: run.id.clone(),
        phase,
        status: JobStatus::Unallocated,
        pool: None,
        organization: run.organization.clone(),
        workspace: run.workspace.clone(),
        agent: None,
        attempt,
        queued_at: Timestamp(queued),
        signal: None,
        token_hash: None,
        error: None,
        updated_at: Timestamp(queued),
        log_dropped: 0,
        affinity: None,
    }
}

pub fn state_version(ws: &Workspace, serial: i64, created: i64, state: &[u8]) -> StateVersion {
    StateVersion {
        id: StateVersionId::generate(&OsRandom),
        workspace: ws.id.clone(),
        organization: ws.organization.clone(),
        serial,
        lineage: "lineage-1".into(),
        md5: otf_core::artifacts::md5_hex(state),
        size: state.len() as u64,
        run: None,
        created_at: Timestamp(created),
    }
}

pub fn variable(ws: &Workspace, key: &str, category: VariableCategory) -> Variable {
    Variable {
        id: VariableId::generate(&OsRandom),
        workspace: ws.id.clone(),
        key: key.into(),
        value: format!("value of {key}"),
        description: String::new(),
        category,
        hcl: false,
        sensitive: category == VariableCategory::Env,
    }
}
