//! The gauges `/metrics` shows, kept up to date by events instead of table
//! scans per scrape: agents by pool and status, runs by status, active jobs
//! by status and phase. [`Gauges::rebuild`] starts from the store (once at
//! start, and again after missed events); [`Gauges::apply`] follows each
//! event in O(log n).
//!
//! Runs: only runs that are not final can change, so their statuses are
//! kept one by one and final runs as counts; a run is counted under a final
//! status when it leaves the active set.
//!
//! Pools ([`Gauges::pools`]): what autoscalers read: queued and running
//! jobs, the age of the oldest queued job, and free job slots of live,
//! undrained agents, per pool (the server runner's is `server`).

use std::collections::BTreeMap;

use crate::agent::{Agent, AgentStatus};
use crate::clock::Timestamp;
use crate::events::Event;
use crate::ids::{AgentId, JobId, PoolId, RunId};
use crate::job::{Job, JobPhase, JobStatus};
use crate::run::RunStatus;

/// What the store holds, in the shape the gauges count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    agents: BTreeMap<AgentId, AgentEntry>,
    jobs: BTreeMap<JobId, JobEntry>,
    active_runs: BTreeMap<RunId, RunStatus>,
    final_runs: BTreeMap<RunStatus, u64>,
}

/// One gauge family's values, by label values.
pub type Counts<K> = BTreeMap<K, u64>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct AgentEntry {
    pool: Option<PoolId>,
    status: AgentStatus,
    max_jobs: u32,
    drained: bool,
}

impl From<&Agent> for AgentEntry {
    fn from(a: &Agent) -> Self {
        AgentEntry {
            pool: a.pool.clone(),
            status: a.status,
            max_jobs: a.max_jobs,
            drained: a.drained,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct JobEntry {
    status: JobStatus,
    phase: JobPhase,
    pool: Option<PoolId>,
    agent: Option<AgentId>,
    queued_at: Timestamp,
}

impl From<&Job> for JobEntry {
    fn from(j: &Job) -> Self {
        JobEntry {
            status: j.status,
            phase: j.phase,
            pool: j.pool.clone(),
            agent: j.agent.clone(),
            queued_at: j.queued_at,
        }
    }
}

/// A pool's queue, as autoscalers read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolQueue {
    /// Jobs waiting for an agent.
    pub queued: u64,
    /// Jobs allocated to or running on an agent.
    pub running: u64,
    /// How long the oldest queued job has waited (0 when none waits).
    pub oldest_queued_seconds: u64,
    /// Free job slots of live (idle or busy), undrained agents.
    pub capacity: u64,
    /// Agents by status.
    pub agents: BTreeMap<AgentStatus, u64>,
}

/// The label of a pool (`server` for the server runner).
fn pool_label(pool: &Option<PoolId>) -> String {
    pool.as_ref()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "server".into())
}

impl Gauges {
    /// From a reading of the store: every agent, the active jobs, the
    /// statuses of active runs, and run counts by status.
    pub fn rebuild(
        agents: &[Agent],
        active_jobs: &[Job],
        active_runs: &[(RunId, RunStatus)],
        runs_by_status: &[(RunStatus, u64)],
    ) -> Gauges {
        Gauges {
            agents: agents
                .iter()
                .map(|a| (a.id.clone(), AgentEntry::from(a)))
                .collect(),
            jobs: active_jobs
                .iter()
                .filter(|j| !j.status.is_final())
                .map(|j| (j.id.clone(), JobEntry::from(j)))
                .collect(),
            active_runs: active_runs.iter().cloned().collect(),
            final_runs: runs_by_status
                .iter()
                .filter(|(s, _)| s.is_final())
                .copied()
                .collect(),
        }
    }

