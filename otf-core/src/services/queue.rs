//! The job queue of an organization, as administrators see it: which job
//! runs on which agent, which wait and why. Read-only.

use super::organizations::org_scope;
use super::{found, Core, Error};
use crate::auth::{Access, Subject};
use crate::ids::OrganizationName;
use crate::job::{Job, JobStatus};
use crate::scheduler::{AgentSlot, JobSlot, PoolKey, Scheduler, WaitReason};
use crate::store::{AgentRepo, JobRepo, OrganizationRepo, PoolRepo, Store};

/// An active job of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub job: Job,
    /// The name of the agent it is allocated to or running on.
    pub agent_name: Option<String>,
    /// Why an unallocated job waits; None when it holds an agent, or when an
    /// agent with spare capacity is about to take it.
    pub wait: Option<WaitReason>,
    /// The same as a sentence, e.g. "no agent of pool gpu has labels
    /// region=eu".
    pub wait_message: Option<String>,
}

impl<S: Store> Core<S> {
    /// The organization's active jobs, first queued first. Wait reasons come
    /// from the scheduler's own rule, asked on a snapshot of every active job
    /// and the agents of the pools involved (server runner jobs of other
    /// organizations count against its capacity too).
    pub async fn list_queue(
        &self,
        subject: &Subject,
        org: &OrganizationName,
    ) -> Result<Vec<QueuedJob>, Error> {
        let org = org_scope(subject, org, Access::Read)?;
        let mut tx = self.read().await?;
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
        let mut pool_names = std::collections::HashMap::new();
        for pool in &pools {
            if let Some(p) = pool {
                if let Some(row) = tx.get_pool(p).await? {
                    pool_names.insert(p.clone(), row.name);
                }
            }
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
        let waiting: std::collections::HashMap<_, _> = pools
            .iter()
            .flat_map(|pool| scheduler.waiting(pool))
            .collect();
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
                    JobStatus::Unallocated => waiting.get(&job.id).copied(),
                    _ => None,
                };
                let wait_message = wait.map(|w| {
                    let pool = job.pool.as_ref().map(|p| {
                        pool_names
                            .get(p)
                            .map_or(p.as_str(), String::as_str)
                            .to_string()
                    });
                    w.describe(pool.as_deref(), &job.selector)
                });
                QueuedJob {
                    job,
                    agent_name,
                    wait,
                    wait_message,
                }
            })
            .collect())
    }
}

impl<S: Store> Core<S> {
    /// Why each queued run of `runs` (all of one organization) waits, as
    /// the queue view says it ("no agent of pool gpu has labels
    /// region=eu"), for run views. Runs not queued, or whose job an agent
    /// is about to take, are absent; so is everything for a subject that
    /// may not read the organization's queue.
    pub async fn run_waits(
        &self,
        subject: &Subject,
        runs: &[crate::run::Run],
    ) -> Result<std::collections::HashMap<crate::ids::RunId, String>, Error> {
        use crate::run::RunStatus;
        let queued: std::collections::HashSet<&crate::ids::RunId> = runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::PlanQueued | RunStatus::ApplyQueued))
            .map(|r| &r.id)
            .collect();
        let Some(first) = runs.iter().find(|r| queued.contains(&r.id)) else {
            return Ok(Default::default());
        };
        let queue = match self.list_queue(subject, &first.organization).await {
            Ok(q) => q,
            Err(Error::Store(e)) => return Err(Error::Store(e)),
            Err(_) => return Ok(Default::default()),
        };
        Ok(queue
            .into_iter()
            .filter(|q| queued.contains(&q.job.run))
            .filter_map(|q| Some((q.job.run, q.wait_message?)))
            .collect())
    }
}
