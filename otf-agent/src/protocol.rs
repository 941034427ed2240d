//! The agent protocol's wire types, shared by the server (otf-http) and the
//! HTTP transport of the runner. Paths are relative to the server's base URL.
//!
//! Agent-token endpoints (the agent identifies itself with the
//! [`AGENT_ID_HEADER`] after registering):
//! * `POST /api/agent/register` [`RegisterRequest`] -> [`RegisterResponse`]
//! * `POST /api/agent/status` [`StatusRequest`] -> [`StatusResponse`]
//!   (409 when the agent is no longer known: register again)
//! * `GET  /api/agent/queue` -> [`QueueResponse`] (no agent id needed)
//! * `GET  /api/agent/jobs` long-poll -> [`JobsResponse`] (empty after the
//!   server's bounded wait)
//! * `POST /api/agent/jobs/{job}/start` -> [`StartResponse`] with the job token
//! * `GET  /api/agent/jobs/{job}/signal` long-poll -> [`SignalResponse`]
//!
//! Job-token endpoints (only for the job's own run):
//! * `GET  /api/agent/job/config` -> the configuration tarball
//! * `GET  /api/agent/job/variables` -> [`VariablesResponse`]
//! * `GET  /api/agent/job/state` -> the current state file (204 when none)
//! * `PUT/GET /api/agent/job/artifacts/{plan|json-plan|lock-file}` (PUT: plan
//!   phase only)
//! * `POST /api/agent/job/logs` raw bytes appended to the phase log
//! * `POST /api/agent/job/state` [`StateUpload`] (apply phase only)
//! * `POST /api/agent/job/finish` [`FinishRequest`]

use serde::{Deserialize, Serialize};

