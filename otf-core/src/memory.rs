//! An in-memory [`Store`]: for tests, simulations and embedding without a
//! database. Transactions are serialised by one mutex; writes are undone when
//! a transaction is dropped without commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::agent::Agent;
use crate::agent_token::AgentToken;
use crate::artifacts::{ArtifactKind, ConfigurationVersion, LogChunk, StateVersion, Variable};
use crate::clock::Timestamp;
use crate::ids::*;
use crate::job::{Job, JobPhase};
use crate::organization::{Organization, OrganizationToken};
use crate::pool::AgentPool;
use crate::run::{Run, RunStatus};
use crate::store::*;
use crate::workspace::Workspace;

#[derive(Default)]
struct State {
    orgs: BTreeMap<OrganizationName, Organization>,
    org_tokens: BTreeMap<OrgTokenId, OrganizationToken>,
    workspaces: BTreeMap<WorkspaceId, Workspace>,
    pools: BTreeMap<PoolId, AgentPool>,
    agent_tokens: BTreeMap<AgentTokenId, AgentToken>,
    agents: BTreeMap<AgentId, Agent>,
    jobs: BTreeMap<JobId, Job>,
    runs: BTreeMap<RunId, Run>,
    cvs: BTreeMap<ConfigVersionId, ConfigurationVersion>,
    tarballs: BTreeMap<ConfigVersionId, Vec<u8>>,
    state_versions: BTreeMap<StateVersionId, (StateVersion, Vec<u8>)>,
    variables: BTreeMap<VariableId, Variable>,
    logs: BTreeMap<(RunId, JobPhase), Vec<u8>>,
    artifacts: BTreeMap<(RunId, ArtifactKind), Vec<u8>>,
    reign: u64,
}

/// The in-memory store. Clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

type Undo = Box<dyn FnOnce(&mut State) + Send>;

/// A transaction of the in-memory store.
pub struct MemoryTx {
    state: OwnedMutexGuard<State>,
    undo: Vec<Undo>,
    committed: bool,
}

impl Drop for MemoryTx {
    fn drop(&mut self) {
        if !self.committed {
            while let Some(u) = self.undo.pop() {
                u(&mut self.state);
            }
        }
    }
}

type Table<K, V> = fn(&mut State) -> &mut BTreeMap<K, V>;

