//! What otfd's operators read of it: whether the store answers, and the
//! gauges' first reading.

use super::{Core, Error};
use crate::gauges::Gauges;
use crate::store::{AgentRepo, JobRepo, RunRepo, Store};

impl<S: Store> Core<S> {
    /// Whether the store answers a read (for `/healthz`).
    pub async fn check_health(&self) -> Result<(), Error> {
        let mut tx = self.read().await?;
        tx.list_agents_in_pool(None).await?;
        Ok(())
    }

    /// The gauges from one reading of the store, in one transaction (they
    /// then follow the bus).
    pub async fn read_gauges(&self) -> Result<Gauges, Error> {
        let mut tx = self.read().await?;
        let agents = tx.list_agents().await?;
        let jobs = tx.list_active_jobs().await?;
        let active = tx.active_run_statuses().await?;
        let counts = tx.count_runs_by_status().await?;
        Ok(Gauges::rebuild(&agents, &jobs, &active, &counts))
    }
}