    /// Follow one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Agent(a) => {
                self.agents.insert(a.id.clone(), AgentEntry::from(a));
            }
            Event::AgentDeleted(id) => {
                self.agents.remove(id);
            }
            Event::Job(j) if j.status.is_final() => {
                self.jobs.remove(&j.id);
            }
            Event::Job(j) => {
                self.jobs.insert(j.id.clone(), JobEntry::from(j));
            }
            Event::Run(r) if r.status.is_final() => {
                if self.active_runs.remove(&r.id).is_some() {
                    *self.final_runs.entry(r.status).or_default() += 1;
                }
            }
            Event::Run(r) => {
                self.active_runs.insert(r.id.clone(), r.status);
            }
            Event::Workspace(_) | Event::Log { .. } | Event::TokenRevoked(_) => {}
        }
    }

    /// Agents by (pool, status); the server runner's pool is `server`.
    pub fn agents(&self) -> Counts<(String, AgentStatus)> {
        let mut out = Counts::new();
        for a in self.agents.values() {
            *out.entry((pool_label(&a.pool), a.status)).or_default() += 1;
        }
        out
    }

    /// Every pool's queue at `now`, by pool label: pools with agents or
    /// active jobs.
    pub fn pools(&self, now: Timestamp) -> BTreeMap<String, PoolQueue> {
        let mut out: BTreeMap<String, PoolQueue> = BTreeMap::new();
        let mut load: BTreeMap<&AgentId, u64> = BTreeMap::new();
        for j in self.jobs.values() {
            let q = out.entry(pool_label(&j.pool)).or_default();
            match j.status {
                JobStatus::Unallocated => {
                    q.queued += 1;
                    let waited = now.since(j.queued_at).as_secs();
                    q.oldest_queued_seconds = q.oldest_queued_seconds.max(waited);
                }
                JobStatus::Allocated | JobStatus::Running => {
                    q.running += 1;
                    if let Some(a) = &j.agent {
                        *load.entry(a).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        for (id, a) in &self.agents {
            let q = out.entry(pool_label(&a.pool)).or_default();
            *q.agents.entry(a.status).or_default() += 1;
            if a.status.is_schedulable() && !a.drained {
                let held = load.get(id).copied().unwrap_or(0);
                q.capacity += u64::from(a.max_jobs).saturating_sub(held);
            }
        }
        out
    }

    /// Runs by status.
    pub fn runs(&self) -> Counts<RunStatus> {
        let mut out: Counts<RunStatus> = self
            .final_runs
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (*s, *n))
            .collect();
        for status in self.active_runs.values() {
            *out.entry(*status).or_default() += 1;
        }
        out
    }

    /// Active jobs by (status, phase).
    pub fn jobs(&self) -> Counts<(JobStatus, JobPhase)> {
        let mut out = Counts::new();
        for j in self.jobs.values() {
            *out.entry((j.status, j.phase)).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::job::Job;
    use crate::run::{Run, RunOptions};
    use crate::workspace::{ExecutionMode, Workspace};
    use proptest::prelude::*;

    fn ids<T: std::str::FromStr>(prefix: &str, i: u8) -> T
    where
        T::Err: std::fmt::Debug,
    {
        format!("{prefix}-{i:0>16}").parse().unwrap()
    }

    fn agent(i: u8, pool: Option<u8>, status: AgentStatus) -> Agent {
        Agent {
            labels: Default::default(),
            id: ids("agent", i),
            name: "a".into(),
            version: "0".into(),
            pool: pool.map(|p| ids("apool", p)),
            organization: None,
            status,
            max_jobs: 1,
            ip_address: "127.0.0.1".into(),
            last_ping_at: Timestamp(0),
            last_status_at: Timestamp(0),
            token: None,
            registered_at: Timestamp(0),
            drained: false,
            single: false,
        }
    }

    fn workspace() -> Workspace {
        Workspace {
            agent_selector: Default::default(),
            id: ids("ws", 1),
            organization: "acme".parse().unwrap(),
            name: "w".into(),
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

    fn run(i: u8, status: RunStatus) -> Run {
        let mut r = Run::new(
            ids("run", i),
            &workspace(),
            ids("cv", 1),
            RunOptions::default(),
            Timestamp(0),
        );
        r.status = status;
        r
    }

    fn job(i: u8, status: JobStatus, phase: JobPhase) -> Job {
        Job {
            selector: Default::default(),
            id: ids("job", i),
            run: ids("run", i),
            phase,
            status,
            pool: None,
            organization: "acme".parse().unwrap(),
            workspace: ids("ws", 1),
            agent: None,
            attempt: 1,
            queued_at: Timestamp(0),
            signal: None,
            token_hash: None,
            error: None,
            updated_at: Timestamp(0),
            log_dropped: 0,
            affinity: None,
        }
    }

    /// A store in miniature: what a rebuild would read.
    #[derive(Default)]
    struct Model {
        agents: BTreeMap<u8, Agent>,
        jobs: BTreeMap<u8, Job>,
        runs: BTreeMap<u8, Run>,
    }

    impl Model {
        fn rebuild(&self) -> Gauges {
            let agents: Vec<Agent> = self.agents.values().cloned().collect();
            let jobs: Vec<Job> = self
                .jobs
                .values()
                .filter(|j| !j.status.is_final())
                .cloned()
                .collect();
            let active: Vec<(RunId, RunStatus)> = self
                .runs
                .values()
                .filter(|r| !r.status.is_final())
                .map(|r| (r.id.clone(), r.status))
                .collect();
            let mut counts: BTreeMap<RunStatus, u64> = BTreeMap::new();
            for r in self.runs.values() {
                *counts.entry(r.status).or_default() += 1;
            }
            let counts: Vec<(RunStatus, u64)> = counts.into_iter().collect();
            Gauges::rebuild(&agents, &jobs, &active, &counts)
        }
    }

    proptest! {
        /// Following events gives the same gauges as reading the store
        /// again, after every event of any sequence the store allows
        /// (final runs and jobs never change again).
        #[test]
        fn events_keep_the_gauges_equal_to_a_rebuild(
            ops in proptest::collection::vec((0u8..4, 0u8..6, any::<usize>(), proptest::option::of(0u8..2)), 0..60)
        ) {
            let mut model = Model::default();
            let mut gauges = model.rebuild();
            for (kind, i, pick, pool) in ops {
                let event = match kind {
                    0 => {
                        let a = agent(i, pool, AgentStatus::ALL[pick % AgentStatus::ALL.len()]);
                        model.agents.insert(i, a.clone());
                        Event::Agent(a)
                    }
                    1 => {
                        model.agents.remove(&i);
                        Event::AgentDeleted(ids("agent", i))
                    }
                    2 => {
                        if model.jobs.get(&i).is_some_and(|j| j.status.is_final()) {
                            continue;
                        }
                        let phase = if pick % 2 == 0 { JobPhase::Plan } else { JobPhase::Apply };
                        let j = job(i, JobStatus::ALL[pick % JobStatus::ALL.len()], phase);
                        model.jobs.insert(i, j.clone());
                        Event::Job(j)
                    }
                    _ => {
                        if model.runs.get(&i).is_some_and(|r| r.status.is_final()) {
                            continue;
                        }
                        // A new run starts pending, as the store makes it.
                        let status = if model.runs.contains_key(&i) {
                            RunStatus::ALL[pick % RunStatus::ALL.len()]
                        } else {
                            RunStatus::Pending
                        };
                        let r = run(i, status);
                        model.runs.insert(i, r.clone());
                        Event::Run(r)
                    }
                };
                gauges.apply(&event);
                let again = model.rebuild();
                prop_assert_eq!(gauges.agents(), again.agents());
                prop_assert_eq!(gauges.jobs(), again.jobs());
                prop_assert_eq!(gauges.runs(), again.runs());
                prop_assert_eq!(gauges.pools(Timestamp(5_000)), again.pools(Timestamp(5_000)));
            }
        }
    }

    #[test]
    fn pool_queues_for_autoscalers() {
        let pool = Some(1);
        let mut g = Gauges::default();
        let mut busy = agent(1, pool, AgentStatus::Busy);
        busy.max_jobs = 3;
        let mut drained = agent(2, pool, AgentStatus::Idle);
        drained.drained = true;
        drained.max_jobs = 5;
        for a in [busy, drained, agent(3, pool, AgentStatus::Unknown)] {
            g.apply(&Event::Agent(a));
        }
        let mut running = job(1, JobStatus::Running, JobPhase::Plan);
        running.pool = Some(ids("apool", 1));
        running.agent = Some(ids("agent", 1));
        let mut old = job(2, JobStatus::Unallocated, JobPhase::Plan);
        old.pool = Some(ids("apool", 1));
        old.queued_at = Timestamp(1_000);
        let mut new = job(3, JobStatus::Unallocated, JobPhase::Apply);
        new.pool = Some(ids("apool", 1));
        new.queued_at = Timestamp(9_000);
        let server = job(4, JobStatus::Unallocated, JobPhase::Plan);
        for j in [running, old, new, server] {
            g.apply(&Event::Job(j));
        }
        let pools = g.pools(Timestamp(11_500));
        let q = &pools[&ids::<PoolId>("apool", 1).to_string()];
        assert_eq!(
            (q.queued, q.running, q.oldest_queued_seconds, q.capacity),
            (2, 1, 10, 2),
            "capacity: 3 slots of the busy agent minus its job; drained and unknown agents add none"
        );
        assert_eq!(q.agents[&AgentStatus::Idle], 1);
        assert_eq!(pools["server"].queued, 1);
        assert_eq!(pools["server"].capacity, 0);
    }
}
