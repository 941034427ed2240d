//! Agent pools: create, grant and revoke workspaces, update, delete.

use std::collections::BTreeSet;

use super::organizations::org_scope;
use super::{allow, found, Core, Error};
use crate::auth::{authorize_organization, Access, Subject};
use crate::events::Event;
use crate::ids::{OrganizationName, PoolId, WorkspaceId};
use crate::pool::{AgentPool, PoolError};
use crate::store::{AgentTokenRepo, OrganizationRepo, PoolRepo, Store, Tx, WorkspaceRepo};
use crate::workspace::Workspace;

/// A pool with what its document shows, read in one transaction: the
/// workspaces assigned to it and how many of its agents are live (not
/// exited or gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolView {
    pub pool: AgentPool,
    pub assigned: Vec<Workspace>,
    pub live_agents: usize,
}

/// Which pools of an organization a listing shows.
#[derive(Debug, Clone, Default)]
pub struct PoolFilter {
    /// Pools whose name contains this.
    pub name_contains: Option<String>,
    /// Pools the workspace of this name may use: organization-scoped
    /// ones, and the others that grant it (TFE's
    /// `filter[allowed_workspaces][name]`).
    pub allowed_workspace: Option<String>,
}

impl AgentPool {
    /// Whether the pool lists `workspace` among those it allows: every
    /// workspace when organization-scoped, else the granted ones.
    pub fn allows(&self, workspace: &WorkspaceId) -> bool {
        self.organization_scoped || self.allowed_workspaces.contains(workspace)
    }
}

async fn view_of<T: Tx>(tx: &mut T, pool: AgentPool) -> Result<PoolView, Error> {
    let assigned = tx.list_workspaces_in_pool(&pool.id).await?;
    let live_agents = tx
        .list_agents_in_pool(Some(&pool.id))
        .await?
        .iter()
        .filter(|a| !a.status.is_final())
        .count();
    Ok(PoolView {
        pool,
        assigned,
        live_agents,
    })
}

/// A new pool.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub name: String,
    /// Default true: any workspace of the organization may use it.
    pub organization_scoped: bool,
    pub allowed_workspaces: Vec<WorkspaceId>,
    /// Workspaces that may never use the pool.
    pub excluded_workspaces: Vec<WorkspaceId>,
}

impl Default for PoolSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            organization_scoped: true,
            allowed_workspaces: Vec::new(),
            excluded_workspaces: Vec::new(),
        }
    }
}

/// Changes to a pool; None leaves a field as it is. `allowed_workspaces`
/// replaces the whole allow list.
#[derive(Debug, Clone, Default)]
pub struct PoolUpdate {
    pub name: Option<String>,
    pub organization_scoped: Option<bool>,
    pub allowed_workspaces: Option<Vec<WorkspaceId>>,
    /// The whole exclusion list, when given.
    pub excluded_workspaces: Option<Vec<WorkspaceId>>,
}

fn validate_pool_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 90 || name.chars().any(char::is_control) {
        return Err(Error::Invalid {
            field: "name",
            reason: format!(
                "{name:?} is not a valid agent pool name: use 1 to 90 printable characters"
            ),
        });
    }
    Ok(name.to_string())
}

/// Every listed workspace exists and belongs to `org`.
async fn check_workspaces<T: Tx>(
    tx: &mut T,
    org: &OrganizationName,
    pool_name: &str,
    ids: &[WorkspaceId],
) -> Result<BTreeSet<WorkspaceId>, Error> {
    let mut set = BTreeSet::new();
    for id in ids {
        let ws = found(tx.get_workspace(id).await?, "workspace", id)?;
        if &ws.organization != org {
            return Err(PoolError::CrossOrganization {
                workspace: ws.name,
                workspace_org: ws.organization,
                pool: pool_name.to_string(),
                pool_org: org.clone(),
            }
            .into());
        }
        set.insert(ws.id);
    }
    Ok(set)
}

impl<S: Store> Core<S> {
    pub async fn create_pool(
        &self,
        subject: &Subject,
        org: &OrganizationName,
        spec: PoolSpec,
    ) -> Result<AgentPool, Error> {
        let org = org_scope(subject, org, Access::Write)?;
        let name = validate_pool_name(&spec.name)?;
        let mut tx = self.begin().await?;
        found(tx.get_organization(&org).await?, "organization", &org)?;
        let allowed = check_workspaces(&mut tx, &org, &name, &spec.allowed_workspaces).await?;
        let excluded = check_workspaces(&mut tx, &org, &name, &spec.excluded_workspaces).await?;
        let pool = AgentPool {
            id: PoolId::generate(self.rng.as_ref()),
            organization: org,
            name,
            organization_scoped: spec.organization_scoped,
            allowed_workspaces: allowed,
            excluded_workspaces: excluded,
            created_at: self.now(),
            drained: false,
        };
        tx.insert_pool(&pool).await?;
        self.commit(tx, vec![]).await?;
        Ok(pool)
    }

    pub async fn get_pool(&self, subject: &Subject, id: &PoolId) -> Result<AgentPool, Error> {
        let mut tx = self.read().await?;
        let pool = found(tx.get_pool(id).await?, "agent pool", id)?;
        allow(
            authorize_organization(subject, &pool.organization, Access::Read),
            "agent pool",
            id,
        )?;
        Ok(pool)
    }

    pub async fn list_pools(
        &self,
        subject: &Subject,
        org: &OrganizationName,
    ) -> Result<Vec<AgentPool>, Error> {
        let org = org_scope(subject, org, Access::Read)?;
        let mut tx = self.read().await?;
        found(tx.get_organization(&org).await?, "organization", &org)?;
        Ok(tx.list_pools(&org).await?)
    }

