//! Rows to core types and back: the only module that knows both shapes.
//!
//! Enums are stored as their wire strings, ids as their text, timestamps as
//! milliseconds, secret hashes as hex, and the few lists inside a run as JSON
//! text. Reading never panics: a value the core cannot parse becomes
//! [`StoreError::Unavailable`] naming what was wrong.

use std::fmt::Display;
use std::str::FromStr;

use otf_core::agent::Agent;
use otf_core::agent_token::AgentToken;
use otf_core::artifacts::{ConfigurationVersion, StateVersion, Variable};
use otf_core::clock::Timestamp;
use otf_core::job::Job;
use otf_core::organization::{Organization, OrganizationToken};
use otf_core::pool::AgentPool;
use otf_core::run::{Phase, ResourceCounts, Run, RunOptions};
use otf_core::secret::SecretHash;
use otf_core::store::{Cause, StoreError, StoreResult};
use otf_core::workspace::{ExecutionMode, ExecutionModeKind, Workspace, WorkspaceLock};
use sea_orm::ActiveValue::Set;

use crate::entity;
use crate::error::invalid;

fn parse<T>(what: &str, s: &str) -> StoreResult<T>
where
    T: FromStr,
    T::Err: Display,
{
    s.parse().map_err(|e| invalid(what, e))
}

fn parse_opt<T>(what: &str, s: Option<String>) -> StoreResult<Option<T>>
where
    T: FromStr,
    T::Err: Display,
{
    s.map(|s| parse(what, &s)).transpose()
}

fn hash(what: &str, s: &str) -> StoreResult<SecretHash> {
    SecretHash::from_hex(s).ok_or_else(|| invalid(what, "not 32 hex-encoded bytes"))
}

fn small(what: &str, v: i64) -> StoreResult<u32> {
    u32::try_from(v).map_err(|e| invalid(what, e))
}

fn unsigned(what: &str, v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(|e| invalid(what, e))
}

/// A size or offset as the database stores it.
pub(crate) fn signed(v: u64) -> StoreResult<i64> {
    i64::try_from(v)
        .map_err(|_| StoreError::Conflict(Cause::new(format!("{v} is too large to store"))))
}

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

fn timeline<S: Copy + Display>(list: &[(S, Timestamp)]) -> String {
    let pairs: Vec<serde_json::Value> = list
        .iter()
        .map(|(s, t)| serde_json::json!([s.to_string(), t.0]))
        .collect();
    serde_json::Value::from(pairs).to_string()
}

fn parse_timeline<S>(what: &str, text: &str) -> StoreResult<Vec<(S, Timestamp)>>
where
    S: FromStr,
    S::Err: Display,
{
    let pairs: Vec<(String, i64)> = serde_json::from_str(text).map_err(|e| invalid(what, e))?;
    pairs
        .into_iter()
        .map(|(s, t)| Ok((parse(what, &s)?, Timestamp(t))))
        .collect()
}

fn strings(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

fn parse_strings(what: &str, text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| invalid(what, e))
}

pub(crate) fn organization_row(o: &Organization) -> entity::organization::ActiveModel {
    entity::organization::ActiveModel {
        name: Set(o.name.to_string()),
        email: Set(o.email.clone()),
        created_at: Set(o.created_at.0),
    }
}

pub(crate) fn organization(m: entity::organization::Model) -> StoreResult<Organization> {
    Ok(Organization {
        name: parse("organization name", &m.name)?,
        email: m.email,
        created_at: Timestamp(m.created_at),
    })
}

pub(crate) fn org_token_row(t: &OrganizationToken) -> entity::org_token::ActiveModel {
    entity::org_token::ActiveModel {
        id: Set(t.id.to_string()),
        organization: Set(t.organization.to_string()),
        description: Set(t.description.clone()),
        created_at: Set(t.created_at.0),
        last_used_at: Set(t.last_used_at.map(|t| t.0)),
        hash: Set(t.hash.to_hex()),
    }
}

pub(crate) fn org_token(m: entity::org_token::Model) -> StoreResult<OrganizationToken> {
    Ok(OrganizationToken {
        id: parse("organization token id", &m.id)?,
        organization: parse("organization name", &m.organization)?,
        description: m.description,
        created_at: Timestamp(m.created_at),
        last_used_at: ts(m.last_used_at),
        hash: hash("organization token hash", &m.hash)?,
    })
}

