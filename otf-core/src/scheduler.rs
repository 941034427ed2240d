//! The scheduler: a pure, deterministic index of queued jobs and ready agents,
//! per pool. Each event costs O(log n): nothing rescans all jobs or agents.
//!
//! Eligibility: a job goes only to an agent of the same pool (`None` = the
//! server runner), that is idle or busy, not drained, below its `max_jobs`,
//! and whose labels include every pair of the job's selector. Among those the
//! least loaded wins, then the most recently seen, then the smallest id.
//! Jobs of a pool are served first come, first served (by `queued_at`, id)
//! among the jobs some agent can take: a job no agent matches does not hold
//! up the others.
//!
//! Labels are indexed by *class*: one class per distinct selector of a pool
//! (the empty selector's class holds every agent). An agent belongs to each
//! class whose selector its labels include, and each class keeps its own
//! queue and ready set; the pool keeps the head job of every class that can
//! allocate, oldest first. An agent's change therefore costs O(log n) per
//! class it belongs to, and a job's O(log n): neither grows with the number
//! of agents or of label combinations. A new class is filled once, from the
//! agents carrying its rarest pair.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::agent::{Agent, AgentStatus};
use crate::clock::Timestamp;
use crate::ids::{AgentId, JobId, PoolId};
use crate::job::{Job, JobStatus};
use crate::labels::Labels;

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
    pub labels: Labels,
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
            labels: a.labels.clone(),
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
    /// Pairs the agent's labels must include.
    pub selector: Labels,
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
            selector: j.selector.clone(),
        }
    }
}

/// A decision: give `job` to `agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub job: JobId,
    pub agent: AgentId,
}

crate::enums::wire_enum!(
    /// Why a queued job waits.
    WaitReason, "wait reason" {
        /// No idle or busy agent in the pool.
        NoAgent => "no-agent",
        /// Every live agent that may take it is at its maximum.
        NoCapacity => "no-capacity",
        /// Every live agent that may take it is drained.
        Drained => "drained",
        /// The pool has live agents, but none whose labels include the
        /// job's selector.
        NoMatchingAgent => "no-matching-agent",
    }
);

impl WaitReason {
    /// The sentence users read, for a job of pool `pool` (its name; None:
    /// the server runner) with `selector`.
    pub fn describe(self, pool: Option<&str>, selector: &Labels) -> String {
        let Some(pool) = pool else {
            return match self {
                WaitReason::NoCapacity => "the server runner is busy".into(),
                WaitReason::Drained => "the server runner is drained".into(),
                _ => "the server runner is not running".into(),
            };
        };
        let with = if selector.is_empty() {
            String::new()
        } else {
            format!(" with labels {selector}")
        };
        match self {
            WaitReason::NoAgent => format!("no agent of pool {pool} is online"),
            WaitReason::NoCapacity => format!("every agent of pool {pool}{with} is busy"),
            WaitReason::Drained => format!("every agent of pool {pool}{with} is drained"),
            WaitReason::NoMatchingAgent => format!("no agent of pool {pool} has labels {selector}"),
        }
    }
}

type ReadyKey = (u32, Reverse<Timestamp>, AgentId);
type QueueKey = (Timestamp, JobId);
/// A class's index within its pool; classes are never removed, so it is
/// stable for the scheduler's life.
type ClassId = usize;
/// The class of the empty selector: every agent of the pool.
const ALL: ClassId = 0;

/// The jobs of one selector and the agents that may take them.
#[derive(Debug, Default)]
struct Class {
    selector: Labels,
    queue: BTreeSet<QueueKey>,
    /// Schedulable members with spare capacity, best first.
    ready: BTreeSet<ReadyKey>,
    /// Schedulable members, with or without capacity.
    live: usize,
    /// Schedulable members that are drained.
    drained: usize,
    /// This class's entry in its pool's `heads`.
    head: Option<QueueKey>,
}

#[derive(Debug)]
struct PoolIndex {
    classes: Vec<Class>,
    by_selector: HashMap<Labels, ClassId>,
    /// The first queued job of every class that can allocate now (its queue
    /// and its ready set both non-empty), oldest first.
    heads: BTreeSet<(QueueKey, ClassId)>,
    /// The pool's agents by label pair, to fill a new class.
    by_label: HashMap<(String, String), BTreeSet<AgentId>>,
    queued: usize,
}

impl Default for PoolIndex {
    fn default() -> Self {
        PoolIndex {
            classes: vec![Class::default()],
            by_selector: HashMap::new(),
            heads: BTreeSet::new(),
            by_label: HashMap::new(),
            queued: 0,
        }
    }
}