impl MemoryTx {
    /// Set (Some) or remove (None) a row, remembering how to undo it.
    fn write<K, V>(&mut self, table: Table<K, V>, key: K, value: Option<V>) -> Option<V>
    where
        K: Ord + Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        let t = table(&mut self.state);
        let old = match value {
            Some(v) => t.insert(key.clone(), v),
            None => t.remove(&key),
        };
        let restore = old.clone();
        self.undo.push(Box::new(move |s: &mut State| {
            let t = table(s);
            match restore {
                Some(o) => {
                    t.insert(key, o);
                }
                None => {
                    t.remove(&key);
                }
            }
        }));
        old
    }

    fn insert_new<K, V>(
        &mut self,
        table: Table<K, V>,
        key: K,
        value: V,
        kind: &str,
    ) -> StoreResult<()>
    where
        K: Ord + Clone + Send + std::fmt::Display + 'static,
        V: Clone + Send + 'static,
    {
        if table(&mut self.state).contains_key(&key) {
            return Err(StoreError::Conflict(Cause::new(format!(
                "{kind} {key} already exists"
            ))));
        }
        self.write(table, key, Some(value));
        Ok(())
    }

    fn update_existing<K, V>(
        &mut self,
        table: Table<K, V>,
        key: K,
        value: V,
        kind: &'static str,
    ) -> StoreResult<()>
    where
        K: Ord + Clone + Send + std::fmt::Display + 'static,
        V: Clone + Send + 'static,
    {
        if !table(&mut self.state).contains_key(&key) {
            return Err(StoreError::NotFound {
                kind,
                id: key.to_string(),
            });
        }
        self.write(table, key, Some(value));
        Ok(())
    }

    fn remove<K, V>(&mut self, table: Table<K, V>, key: K)
    where
        K: Ord + Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        if table(&mut self.state).contains_key(&key) {
            self.write(table, key, None);
        }
    }

    fn remove_where<K, V>(&mut self, table: Table<K, V>, pred: impl Fn(&K, &V) -> bool)
    where
        K: Ord + Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        let keys: Vec<K> = table(&mut self.state)
            .iter()
            .filter(|(k, v)| pred(k, v))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.write(table, k, None);
        }
    }

    fn delete_workspace_rows(&mut self, id: &WorkspaceId) {
        let runs: Vec<RunId> = self
            .state
            .runs
            .values()
            .filter(|r| &r.workspace == id)
            .map(|r| r.id.clone())
            .collect();
        let cvs: Vec<ConfigVersionId> = self
            .state
            .cvs
            .values()
            .filter(|c| &c.workspace == id)
            .map(|c| c.id.clone())
            .collect();
        self.remove_where(|s| &mut s.jobs, |_, j| &j.workspace == id);
        self.remove_where(|s| &mut s.logs, |(r, _), _| runs.contains(r));
        self.remove_where(|s| &mut s.artifacts, |(r, _), _| runs.contains(r));
        self.remove_where(|s| &mut s.runs, |_, r| &r.workspace == id);
        self.remove_where(|s| &mut s.tarballs, |c, _| cvs.contains(c));
        self.remove_where(|s| &mut s.cvs, |_, c| &c.workspace == id);
        self.remove_where(|s| &mut s.state_versions, |_, (sv, _)| &sv.workspace == id);
        self.remove_where(|s| &mut s.variables, |_, v| &v.workspace == id);
        // Pools keep no grants or exclusions of deleted workspaces.
        let pools: Vec<AgentPool> = self
            .state
            .pools
            .values()
            .filter(|p| p.allowed_workspaces.contains(id) || p.excluded_workspaces.contains(id))
            .cloned()
            .collect();
        for mut p in pools {
            p.allowed_workspaces.remove(id);
            p.excluded_workspaces.remove(id);
            self.write(|s| &mut s.pools, p.id.clone(), Some(p));
        }
        self.remove(|s| &mut s.workspaces, id.clone());
    }
}

#[async_trait]
impl Store for MemoryStore {
    type Tx = MemoryTx;

    async fn begin(&self) -> StoreResult<MemoryTx> {
        Ok(MemoryTx {
            state: self.state.clone().lock_owned().await,
            undo: Vec::new(),
            committed: false,
        })
    }
}

#[async_trait]
impl Tx for MemoryTx {
    async fn commit(mut self) -> StoreResult<()> {
        self.committed = true;
        self.undo.clear();
        Ok(())
    }

    fn serialized(&self) -> bool {
        // The store's lock is held from begin to end.
        true
    }
}

#[async_trait]
impl ReignRepo for MemoryTx {
    async fn begin_reign(&mut self) -> StoreResult<u64> {
        let before = self.state.reign;
        self.state.reign += 1;
        self.undo
            .push(Box::new(move |s: &mut State| s.reign = before));
        Ok(self.state.reign)
    }

    async fn holds_reign(&mut self, epoch: u64) -> StoreResult<bool> {
        Ok(self.state.reign == epoch)
    }
}

