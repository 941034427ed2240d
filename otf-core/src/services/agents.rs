//! The agent side of the protocol: register, ping, wait for jobs and signals,
//! plus the administrator's view of agents.

use super::waiters::WaitKey;
use super::{allow, found, Core, Error};
use crate::agent::{
    agent_transition, Agent, AgentEvent, AgentStatus, AgentStatusFilter, ReportedStatus,
};
use crate::auth::{authorize_agent, authorize_organization, Access, Subject};
use crate::clock::Timestamp;
use crate::events::Event;
use crate::ids::{AgentId, JobId, PoolId};
use crate::job::{Job, JobStatus, LossCause, Signal};
use crate::store::{AgentRepo, JobRepo, PoolRepo, Store};

/// What an agent says about itself when registering.
#[derive(Debug, Clone)]
pub struct RegisterAgent {
    pub name: String,
    pub version: String,
    pub max_jobs: u32,
    /// The address the request came from, as the server saw it.
    pub ip_address: String,
    /// The agent protocol it speaks ([`crate::agent::AGENT_PROTOCOLS`]).
    pub protocol: u32,
    /// A single-execution agent: one run, then it exits.
    pub single: bool,
    /// Its labels, matched by workspaces' agent selectors.
    pub labels: crate::labels::Labels,
}

/// What otfd answers to a status ping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingAnswer {
    pub status: AgentStatus,
    /// Jobs the agent reported that otfd considers ended (or not its own):
    /// the agent cancels them.
    pub cancel: Vec<JobId>,
    /// The agent is drained: it gets no new job.
    pub drained: bool,
}

/// Reconcile what an agent reports it holds with the active jobs otfd has
/// on it (`held`): (jobs to cancel on the agent, running jobs it no longer
/// holds). A running job counts as unreported only once it has run for
/// `grace` (a ping sent just before the agent took it may arrive after its
/// start). Pure.
pub fn reconcile(
    held: &[Job],
    reported: &[JobId],
    now: Timestamp,
    grace: std::time::Duration,
) -> (Vec<JobId>, Vec<JobId>) {
    let cancel = reported
        .iter()
        .filter(|r| !held.iter().any(|h| &h.id == *r))
        .cloned()
        .collect();
    let unreported = held
        .iter()
        .filter(|h| {
            h.status == JobStatus::Running
                && !reported.contains(&h.id)
                && now.since(h.updated_at) >= grace
        })
        .map(|h| h.id.clone())
        .collect();
    (cancel, unreported)
}

/// An agent with the number of jobs it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub agent: Agent,
    pub current_jobs: u32,
}

impl<S: Store> Core<S> {
    /// Register an agent for the subject's pool (or the server runner).
    pub async fn register_agent(
        &self,
        subject: &Subject,
        req: RegisterAgent,
    ) -> Result<Agent, Error> {
        let (pool, organization, token) = match subject {
            Subject::AgentToken {
                pool,
                organization,
                token,
            } => (
                Some(pool.clone()),
                Some(organization.clone()),
                Some(token.clone()),
            ),
            Subject::ServerRunner => (None, None, None),
            _ => return Err(Error::Forbidden("only agent tokens may register agents")),
        };
        crate::agent::check_agent_protocol(&req.version, req.protocol, crate::VERSION)?;
        if req.max_jobs == 0 || req.max_jobs > 1000 {
            return Err(Error::Invalid {
                field: "max-jobs",
                reason: format!(
                    "{} is out of range: an agent runs 1 to 1000 jobs at once",
                    req.max_jobs
                ),
            });
        }
        let name = req.name.trim();
        if name.chars().count() > 255 || name.chars().any(char::is_control) {
            return Err(Error::Invalid {
                field: "name",
                reason: "an agent name is at most 255 printable characters".into(),
            });
        }
        let now = self.now();
        let id = AgentId::generate(self.rng.as_ref());
        let mut tx = self.begin().await?;
        // Agents that join a drained pool start drained.
        let drained = match &pool {
            Some(p) => tx.get_pool(p).await?.is_some_and(|p| p.drained),
            None => false,
        };
        let agent = Agent {
            name: if name.is_empty() {
                id.to_string()
            } else {
                name.to_string()
            },
            id,
            version: req.version,
            pool,
            organization,
            status: AgentStatus::Idle,
            max_jobs: req.max_jobs,
            ip_address: req.ip_address,
            last_ping_at: now,
            last_status_at: now,
            token,
            registered_at: now,
            drained,
            labels: req.labels,
            single: req.single,
        };
        tx.insert_agent(&agent).await?;
        self.commit(tx, vec![Event::Agent(agent.clone())]).await?;
        Ok(agent)
    }

