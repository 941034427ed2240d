//! Domain types to TFE wire documents: the one place where core types meet
//! JSON:API (type names, dasherized attributes, the quirks clients rely on).

use std::time::Duration;

use otf_core::agent_token::AgentToken;
use otf_core::artifacts::{ConfigStatus, ConfigurationVersion, StateVersion, Variable};
use otf_core::clock::Timestamp;
use otf_core::ids::{apply_id, plan_id};
use otf_core::organization::{Organization, OrganizationToken};
use otf_core::pool::AgentPool;
use otf_core::run::{Phase, Run, RunStatus};
use otf_core::scheduler::WaitReason;
use otf_core::services::{AgentView, QueuedJob};
use otf_core::state_file::{StateOutput, StateSummary};
use otf_core::workspace::Workspace;
use serde_json::{json, Map, Value};

use crate::jsonapi::{rel_many, rel_one, resource};

fn ts(t: Timestamp) -> String {
    t.to_rfc3339()
}

fn opt_ts(t: Option<Timestamp>) -> Value {
    t.map(|t| Value::String(ts(t))).unwrap_or(Value::Null)
}

pub fn organization(o: &Organization) -> Value {
    resource(
        "organizations",
        o.name.as_str(),
        json!({
            "name": o.name.as_str(),
            "email": o.email,
            "created-at": ts(o.created_at),
            "external-id": o.name.as_str(),
            "permissions": {
                "can-update": true, "can-destroy": true, "can-create-workspace": true,
                "can-manage-agent-pools": true,
            },
        }),
        json!({}),
    )
}

/// An organization token; the secret only when just created.
pub fn org_token(t: &OrganizationToken, secret: Option<&str>) -> Value {
    resource(
        "authentication-tokens",
        t.id.as_str(),
        json!({
            "description": t.description,
            "created-at": ts(t.created_at),
            "last-used-at": opt_ts(t.last_used_at),
            "token": secret,
        }),
        json!({}),
    )
}

pub fn entitlements(o: &Organization) -> Value {
    resource(
        "entitlement-sets",
        &format!("org-{}", o.name),
        json!({
            "operations": true, "state-storage": true, "agents": true, "vcs-integrations": false,
            "private-module-registry": false, "sentinel": false, "teams": false, "sso": false,
            "cost-estimation": false, "audit-logging": false, "run-tasks": false,
        }),
        json!({}),
    )
}

/// Labels as a JSON object.
fn labels(l: &otf_core::labels::Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
    )
}

pub fn workspace(w: &Workspace) -> Value {
    resource(
        "workspaces",
        w.id.as_str(),
        json!({
            "name": w.name,
            "operations": w.execution_mode.server_executes(),
            "execution-mode": w.execution_mode.kind().as_str(),
            "agent-pool-id": w.execution_mode.pool().map(|p| p.as_str()),
            "auto-apply": w.auto_apply,
            "terraform-version": w.terraform_version,
            "working-directory": w.working_directory,
            "agent-selector": labels(&w.agent_selector),
            "locked": w.locked(),
            "vcs-repo": null,
            "source": "tfe-api",
            "created-at": ts(w.created_at),
            "updated-at": ts(w.updated_at),
            "trigger-prefixes": [],
            "trigger-patterns": [],
            "tag-names": [],
            "allow-destroy-plan": true,
            "file-triggers-enabled": false,
            "queue-all-runs": false,
            "speculative-enabled": true,
            "global-remote-state": false,
            "structured-run-output-enabled": false,
            "resource-count": 0,
            "apply-duration-average": 0,
            "plan-duration-average": 0,
            "actions": { "is-destroyable": true },
            "permissions": {
                "can-update": true, "can-destroy": true, "can-queue-run": true,
                "can-queue-apply": true, "can-queue-destroy": true, "can-lock": true,
                "can-unlock": true, "can-force-unlock": true, "can-read-settings": true,
                "can-read-state-versions": true, "can-create-state-versions": true,
                "can-read-variable": true, "can-update-variable": true,
                "can-read-run": true, "can-read-assessment-result": true,
            },
        }),
        json!({
            "organization": rel_one("organizations", Some(w.organization.as_str())),
            "current-run": rel_one("runs", w.current_run.as_ref().map(|r| r.as_str())),
            "agent-pool": rel_one("agent-pools", w.execution_mode.pool().map(|p| p.as_str())),
        }),
    )
}