#[async_trait]
impl OrganizationRepo for MemoryTx {
    async fn insert_organization(&mut self, org: &Organization) -> StoreResult<()> {
        self.insert_new(
            |s| &mut s.orgs,
            org.name.clone(),
            org.clone(),
            "organization",
        )
    }
    async fn get_organization(
        &mut self,
        name: &OrganizationName,
    ) -> StoreResult<Option<Organization>> {
        Ok(self.state.orgs.get(name).cloned())
    }
    async fn list_organizations(&mut self) -> StoreResult<Vec<Organization>> {
        Ok(self.state.orgs.values().cloned().collect())
    }
    async fn delete_organization(&mut self, name: &OrganizationName) -> StoreResult<()> {
        let wss: Vec<WorkspaceId> = self
            .state
            .workspaces
            .values()
            .filter(|w| &w.organization == name)
            .map(|w| w.id.clone())
            .collect();
        for w in wss {
            self.delete_workspace_rows(&w);
        }
        self.remove_where(|s| &mut s.agent_tokens, |_, t| &t.organization == name);
        self.remove_where(
            |s| &mut s.agents,
            |_, a| a.organization.as_ref() == Some(name),
        );
        self.remove_where(|s| &mut s.pools, |_, p| &p.organization == name);
        self.remove_where(|s| &mut s.org_tokens, |_, t| &t.organization == name);
        self.remove(|s| &mut s.orgs, name.clone());
        Ok(())
    }
    async fn insert_org_token(&mut self, token: &OrganizationToken) -> StoreResult<()> {
        self.insert_new(
            |s| &mut s.org_tokens,
            token.id.clone(),
            token.clone(),
            "organization token",
        )
    }
    async fn update_org_token(&mut self, token: &OrganizationToken) -> StoreResult<()> {
        self.update_existing(
            |s| &mut s.org_tokens,
            token.id.clone(),
            token.clone(),
            "organization token",
        )
    }
    async fn get_org_token(&mut self, id: &OrgTokenId) -> StoreResult<Option<OrganizationToken>> {
        Ok(self.state.org_tokens.get(id).cloned())
    }
    async fn list_org_tokens(
        &mut self,
        org: &OrganizationName,
    ) -> StoreResult<Vec<OrganizationToken>> {
        let mut v: Vec<_> = self
            .state
            .org_tokens
            .values()
            .filter(|t| &t.organization == org)
            .cloned()
            .collect();
        v.sort_by_key(|t| (t.created_at, t.id.clone()));
        Ok(v)
    }
    async fn delete_org_token(&mut self, id: &OrgTokenId) -> StoreResult<()> {
        self.remove(|s| &mut s.org_tokens, id.clone());
        Ok(())
    }
}

#[async_trait]
impl WorkspaceRepo for MemoryTx {
    async fn insert_workspace(&mut self, ws: &Workspace) -> StoreResult<()> {
        if self
            .state
            .workspaces
            .values()
            .any(|w| w.organization == ws.organization && w.name == ws.name)
        {
            return Err(StoreError::Conflict(Cause::new(format!(
                "workspace {} already exists in organization {}",
                ws.name, ws.organization
            ))));
        }
        self.insert_new(
            |s| &mut s.workspaces,
            ws.id.clone(),
            ws.clone(),
            "workspace",
        )
    }
    async fn update_workspace(&mut self, ws: &Workspace) -> StoreResult<()> {
        if self
            .state
            .workspaces
            .values()
            .any(|w| w.id != ws.id && w.organization == ws.organization && w.name == ws.name)
        {
            return Err(StoreError::Conflict(Cause::new(format!(
                "workspace {} already exists in organization {}",
                ws.name, ws.organization
            ))));
        }
        self.update_existing(
            |s| &mut s.workspaces,
            ws.id.clone(),
            ws.clone(),
            "workspace",
        )
    }
    async fn update_workspace_runs(&mut self, ws: &Workspace) -> StoreResult<()> {
        let Some(mut stored) = self.state.workspaces.get(&ws.id).cloned() else {
            return Err(StoreError::NotFound {
                kind: "workspace",
                id: ws.id.to_string(),
            });
        };
        stored.lock = ws.lock.clone();
        stored.current_run = ws.current_run.clone();
        stored.updated_at = ws.updated_at;
        self.update_existing(|s| &mut s.workspaces, ws.id.clone(), stored, "workspace")
    }
    async fn get_workspace(&mut self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        Ok(self.state.workspaces.get(id).cloned())
    }
    async fn lock_workspace(&mut self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        Ok(self.state.workspaces.get(id).cloned())
    }
    async fn get_workspace_by_name(
        &mut self,
        org: &OrganizationName,
        name: &str,
    ) -> StoreResult<Option<Workspace>> {
        Ok(self
            .state
            .workspaces
            .values()
            .find(|w| &w.organization == org && w.name == name)
            .cloned())
    }
    async fn list_workspaces(&mut self, org: &OrganizationName) -> StoreResult<Vec<Workspace>> {
        let mut v: Vec<_> = self
            .state
            .workspaces
            .values()
            .filter(|w| &w.organization == org)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }
    async fn list_workspaces_in_pool(&mut self, pool: &PoolId) -> StoreResult<Vec<Workspace>> {
        let mut v: Vec<_> = self
            .state
            .workspaces
            .values()
            .filter(|w| w.execution_mode.pool() == Some(pool))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }
    async fn delete_workspace(&mut self, id: &WorkspaceId) -> StoreResult<()> {
        self.delete_workspace_rows(id);
        Ok(())
    }
}