/// Header naming the agent on agent-token requests after registration.
pub const AGENT_ID_HEADER: &str = "otf-agent-id";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterRequest {
    pub name: String,
    pub version: String,
    /// Jobs the agent runs at once.
    pub concurrency: u32,
    /// The agent protocol it speaks (absent from the first agents: 1).
    #[serde(default = "first_protocol")]
    pub protocol: u32,
    /// A single-execution agent (`--single`): one run, then it exits.
    #[serde(default)]
    pub single: bool,
    /// Its labels (`--label key=value`), matched by workspaces' agent
    /// selectors.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

fn first_protocol() -> u32 {
    1
}

/// The agent protocol this otf-agent speaks
/// (`otf_core::agent::AGENT_PROTOCOLS`).
pub const PROTOCOL: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterResponse {
    pub id: String,
    pub pool_id: Option<String>,
    pub status: String,
    /// The caller's address as the server saw it.
    pub ip_address: String,
    /// How often the server expects a status ping.
    pub ping_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusRequest {
    /// `idle`, `busy` or `exited`.
    pub status: String,
    /// The jobs the agent holds (taken from the long-poll, started or
    /// running). Absent from agents that do not report them; otfd then
    /// reconciles nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusResponse {
    pub status: String,
    /// Jobs of the request that otfd considers ended or not this agent's:
    /// the agent cancels them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancel: Vec<String>,
    /// The agent is drained: it gets no new job.
    #[serde(default)]
    pub drained: bool,
}

/// `GET /api/agent/queue` (any agent token of the pool): the pool's queue,
/// for autoscalers (the same numbers as the `otf_pool_*` gauges).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueResponse {
    pub pool: String,
    pub queued: u64,
    pub running: u64,
    pub oldest_queued_seconds: u64,
    /// Free job slots of live, undrained agents.
    pub capacity: u64,
    /// Agents by status.
    pub agents: std::collections::BTreeMap<String, u64>,
}

impl QueueResponse {
    pub fn of(pool: &str, q: &otf_core::gauges::PoolQueue) -> Self {
        QueueResponse {
            pool: pool.to_string(),
            queued: q.queued,
            running: q.running,
            oldest_queued_seconds: q.oldest_queued_seconds,
            capacity: q.capacity,
            agents: q.agents.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobSummary {
    pub id: String,
    pub run_id: String,
    pub workspace_id: String,
    /// `plan` or `apply`.
    pub phase: String,
    pub attempt: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobsResponse {
    pub jobs: Vec<JobSummary>,
}

/// What a runner needs to know of the run it executes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunSpec {
    pub id: String,
    pub is_destroy: bool,
    pub refresh: bool,
    pub refresh_only: bool,
    pub plan_only: bool,
    pub target_addrs: Vec<String>,
    pub replace_addrs: Vec<String>,
    pub terraform_version: String,
    /// Its configuration version (empty from an older otfd).
    #[serde(default)]
    pub configuration_version_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkspaceSpec {
    pub id: String,
    pub name: String,
    pub organization: String,
    pub working_directory: String,
    pub terraform_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StartResponse {
    /// The job token of this attempt: valid while the attempt runs.
    pub token: String,
    pub job: JobSummary,
    pub run: RunSpec,
    pub workspace: WorkspaceSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignalResponse {
    /// `cancel`, `force-cancel`, or none when the job ended without one.
    pub signal: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VariableSpec {
    pub key: String,
    pub value: String,
    /// `terraform` or `env`.
    pub category: String,
    pub hcl: bool,
    pub sensitive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VariablesResponse {
    pub variables: Vec<VariableSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateUpload {
    pub serial: i64,
    pub lineage: String,
    /// Standard base64 of the state file.
    pub state: String,
}

/// The answer to [`FinishRequest`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FinishResponse {
    /// The run's status after the job's end.
    #[serde(default)]
    pub run_status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FinishRequest {
    /// `finished`, `errored` or `canceled`.
    pub outcome: String,
    #[serde(default)]
    pub additions: u32,
    #[serde(default)]
    pub changes: u32,
    #[serde(default)]
    pub destructions: u32,
    #[serde(default)]
    pub has_changes: bool,
    #[serde(default)]
    pub message: Option<String>,
}

// Conversions between core types and the wire, shared by otfd's endpoints and
// the in-process transport, so both speak exactly the same protocol.

impl From<&otf_core::job::Job> for JobSummary {
    fn from(j: &otf_core::job::Job) -> Self {
        JobSummary {
            id: j.id.to_string(),
            run_id: j.run.to_string(),
            workspace_id: j.workspace.to_string(),
            phase: j.phase.to_string(),
            attempt: j.attempt,
        }
    }
}

impl From<&otf_core::run::Run> for RunSpec {
    fn from(r: &otf_core::run::Run) -> Self {
        RunSpec {
            id: r.id.to_string(),
            is_destroy: r.options.is_destroy,
            refresh: r.options.refresh,
            refresh_only: r.options.refresh_only,
            plan_only: r.options.plan_only,
            target_addrs: r.options.target_addrs.clone(),
            replace_addrs: r.options.replace_addrs.clone(),
            terraform_version: r.terraform_version.clone(),
            configuration_version_id: r.configuration_version.to_string(),
        }
    }
}

impl From<&otf_core::workspace::Workspace> for WorkspaceSpec {
    fn from(w: &otf_core::workspace::Workspace) -> Self {
        WorkspaceSpec {
            id: w.id.to_string(),
            name: w.name.clone(),
            organization: w.organization.to_string(),
            working_directory: w.working_directory.clone(),
            terraform_version: w.terraform_version.clone(),
        }
    }
}

impl From<&otf_core::services::StartedJob> for StartResponse {
    fn from(s: &otf_core::services::StartedJob) -> Self {
        StartResponse {
            token: s.token.expose().to_string(),
            job: JobSummary::from(&s.job),
            run: RunSpec::from(&s.run),
            workspace: WorkspaceSpec::from(&s.workspace),
        }
    }
}

impl From<otf_core::artifacts::Variable> for VariableSpec {
    fn from(v: otf_core::artifacts::Variable) -> Self {
        VariableSpec {
            key: v.key,
            value: v.value,
            category: v.category.to_string(),
            hcl: v.hcl,
            sensitive: v.sensitive,
        }
    }
}

impl From<&otf_core::services::JobOutcome> for FinishRequest {
    fn from(o: &otf_core::services::JobOutcome) -> Self {
        use otf_core::services::JobOutcome;
        let mut req = FinishRequest {
            outcome: o.name().to_string(),
            additions: 0,
            changes: 0,
            destructions: 0,
            has_changes: false,
            message: None,
        };
        match o {
            JobOutcome::Finished {
                counts,
                has_changes,
            } => {
                req.additions = counts.additions;
                req.changes = counts.changes;
                req.destructions = counts.destructions;
                req.has_changes = *has_changes;
            }
            JobOutcome::Errored { message } => req.message = Some(message.clone()),
            JobOutcome::Canceled => {}
        }
        req
    }
}

impl FinishRequest {
    /// The job outcome this report asks for; `None` for an unknown outcome.
    pub fn outcome(&self) -> Option<otf_core::services::JobOutcome> {
        use otf_core::services::JobOutcome;
        Some(match self.outcome.as_str() {
            "finished" => JobOutcome::Finished {
                counts: otf_core::run::ResourceCounts {
                    additions: self.additions,
                    changes: self.changes,
                    destructions: self.destructions,
                },
                has_changes: self.has_changes,
            },
            "errored" => JobOutcome::Errored {
                message: self
                    .message
                    .clone()
                    .unwrap_or_else(|| "the job failed".into()),
            },
            "canceled" => JobOutcome::Canceled,
            _ => return None,
        })
    }
}
