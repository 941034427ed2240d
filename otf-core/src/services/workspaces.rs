//! Workspaces: create, settings (execution mode and pool), lock, delete.

use super::organizations::org_scope;
use super::{allow, found, Core, Error};
use crate::auth::{authorize_organization, Access, Subject};
use crate::events::Event;
use crate::ids::{validate_name, OrganizationName, PoolId, WorkspaceId};
use crate::job::JobStatus;
use crate::labels::Labels;
use crate::store::{JobRepo, OrganizationRepo, PoolRepo, Store, StoreError, Tx, WorkspaceRepo};
use crate::workspace::{ExecutionMode, Workspace, WorkspaceLock};

/// Which workspaces of an organization a listing shows.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceFilter {
    /// Workspaces whose name contains this (TFE's `search[name]`); empty
    /// matches every name.
    pub name_contains: Option<String>,
}

/// A new workspace. Unset fields take the defaults (remote execution, no
/// auto-apply, terraform 1.0.3, root directory).
#[derive(Debug, Clone, Default)]
pub struct WorkspaceSpec {
    pub name: String,
    pub execution_mode: Option<ExecutionMode>,
    pub auto_apply: Option<bool>,
    pub terraform_version: Option<String>,
    pub working_directory: Option<String>,
    pub agent_selector: Option<Labels>,
}

/// The execution mode a request asks for: a mode, or `agent` without
/// naming a pool (TFE lets a client set the mode alone), which keeps the
/// pool the workspace is assigned to; decided inside the update's
/// transaction, on the workspace as it is then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeRequest {
    Mode(ExecutionMode),
    AgentWithCurrentPool,
}

impl From<ExecutionMode> for ModeRequest {
    fn from(m: ExecutionMode) -> Self {
        ModeRequest::Mode(m)
    }
}

fn needs_pool() -> Error {
    Error::Invalid {
        field: "execution-mode",
        reason: "execution mode agent needs an agent pool: set `agent-pool-id`".into(),
    }
}

impl ModeRequest {
    /// The mode of a new workspace, which has no pool to keep.
    pub fn for_new_workspace(self) -> Result<ExecutionMode, Error> {
        match self {
            ModeRequest::Mode(m) => Ok(m),
            ModeRequest::AgentWithCurrentPool => Err(needs_pool()),
        }
    }

    /// The mode it sets on a workspace now in `current`.
    fn resolve(self, current: &ExecutionMode) -> Result<ExecutionMode, Error> {
        match (self, current) {
            (ModeRequest::Mode(m), _) => Ok(m),
            (ModeRequest::AgentWithCurrentPool, m @ ExecutionMode::Agent(_)) => Ok(m.clone()),
            (ModeRequest::AgentWithCurrentPool, _) => Err(needs_pool()),
        }
    }

    /// The pool it names, if it names one.
    fn pool(&self) -> Option<&PoolId> {
        match self {
            ModeRequest::Mode(m) => m.pool(),
            ModeRequest::AgentWithCurrentPool => None,
        }
    }
}

/// Changed settings; None leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceUpdate {
    pub name: Option<String>,
    pub execution_mode: Option<ModeRequest>,
    pub auto_apply: Option<bool>,
    pub terraform_version: Option<String>,
    pub working_directory: Option<String>,
    /// The labels an agent must carry; waiting jobs follow the change.
    pub agent_selector: Option<Labels>,
}

/// `latest` or a release version such as `1.0.3` or `1.6.0-rc1`.
fn validate_version(v: &str) -> Result<(), Error> {
    let (release, pre) = v.split_once('-').unwrap_or((v, ""));
    let parts: Vec<&str> = release.split('.').collect();
    let ok = v == "latest"
        || (parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
            && pre.len() <= 20
            && pre.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: "terraform-version",
            reason: format!("{v:?} is not a version such as \"1.0.3\" or \"latest\""),
        })
    }
}

fn validate_working_directory(d: &str) -> Result<(), Error> {
    let bad = d.starts_with('/') || d.split(['/', '\\']).any(|p| p == "..") || d.contains('\0');
    if bad {
        Err(Error::Invalid {
            field: "working-directory",
            reason: format!("{d:?} must be a relative path inside the configuration, without `..`"),
        })
    } else {
        Ok(())
    }
}