pub(crate) fn workspace_row(w: &Workspace) -> entity::workspace::ActiveModel {
    let (by_run, by_holder) = match &w.lock {
        None => (None, None),
        Some(WorkspaceLock::Run(r)) => (Some(r.to_string()), None),
        Some(WorkspaceLock::Holder(h)) => (None, Some(h.clone())),
    };
    entity::workspace::ActiveModel {
        id: Set(w.id.to_string()),
        organization: Set(w.organization.to_string()),
        name: Set(w.name.clone()),
        execution_mode: Set(w.execution_mode.kind().as_str().to_string()),
        agent_pool_id: Set(w.execution_mode.pool().map(|p| p.to_string())),
        auto_apply: Set(w.auto_apply),
        terraform_version: Set(w.terraform_version.clone()),
        working_directory: Set(w.working_directory.clone()),
        locked_by_run: Set(by_run),
        locked_by_holder: Set(by_holder),
        current_run_id: Set(w.current_run.as_ref().map(|r| r.to_string())),
        agent_selector: Set(w.agent_selector.to_string()),
        created_at: Set(w.created_at.0),
        updated_at: Set(w.updated_at.0),
    }
}

pub(crate) fn workspace(m: entity::workspace::Model) -> StoreResult<Workspace> {
    let execution_mode = match parse::<ExecutionModeKind>("execution mode", &m.execution_mode)? {
        ExecutionModeKind::Remote => ExecutionMode::Remote,
        ExecutionModeKind::Local => ExecutionMode::Local,
        ExecutionModeKind::Agent => {
            let pool = m
                .agent_pool_id
                .as_deref()
                .ok_or_else(|| invalid("workspace", "execution mode agent without a pool"))?;
            ExecutionMode::Agent(parse("agent pool id", pool)?)
        }
    };
    let lock = match (m.locked_by_run, m.locked_by_holder) {
        (Some(r), _) => Some(WorkspaceLock::Run(parse("run id", &r)?)),
        (None, Some(h)) => Some(WorkspaceLock::Holder(h)),
        (None, None) => None,
    };
    Ok(Workspace {
        id: parse("workspace id", &m.id)?,
        organization: parse("organization name", &m.organization)?,
        name: m.name,
        execution_mode,
        auto_apply: m.auto_apply,
        terraform_version: m.terraform_version,
        working_directory: m.working_directory,
        lock,
        current_run: parse_opt("run id", m.current_run_id)?,
        agent_selector: parse("workspace agent selector", &m.agent_selector)?,
        created_at: Timestamp(m.created_at),
        updated_at: Timestamp(m.updated_at),
    })
}

pub(crate) fn pool_row(p: &AgentPool) -> entity::pool::ActiveModel {
    entity::pool::ActiveModel {
        id: Set(p.id.to_string()),
        organization: Set(p.organization.to_string()),
        name: Set(p.name.clone()),
        organization_scoped: Set(p.organization_scoped),
        created_at: Set(p.created_at.0),
        drained: Set(p.drained),
    }
}

pub(crate) fn pool_grant_rows(p: &AgentPool) -> Vec<entity::pool_grant::ActiveModel> {
    p.allowed_workspaces
        .iter()
        .map(|w| entity::pool_grant::ActiveModel {
            pool_id: Set(p.id.to_string()),
            workspace_id: Set(w.to_string()),
        })
        .collect()
}

pub(crate) fn pool_exclusion_rows(p: &AgentPool) -> Vec<entity::pool_exclusion::ActiveModel> {
    p.excluded_workspaces
        .iter()
        .map(|w| entity::pool_exclusion::ActiveModel {
            pool_id: Set(p.id.to_string()),
            workspace_id: Set(w.to_string()),
        })
        .collect()
}