    /// The agent `id`, if the subject may act as it. Agents that are final
    /// answer [`Error::AgentGone`]: they must register again.
    async fn agent_for(
        &self,
        tx: &mut S::Tx,
        subject: &Subject,
        id: &AgentId,
    ) -> Result<Agent, Error> {
        let agent = found(tx.get_agent(id).await?, "agent", id)?;
        Self::check_agent(subject, agent)
    }

    /// The agent may be used by `subject` and is not gone.
    fn check_agent(subject: &Subject, agent: Agent) -> Result<Agent, Error> {
        allow(
            authorize_agent(subject, agent.pool.as_ref(), agent.token.as_ref()),
            "agent",
            &agent.id,
        )?;
        if agent.status.is_final() {
            return Err(Error::AgentGone {
                agent: agent.id.to_string(),
                status: agent.status,
            });
        }
        Ok(agent)
    }

    /// What the agent cache knows of `id` (nothing while this process does
    /// not route the bus's events: then nothing would keep it fresh).
    fn cached_agent(&self, id: &AgentId, now: Timestamp) -> Option<super::agent_cache::Cached> {
        if !self.waiters.routing() {
            return None;
        }
        self.agents.get(id, now)
    }

    /// Remember what a read found (only while events are routed).
    fn remember_agent(
        &self,
        agent: &Agent,
        no_jobs: Option<bool>,
        start: super::agent_cache::ReadStart,
        now: Timestamp,
    ) {
        if self.waiters.routing() {
            self.agents.put(agent, no_jobs, start, now);
        }
    }

    /// A status ping. A ping that changes nothing is only remembered in
    /// memory and flushed in batches; a status change is committed before it
    /// is acknowledged.
    ///
    /// `running`: the jobs the agent holds (None from agents that do not
    /// report them). Reconciled against what otfd believes: a job the agent
    /// holds that otfd considers ended (or another agent's) is answered in
    /// [`PingAnswer::cancel`]; a job running on this agent for at least one
    /// ping interval that the agent no longer holds is recovered
    /// ([`LossCause::Unreported`]).
    pub async fn ping(
        &self,
        subject: &Subject,
        agent: &AgentId,
        status: ReportedStatus,
        running: Option<&[JobId]>,
    ) -> Result<PingAnswer, Error> {
        let id = agent;
        let now = self.now();
        // Most pings change nothing: they only read (beside the writer, or
        // nothing at all when the agent cache knows the agent and that it
        // holds no job), and their last-seen time is written in a batch.
        let cached = self
            .cached_agent(id, now)
            .filter(|c| running.is_none() || c.no_jobs);
        let (current, held) = match cached {
            Some(c) => (Self::check_agent(subject, c.agent)?, Vec::new()),
            None => {
                let start = self.agents.before_read();
                let mut tx = self.read().await?;
                let current = self.agent_for(&mut tx, subject, id).await?;
                let held = match running {
                    Some(_) => tx.list_jobs_of_agent(id).await?,
                    None => Vec::new(),
                };
                let no_jobs = running.map(|_| held.is_empty());
                self.remember_agent(&current, no_jobs, start, now);
                (current, held)
            }
        };
        let target = agent_transition(id, current.status, AgentEvent::Ping(status))?;
        let (cancel, unreported) = match running {
            Some(reported) => reconcile(&held, reported, now, self.config.liveness.ping_interval),
            None => (Vec::new(), Vec::new()),
        };
        let status = if target == current.status {
            let mut seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
            let at = seen.entry(id.clone()).or_insert(now);
            *at = (*at).max(now);
            target
        } else {
            let mut tx = self.begin().await?;
            let mut agent = found(tx.lock_agent(id).await?, "agent", id)?;
            agent.apply(AgentEvent::Ping(status), now)?;
            tx.update_agent(&agent).await?;
            let status = agent.status;
            self.commit(tx, vec![Event::Agent(agent)]).await?;
            status
        };
        if !unreported.is_empty() {
            let label = current.label();
            for job in unreported {
                self.handle_lost_job(&job, id, &label, LossCause::Unreported)
                    .await?;
            }
        }
        Ok(PingAnswer {
            status,
            cancel,
            drained: current.drained,
        })
    }

