//! The scheduler: a pure, deterministic index of queued jobs and ready agents,
//! per pool. Each event costs O(log n): nothing rescans all jobs or agents.
//!
//! Eligibility: a job goes only to an agent of the same pool (`None` = the
//! server runner), that is idle or busy, not drained, and below its `max_jobs`. Among those
//! the least loaded wins, then the most recently seen, then the smallest id.
//! Jobs of a pool are served first come, first served (by `queued_at`, id).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::agent::{Agent, AgentStatus};
use crate::clock::Timestamp;
use crate::ids::{AgentId, JobId, PoolId};
use crate::job::{Job, JobStatus};

/// Which runners may take a job: an agent pool, or the server runner (None).
pub type PoolKey = Option<PoolId>;

/// What the scheduler needs to know of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSlot {
    pub id: AgentId,
    pub pool: PoolKey,
    pub status: AgentStatus,
    pub max_jobs: u32,
    pub last_seen: Timestamp,
    /// Drained agents get no new job.
    pub drained: bool,
}

impl From<&Agent> for AgentSlot {
    fn from(a: &Agent) -> Self {
        AgentSlot {
            id: a.id.clone(),
            pool: a.pool.clone(),
            status: a.status,
            max_jobs: a.max_jobs,
            last_seen: a.last_ping_at,
            drained: a.drained,
        }
    }
}

/// What the scheduler needs to know of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSlot {
    pub id: JobId,
    pub pool: PoolKey,
    pub status: JobStatus,
    pub agent: Option<AgentId>,
    pub queued_at: Timestamp,
    /// The only agent that may take it while that agent is live (even
    /// drained): a single-execution agent keeps its run's apply.
    pub affinity: Option<AgentId>,
}

impl From<&Job> for JobSlot {
    fn from(j: &Job) -> Self {
        JobSlot {
            id: j.id.clone(),
            pool: j.pool.clone(),
            status: j.status,
            agent: j.agent.clone(),
            queued_at: j.queued_at,
            affinity: j.affinity.clone(),
        }
    }
}

/// A decision: give `job` to `agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub job: JobId,
    pub agent: AgentId,
}

/// Why a queued job waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// No idle or busy agent in the pool.
    NoAgent,
    /// Every live agent of the pool is at its maximum.
    NoCapacity,
    /// Every live agent of the pool is drained.
    Drained,
}

type ReadyKey = (u32, Reverse<Timestamp>, AgentId);
type QueueKey = (Timestamp, JobId);

#[derive(Debug, Default)]
struct PoolIndex {
    queue: BTreeSet<QueueKey>,
    /// Schedulable agents with spare capacity, best first.
    ready: BTreeSet<ReadyKey>,
    /// Schedulable agents, with or without capacity.
    live: usize,
    /// Schedulable agents that are drained.
    drained: usize,
}

#[derive(Debug)]
struct AgentEntry {
    slot: AgentSlot,
    load: u32,
}

impl AgentEntry {
    fn ready_key(&self) -> Option<ReadyKey> {
        (self.slot.status.is_schedulable() && !self.slot.drained && self.load < self.slot.max_jobs)
            .then(|| {
                (
                    self.load,
                    Reverse(self.slot.last_seen),
                    self.slot.id.clone(),
                )
            })
    }
}

#[derive(Debug)]
struct JobEntry {
    pool: PoolKey,
    queued_at: Timestamp,
    /// None while queued.
    agent: Option<AgentId>,
    affinity: Option<AgentId>,
    /// Queued for its affinity agent (in `pinned`), not its pool's queue.
    pinned: bool,
}

/// The index. Feed it every agent and job change; ask it for allocations.
#[derive(Debug, Default)]
pub struct Scheduler {
    pools: HashMap<PoolKey, PoolIndex>,
    agents: HashMap<AgentId, AgentEntry>,
    jobs: HashMap<JobId, JobEntry>,
    /// Load held by agents the scheduler does not know (yet): counted when the
    /// agent appears.
    orphan_load: HashMap<AgentId, u32>,
    /// Queued jobs kept for one live agent (their affinity).
    pinned: HashMap<AgentId, BTreeSet<QueueKey>>,
}

impl Scheduler {
    pub fn new() -> Self {
        Self::default()
    }

    fn pool(&mut self, key: &PoolKey) -> &mut PoolIndex {
        self.pools.entry(key.clone()).or_default()
    }

    /// Remove an agent from its pool's indexes (before changing it).
    fn unindex_agent(&mut self, id: &AgentId) {
        let Some(entry) = self.agents.get(id) else {
            return;
        };
        let key = entry.ready_key();
        let live = entry.slot.status.is_schedulable();
        let drained = live && entry.slot.drained;
        let pool_key = entry.slot.pool.clone();
        let pool = self.pool(&pool_key);
        if let Some(k) = key {
            pool.ready.remove(&k);
        }
        if live {
            pool.live -= 1;
        }
        if drained {
            pool.drained -= 1;
        }
    }