/// A pool from its row, its grants and its exclusions.
pub(crate) fn pool(
    m: entity::pool::Model,
    grants: Vec<entity::pool_grant::Model>,
    exclusions: Vec<entity::pool_exclusion::Model>,
) -> StoreResult<AgentPool> {
    Ok(AgentPool {
        id: parse("agent pool id", &m.id)?,
        organization: parse("organization name", &m.organization)?,
        name: m.name,
        organization_scoped: m.organization_scoped,
        allowed_workspaces: grants
            .iter()
            .map(|g| parse("workspace id", &g.workspace_id))
            .collect::<StoreResult<_>>()?,
        excluded_workspaces: exclusions
            .iter()
            .map(|g| parse("workspace id", &g.workspace_id))
            .collect::<StoreResult<_>>()?,
        created_at: Timestamp(m.created_at),
        drained: m.drained,
    })
}

pub(crate) fn agent_token_row(t: &AgentToken) -> entity::agent_token::ActiveModel {
    entity::agent_token::ActiveModel {
        id: Set(t.id.to_string()),
        pool_id: Set(t.pool.to_string()),
        organization: Set(t.organization.to_string()),
        description: Set(t.description.clone()),
        created_at: Set(t.created_at.0),
        last_used_at: Set(t.last_used_at.map(|t| t.0)),
        hash: Set(t.hash.to_hex()),
    }
}

pub(crate) fn agent_token(m: entity::agent_token::Model) -> StoreResult<AgentToken> {
    Ok(AgentToken {
        id: parse("agent token id", &m.id)?,
        pool: parse("agent pool id", &m.pool_id)?,
        organization: parse("organization name", &m.organization)?,
        description: m.description,
        created_at: Timestamp(m.created_at),
        last_used_at: ts(m.last_used_at),
        hash: hash("agent token hash", &m.hash)?,
    })
}

pub(crate) fn agent_row(a: &Agent) -> entity::agent::ActiveModel {
    entity::agent::ActiveModel {
        id: Set(a.id.to_string()),
        name: Set(a.name.clone()),
        version: Set(a.version.clone()),
        pool_id: Set(a.pool.as_ref().map(|p| p.to_string())),
        organization: Set(a.organization.as_ref().map(|o| o.to_string())),
        status: Set(a.status.as_str().to_string()),
        max_jobs: Set(i64::from(a.max_jobs)),
        ip_address: Set(a.ip_address.clone()),
        last_ping_at: Set(a.last_ping_at.0),
        last_status_at: Set(a.last_status_at.0),
        token_id: Set(a.token.as_ref().map(|t| t.to_string())),
        registered_at: Set(a.registered_at.0),
        drained: Set(a.drained),
        single: Set(a.single),
        labels: Set(a.labels.to_string()),
    }
}

pub(crate) fn agent(m: entity::agent::Model) -> StoreResult<Agent> {
    Ok(Agent {
        id: parse("agent id", &m.id)?,
        name: m.name,
        version: m.version,
        pool: parse_opt("agent pool id", m.pool_id)?,
        organization: parse_opt("organization name", m.organization)?,
        status: parse("agent status", &m.status)?,
        max_jobs: small("agent max_jobs", m.max_jobs)?,
        ip_address: m.ip_address,
        last_ping_at: Timestamp(m.last_ping_at),
        last_status_at: Timestamp(m.last_status_at),
        token: parse_opt("agent token id", m.token_id)?,
        registered_at: Timestamp(m.registered_at),
        drained: m.drained,
        single: m.single,
        labels: parse("agent labels", &m.labels)?,
    })
}

pub(crate) fn job_row(j: &Job) -> entity::job::ActiveModel {
    entity::job::ActiveModel {
        id: Set(j.id.to_string()),
        run_id: Set(j.run.to_string()),
        phase: Set(j.phase.as_str().to_string()),
        status: Set(j.status.as_str().to_string()),
        pool_id: Set(j.pool.as_ref().map(|p| p.to_string())),
        organization: Set(j.organization.to_string()),
        workspace_id: Set(j.workspace.to_string()),
        agent_id: Set(j.agent.as_ref().map(|a| a.to_string())),
        attempt: Set(i64::from(j.attempt)),
        queued_at: Set(j.queued_at.0),
        signal: Set(j.signal.map(|s| s.as_str().to_string())),
        token_hash: Set(j.token_hash.as_ref().map(|h| h.to_hex())),
        error: Set(j.error.clone()),
        updated_at: Set(j.updated_at.0),
        log_dropped: Set(i64::try_from(j.log_dropped).unwrap_or(i64::MAX)),
        affinity_agent_id: Set(j.affinity.as_ref().map(|a| a.to_string())),
        selector: Set(j.selector.to_string()),
    }
}

