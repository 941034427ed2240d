//! Agent pools and their three invariants.
//!
//! Assigned workspaces are derived (the workspaces whose execution mode points
//! at the pool); they are passed in wherever an invariant needs them.

use std::collections::BTreeSet;

use crate::clock::Timestamp;
use crate::ids::{OrganizationName, PoolId, WorkspaceId};
use crate::workspace::Workspace;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPool {
    pub id: PoolId,
    pub organization: OrganizationName,
    pub name: String,
    /// When true, any workspace of the organization may use the pool.
    pub organization_scoped: bool,
    /// The explicit allow list; it governs only when not organization-scoped.
    pub allowed_workspaces: BTreeSet<WorkspaceId>,
    /// Workspaces that may never use the pool (TFE's `excluded-workspaces`),
    /// whatever its scope.
    pub excluded_workspaces: BTreeSet<WorkspaceId>,
    pub created_at: Timestamp,
    /// Drained: agents that register into it start drained.
    pub drained: bool,
}

/// An operation on a pool or an assignment that would break an invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("workspace {workspace} belongs to organization {workspace_org} but agent pool {pool} belongs to {pool_org}; pick a pool of the workspace's organization")]
    CrossOrganization {
        workspace: String,
        workspace_org: OrganizationName,
        pool: String,
        pool_org: OrganizationName,
    },
    #[error("agent pool {pool} is not granted to workspace {workspace}; grant the workspace access to the pool first, or make the pool organization-scoped")]
    NotGranted { workspace: String, pool: String },
    #[error("workspace {workspace} is excluded from agent pool {pool}; remove it from the pool's excluded workspaces first")]
    Excluded { workspace: String, pool: String },
    #[error("agent pool {pool} would no longer be granted to workspaces it is assigned to: {}; change their execution mode first, or keep them granted", .workspaces.join(", "))]
    WouldUngrantAssigned {
        pool: String,
        workspaces: Vec<String>,
    },
    #[error("agent pool {pool} is still used by workspaces: {}; change their execution mode before deleting the pool", .workspaces.join(", "))]
    StillAssigned {
        pool: String,
        workspaces: Vec<String>,
    },
}

impl AgentPool {
    /// Whether `workspace` may be assigned to this pool.
    pub fn check_assignable(&self, workspace: &Workspace) -> Result<(), PoolError> {
        if workspace.organization != self.organization {
            return Err(PoolError::CrossOrganization {
                workspace: workspace.name.clone(),
                workspace_org: workspace.organization.clone(),
                pool: self.name.clone(),
                pool_org: self.organization.clone(),
            });
        }
        if self.excluded_workspaces.contains(&workspace.id) {
            return Err(PoolError::Excluded {
                workspace: workspace.name.clone(),
                pool: self.name.clone(),
            });
        }
        if !self.organization_scoped && !self.allowed_workspaces.contains(&workspace.id) {
            return Err(PoolError::NotGranted {
                workspace: workspace.name.clone(),
                pool: self.name.clone(),
            });
        }
        Ok(())
    }

    /// Whether the pool as it is now keeps every assigned workspace granted.
    /// Call it on the updated pool before saving it.
    pub fn check_keeps_assigned(&self, assigned: &[Workspace]) -> Result<(), PoolError> {
        let mut lost: Vec<String> = assigned
            .iter()
            .filter(|w| {
                self.excluded_workspaces.contains(&w.id)
                    || (!self.organization_scoped && !self.allowed_workspaces.contains(&w.id))
            })
            .map(|w| w.name.clone())
            .collect();
        lost.sort();
        if lost.is_empty() {
            Ok(())
        } else {
            Err(PoolError::WouldUngrantAssigned {
                pool: self.name.clone(),
                workspaces: lost,
            })
        }
    }