    /// Write the batched last-seen times of pings (call it about once a second).
    pub async fn flush_last_seen(&self) -> Result<usize, Error> {
        let batch: Vec<_> = {
            let mut seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        tx.touch_agents(&batch).await?;
        self.commit(tx, vec![]).await?;
        Ok(batch.len())
    }

    /// Wait until jobs are allocated to the agent and return them. Adapters
    /// bound the wait (long-poll) by dropping the future.
    pub async fn await_allocated_jobs(
        &self,
        subject: &Subject,
        agent: &AgentId,
    ) -> Result<Vec<Job>, Error> {
        let id = agent;
        loop {
            // Wait before looking, so nothing slips between the two.
            let mut wait = self.wait_on(WaitKey::Agent(id.clone()));
            // Boxed: the read's state is not kept while the long-poll waits.
            let jobs = Box::pin(self.allocated_jobs(subject, id)).await?;
            if !jobs.is_empty() {
                return Ok(jobs);
            }
            if !wait.next().await {
                return Ok(Vec::new());
            }
            // Woken by allocations committed here and nothing else: the
            // agent was authorized by the read above, and holds these
            // jobs now (one changed since is refused at its start).
            if let Some(jobs) = wait.allocations() {
                return Ok(jobs);
            }
        }
    }

    /// The jobs allocated to the agent now.
    async fn allocated_jobs(&self, subject: &Subject, id: &AgentId) -> Result<Vec<Job>, Error> {
        let now = self.now();
        if let Some(c) = self.cached_agent(id, now).filter(|c| c.no_jobs) {
            // Known to hold no job, since an event would have said otherwise
            // (an allocation is one, and it also wakes the long-poll).
            Self::check_agent(subject, c.agent)?;
            return Ok(Vec::new());
        }
        let start = self.agents.before_read();
        let mut tx = self.read().await?;
        let agent = self.agent_for(&mut tx, subject, id).await?;
        let held = tx.list_jobs_of_agent(id).await?;
        self.remember_agent(&agent, Some(held.is_empty()), start, now);
        Ok(held
            .into_iter()
            .filter(|j| j.status == JobStatus::Allocated)
            .collect())
    }

    /// Wait for a signal for a job the agent holds. `None`: the job ended
    /// without one, stop waiting.
    pub async fn await_signal(
        &self,
        subject: &Subject,
        agent: &AgentId,
        job: &JobId,
    ) -> Result<Option<Signal>, Error> {
        let agent_id = agent;
        let job_id = job;
        loop {
            let mut wait = self.wait_on(WaitKey::Job(job_id.clone()));
            {
                let mut tx = self.read().await?;
                let agent = found(tx.get_agent(agent_id).await?, "agent", agent_id)?;
                allow(
                    authorize_agent(subject, agent.pool.as_ref(), agent.token.as_ref()),
                    "agent",
                    agent_id,
                )?;
                let job = found(tx.get_job(job_id).await?, "job", job_id)?;
                if job.agent.as_ref() != Some(agent_id) {
                    return Err(Error::NotFound {
                        kind: "job",
                        id: job_id.to_string(),
                    });
                }
                if job.signal.is_some() {
                    return Ok(job.signal);
                }
                if job.status.is_final() {
                    return Ok(None);
                }
            }
            if !wait.next().await {
                return Ok(None);
            }
        }
    }

    /// Agents of a pool with their job counts.
    pub async fn list_agents(
        &self,
        subject: &Subject,
        pool: &PoolId,
        filter: &AgentStatusFilter,
    ) -> Result<Vec<AgentView>, Error> {
        let pool = self.get_pool(subject, pool).await?;
        let mut views = self.agent_views(Some(&pool.id)).await?;
        views.retain(|v| filter.allows(v.agent.status));
        Ok(views)
    }

    /// The server runner's agents (site administrator only).
    pub async fn list_server_agents(&self, subject: &Subject) -> Result<Vec<AgentView>, Error> {
        allow(
            crate::auth::authorize_site(subject, Access::Read),
            "agent",
            "server",
        )?;
        self.agent_views(None).await
    }

    async fn agent_views(&self, pool: Option<&PoolId>) -> Result<Vec<AgentView>, Error> {
        let mut tx = self.read().await?;
        let mut out = Vec::new();
        for agent in tx.list_agents_in_pool(pool).await? {
            let current_jobs = tx.list_jobs_of_agent(&agent.id).await?.len() as u32;
            out.push(AgentView {
                agent,
                current_jobs,
            });
        }
        Ok(out)
    }

    pub async fn get_agent(&self, subject: &Subject, id: &AgentId) -> Result<AgentView, Error> {
        let mut tx = self.read().await?;
        let agent = found(tx.get_agent(id).await?, "agent", id)?;
        authorize_agent_view(subject, &agent, Access::Read)?;
        let current_jobs = tx.list_jobs_of_agent(id).await?.len() as u32;
        Ok(AgentView {
            agent,
            current_jobs,
        })
    }

    /// Drain (or undrain) an agent: a drained agent gets no new job,
    /// finishes what it runs and keeps pinging (site administrator, or the
    /// organization of its pool).
    pub async fn drain_agent(
        &self,
        subject: &Subject,
        id: &AgentId,
        drained: bool,
    ) -> Result<AgentView, Error> {
        let mut tx = self.begin().await?;
        let mut agent = found(tx.lock_agent(id).await?, "agent", id)?;
        authorize_agent_view(subject, &agent, Access::Write)?;
        let mut events = Vec::new();
        if agent.drained != drained {
            agent.drained = drained;
            tx.update_agent(&agent).await?;
            events.push(Event::Agent(agent.clone()));
        }
        let current_jobs = tx.list_jobs_of_agent(id).await?.len() as u32;
        self.commit(tx, events).await?;
        Ok(AgentView {
            agent,
            current_jobs,
        })
    }

    /// Drain (or undrain) a pool: every agent of it, and the agents that
    /// register into it from now on.
    pub async fn drain_pool(
        &self,
        subject: &Subject,
        pool: &PoolId,
        drained: bool,
    ) -> Result<crate::pool::AgentPool, Error> {
        let id = pool;
        let mut tx = self.begin().await?;
        let mut p = found(tx.lock_pool(id).await?, "agent pool", id)?;
        allow(
            authorize_organization(subject, &p.organization, Access::Write),
            "agent pool",
            id,
        )?;
        let mut events = Vec::new();
        if p.drained != drained {
            p.drained = drained;
            tx.update_pool(&p).await?;
        }
        for mut agent in tx.list_agents_in_pool(Some(id)).await? {
            if agent.drained != drained && !agent.status.is_final() {
                agent.drained = drained;
                tx.update_agent(&agent).await?;
                events.push(Event::Agent(agent));
            }
        }
        self.commit(tx, events).await?;
        Ok(p)
    }

    /// Delete an agent that is unknown, errored or exited.
    pub async fn delete_agent(&self, subject: &Subject, id: &AgentId) -> Result<(), Error> {
        let id: AgentId = id.clone();
        let mut tx = self.begin().await?;
        let agent = found(tx.lock_agent(&id).await?, "agent", &id)?;
        authorize_agent_view(subject, &agent, Access::Write)?;
        if agent.status.is_schedulable() {
            return Err(Error::AgentStillLive {
                agent: id.to_string(),
                status: agent.status,
            });
        }
        tx.delete_agent(&id).await?;
        self.commit(tx, vec![Event::AgentDeleted(id)]).await
    }
}

fn authorize_agent_view(subject: &Subject, agent: &Agent, access: Access) -> Result<(), Error> {
    match &agent.organization {
        Some(org) => allow(
            authorize_organization(subject, org, access),
            "agent",
            &agent.id,
        ),
        None => allow(
            crate::auth::authorize_site(subject, access),
            "agent",
            &agent.id,
        ),
    }
}