pub fn pool(p: &AgentPool, assigned: &[Workspace], agent_count: usize) -> Value {
    resource(
        "agent-pools",
        p.id.as_str(),
        json!({
            "name": p.name,
            "created-at": ts(p.created_at),
            "organization-scoped": p.organization_scoped,
            "agent-count": agent_count,
            "drained": p.drained,
        }),
        json!({
            "organization": rel_one("organizations", Some(p.organization.as_str())),
            "workspaces": rel_many("workspaces", assigned.iter().map(|w| w.id.as_str())),
            "allowed-workspaces": rel_many("workspaces", p.allowed_workspaces.iter().map(|w| w.as_str())),
            "excluded-workspaces": rel_many("workspaces", p.excluded_workspaces.iter().map(|w| w.as_str())),
            "allowed-projects": rel_many("projects", []),
            "agents": { "links": { "related": format!("/api/v2/agent-pools/{}/agents", p.id) } },
            "authentication-tokens": { "links": { "related": format!("/api/v2/agent-pools/{}/authentication-tokens", p.id) } },
        }),
    )
}

pub fn agent(v: &AgentView) -> Value {
    let a = &v.agent;
    resource(
        "agents",
        a.id.as_str(),
        json!({
            "name": a.name,
            "status": a.status.as_str(),
            "ip-address": a.ip_address,
            "last-ping-at": ts(a.last_ping_at),
            "version": a.version,
            "max-jobs": a.max_jobs,
            "current-jobs": v.current_jobs,
            "drained": a.drained,
            "labels": labels(&a.labels),
        }),
        json!({ "agent-pool": rel_one("agent-pools", a.pool.as_ref().map(|p| p.as_str())) }),
    )
}

/// An active job of the queue view: where it runs, or why it waits.
pub fn queued_job(q: &QueuedJob) -> Value {
    let j = &q.job;
    resource(
        "jobs",
        j.id.as_str(),
        json!({
            "phase": j.phase.as_str(),
            "status": j.status.as_str(),
            "attempt": j.attempt,
            "queued-at": ts(j.queued_at),
            "agent-name": q.agent_name,
            "wait-reason": q.wait.map(WaitReason::as_str),
            "wait-message": q.wait_message,
        }),
        json!({
            "run": rel_one("runs", Some(j.run.as_str())),
            "workspace": rel_one("workspaces", Some(j.workspace.as_str())),
            "agent-pool": rel_one("agent-pools", j.pool.as_ref().map(|p| p.as_str())),
            "agent": rel_one("agents", j.agent.as_ref().map(|a| a.as_str())),
        }),
    )
}

/// An agent token; the secret only when just created.
pub fn token(t: &AgentToken, secret: Option<&str>) -> Value {
    resource(
        "authentication-tokens",
        t.id.as_str(),
        json!({
            "description": t.description,
            "created-at": ts(t.created_at),
            "last-used-at": opt_ts(t.last_used_at),
            "token": secret,
        }),
        json!({ "agent-pool": rel_one("agent-pools", Some(t.pool.as_str())) }),
    )
}

pub fn config_version(cv: &ConfigurationVersion, upload_url: Option<String>) -> Value {
    let mut stamps = Map::new();
    if cv.status == ConfigStatus::Uploaded {
        stamps.insert("uploaded-at".into(), Value::String(ts(cv.created_at)));
    }
    resource(
        "configuration-versions",
        cv.id.as_str(),
        json!({
            "auto-queue-runs": cv.auto_queue_runs,
            "speculative": cv.speculative,
            "provisional": false,
            "source": "tfe-api",
            "status": cv.status.as_str(),
            "status-timestamps": stamps,
            "error": cv.error,
            "error-message": cv.error,
            "upload-url": upload_url,
        }),
        json!({}),
    )
}

/// The wire status of a run: pytfe knows no `force_canceled`, so it reads
/// `canceled` (the distinction stays in `status-timestamps`).
pub fn run_status(s: RunStatus) -> &'static str {
    match s {
        RunStatus::ForceCanceled => "canceled",
        s => s.as_str(),
    }
}

fn status_timestamps<T: Copy>(
    stamps: &[(T, Timestamp)],
    name: impl Fn(T) -> &'static str,
) -> Map<String, Value> {
    let mut m = Map::new();
    for (s, t) in stamps {
        m.insert(
            format!("{}-at", name(*s).replace('_', "-")),
            Value::String(ts(*t)),
        );
    }
    m
}