    /// The pool with its assigned workspaces and live agent count.
    pub async fn pool_view(&self, subject: &Subject, id: &PoolId) -> Result<PoolView, Error> {
        let mut tx = self.read().await?;
        let pool = found(tx.get_pool(id).await?, "agent pool", id)?;
        allow(
            authorize_organization(subject, &pool.organization, Access::Read),
            "agent pool",
            id,
        )?;
        view_of(&mut tx, pool).await
    }

    /// The organization's pools that `filter` lets through, as views, in
    /// one transaction.
    pub async fn list_pool_views(
        &self,
        subject: &Subject,
        org: &OrganizationName,
        filter: &PoolFilter,
    ) -> Result<Vec<PoolView>, Error> {
        let org = org_scope(subject, org, Access::Read)?;
        let mut tx = self.read().await?;
        found(tx.get_organization(&org).await?, "organization", &org)?;
        let mut pools = tx.list_pools(&org).await?;
        if let Some(q) = filter.name_contains.as_deref() {
            pools.retain(|p| p.name.contains(q));
        }
        if let Some(name) = filter.allowed_workspace.as_deref() {
            let ws = found(
                tx.get_workspace_by_name(&org, name).await?,
                "workspace",
                name,
            )?;
            pools.retain(|p| p.allows(&ws.id));
        }
        let mut views = Vec::with_capacity(pools.len());
        for pool in pools {
            views.push(view_of(&mut tx, pool).await?);
        }
        Ok(views)
    }

    /// The workspaces assigned to the pool (derived from execution modes).
    pub async fn pool_workspaces(
        &self,
        subject: &Subject,
        id: &PoolId,
    ) -> Result<Vec<Workspace>, Error> {
        let pool = self.get_pool(subject, id).await?;
        let mut tx = self.read().await?;
        Ok(tx.list_workspaces_in_pool(&pool.id).await?)
    }

    /// Update a pool; refused if a restricted pool would no longer be granted
    /// to a workspace assigned to it.
    pub async fn update_pool(
        &self,
        subject: &Subject,
        id: &PoolId,
        update: PoolUpdate,
    ) -> Result<AgentPool, Error> {
        let name = update.name.as_deref().map(validate_pool_name).transpose()?;
        let mut tx = self.begin().await?;
        let mut pool = found(tx.lock_pool(id).await?, "agent pool", id)?;
        allow(
            authorize_organization(subject, &pool.organization, Access::Write),
            "agent pool",
            id,
        )?;
        if let Some(n) = name {
            pool.name = n;
        }
        if let Some(s) = update.organization_scoped {
            pool.organization_scoped = s;
        }
        if let Some(list) = update.allowed_workspaces {
            pool.allowed_workspaces =
                check_workspaces(&mut tx, &pool.organization, &pool.name, &list).await?;
        }
        if let Some(list) = update.excluded_workspaces {
            pool.excluded_workspaces =
                check_workspaces(&mut tx, &pool.organization, &pool.name, &list).await?;
        }
        let assigned = tx.list_workspaces_in_pool(id).await?;
        pool.check_keeps_assigned(&assigned)?;
        tx.update_pool(&pool).await?;
        self.commit(tx, vec![]).await?;
        Ok(pool)
    }

    /// Add a workspace to the pool's allow list.
    pub async fn grant_workspace(
        &self,
        subject: &Subject,
        pool: &PoolId,
        workspace: &WorkspaceId,
    ) -> Result<AgentPool, Error> {
        let current = self.get_pool(subject, pool).await?;
        let ws: WorkspaceId = workspace.clone();
        let mut list: Vec<WorkspaceId> = current.allowed_workspaces.into_iter().collect();
        if !list.contains(&ws) {
            list.push(ws);
        }
        self.update_pool(
            subject,
            pool,
            PoolUpdate {
                allowed_workspaces: Some(list),
                ..Default::default()
            },
        )
        .await
    }

    /// Remove a workspace from the pool's allow list.
    pub async fn revoke_workspace(
        &self,
        subject: &Subject,
        pool: &PoolId,
        workspace: &WorkspaceId,
    ) -> Result<AgentPool, Error> {
        let current = self.get_pool(subject, pool).await?;
        let ws: WorkspaceId = workspace.clone();
        let list: Vec<WorkspaceId> = current
            .allowed_workspaces
            .into_iter()
            .filter(|w| w != &ws)
            .collect();
        self.update_pool(
            subject,
            pool,
            PoolUpdate {
                allowed_workspaces: Some(list),
                ..Default::default()
            },
        )
        .await
    }

    /// Delete a pool with its tokens (their agents are shut out). Refused
    /// while workspaces are assigned to it, naming them.
    pub async fn delete_pool(&self, subject: &Subject, id: &PoolId) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        let pool = found(tx.lock_pool(id).await?, "agent pool", id)?;
        allow(
            authorize_organization(subject, &pool.organization, Access::Write),
            "agent pool",
            id,
        )?;
        let assigned = tx.list_workspaces_in_pool(id).await?;
        pool.check_deletable(&assigned)?;
        let mut events = Vec::new();
        for token in tx.list_agent_tokens(id).await? {
            self.revoke_token_agents(&mut tx, &token.id, &mut events)
                .await?;
            events.push(Event::TokenRevoked(token.id));
        }
        tx.delete_pool(id).await?;
        self.commit(tx, events).await
    }
}