    fn index_agent(&mut self, id: &AgentId) {
        let Some(entry) = self.agents.get(id) else {
            return;
        };
        let key = entry.ready_key();
        let live = entry.slot.status.is_schedulable();
        let drained = live && entry.slot.drained;
        let pool_key = entry.slot.pool.clone();
        let pool = self.pool(&pool_key);
        if let Some(k) = key {
            pool.ready.insert(k);
        }
        if live {
            pool.live += 1;
        }
        if drained {
            pool.drained += 1;
        }
    }

    fn add_load(&mut self, agent: &AgentId, delta: i64) {
        if self.agents.contains_key(agent) {
            self.unindex_agent(agent);
            if let Some(e) = self.agents.get_mut(agent) {
                e.load = (e.load as i64 + delta).max(0) as u32;
            }
            self.index_agent(agent);
        } else {
            let l = self.orphan_load.entry(agent.clone()).or_default();
            *l = (*l as i64 + delta).max(0) as u32;
            if *l == 0 {
                self.orphan_load.remove(agent);
            }
        }
    }

    /// An agent registered or changed.
    pub fn upsert_agent(&mut self, slot: AgentSlot) {
        self.unindex_agent(&slot.id);
        let id = slot.id.clone();
        let load = match self.agents.remove(&id) {
            Some(e) => e.load,
            None => self.orphan_load.remove(&id).unwrap_or(0),
        };
        let live = slot.status.is_schedulable();
        self.agents.insert(id.clone(), AgentEntry { slot, load });
        self.index_agent(&id);
        if !live {
            self.unpin(&id);
        }
    }

    /// An agent that can no longer take its pinned jobs: they join their
    /// pools' queues.
    fn unpin(&mut self, agent: &AgentId) {
        let Some(keys) = self.pinned.remove(agent) else {
            return;
        };
        for key in keys {
            if let Some(j) = self.jobs.get_mut(&key.1) {
                j.pinned = false;
                let pool = j.pool.clone();
                self.pool(&pool).queue.insert(key);
            }
        }
    }

    /// An agent was deleted.
    pub fn remove_agent(&mut self, id: &AgentId) {
        self.unpin(id);
        self.unindex_agent(id);
        if let Some(e) = self.agents.remove(id) {
            if e.load > 0 {
                self.orphan_load.insert(id.clone(), e.load);
            }
        }
    }

    fn remove_job(&mut self, id: &JobId) {
        if let Some(old) = self.jobs.remove(id) {
            let key = (old.queued_at, id.clone());
            match (&old.agent, &old.affinity) {
                (Some(a), _) => self.add_load(a, -1),
                (None, Some(a)) if old.pinned => {
                    if let Some(set) = self.pinned.get_mut(a) {
                        set.remove(&key);
                        if set.is_empty() {
                            self.pinned.remove(a);
                        }
                    }
                }
                (None, _) => {
                    self.pool(&old.pool).queue.remove(&key);
                }
            }
        }
    }

    /// A job was created or changed.
    pub fn upsert_job(&mut self, slot: JobSlot) {
        let holder = match slot.status {
            JobStatus::Unallocated => None,
            // Allocated without an agent cannot happen; it would count as queued.
            JobStatus::Allocated | JobStatus::Running => slot.agent.clone(),
            JobStatus::Finished | JobStatus::Errored | JobStatus::Canceled => {
                self.remove_job(&slot.id);
                return;
            }
        };
        if let Some(old) = self.jobs.get(&slot.id) {
            if old.agent == holder
                && old.pool == slot.pool
                && old.queued_at == slot.queued_at
                && old.affinity == slot.affinity
            {
                return;
            }
        }
        self.remove_job(&slot.id);
        let key = (slot.queued_at, slot.id.clone());
        let mut pinned = false;
        match (&holder, &slot.affinity) {
            (Some(a), _) => self.add_load(a, 1),
            (None, Some(a))
                if self
                    .agents
                    .get(a)
                    .is_some_and(|e| e.slot.status.is_schedulable()) =>
            {
                self.pinned.entry(a.clone()).or_default().insert(key);
                pinned = true;
            }
            (None, _) => {
                self.pool(&slot.pool).queue.insert(key);
            }
        }
        self.jobs.insert(
            slot.id,
            JobEntry {
                pool: slot.pool,
                queued_at: slot.queued_at,
                agent: holder,
                affinity: slot.affinity,
                pinned,
            },
        );
    }