pub(crate) fn job(m: entity::job::Model) -> StoreResult<Job> {
    Ok(Job {
        id: parse("job id", &m.id)?,
        run: parse("run id", &m.run_id)?,
        phase: parse("job phase", &m.phase)?,
        status: parse("job status", &m.status)?,
        pool: parse_opt("agent pool id", m.pool_id)?,
        organization: parse("organization name", &m.organization)?,
        workspace: parse("workspace id", &m.workspace_id)?,
        agent: parse_opt("agent id", m.agent_id)?,
        attempt: small("job attempt", m.attempt)?,
        queued_at: Timestamp(m.queued_at),
        signal: parse_opt("job signal", m.signal)?,
        token_hash: m
            .token_hash
            .map(|h| hash("job token hash", &h))
            .transpose()?,
        error: m.error,
        updated_at: Timestamp(m.updated_at),
        log_dropped: unsigned("dropped log bytes", m.log_dropped)?,
        affinity: parse_opt("agent id", m.affinity_agent_id)?,
        selector: parse("job selector", &m.selector)?,
    })
}

pub(crate) fn run_row(r: &Run) -> entity::run::ActiveModel {
    let o = &r.options;
    entity::run::ActiveModel {
        id: Set(r.id.to_string()),
        workspace_id: Set(r.workspace.to_string()),
        organization: Set(r.organization.to_string()),
        configuration_version_id: Set(r.configuration_version.to_string()),
        status: Set(r.status.as_str().to_string()),
        is_destroy: Set(o.is_destroy),
        refresh: Set(o.refresh),
        refresh_only: Set(o.refresh_only),
        plan_only: Set(o.plan_only),
        auto_apply_option: Set(o.auto_apply),
        message: Set(o.message.clone()),
        target_addrs: Set(strings(&o.target_addrs)),
        replace_addrs: Set(strings(&o.replace_addrs)),
        auto_apply: Set(r.auto_apply),
        terraform_version: Set(r.terraform_version.clone()),
        has_changes: Set(r.has_changes),
        plan_status: Set(r.plan.status.as_str().to_string()),
        plan_additions: Set(i64::from(r.plan.counts.additions)),
        plan_changes: Set(i64::from(r.plan.counts.changes)),
        plan_destructions: Set(i64::from(r.plan.counts.destructions)),
        plan_status_timestamps: Set(timeline(&r.plan.status_timestamps)),
        apply_status: Set(r.apply.status.as_str().to_string()),
        apply_additions: Set(i64::from(r.apply.counts.additions)),
        apply_changes: Set(i64::from(r.apply.counts.changes)),
        apply_destructions: Set(i64::from(r.apply.counts.destructions)),
        apply_status_timestamps: Set(timeline(&r.apply.status_timestamps)),
        created_at: Set(r.created_at.0),
        status_timestamps: Set(timeline(&r.status_timestamps)),
        cancel_requested_at: Set(r.cancel_requested_at.map(|t| t.0)),
        error: Set(r.error.clone()),
    }
}

fn counts(
    what: &str,
    additions: i64,
    changes: i64,
    destructions: i64,
) -> StoreResult<ResourceCounts> {
    Ok(ResourceCounts {
        additions: small(what, additions)?,
        changes: small(what, changes)?,
        destructions: small(what, destructions)?,
    })
}