impl<S: Store> Core<S> {
    pub async fn create_workspace(
        &self,
        subject: &Subject,
        org: &OrganizationName,
        spec: WorkspaceSpec,
    ) -> Result<Workspace, Error> {
        let org = org_scope(subject, org, Access::Write)?;
        validate_name("workspace", &spec.name)?;
        if let Some(v) = &spec.terraform_version {
            validate_version(v)?;
        }
        if let Some(d) = &spec.working_directory {
            validate_working_directory(d)?;
        }
        let now = self.now();
        let ws = Workspace {
            id: WorkspaceId::generate(self.rng.as_ref()),
            organization: org.clone(),
            name: spec.name.clone(),
            execution_mode: spec.execution_mode.unwrap_or(ExecutionMode::Remote),
            auto_apply: spec.auto_apply.unwrap_or(false),
            terraform_version: spec
                .terraform_version
                .unwrap_or_else(|| Workspace::DEFAULT_TERRAFORM_VERSION.to_string()),
            working_directory: spec.working_directory.unwrap_or_default(),
            lock: None,
            current_run: None,
            agent_selector: spec.agent_selector.unwrap_or_default(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.begin().await?;
        found(tx.get_organization(&org).await?, "organization", &org)?;
        if let Some(pool) = ws.execution_mode.pool() {
            let pool = found(tx.lock_pool(pool).await?, "agent pool", pool)?;
            pool.check_assignable(&ws)?;
        }
        if tx.get_workspace_by_name(&org, &ws.name).await?.is_some() {
            return Err(Error::AlreadyExists {
                kind: "workspace",
                name: ws.name,
            });
        }
        tx.insert_workspace(&ws)
            .await
            .map_err(|e| conflict_as_exists(e, &ws.name))?;
        self.commit(tx, vec![Event::Workspace(ws.id.clone())])
            .await?;
        Ok(ws)
    }

    pub async fn get_workspace(
        &self,
        subject: &Subject,
        id: &WorkspaceId,
    ) -> Result<Workspace, Error> {
        let mut tx = self.read().await?;
        let ws = found(tx.get_workspace(id).await?, "workspace", id)?;
        allow(
            authorize_organization(subject, &ws.organization, Access::Read),
            "workspace",
            id,
        )?;
        Ok(ws)
    }

    /// A workspace the subject is about to change: not found when it does
    /// not exist, forbidden when it exists outside the subject's scope
    /// (changes are refused, not hidden).
    pub async fn get_workspace_to_change(
        &self,
        subject: &Subject,
        id: &WorkspaceId,
    ) -> Result<Workspace, Error> {
        let mut tx = self.read().await?;
        let ws = found(tx.get_workspace(id).await?, "workspace", id)?;
        allow(
            authorize_organization(subject, &ws.organization, Access::Write),
            "workspace",
            id,
        )?;
        Ok(ws)
    }

    /// [`Core::get_workspace_to_change`] by name: a subject that may not
    /// change the organization is refused whether or not the workspace
    /// exists.
    pub async fn get_workspace_by_name_to_change(
        &self,
        subject: &Subject,
        org: &OrganizationName,
        name: &str,
    ) -> Result<Workspace, Error> {
        self.workspace_by_name(subject, org, name, Access::Write)
            .await
    }

    pub async fn get_workspace_by_name(
        &self,
        subject: &Subject,
        org: &OrganizationName,
        name: &str,
    ) -> Result<Workspace, Error> {
        self.workspace_by_name(subject, org, name, Access::Read)
            .await
    }

    async fn workspace_by_name(
        &self,
        subject: &Subject,
        org: &OrganizationName,
        name: &str,
        access: Access,
    ) -> Result<Workspace, Error> {
        let id = format!("{org}/{name}");
        allow(
            authorize_organization(subject, org, access),
            "workspace",
            &id,
        )?;
        let mut tx = self.read().await?;
        found(tx.get_workspace_by_name(org, name).await?, "workspace", &id)
    }

    pub async fn list_workspaces(
        &self,
        subject: &Subject,
        org: &OrganizationName,
        filter: &WorkspaceFilter,
    ) -> Result<Vec<Workspace>, Error> {
        let org = org_scope(subject, org, Access::Read)?;
        let mut tx = self.read().await?;
        found(tx.get_organization(&org).await?, "organization", &org)?;
        let mut all = tx.list_workspaces(&org).await?;
        if let Some(name) = filter.name_contains.as_deref() {
            all.retain(|w| w.name.contains(name));
        }
        Ok(all)
    }

    /// Change settings, including the execution mode: assigning a workspace
    /// to a pool requires the pool to be granted to it.
    pub async fn update_workspace(
        &self,
        subject: &Subject,
        id: &WorkspaceId,
        update: WorkspaceUpdate,
    ) -> Result<Workspace, Error> {
        if let Some(n) = &update.name {
            validate_name("workspace", n)?;
        }
        if let Some(v) = &update.terraform_version {
            validate_version(v)?;
        }
        if let Some(d) = &update.working_directory {
            validate_working_directory(d)?;
        }
        let mut tx = self.begin().await?;
        // Lock order: pool before workspace, so a concurrent pool update
        // cannot revoke the grant this assignment relies on.
        let pool = match update.execution_mode.as_ref().and_then(|m| m.pool()) {
            Some(p) => Some(lock_pool_for(&mut tx, p).await?),
            None => None,
        };
        let mut ws = found(tx.lock_workspace(id).await?, "workspace", id)?;
        allow(
            authorize_organization(subject, &ws.organization, Access::Write),
            "workspace",
            id,
        )?;
        if let Some(n) = update.name {
            ws.name = n;
        }
        if let Some(m) = update.execution_mode {
            // Keeping the current pool changes no assignment, so it needs
            // no pool lock.
            ws.execution_mode = m.resolve(&ws.execution_mode)?;
        }
        if let Some(a) = update.auto_apply {
            ws.auto_apply = a;
        }
        if let Some(v) = update.terraform_version {
            ws.terraform_version = v;
        }
        if let Some(d) = update.working_directory {
            ws.working_directory = d;
        }
        let mut events = vec![Event::Workspace(ws.id.clone())];
        if let Some(selector) = update.agent_selector {
            if selector != ws.agent_selector {
                self.reselect_waiting_jobs(&mut tx, &ws, &selector, &mut events)
                    .await?;
            }
            ws.agent_selector = selector;
        }
        if let Some(pool) = pool {
            pool.check_assignable(&ws)?;
        }
        ws.updated_at = self.now();
        let name = ws.name.clone();
        tx.update_workspace(&ws)
            .await
            .map_err(|e| conflict_as_exists(e, &name))?;
        self.commit(tx, events).await?;
        Ok(ws)
    }

    /// The workspace's waiting jobs (of its active run and of speculative
    /// plans) take the new selector, so fixing a selector no agent matches
    /// lets the runs go on.
    async fn reselect_waiting_jobs(
        &self,
        tx: &mut S::Tx,
        ws: &Workspace,
        selector: &Labels,
        events: &mut Vec<Event>,
    ) -> Result<(), Error> {
        for mut job in tx.list_active_jobs().await? {
            if job.workspace == ws.id && job.status == JobStatus::Unallocated && job.pool.is_some()
            {
                job.selector = selector.clone();
                tx.update_job(&job).await?;
                events.push(Event::Job(job));
            }
        }
        Ok(())
    }

    /// Delete a workspace with its runs, state and variables. Refused while a
    /// run is active.
    pub async fn delete_workspace(&self, subject: &Subject, id: &WorkspaceId) -> Result<(), Error> {
        let id: WorkspaceId = id.clone();
        let mut tx = self.begin().await?;
        let ws = found(tx.lock_workspace(&id).await?, "workspace", &id)?;
        allow(
            authorize_organization(subject, &ws.organization, Access::Write),
            "workspace",
            &id,
        )?;
        if let Some(WorkspaceLock::Run(run)) = &ws.lock {
            return Err(Error::WorkspaceBusy {
                workspace: ws.name.clone(),
                run: run.to_string(),
            });
        }
        tx.delete_workspace(&id).await?;
        self.commit(tx, vec![Event::Workspace(id)]).await
    }

    /// Lock for the subject (e.g. the CLI in local mode).
    pub async fn lock_workspace(
        &self,
        subject: &Subject,
        id: &WorkspaceId,
    ) -> Result<Workspace, Error> {
        let id: WorkspaceId = id.clone();
        let mut tx = self.begin().await?;
        let mut ws = found(tx.lock_workspace(&id).await?, "workspace", &id)?;
        allow(
            authorize_organization(subject, &ws.organization, Access::Write),
            "workspace",
            &id,
        )?;
        ws.lock_by(&subject.describe())?;
        ws.updated_at = self.now();
        tx.update_workspace(&ws).await?;
        self.commit(tx, vec![Event::Workspace(id)]).await?;
        Ok(ws)
    }

    /// Unlock a lock the subject holds (any user lock when `force`); the next
    /// pending run then starts.
    pub async fn unlock_workspace(
        &self,
        subject: &Subject,
        id: &WorkspaceId,
        force: bool,
    ) -> Result<Workspace, Error> {
        let id: WorkspaceId = id.clone();
        let mut tx = self.begin().await?;
        let mut ws = found(tx.lock_workspace(&id).await?, "workspace", &id)?;
        allow(
            authorize_organization(subject, &ws.organization, Access::Write),
            "workspace",
            &id,
        )?;
        ws.unlock_by(&subject.describe(), force)?;
        ws.updated_at = self.now();
        let mut events = vec![Event::Workspace(id)];
        self.start_next_run(&mut tx, &mut ws, &mut events).await?;
        tx.update_workspace(&ws).await?;
        self.commit(tx, events).await?;
        Ok(ws)
    }
}

async fn lock_pool_for<T: Tx>(tx: &mut T, id: &PoolId) -> Result<crate::pool::AgentPool, Error> {
    found(tx.lock_pool(id).await?, "agent pool", id)
}

fn conflict_as_exists(e: StoreError, name: &str) -> Error {
    match e {
        StoreError::Conflict(_) => Error::AlreadyExists {
            kind: "workspace",
            name: name.to_string(),
        },
        e => e.into(),
    }
}