#[async_trait]
impl PoolRepo for MemoryTx {
    async fn insert_pool(&mut self, pool: &AgentPool) -> StoreResult<()> {
        self.insert_new(
            |s| &mut s.pools,
            pool.id.clone(),
            pool.clone(),
            "agent pool",
        )
    }
    async fn update_pool(&mut self, pool: &AgentPool) -> StoreResult<()> {
        self.update_existing(
            |s| &mut s.pools,
            pool.id.clone(),
            pool.clone(),
            "agent pool",
        )
    }
    async fn get_pool(&mut self, id: &PoolId) -> StoreResult<Option<AgentPool>> {
        Ok(self.state.pools.get(id).cloned())
    }
    async fn lock_pool(&mut self, id: &PoolId) -> StoreResult<Option<AgentPool>> {
        Ok(self.state.pools.get(id).cloned())
    }
    async fn list_pools(&mut self, org: &OrganizationName) -> StoreResult<Vec<AgentPool>> {
        let mut v: Vec<_> = self
            .state
            .pools
            .values()
            .filter(|p| &p.organization == org)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(v)
    }
    async fn delete_pool(&mut self, id: &PoolId) -> StoreResult<()> {
        self.remove_where(|s| &mut s.agent_tokens, |_, t| &t.pool == id);
        self.remove(|s| &mut s.pools, id.clone());
        Ok(())
    }
}

#[async_trait]
impl AgentTokenRepo for MemoryTx {
    async fn insert_agent_token(&mut self, token: &AgentToken) -> StoreResult<()> {
        self.insert_new(
            |s| &mut s.agent_tokens,
            token.id.clone(),
            token.clone(),
            "agent token",
        )
    }
    async fn update_agent_token(&mut self, token: &AgentToken) -> StoreResult<()> {
        self.update_existing(
            |s| &mut s.agent_tokens,
            token.id.clone(),
            token.clone(),
            "agent token",
        )
    }
    async fn get_agent_token(&mut self, id: &AgentTokenId) -> StoreResult<Option<AgentToken>> {
        Ok(self.state.agent_tokens.get(id).cloned())
    }
    async fn list_agent_tokens(&mut self, pool: &PoolId) -> StoreResult<Vec<AgentToken>> {
        let mut v: Vec<_> = self
            .state
            .agent_tokens
            .values()
            .filter(|t| &t.pool == pool)
            .cloned()
            .collect();
        v.sort_by_key(|t| (t.created_at, t.id.clone()));
        Ok(v)
    }
    async fn delete_agent_token(&mut self, id: &AgentTokenId) -> StoreResult<()> {
        self.remove(|s| &mut s.agent_tokens, id.clone());
        Ok(())
    }
}

