//! The dispatcher: the leader's loop body. It keeps the [`Scheduler`] index in
//! step with agent and job events, persists its allocations, runs the
//! liveness manager and recovers the jobs of lost agents. Adapters drive it:
//! `rebuild` on gaining leadership (or after missing events), `handle` for
//! each event, `tick` about once a second.

use std::collections::HashSet;

use super::{found, Core, Error};
use crate::agent::Agent;
use crate::events::Event;
use crate::ids::{AgentId, JobId};
use crate::job::{job_deadlines, Deadline, JobEvent, LossCause};
use crate::liveness::{liveness_changes, AgentsDue, LivenessChange};
use crate::scheduler::{AgentSlot, JobSlot, PoolKey, Scheduler, WaitReason};
use crate::store::{AgentRepo, JobRepo, RunRepo, Store};

const GONE: LossCause = LossCause::AgentLost { gone: true };

/// Which pools a burst of events may let allocate.
#[derive(Default)]
struct Touched {
    all: bool,
    pools: Vec<PoolKey>,
}

impl Touched {
    fn pool(&mut self, pool: &PoolKey) {
        if !self.pools.contains(pool) {
            self.pools.push(pool.clone());
        }
    }
}

pub struct Dispatcher<S: Store> {
    core: Core<S>,
    scheduler: Scheduler,
}