pub fn run(r: &Run, now: Timestamp, cool_off: Duration) -> Value {
    let cancelable = r.is_cancelable();
    let force = r.is_force_cancelable(now, cool_off);
    resource(
        "runs",
        r.id.as_str(),
        json!({
            "status": run_status(r.status),
            "has-changes": r.has_changes,
            "is-destroy": r.options.is_destroy,
            "refresh": r.options.refresh,
            "refresh-only": r.options.refresh_only,
            "plan-only": r.options.plan_only,
            "auto-apply": r.auto_apply,
            "message": r.options.message,
            "source": "tfe-api",
            "trigger-reason": "manual",
            "created-at": ts(r.created_at),
            "position-in-queue": 0,
            "terraform-version": r.terraform_version,
            "target-addrs": if r.options.target_addrs.is_empty() { Value::Null } else { json!(r.options.target_addrs) },
            "replace-addrs": if r.options.replace_addrs.is_empty() { Value::Null } else { json!(r.options.replace_addrs) },
            "status-timestamps": status_timestamps(&r.status_timestamps, RunStatus::as_str),
            "force-cancel-available-at": opt_ts(r.force_cancel_available_at(cool_off)),
            "canceled-at": opt_ts(r.timestamp(RunStatus::Canceled).or(r.timestamp(RunStatus::ForceCanceled))),
            "error-message": r.error,
            "actions": {
                "is-cancelable": cancelable,
                "is-confirmable": r.is_confirmable(),
                "is-discardable": r.is_discardable(),
                "is-force-cancelable": force,
            },
            "permissions": {
                "can-apply": true, "can-cancel": true, "can-discard": true,
                "can-force-cancel": true, "can-force-execute": true,
            },
        }),
        json!({
            "workspace": rel_one("workspaces", Some(r.workspace.as_str())),
            "configuration-version": rel_one("configuration-versions", Some(r.configuration_version.as_str())),
            "plan": rel_one("plans", Some(&plan_id(&r.id))),
            "apply": rel_one("applies", Some(&apply_id(&r.id))),
        }),
    )
}

fn phase(kind: &str, id: &str, p: &Phase, log_url: &str, has_changes: Option<bool>) -> Value {
    let mut attrs = json!({
        "status": p.status.as_str(),
        "log-read-url": log_url,
        "resource-additions": p.counts.additions,
        "resource-changes": p.counts.changes,
        "resource-destructions": p.counts.destructions,
        "resource-imports": 0,
        "status-timestamps": status_timestamps(&p.status_timestamps, |s: otf_core::run::PhaseStatus| s.as_str()),
    });
    if let Some(h) = has_changes {
        attrs["has-changes"] = json!(h);
    }
    resource(kind, id, attrs, json!({}))
}

pub fn plan(r: &Run, log_url: &str) -> Value {
    phase(
        "plans",
        &plan_id(&r.id),
        &r.plan,
        log_url,
        Some(r.has_changes),
    )
}

pub fn apply(r: &Run, log_url: &str) -> Value {
    phase("applies", &apply_id(&r.id), &r.apply, log_url, None)
}

/// A state version output; `value` null when hidden.
pub fn output(o: &StateOutput) -> Value {
    let simple = match &o.ty {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .first()
            .and_then(Value::as_str)
            .unwrap_or("object")
            .to_string(),
        _ => "string".into(),
    };
    resource(
        "state-version-outputs",
        &o.id.to_string(),
        json!({
            "name": o.name,
            "sensitive": o.sensitive,
            "type": simple,
            "value": o.value.clone().unwrap_or(Value::Null),
            "detailed-type": o.ty,
        }),
        json!({}),
    )
}

pub fn state_version(sv: &StateVersion, download_url: &str, summary: &StateSummary) -> Value {
    let outputs: Vec<String> = summary.outputs.iter().map(|o| o.id.to_string()).collect();
    resource(
        "state-versions",
        sv.id.as_str(),
        json!({
            "serial": sv.serial,
            "lineage": sv.lineage,
            "md5": sv.md5,
            "size": sv.size,
            "created-at": ts(sv.created_at),
            "status": "finalized",
            "state-version": summary.format_version,
            "terraform-version": summary.terraform_version,
            "resources-processed": true,
            "hosted-state-download-url": download_url,
            "hosted-json-state-download-url": download_url,
        }),
        json!({
            "outputs": rel_many("state-version-outputs", outputs.iter().map(String::as_str)),
            "run": rel_one("runs", sv.run.as_ref().map(|r| r.as_str())),
            "workspace": rel_one("workspaces", Some(sv.workspace.as_str())),
        }),
    )
}

pub fn variable(v: &Variable) -> Value {
    resource(
        "vars",
        v.id.as_str(),
        json!({
            "key": v.key,
            "value": if v.sensitive { Value::Null } else { Value::String(v.value.clone()) },
            "description": v.description,
            "category": v.category.as_str(),
            "hcl": v.hcl,
            "sensitive": v.sensitive,
            "version-id": v.id.as_str(),
        }),
        json!({ "configurable": { "data": { "type": "workspaces", "id": v.workspace.as_str() } } }),
    )
}