impl PoolIndex {
    /// Re-file class `c` in `heads` after its queue or ready set changed.
    fn refresh_head(&mut self, c: ClassId) {
        let class = &mut self.classes[c];
        let now = match class.ready.is_empty() {
            true => None,
            false => class.queue.first(),
        };
        if now == class.head.as_ref() {
            return;
        }
        let now = now.cloned();
        if let Some(old) = std::mem::replace(&mut class.head, now.clone()) {
            self.heads.remove(&(old, c));
        }
        if let Some(first) = now {
            self.heads.insert((first, c));
        }
    }

    fn enqueue(&mut self, c: ClassId, key: QueueKey) {
        if self.classes[c].queue.insert(key) {
            self.queued += 1;
        }
        self.refresh_head(c);
    }

    fn dequeue(&mut self, c: ClassId, key: &QueueKey) {
        if self.classes[c].queue.remove(key) {
            self.queued -= 1;
        }
        self.refresh_head(c);
    }
}

#[derive(Debug)]
struct AgentEntry {
    slot: AgentSlot,
    load: u32,
    /// The classes of its pool it belongs to (always [`ALL`]).
    classes: Vec<ClassId>,
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
    class: ClassId,
    queued_at: Timestamp,
    /// None while queued.
    agent: Option<AgentId>,
    affinity: Option<AgentId>,
    /// Queued for its affinity agent (in `pinned`), not its class's queue.
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
        // Look up before cloning the key: this is on every event's path.
        if !self.pools.contains_key(key) {
            self.pools.insert(key.clone(), PoolIndex::default());
        }
        match self.pools.get_mut(key) {
            Some(p) => p,
            None => unreachable!("inserted above"),
        }
    }

    /// The class of `selector` in `pool`, created (and filled with the
    /// pool's matching agents) when new.
    fn class_of(&mut self, pool_key: &PoolKey, selector: &Labels) -> ClassId {
        // The server runner has no labels: selectors do not apply to it.
        if selector.is_empty() || pool_key.is_none() {
            return ALL;
        }
        let pool = self.pools.entry(pool_key.clone()).or_default();
        if let Some(c) = pool.by_selector.get(selector) {
            return *c;
        }
        let c = pool.classes.len();
        pool.classes.push(Class {
            selector: selector.clone(),
            ..Class::default()
        });
        pool.by_selector.insert(selector.clone(), c);
        // Only agents carrying the selector's rarest pair can match.
        let members: Vec<AgentId> = selector
            .iter()
            .map(|(k, v)| pool.by_label.get(&(k.to_string(), v.to_string())))
            .min_by_key(|set| set.map_or(0, |s| s.len()))
            .flatten()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        for id in members {
            let Some(entry) = self.agents.get_mut(&id) else {
                continue;
            };
            if !entry.slot.labels.includes(selector) {
                continue;
            }
            entry.classes.push(c);
            let key = entry.ready_key();
            let live = entry.slot.status.is_schedulable();
            let drained = live && entry.slot.drained;
            let class = &mut pool.classes[c];
            if let Some(k) = key {
                class.ready.insert(k);
            }
            class.live += usize::from(live);
            class.drained += usize::from(drained);
        }
        c
    }

    /// Remove an agent from its classes' indexes (before changing it).
    fn unindex_agent(&mut self, id: &AgentId) {
        self.reindex_agent(id, false);
    }

    fn index_agent(&mut self, id: &AgentId) {
        self.reindex_agent(id, true);
    }

    fn reindex_agent(&mut self, id: &AgentId, add: bool) {
        let Some(entry) = self.agents.get(id) else {
            return;
        };
        let key = entry.ready_key();
        let live = entry.slot.status.is_schedulable();
        let drained = live && entry.slot.drained;
        let Some(pool) = self.pools.get_mut(&entry.slot.pool) else {
            // Agents are filed under their pool when they first appear.
            return;
        };
        for &c in &entry.classes {
            let class = &mut pool.classes[c];
            if let Some(k) = &key {
                if add {
                    class.ready.insert(k.clone());
                } else {
                    class.ready.remove(k);
                }
            }
            let (l, d) = (usize::from(live), usize::from(drained));
            if add {
                class.live += l;
                class.drained += d;
            } else {
                class.live -= l;
                class.drained -= d;
            }
            pool.refresh_head(c);
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

    /// File or unfile an agent under its label pairs in its pool.
    fn label_postings(&mut self, slot: &AgentSlot, add: bool) {
        let pool = self.pool(&slot.pool);
        for (k, v) in slot.labels.iter() {
            let pair = (k.to_string(), v.to_string());
            if add {
                pool.by_label
                    .entry(pair)
                    .or_default()
                    .insert(slot.id.clone());
            } else if let Some(set) = pool.by_label.get_mut(&pair) {
                set.remove(&slot.id);
                if set.is_empty() {
                    pool.by_label.remove(&pair);
                }
            }
        }
    }

    /// An agent registered or changed.
    pub fn upsert_agent(&mut self, slot: AgentSlot) {
        self.unindex_agent(&slot.id);
        let id = slot.id.clone();
        let (load, classes) = match self.agents.remove(&id) {
            // Labels and pool are fixed at registration: the classes stay.
            Some(e) if e.slot.pool == slot.pool && e.slot.labels == slot.labels => {
                (e.load, e.classes)
            }
            Some(e) => {
                self.label_postings(&e.slot, false);
                self.label_postings(&slot, true);
                (e.load, self.classes_matching(&slot))
            }
            None => {
                self.label_postings(&slot, true);
                let load = self.orphan_load.remove(&id).unwrap_or(0);
                (load, self.classes_matching(&slot))
            }
        };
        let live = slot.status.is_schedulable();
        self.agents.insert(
            id.clone(),
            AgentEntry {
                slot,
                load,
                classes,
            },
        );
        self.index_agent(&id);
        if !live {
            self.unpin(&id);
        }
    }

    /// The classes of its pool an agent belongs to.
    fn classes_matching(&mut self, slot: &AgentSlot) -> Vec<ClassId> {
        let pool = self.pool(&slot.pool);
        let mut out = vec![ALL];
        if !slot.labels.is_empty() {
            out.extend(
                pool.classes
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|(_, c)| slot.labels.includes(&c.selector))
                    .map(|(i, _)| i),
            );
        }
        out
    }

    /// An agent that can no longer take its pinned jobs: they join their
    /// classes' queues.
    fn unpin(&mut self, agent: &AgentId) {
        let Some(keys) = self.pinned.remove(agent) else {
            return;
        };
        for key in keys {
            if let Some(j) = self.jobs.get_mut(&key.1) {
                j.pinned = false;
                let (pool, class) = (j.pool.clone(), j.class);
                self.pool(&pool).enqueue(class, key);
            }
        }
    }

    /// An agent was deleted.
    pub fn remove_agent(&mut self, id: &AgentId) {
        self.unpin(id);
        self.unindex_agent(id);
        if let Some(e) = self.agents.remove(id) {
            self.label_postings(&e.slot, false);
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
                (None, _) => self.pool(&old.pool).dequeue(old.class, &key),
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
        let class = self.class_of(&slot.pool, &slot.selector);
        if let Some(old) = self.jobs.get(&slot.id) {
            if old.agent == holder
                && old.pool == slot.pool
                && old.class == class
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
            (None, _) => self.pool(&slot.pool).enqueue(class, key),
        }
        self.jobs.insert(
            slot.id,
            JobEntry {
                pool: slot.pool,
                class,
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
            let Some((job_key, c)) = index.heads.first().cloned() else {
                break;
            };
            let Some(agent_key) = index.classes[c].ready.first().cloned() else {
                // `heads` holds only classes with a ready agent.
                index.refresh_head(c);
                continue;
            };
            index.dequeue(c, &job_key);
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
            .filter(|(_, p)| !p.heads.is_empty())
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

    /// The jobs of a pool still waiting, first queued first, each with why.
    pub fn waiting(&self, pool: &PoolKey) -> Vec<(JobId, WaitReason)> {
        let Some(index) = self.pools.get(pool) else {
            return Vec::new();
        };
        let all = &index.classes[ALL];
        let mut out: Vec<(QueueKey, WaitReason)> = Vec::with_capacity(index.queued);
        for class in &index.classes {
            let reason = if all.live == 0 {
                WaitReason::NoAgent
            } else if class.live == 0 {
                WaitReason::NoMatchingAgent
            } else if class.drained == class.live {
                WaitReason::Drained
            } else {
                WaitReason::NoCapacity
            };
            out.extend(class.queue.iter().map(|k| (k.clone(), reason)));
        }
        out.sort();
        out.into_iter().map(|((_, id), r)| (id, r)).collect()
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
            .filter(|(_, p)| p.queued > 0)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    pub fn queued_len(&self) -> usize {
        self.pools.values().map(|p| p.queued).sum()
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