#[async_trait]
impl AgentRepo for MemoryTx {
    async fn insert_agent(&mut self, agent: &Agent) -> StoreResult<()> {
        self.insert_new(|s| &mut s.agents, agent.id.clone(), agent.clone(), "agent")
    }
    async fn update_agent(&mut self, agent: &Agent) -> StoreResult<()> {
        self.update_existing(|s| &mut s.agents, agent.id.clone(), agent.clone(), "agent")
    }
    async fn get_agent(&mut self, id: &AgentId) -> StoreResult<Option<Agent>> {
        Ok(self.state.agents.get(id).cloned())
    }
    async fn lock_agent(&mut self, id: &AgentId) -> StoreResult<Option<Agent>> {
        Ok(self.state.agents.get(id).cloned())
    }
    async fn list_agents(&mut self) -> StoreResult<Vec<Agent>> {
        Ok(self.state.agents.values().cloned().collect())
    }
    async fn list_agents_in_pool(&mut self, pool: Option<&PoolId>) -> StoreResult<Vec<Agent>> {
        Ok(self
            .state
            .agents
            .values()
            .filter(|a| a.pool.as_ref() == pool)
            .cloned()
            .collect())
    }
    async fn list_agents_due(
        &mut self,
        due: &crate::liveness::AgentsDue,
    ) -> StoreResult<Vec<Agent>> {
        Ok(self
            .state
            .agents
            .values()
            .filter(|a| due.includes(a))
            .cloned()
            .collect())
    }
    async fn list_agents_of_token(&mut self, token: &AgentTokenId) -> StoreResult<Vec<Agent>> {
        Ok(self
            .state
            .agents
            .values()
            .filter(|a| a.token.as_ref() == Some(token))
            .cloned()
            .collect())
    }
    async fn touch_agents(&mut self, seen: &[(AgentId, Timestamp)]) -> StoreResult<()> {
        for (id, at) in seen {
            if let Some(mut a) = self.state.agents.get(id).cloned() {
                if *at > a.last_ping_at {
                    a.last_ping_at = *at;
                    self.write(|s| &mut s.agents, id.clone(), Some(a));
                }
            }
        }
        Ok(())
    }
    async fn delete_agent(&mut self, id: &AgentId) -> StoreResult<()> {
        self.remove(|s| &mut s.agents, id.clone());
        Ok(())
    }
}