    /// Whether the pool may be deleted.
    pub fn check_deletable(&self, assigned: &[Workspace]) -> Result<(), PoolError> {
        if assigned.is_empty() {
            return Ok(());
        }
        let mut names: Vec<String> = assigned.iter().map(|w| w.name.clone()).collect();
        names.sort();
        Err(PoolError::StillAssigned {
            pool: self.name.clone(),
            workspaces: names,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::ExecutionMode;

    fn pool(scoped: bool) -> AgentPool {
        AgentPool {
            id: "apool-0123456789abcdef".parse().unwrap(),
            organization: "acme".parse().unwrap(),
            name: "pool1".into(),
            organization_scoped: scoped,
            allowed_workspaces: BTreeSet::new(),
            excluded_workspaces: BTreeSet::new(),
            created_at: Timestamp(0),
            drained: false,
        }
    }

    #[test]
    fn excluded_workspaces_are_never_assignable_and_cannot_be_excluded_while_assigned() {
        let mut p = pool(true);
        let a = ws("ws-000000000000000a", "acme", "a");
        p.excluded_workspaces.insert(a.id.clone());
        assert_eq!(
            p.check_assignable(&a).unwrap_err().to_string(),
            "workspace a is excluded from agent pool pool1; remove it from the pool's excluded workspaces first"
        );
        // Excluding a workspace that is assigned is refused like narrowing.
        assert!(matches!(
            p.check_keeps_assigned(std::slice::from_ref(&a)),
            Err(PoolError::WouldUngrantAssigned { .. })
        ));
        p.excluded_workspaces.clear();
        assert!(p.check_keeps_assigned(std::slice::from_ref(&a)).is_ok());
    }

    fn ws(id: &str, org: &str, name: &str) -> Workspace {
        Workspace {
            agent_selector: Default::default(),
            id: id.parse().unwrap(),
            organization: org.parse().unwrap(),
            name: name.into(),
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
    fn organization_scoped_pool_takes_any_workspace_of_its_organization() {
        let p = pool(true);
        assert!(p
            .check_assignable(&ws("ws-000000000000000a", "acme", "a"))
            .is_ok());
        let err = p
            .check_assignable(&ws("ws-000000000000000b", "other", "b"))
            .unwrap_err();
        assert!(matches!(err, PoolError::CrossOrganization { .. }));
    }

    #[test]
    fn restricted_pool_takes_only_granted_workspaces() {
        let mut p = pool(false);
        let a = ws("ws-000000000000000a", "acme", "a");
        assert_eq!(
            p.check_assignable(&a).unwrap_err().to_string(),
            "agent pool pool1 is not granted to workspace a; grant the workspace access to the pool first, or make the pool organization-scoped"
        );
        p.allowed_workspaces.insert(a.id.clone());
        assert!(p.check_assignable(&a).is_ok());
        // Cross-organization is refused even when listed.
        let mut foreign = ws("ws-000000000000000c", "other", "c");
        p.allowed_workspaces.insert(foreign.id.clone());
        assert!(p.check_assignable(&foreign).is_err());
        foreign.organization = "acme".parse().unwrap();
        assert!(p.check_assignable(&foreign).is_ok());
    }

    #[test]
    fn revoking_a_grant_of_an_assigned_workspace_is_refused_by_name() {
        let mut p = pool(false);
        let a = ws("ws-000000000000000a", "acme", "a");
        let b = ws("ws-000000000000000b", "acme", "b");
        p.allowed_workspaces.insert(a.id.clone());
        assert!(p.check_keeps_assigned(std::slice::from_ref(&a)).is_ok());
        let err = p.check_keeps_assigned(&[a.clone(), b.clone()]).unwrap_err();
        assert_eq!(
            err,
            PoolError::WouldUngrantAssigned {
                pool: "pool1".into(),
                workspaces: vec!["b".into()]
            }
        );
        p.organization_scoped = true;
        assert!(p.check_keeps_assigned(&[a, b]).is_ok());
    }

    #[test]
    fn deleting_a_pool_in_use_names_the_workspaces() {
        let p = pool(true);
        assert!(p.check_deletable(&[]).is_ok());
        let err = p
            .check_deletable(&[
                ws("ws-000000000000000b", "acme", "web"),
                ws("ws-000000000000000a", "acme", "api"),
            ])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "agent pool pool1 is still used by workspaces: api, web; change their execution mode before deleting the pool"
        );
    }
}