impl<S: Store> Dispatcher<S> {
    pub fn new(core: Core<S>) -> Self {
        Self {
            core,
            scheduler: Scheduler::new(),
        }
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Which jobs of a pool wait, and why.
    pub fn waiting(&self, pool: &PoolKey) -> Vec<(crate::ids::JobId, WaitReason)> {
        self.scheduler.waiting(pool)
    }

    /// Re-read everything from the store: agents, active jobs. Recovers work
    /// left behind by lost agents, then allocates what it can.
    pub async fn rebuild(&mut self) -> Result<(), Error> {
        let (agents, jobs) = {
            let mut tx = self.core.read().await?;
            (tx.list_agents().await?, tx.list_active_jobs().await?)
        };
        self.scheduler = Scheduler::new();
        for a in &agents {
            self.scheduler.upsert_agent(AgentSlot::from(a));
        }
        for j in &jobs {
            self.scheduler.upsert_job(JobSlot::from(j));
        }
        for a in agents.iter().filter(|a| !a.status.is_schedulable()) {
            self.recover(a).await?;
        }
        let known: HashSet<&AgentId> = agents.iter().map(|a| &a.id).collect();
        for j in &jobs {
            if let Some(agent) = j.agent.as_ref().filter(|a| !known.contains(a)) {
                self.core
                    .handle_lost_job(&j.id, agent, agent.as_str(), GONE)
                    .await?;
                self.refresh_job(&j.id).await?;
            }
        }
        self.allocate_all().await
    }

    /// React to one event.
    pub async fn handle(&mut self, event: &Event) -> Result<(), Error> {
        self.handle_all(std::slice::from_ref(event)).await
    }

    /// React to a burst of events (those that arrived together): the index
    /// takes them all in, then what became allocatable is allocated in one
    /// transaction.
    pub async fn handle_all(&mut self, events: &[Event]) -> Result<(), Error> {
        let mut touched = Touched::default();
        for event in events {
            self.absorb(event, &mut touched).await?;
        }
        let allocations = match touched {
            Touched { all: true, .. } => self.scheduler.allocate_all(),
            Touched { pools, .. } => pools
                .iter()
                .flat_map(|p| self.scheduler.allocate(p))
                .collect(),
        };
        self.persist(allocations).await
    }

    /// Take one event into the index (recovering what a lost agent held);
    /// note which pools may now allocate.
    async fn absorb(&mut self, event: &Event, touched: &mut Touched) -> Result<(), Error> {
        match event {
            Event::Agent(a) => {
                self.scheduler.upsert_agent(AgentSlot::from(a));
                if !a.status.is_schedulable() {
                    self.recover(a).await?;
                }
                touched.pool(&a.pool);
            }
            Event::AgentDeleted(id) => {
                self.scheduler.remove_agent(id);
                let jobs = {
                    let mut tx = self.core.read().await?;
                    tx.list_jobs_of_agent(id).await?
                };
                for j in jobs {
                    self.core
                        .handle_lost_job(&j.id, id, id.as_str(), GONE)
                        .await?;
                    self.refresh_job(&j.id).await?;
                }
                touched.all = true;
            }
            Event::Job(j) => {
                self.scheduler.upsert_job(JobSlot::from(j));
                touched.pool(&j.pool);
            }
            _ => {}
        }
        Ok(())
    }

    /// Flush batched pings, apply the liveness manager's decisions, re-read
    /// the active jobs (so a missed event delays an allocation by one tick
    /// at most), apply the jobs' timers, and retry allocation.
    pub async fn tick(&mut self) -> Result<(), Error> {
        self.core.flush_last_seen().await?;
        // Only the agents that went quiet: the fleet at large pinged lately.
        let now = self.core.now();
        let liveness = &self.core.config.liveness;
        let agents = {
            let mut tx = self.core.read().await?;
            tx.list_agents_due(&AgentsDue::at(now, liveness)).await?
        };
        for change in liveness_changes(&agents, now, liveness) {
            if let Some(event) = self.core.apply_liveness(&change).await? {
                self.handle(&event).await?;
            }
        }
        // Read after the liveness changes: jobs they moved (and allocated
        // again) must not be synced back to what they were before.
        let jobs = {
            let mut tx = self.core.read().await?;
            tx.list_active_jobs().await?
        };
        self.scheduler
            .sync_jobs(jobs.iter().map(JobSlot::from).collect());
        let config = &self.core.config;
        for (job, deadline) in
            job_deadlines(&jobs, now, &config.job_timers, config.force_cancel_cool_off)
        {
            self.core.apply_deadline(&job, &deadline).await?;
            self.refresh_job(&job).await?;
        }
        self.allocate_all().await
    }

    /// Move the jobs of an agent that is not schedulable.
    async fn recover(&mut self, agent: &Agent) -> Result<(), Error> {
        let jobs = {
            let mut tx = self.core.read().await?;
            tx.list_jobs_of_agent(&agent.id).await?
        };
        let cause = LossCause::AgentLost {
            gone: agent.status.is_final(),
        };
        let name = agent.label();
        for j in jobs {
            self.core
                .handle_lost_job(&j.id, &agent.id, &name, cause)
                .await?;
            self.refresh_job(&j.id).await?;
        }
        Ok(())
    }

    /// Feed the job's stored state (and that of its run's retry, if any) back
    /// into the index.
    async fn refresh_job(&mut self, id: &crate::ids::JobId) -> Result<(), Error> {
        let mut tx = self.core.read().await?;
        let Some(job) = tx.get_job(id).await? else {
            return Ok(());
        };
        for j in tx.list_jobs_of_run(&job.run).await? {
            self.scheduler.upsert_job(JobSlot::from(&j));
        }
        Ok(())
    }

    async fn allocate_all(&mut self) -> Result<(), Error> {
        let allocations = self.scheduler.allocate_all();
        self.persist(allocations).await
    }

    /// Store the allocations, all in one transaction, and take back what
    /// the store holds.
    async fn persist(
        &mut self,
        allocations: Vec<crate::scheduler::Allocation>,
    ) -> Result<(), Error> {
        let pairs: Vec<(JobId, AgentId)> = allocations
            .iter()
            .map(|a| (a.job.clone(), a.agent.clone()))
            .collect();
        let stored = self.core.allocate_jobs(&pairs).await?;
        for (a, job) in allocations.into_iter().zip(stored) {
            match job {
                Some(job) => self.scheduler.upsert_job(JobSlot::from(&job)),
                // Deleted meanwhile (its workspace went away).
                None => self.scheduler.upsert_job(JobSlot {
                    id: a.job,
                    pool: None,
                    status: crate::job::JobStatus::Canceled,
                    agent: None,
                    queued_at: crate::clock::Timestamp(0),
                    affinity: None,
                    selector: Default::default(),
                }),
            }
        }
        Ok(())
    }
}

impl<S: Store> Core<S> {
    /// Apply one liveness decision if it still holds on the locked agent.
    /// Returns the event it caused.
    pub async fn apply_liveness(&self, change: &LivenessChange) -> Result<Option<Event>, Error> {
        let id = match change {
            LivenessChange::Apply(id, _) | LivenessChange::Purge(id) => id,
        };
        let now = self.now();
        let mut tx = self.begin().await?;
        let Some(mut agent) = tx.lock_agent(id).await? else {
            return Ok(None);
        };
        // Re-decide on fresh data: a ping may have arrived meanwhile.
        let still = liveness_changes(std::slice::from_ref(&agent), now, &self.config.liveness);
        if still.first() != Some(change) {
            return Ok(None);
        }
        let event = match change {
            LivenessChange::Apply(_, ev) => {
                agent.apply(*ev, now)?;
                tx.update_agent(&agent).await?;
                Event::Agent(agent)
            }
            LivenessChange::Purge(_) => {
                tx.delete_agent(id).await?;
                Event::AgentDeleted(id.clone())
            }
        };
        self.commit(tx, vec![event.clone()]).await?;
        Ok(Some(event))
    }
}

impl<S: Store> Core<S> {
    /// Apply one job timer's decision if it still holds on fresh data (the
    /// job's workspace locked): re-allocate a job its agent never started,
    /// or cancel (then force-cancel) one that ran past its phase's timeout,
    /// with a line in the run's log saying why.
    pub async fn apply_deadline(&self, job: &JobId, deadline: &Deadline) -> Result<(), Error> {
        let now = self.now();
        let mut tx = self.begin().await?;
        let Some((mut ws, mut job)) = super::jobs::lock_job(&mut tx, job).await? else {
            return Ok(());
        };
        let config = &self.config;
        let still = job_deadlines(
            std::slice::from_ref(&job),
            now,
            &config.job_timers,
            config.force_cancel_cool_off,
        );
        if still.first().map(|d| &d.1) != Some(deadline) {
            return Ok(());
        }
        let mut events = Vec::new();
        match deadline {
            Deadline::Reallocate => {
                job.apply(JobEvent::Reallocate, now)?;
                job.follow_selector(&ws);
                tx.update_job(&job).await?;
                events.push(Event::Job(job));
            }
            Deadline::Cancel { message } | Deadline::ForceCancel { message } => {
                let mut run = found(tx.get_run(&job.run).await?, "run", &job.run)?;
                if matches!(deadline, Deadline::ForceCancel { .. })
                    && !run.is_force_cancelable(now, config.force_cancel_cool_off)
                {
                    // The cancel came a little after the timeout: its
                    // cool-off is not over yet; a later tick decides.
                    return Ok(());
                }
                events.push(self.log_notice(&mut tx, &run, job.phase, message).await?);
                if matches!(deadline, Deadline::Cancel { .. }) {
                    self.cancel_in(&mut tx, &mut run, &mut events).await?;
                } else {
                    self.force_cancel_in(&mut tx, &mut run, &mut events).await?;
                }
                self.save_run(&mut tx, &run, &mut events).await?;
                events.push(Event::Run(run.clone()));
                if run.status.is_final() {
                    self.release_workspace(&mut tx, &mut ws, &run, &mut events)
                        .await?;
                }
            }
        }
        self.commit(tx, events).await
    }
}