#[async_trait]
impl JobRepo for MemoryTx {
    async fn insert_job(&mut self, job: &Job) -> StoreResult<()> {
        self.insert_new(|s| &mut s.jobs, job.id.clone(), job.clone(), "job")
    }
    async fn update_job(&mut self, job: &Job) -> StoreResult<()> {
        self.update_existing(|s| &mut s.jobs, job.id.clone(), job.clone(), "job")
    }
    async fn get_job(&mut self, id: &JobId) -> StoreResult<Option<Job>> {
        Ok(self.state.jobs.get(id).cloned())
    }
    async fn list_jobs_of_run(&mut self, run: &RunId) -> StoreResult<Vec<Job>> {
        let mut v: Vec<_> = self
            .state
            .jobs
            .values()
            .filter(|j| &j.run == run)
            .cloned()
            .collect();
        v.sort_by_key(|j| (j.phase, j.attempt, j.id.clone()));
        Ok(v)
    }
    async fn list_active_jobs(&mut self) -> StoreResult<Vec<Job>> {
        let mut v: Vec<_> = self
            .state
            .jobs
            .values()
            .filter(|j| !j.status.is_final())
            .cloned()
            .collect();
        v.sort_by_key(|j| (j.queued_at, j.id.clone()));
        Ok(v)
    }
    async fn list_jobs_of_agent(&mut self, agent: &AgentId) -> StoreResult<Vec<Job>> {
        Ok(self
            .state
            .jobs
            .values()
            .filter(|j| !j.status.is_final() && j.agent.as_ref() == Some(agent))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl RunRepo for MemoryTx {
    async fn insert_run(&mut self, run: &Run) -> StoreResult<()> {
        self.insert_new(|s| &mut s.runs, run.id.clone(), run.clone(), "run")
    }
    async fn update_run(&mut self, run: &Run) -> StoreResult<()> {
        self.update_existing(|s| &mut s.runs, run.id.clone(), run.clone(), "run")
    }
    async fn get_run(&mut self, id: &RunId) -> StoreResult<Option<Run>> {
        Ok(self.state.runs.get(id).cloned())
    }
    async fn list_runs(
        &mut self,
        ws: &WorkspaceId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Run>, u64)> {
        let mut v: Vec<_> = self
            .state
            .runs
            .values()
            .filter(|r| &r.workspace == ws)
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        let total = v.len() as u64;
        Ok((
            v.into_iter()
                .skip(offset as usize)
                .take(limit as usize)
                .collect(),
            total,
        ))
    }
    async fn newest_run_created_at(&mut self, ws: &WorkspaceId) -> StoreResult<Option<Timestamp>> {
        Ok(self
            .state
            .runs
            .values()
            .filter(|r| &r.workspace == ws)
            .map(|r| r.created_at)
            .max())
    }
    async fn next_pending_run(&mut self, ws: &WorkspaceId) -> StoreResult<Option<Run>> {
        Ok(self
            .state
            .runs
            .values()
            .filter(|r| {
                &r.workspace == ws && r.status == RunStatus::Pending && !r.options.plan_only
            })
            .min_by_key(|r| (r.created_at, r.id.clone()))
            .cloned())
    }
    async fn count_runs_by_status(&mut self) -> StoreResult<Vec<(RunStatus, u64)>> {
        let mut counts = BTreeMap::new();
        for r in self.state.runs.values() {
            *counts.entry(r.status).or_insert(0u64) += 1;
        }
        Ok(counts.into_iter().collect())
    }
    async fn active_run_statuses(&mut self) -> StoreResult<Vec<(RunId, RunStatus)>> {
        let mut active: Vec<(RunId, RunStatus)> = self
            .state
            .runs
            .values()
            .filter(|r| !r.status.is_final())
            .map(|r| (r.id.clone(), r.status))
            .collect();
        active.sort();
        Ok(active)
    }
}

#[async_trait]
impl ConfigRepo for MemoryTx {
    async fn insert_config_version(&mut self, cv: &ConfigurationVersion) -> StoreResult<()> {
        self.insert_new(
            |s| &mut s.cvs,
            cv.id.clone(),
            cv.clone(),
            "configuration version",
        )
    }
    async fn update_config_version(&mut self, cv: &ConfigurationVersion) -> StoreResult<()> {
        self.update_existing(
            |s| &mut s.cvs,
            cv.id.clone(),
            cv.clone(),
            "configuration version",
        )
    }
    async fn get_config_version(
        &mut self,
        id: &ConfigVersionId,
    ) -> StoreResult<Option<ConfigurationVersion>> {
        Ok(self.state.cvs.get(id).cloned())
    }
    async fn latest_config_version(
        &mut self,
        ws: &WorkspaceId,
    ) -> StoreResult<Option<ConfigurationVersion>> {
        Ok(self
            .state
            .cvs
            .values()
            .filter(|c| &c.workspace == ws && c.status == crate::artifacts::ConfigStatus::Uploaded)
            .max_by_key(|c| (c.created_at, c.id.clone()))
            .cloned())
    }
    async fn put_config_tarball(
        &mut self,
        id: &ConfigVersionId,
        tarball: &[u8],
    ) -> StoreResult<()> {
        self.write(|s| &mut s.tarballs, id.clone(), Some(tarball.to_vec()));
        Ok(())
    }
    async fn get_config_tarball(&mut self, id: &ConfigVersionId) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.state.tarballs.get(id).cloned())
    }
}

#[async_trait]
impl StateRepo for MemoryTx {
    async fn insert_state_version(&mut self, sv: &StateVersion, state: &[u8]) -> StoreResult<()> {
        self.insert_new(
            |s| &mut s.state_versions,
            sv.id.clone(),
            (sv.clone(), state.to_vec()),
            "state version",
        )
    }
    async fn get_state_version(
        &mut self,
        id: &StateVersionId,
    ) -> StoreResult<Option<StateVersion>> {
        Ok(self.state.state_versions.get(id).map(|(sv, _)| sv.clone()))
    }
    async fn current_state_version(
        &mut self,
        ws: &WorkspaceId,
    ) -> StoreResult<Option<StateVersion>> {
        Ok(self
            .state
            .state_versions
            .values()
            .filter(|(sv, _)| &sv.workspace == ws)
            .max_by_key(|(sv, _)| (sv.created_at, sv.serial, sv.id.clone()))
            .map(|(sv, _)| sv.clone()))
    }
    async fn list_state_versions(&mut self, ws: &WorkspaceId) -> StoreResult<Vec<StateVersion>> {
        let mut v: Vec<_> = self
            .state
            .state_versions
            .values()
            .filter(|(sv, _)| &sv.workspace == ws)
            .map(|(sv, _)| sv.clone())
            .collect();
        v.sort_by(|a, b| (b.created_at, b.serial, &b.id).cmp(&(a.created_at, a.serial, &a.id)));
        Ok(v)
    }
    async fn get_state_bytes(&mut self, id: &StateVersionId) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.state.state_versions.get(id).map(|(_, b)| b.clone()))
    }
}

