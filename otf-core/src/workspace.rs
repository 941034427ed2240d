//! Workspaces: execution mode, the lock, and the run they are busy with.

use crate::clock::Timestamp;
use crate::enums::wire_enum;
use crate::ids::{OrganizationName, PoolId, RunId, WorkspaceId};

wire_enum!(
    /// The wire name of an execution mode (`execution-mode`).
    ExecutionModeKind, "execution mode" {
        Remote => "remote",
        Local => "local",
        Agent => "agent",
    }
);

/// Where runs of a workspace execute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExecutionMode {
    /// On the server runner inside otfd.
    Remote,
    /// Nowhere on the server: the CLI runs terraform and keeps only state here.
    Local,
    /// On an agent of this pool.
    Agent(PoolId),
}

impl ExecutionMode {
    pub fn kind(&self) -> ExecutionModeKind {
        match self {
            ExecutionMode::Remote => ExecutionModeKind::Remote,
            ExecutionMode::Local => ExecutionModeKind::Local,
            ExecutionMode::Agent(_) => ExecutionModeKind::Agent,
        }
    }

    pub fn pool(&self) -> Option<&PoolId> {
        match self {
            ExecutionMode::Agent(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the server executes runs (TFE's `operations` attribute): true
    /// for both `remote` and `agent`.
    pub fn server_executes(&self) -> bool {
        !matches!(self, ExecutionMode::Local)
    }
}

/// Who holds a workspace's lock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkspaceLock {
    /// The active run of the workspace; released when the run ends.
    Run(RunId),
    /// A user or client (e.g. the CLI in local mode), named by its token id.
    Holder(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub organization: OrganizationName,
    pub name: String,
    pub execution_mode: ExecutionMode,
    pub auto_apply: bool,
    pub terraform_version: String,
    pub working_directory: String,
    pub lock: Option<WorkspaceLock>,
    /// The latest run that became active (TFE's `current-run`).
    pub current_run: Option<RunId>,
    /// Labels an agent must carry to run this workspace's jobs (TFE has no
    /// such attribute; ours is `agent-selector`). Applies in agent mode.
    pub agent_selector: crate::labels::Labels,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A lock operation that cannot be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("workspace {workspace} is already locked{}; unlock it first", holder_text(.holder))]
    AlreadyLocked {
        workspace: String,
        holder: WorkspaceLock,
    },
    #[error("workspace {workspace} is not locked")]
    NotLocked { workspace: String },
    #[error("workspace {workspace} is locked{}, not by you; use force-unlock if you are sure", holder_text(.holder))]
    LockedByOther {
        workspace: String,
        holder: WorkspaceLock,
    },
}

fn holder_text(h: &WorkspaceLock) -> String {
    match h {
        WorkspaceLock::Run(r) => format!(" by run {r}"),
        WorkspaceLock::Holder(h) => format!(" by {h}"),
    }
}

impl Workspace {
    /// The default terraform version of new workspaces.
    pub const DEFAULT_TERRAFORM_VERSION: &'static str = "1.0.3";

    pub fn locked(&self) -> bool {
        self.lock.is_some()
    }

    /// Lock for a user or client.
    pub fn lock_by(&mut self, holder: &str) -> Result<(), LockError> {
        if let Some(h) = &self.lock {
            return Err(LockError::AlreadyLocked {
                workspace: self.name.clone(),
                holder: h.clone(),
            });
        }
        self.lock = Some(WorkspaceLock::Holder(holder.to_string()));
        Ok(())
    }

    /// Unlock a lock held by `holder` (or anyone's, when `force`).
    pub fn unlock_by(&mut self, holder: &str, force: bool) -> Result<(), LockError> {
        match &self.lock {
            None => Err(LockError::NotLocked {
                workspace: self.name.clone(),
            }),
            Some(WorkspaceLock::Holder(h)) if h == holder || force => {
                self.lock = None;
                Ok(())
            }
            Some(WorkspaceLock::Run(_)) if force => {
                // A run's lock is released by the run ending; forcing it open
                // would let a second run start beside the active one.
                Err(LockError::LockedByOther {
                    workspace: self.name.clone(),
                    holder: self
                        .lock
                        .clone()
                        .unwrap_or(WorkspaceLock::Holder(String::new())),
                })
            }
            Some(other) => Err(LockError::LockedByOther {
                workspace: self.name.clone(),
                holder: other.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enums::assert_round_trip;

    fn ws() -> Workspace {
        Workspace {
            agent_selector: Default::default(),
            id: "ws-0123456789abcdef".parse().unwrap(),
            organization: "acme".parse().unwrap(),
            name: "dev".into(),
            execution_mode: ExecutionMode::Remote,
            auto_apply: false,
            terraform_version: "1.0.3".into(),
            working_directory: String::new(),
            lock: None,
            current_run: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn wire_names() {
        assert_round_trip(ExecutionModeKind::ALL);
    }

    #[test]
    fn operations_is_true_for_remote_and_agent() {
        assert!(ExecutionMode::Remote.server_executes());
        assert!(ExecutionMode::Agent("apool-0123456789abcdef".parse().unwrap()).server_executes());
        assert!(!ExecutionMode::Local.server_executes());
    }

    #[test]
    fn lock_and_unlock() {
        let mut w = ws();
        w.lock_by("ot-a").unwrap();
        assert!(matches!(
            w.lock_by("ot-b"),
            Err(LockError::AlreadyLocked { .. })
        ));
        assert!(matches!(
            w.unlock_by("ot-b", false),
            Err(LockError::LockedByOther { .. })
        ));
        w.unlock_by("ot-a", false).unwrap();
        assert!(matches!(
            w.unlock_by("ot-a", false),
            Err(LockError::NotLocked { .. })
        ));
        w.lock_by("ot-a").unwrap();
        w.unlock_by("ot-b", true).unwrap();
        assert!(!w.locked());
    }

    #[test]
    fn a_runs_lock_is_never_forced_open() {
        let mut w = ws();
        w.lock = Some(WorkspaceLock::Run("run-0123456789abcdef".parse().unwrap()));
        let err = w.unlock_by("ot-a", true).unwrap_err();
        assert!(
            err.to_string().contains("by run run-0123456789abcdef"),
            "{err}"
        );
        assert!(w.locked());
    }
}
