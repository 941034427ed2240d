//! The job queue of an organization, as administrators see it: which job
//! runs on which agent, which wait and why. Read-only.

use super::organizations::org_scope;
use super::{found, Core, Error};
use crate::auth::{Access, Subject};
use crate::job::{Job, JobStatus};
use crate::scheduler::{AgentSlot, JobSlot, PoolKey, Scheduler, WaitReason};
use crate::store::{AgentRepo, JobRepo, OrganizationRepo, Store};

/// An active job of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub job: Job,
    /// The name of the agent it is allocated to or running on.
    pub agent_name: Option<String>,
    /// Why an unallocated job waits; None when it holds an agent, or when an
    /// agent with spare capacity is about to take it.
    pub wait: Option<WaitReason>,
}

impl<S: Store> Core<S> {
    /// The organization's active jobs, first queued first. Wait reasons come
    /// from the scheduler's own rule, asked on a snapshot of every active job
    /// and the agents of the pools involved (server runner jobs of other
    /// organizations count against its capacity too).
    pub async fn list_queue(&self, subject: &Subject, org: &str) -> Result<Vec<QueuedJob>, Error> {
        let org = org_scope(subject, org, Access::Read)?;
        let mut tx = self.begin().await?;
        found(tx.get_organization(&org).await?, "organization", &org)?;
        let jobs = tx.list_active_jobs().await?;
        let mut pools: Vec<PoolKey> = jobs
            .iter()
            .filter(|j| j.organization == org)
            .map(|j| j.pool.clone())
            .collect();
        pools.sort();
        pools.dedup();
        let mut scheduler = Scheduler::new();
        let mut agents = Vec::new();
        for pool in &pools {
            for agent in tx.list_agents_in_pool(pool.as_ref()).await? {
                scheduler.upsert_agent(AgentSlot::from(&agent));
                agents.push(agent);
            }
        }
        for job in &jobs {
            scheduler.upsert_job(JobSlot::from(job));
        }
        // What would be allocated right now is not waiting for a reason.
        scheduler.allocate_all();
        let mut waiting = Vec::new();
        for pool in &pools {
            let (ids, reason) = scheduler.waiting(pool);
            waiting.extend(ids.into_iter().map(|id| (id, reason)));
        }
        // The store lists active jobs by (queued_at, id) already.
        Ok(jobs
            .into_iter()
            .filter(|j| j.organization == org)
            .map(|job| {
                let agent_name = job
                    .agent
                    .as_ref()
                    .and_then(|id| agents.iter().find(|a| &a.id == id))
                    .map(|a| a.name.clone());
                let wait = match job.status {
                    JobStatus::Unallocated => waiting
                        .iter()
                        .find(|(id, _)| id == &job.id)
                        .and_then(|(_, r)| *r),
                    _ => None,
                };
                QueuedJob {
                    job,
                    agent_name,
                    wait,
                }
            })
            .collect())
    }
}