#[async_trait]
impl VariableRepo for MemoryTx {
    async fn insert_variable(&mut self, var: &Variable) -> StoreResult<()> {
        if self
            .state
            .variables
            .values()
            .any(|v| v.workspace == var.workspace && v.key == var.key && v.category == var.category)
        {
            return Err(StoreError::Conflict(Cause::new(format!(
                "variable {} already exists",
                var.key
            ))));
        }
        self.insert_new(
            |s| &mut s.variables,
            var.id.clone(),
            var.clone(),
            "variable",
        )
    }
    async fn update_variable(&mut self, var: &Variable) -> StoreResult<()> {
        self.update_existing(
            |s| &mut s.variables,
            var.id.clone(),
            var.clone(),
            "variable",
        )
    }
    async fn get_variable(&mut self, id: &VariableId) -> StoreResult<Option<Variable>> {
        Ok(self.state.variables.get(id).cloned())
    }
    async fn list_variables(&mut self, ws: &WorkspaceId) -> StoreResult<Vec<Variable>> {
        let mut v: Vec<_> = self
            .state
            .variables
            .values()
            .filter(|v| &v.workspace == ws)
            .cloned()
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key).then(a.category.cmp(&b.category)));
        Ok(v)
    }
    async fn delete_variable(&mut self, id: &VariableId) -> StoreResult<()> {
        self.remove(|s| &mut s.variables, id.clone());
        Ok(())
    }
}

#[async_trait]
impl LogRepo for MemoryTx {
    async fn append_log(
        &mut self,
        run: &RunId,
        phase: JobPhase,
        data: &[u8],
    ) -> StoreResult<LogChunk> {
        let key = (run.clone(), phase);
        let mut log = self.state.logs.get(&key).cloned().unwrap_or_default();
        let offset = log.len() as u64;
        log.extend_from_slice(data);
        self.write(|s| &mut s.logs, key, Some(log));
        Ok(LogChunk {
            run: run.clone(),
            phase,
            offset,
            data: data.to_vec(),
        })
    }
    async fn read_log(
        &mut self,
        run: &RunId,
        phase: JobPhase,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<u8>> {
        let log = self.state.logs.get(&(run.clone(), phase));
        Ok(log
            .map(|l| {
                let start = (offset as usize).min(l.len());
                let end = start.saturating_add(limit as usize).min(l.len());
                l[start..end].to_vec()
            })
            .unwrap_or_default())
    }
}

#[async_trait]
impl ArtifactRepo for MemoryTx {
    async fn put_artifact(
        &mut self,
        run: &RunId,
        kind: ArtifactKind,
        data: &[u8],
    ) -> StoreResult<()> {
        self.write(
            |s| &mut s.artifacts,
            (run.clone(), kind),
            Some(data.to_vec()),
        );
        Ok(())
    }
    async fn get_artifact(
        &mut self,
        run: &RunId,
        kind: ArtifactKind,
    ) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.state.artifacts.get(&(run.clone(), kind)).cloned())
    }
}