    /// Make the job index exactly `active` (every non-final job, as freshly
    /// read): jobs whose events were missed are added or corrected, jobs
    /// that ended unseen are dropped.
    pub fn sync_jobs(&mut self, active: Vec<JobSlot>) {
        let keep: std::collections::HashSet<JobId> = active.iter().map(|j| j.id.clone()).collect();
        let stale: Vec<JobId> = self
            .jobs
            .keys()
            .filter(|id| !keep.contains(*id))
            .cloned()
            .collect();
        for id in stale {
            self.remove_job(&id);
        }
        for slot in active {
            self.upsert_job(slot);
        }
    }

    /// Allocate what can be allocated in one pool. The scheduler assumes the
    /// allocations happen; a caller that fails to persist one feeds the job's
    /// real state back with [`Scheduler::upsert_job`].
    pub fn allocate(&mut self, pool: &PoolKey) -> Vec<Allocation> {
        let mut out = self.allocate_pinned(Some(pool));
        while let Some(index) = self.pools.get_mut(pool) {
            let (Some(job_key), Some(agent_key)) =
                (index.queue.first().cloned(), index.ready.first().cloned())
            else {
                break;
            };
            index.queue.remove(&job_key);
            let (_, job_id) = job_key;
            let agent_id = agent_key.2;
            if let Some(j) = self.jobs.get_mut(&job_id) {
                j.agent = Some(agent_id.clone());
            }
            self.add_load(&agent_id, 1);
            out.push(Allocation {
                job: job_id,
                agent: agent_id,
            });
        }
        out
    }

    /// Give pinned jobs to their agents while those have room (drained or
    /// not); only agents of `pool` when given. Agents in id order.
    fn allocate_pinned(&mut self, pool: Option<&PoolKey>) -> Vec<Allocation> {
        let mut agents: Vec<AgentId> = self
            .pinned
            .keys()
            .filter(|a| {
                self.agents
                    .get(*a)
                    .is_some_and(|e| pool.is_none_or(|p| e.slot.pool == *p))
            })
            .cloned()
            .collect();
        agents.sort();
        let mut out = Vec::new();
        for agent in agents {
            loop {
                let room = self
                    .agents
                    .get(&agent)
                    .is_some_and(|e| e.slot.status.is_schedulable() && e.load < e.slot.max_jobs);
                let Some(key) = self.pinned.get(&agent).and_then(|s| s.first().cloned()) else {
                    break;
                };
                if !room {
                    break;
                }
                if let Some(set) = self.pinned.get_mut(&agent) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.pinned.remove(&agent);
                    }
                }
                if let Some(j) = self.jobs.get_mut(&key.1) {
                    j.agent = Some(agent.clone());
                    j.pinned = false;
                }
                self.add_load(&agent, 1);
                out.push(Allocation {
                    job: key.1,
                    agent: agent.clone(),
                });
            }
        }
        out
    }

    /// Allocate in every pool, pools in a stable order.
    pub fn allocate_all(&mut self) -> Vec<Allocation> {
        let mut out = self.allocate_pinned(None);
        let mut keys: Vec<PoolKey> = self
            .pools
            .iter()
            .filter(|(_, p)| !p.queue.is_empty() && !p.ready.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        out.extend(
            keys.iter()
                .flat_map(|k| self.allocate(k))
                .collect::<Vec<_>>(),
        );
        out
    }

    /// The jobs of a pool still waiting, in order, and why.
    pub fn waiting(&self, pool: &PoolKey) -> (Vec<JobId>, Option<WaitReason>) {
        let Some(index) = self.pools.get(pool) else {
            return (Vec::new(), None);
        };
        let jobs: Vec<JobId> = index.queue.iter().map(|(_, id)| id.clone()).collect();
        let reason = if jobs.is_empty() {
            None
        } else if index.live == 0 {
            Some(WaitReason::NoAgent)
        } else if index.drained == index.live {
            Some(WaitReason::Drained)
        } else {
            Some(WaitReason::NoCapacity)
        };
        (jobs, reason)
    }

    /// How many jobs the scheduler counts against an agent.
    pub fn load(&self, agent: &AgentId) -> u32 {
        self.agents
            .get(agent)
            .map(|e| e.load)
            .or_else(|| self.orphan_load.get(agent).copied())
            .unwrap_or(0)
    }

    /// Every pool with queued jobs, sorted.
    pub fn pools_with_queue(&self) -> Vec<PoolKey> {
        let mut v: Vec<PoolKey> = self
            .pools
            .iter()
            .filter(|(_, p)| !p.queue.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    pub fn queued_len(&self) -> usize {
        self.pools.values().map(|p| p.queue.len()).sum()
    }

    /// Jobs per pool and agent, for views; sorted.
    pub fn assignments(&self) -> BTreeMap<AgentId, u32> {
        self.agents
            .iter()
            .filter(|(_, e)| e.load > 0)
            .map(|(id, e)| (id.clone(), e.load))
            .collect()
    }
}

#[cfg(test)]
mod tests;
