//! What the TUI knows of otfd's resources: plain data decoded from the API
//! (by `client::wire`), shown by the views. Statuses reuse the core's enums
//! and their one wire spelling.

pub use otf_core::agent::AgentStatus;
pub use otf_core::job::{JobPhase, JobStatus};
pub use otf_core::run::{PhaseStatus, RunStatus};
pub use otf_core::workspace::ExecutionModeKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub execution_mode: ExecutionModeKind,
    pub pool: Option<String>,
    /// Labels its jobs' agents must carry, `k=v,k2=v2` (empty: any agent).
    pub agent_selector: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub id: String,
    pub name: String,
    /// Any workspace of the organization may use it.
    pub organization_scoped: bool,
    /// Workspaces whose execution mode points at the pool.
    pub assigned: Vec<String>,
    /// Workspaces granted access ("allowed workspaces").
    pub allowed: Vec<String>,
    /// Workspaces that may never use it ("excluded workspaces").
    pub excluded: Vec<String>,
    pub agent_count: u64,
    /// Its agents (and those that join it) get no new job.
    pub drained: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub status: AgentStatus,
    pub ip_address: String,
    /// Milliseconds since the epoch.
    pub last_ping_at: Option<i64>,
    pub version: String,
    pub max_jobs: u64,
    pub current_jobs: u64,
    /// It gets no new job.
    pub drained: bool,
    /// Its labels, `k=v,k2=v2`.
    pub labels: String,
}

/// A pool's queue numbers (what autoscalers read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolQueue {
    pub queued: u64,
    pub running: u64,
    pub oldest_queued_seconds: u64,
    /// Free job slots of live, undrained agents.
    pub capacity: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub description: String,
    pub created_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// A token just created: the only time its secret is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub token: Token,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    pub status: RunStatus,
    pub created_at: Option<i64>,
    pub message: String,
    pub is_confirmable: bool,
    pub is_discardable: bool,
    pub is_cancelable: bool,
    pub is_force_cancelable: bool,
    pub error: Option<String>,
    /// Why it is queued, when its job waits for an agent.
    pub wait_message: Option<String>,
}

impl Run {
    /// The ids of its plan and apply (otf-core's rule), or None when otfd
    /// sent an id that is no run id.
    pub fn phase_ids(&self) -> Option<(String, String)> {
        let run: otf_core::ids::RunId = self.id.parse().ok()?;
        Some((otf_core::ids::plan_id(&run), otf_core::ids::apply_id(&run)))
    }

    /// No further change will happen to it.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }
}

/// A plan or an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub status: PhaseStatus,
    pub additions: u64,
    pub changes: u64,
    pub destructions: u64,
    /// Absolute URL of the log; `?offset=N&limit=M` reads raw bytes.
    pub log_url: String,
}

/// An active job of the organization's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub run: String,
    pub workspace: String,
    pub pool: Option<String>,
    pub agent_name: Option<String>,
    pub phase: JobPhase,
    pub status: JobStatus,
    /// Why it waits; None while it runs (or for a reason this TUI does not
    /// know yet: the message says it).
    pub wait_reason: Option<otf_core::scheduler::WaitReason>,
    /// The reason as otfd says it, e.g. "no agent of pool gpu has labels
    /// region=eu".
    pub wait_message: Option<String>,
}