pub(crate) fn run(m: entity::run::Model) -> StoreResult<Run> {
    Ok(Run {
        id: parse("run id", &m.id)?,
        workspace: parse("workspace id", &m.workspace_id)?,
        organization: parse("organization name", &m.organization)?,
        configuration_version: parse("configuration version id", &m.configuration_version_id)?,
        status: parse("run status", &m.status)?,
        options: RunOptions {
            is_destroy: m.is_destroy,
            refresh: m.refresh,
            refresh_only: m.refresh_only,
            plan_only: m.plan_only,
            auto_apply: m.auto_apply_option,
            message: m.message,
            target_addrs: parse_strings("run target addresses", &m.target_addrs)?,
            replace_addrs: parse_strings("run replace addresses", &m.replace_addrs)?,
        },
        auto_apply: m.auto_apply,
        terraform_version: m.terraform_version,
        has_changes: m.has_changes,
        plan: Phase {
            status: parse("plan status", &m.plan_status)?,
            counts: counts(
                "plan resource count",
                m.plan_additions,
                m.plan_changes,
                m.plan_destructions,
            )?,
            status_timestamps: parse_timeline("plan status timestamps", &m.plan_status_timestamps)?,
        },
        apply: Phase {
            status: parse("apply status", &m.apply_status)?,
            counts: counts(
                "apply resource count",
                m.apply_additions,
                m.apply_changes,
                m.apply_destructions,
            )?,
            status_timestamps: parse_timeline(
                "apply status timestamps",
                &m.apply_status_timestamps,
            )?,
        },
        created_at: Timestamp(m.created_at),
        status_timestamps: parse_timeline("run status timestamps", &m.status_timestamps)?,
        cancel_requested_at: ts(m.cancel_requested_at),
        error: m.error,
    })
}

pub(crate) fn config_version_row(c: &ConfigurationVersion) -> entity::config_version::ActiveModel {
    entity::config_version::ActiveModel {
        id: Set(c.id.to_string()),
        workspace_id: Set(c.workspace.to_string()),
        organization: Set(c.organization.to_string()),
        status: Set(c.status.as_str().to_string()),
        speculative: Set(c.speculative),
        auto_queue_runs: Set(c.auto_queue_runs),
        error: Set(c.error.clone()),
        created_at: Set(c.created_at.0),
    }
}

pub(crate) fn config_version(
    m: entity::config_version::Model,
) -> StoreResult<ConfigurationVersion> {
    Ok(ConfigurationVersion {
        id: parse("configuration version id", &m.id)?,
        workspace: parse("workspace id", &m.workspace_id)?,
        organization: parse("organization name", &m.organization)?,
        status: parse("configuration version status", &m.status)?,
        speculative: m.speculative,
        auto_queue_runs: m.auto_queue_runs,
        error: m.error,
        created_at: Timestamp(m.created_at),
    })
}

pub(crate) fn state_version_row(
    s: &StateVersion,
) -> StoreResult<entity::state_version::ActiveModel> {
    Ok(entity::state_version::ActiveModel {
        id: Set(s.id.to_string()),
        workspace_id: Set(s.workspace.to_string()),
        organization: Set(s.organization.to_string()),
        serial: Set(s.serial),
        lineage: Set(s.lineage.clone()),
        md5: Set(s.md5.clone()),
        size: Set(signed(s.size)?),
        run_id: Set(s.run.as_ref().map(|r| r.to_string())),
        created_at: Set(s.created_at.0),
    })
}

pub(crate) fn state_version(m: entity::state_version::Model) -> StoreResult<StateVersion> {
    Ok(StateVersion {
        id: parse("state version id", &m.id)?,
        workspace: parse("workspace id", &m.workspace_id)?,
        organization: parse("organization name", &m.organization)?,
        serial: m.serial,
        lineage: m.lineage,
        md5: m.md5,
        size: unsigned("state version size", m.size)?,
        run: parse_opt("run id", m.run_id)?,
        created_at: Timestamp(m.created_at),
    })
}

pub(crate) fn variable_row(v: &Variable) -> entity::variable::ActiveModel {
    entity::variable::ActiveModel {
        id: Set(v.id.to_string()),
        workspace_id: Set(v.workspace.to_string()),
        key: Set(v.key.clone()),
        value: Set(v.value.clone()),
        description: Set(v.description.clone()),
        category: Set(v.category.as_str().to_string()),
        hcl: Set(v.hcl),
        sensitive: Set(v.sensitive),
    }
}

pub(crate) fn variable(m: entity::variable::Model) -> StoreResult<Variable> {
    Ok(Variable {
        id: parse("variable id", &m.id)?,
        workspace: parse("workspace id", &m.workspace_id)?,
        key: m.key,
        value: m.value,
        description: m.description,
        category: parse("variable category", &m.category)?,
        hcl: m.hcl,
        sensitive: m.sensitive,
    })
}

/// A log chunk's offset or length as stored.
pub(crate) fn log_len(what: &str, v: i64) -> StoreResult<u64> {
    unsigned(what, v)
}
