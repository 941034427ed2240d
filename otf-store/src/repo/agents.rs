//! Agents and jobs.

use std::collections::BTreeMap;

use async_trait::async_trait;
use otf_core::agent::{Agent, AgentStatus};
use otf_core::clock::Timestamp;
use otf_core::ids::{AgentId, AgentTokenId, JobId, PoolId, RunId};
use otf_core::job::{Job, JobStatus};
use otf_core::liveness::AgentsDue;
use otf_core::store::{AgentRepo, JobRepo, StoreResult};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Statement, Value,
};

use super::all;
use crate::entity::{agent, job};
use crate::error::db_err;
use crate::store::Backend;
use crate::{convert, DbTx};

/// Largest number of agents raised by one statement (two parameters each).
const TOUCH_BATCH: usize = 1000;

fn active_statuses() -> Vec<&'static str> {
    JobStatus::ALL
        .iter()
        .filter(|s| !s.is_final())
        .map(|s| s.as_str())
        .collect()
}

#[async_trait]
impl AgentRepo for DbTx {
    async fn insert_agent(&mut self, a: &Agent) -> StoreResult<()> {
        self.insert_row(convert::agent_row(a)).await
    }

    async fn update_agent(&mut self, a: &Agent) -> StoreResult<()> {
        // An agent's pool and token are its registration's, written once:
        // not setting them leaves their index entries alone (fewer pages
        // per commit).
        let mut row = convert::agent_row(a);
        row.not_set(agent::Column::PoolId);
        row.not_set(agent::Column::TokenId);
        self.update_row(
            row,
            agent::Column::Id.eq(a.id.as_str()),
            vec![a.id.as_str().into()],
            "agent",
            a.id.as_str(),
        )
        .await
    }

    async fn get_agent(&mut self, id: &AgentId) -> StoreResult<Option<Agent>> {
        self.by_id::<agent::Entity>(id.as_str(), false)
            .await?
            .map(convert::agent)
            .transpose()
    }

    async fn lock_agent(&mut self, id: &AgentId) -> StoreResult<Option<Agent>> {
        self.by_id::<agent::Entity>(id.as_str(), true)
            .await?
            .map(convert::agent)
            .transpose()
    }

    async fn list_agents(&mut self) -> StoreResult<Vec<Agent>> {
        let rows = agent::Entity::find()
            .order_by_asc(agent::Column::Id)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::agent)
    }

    async fn list_agents_due(&mut self, due: &AgentsDue) -> StoreResult<Vec<Agent>> {
        let status = |all: &[AgentStatus]| {
            agent::Column::Status.is_in(all.iter().map(|s| s.as_str().to_string()))
        };
        let due = Condition::any()
            .add(
                status(&[AgentStatus::Idle, AgentStatus::Busy])
                    .and(agent::Column::LastPingAt.lte(due.live_pinged_by.0)),
            )
            .add(
                status(&[AgentStatus::Unknown])
                    .and(agent::Column::LastStatusAt.lte(due.unknown_since_by.0)),
            )
            .add(
                status(&[AgentStatus::Errored, AgentStatus::Exited])
                    .and(agent::Column::LastStatusAt.lte(due.final_since_by.0)),
            );
        let rows = agent::Entity::find()
            .filter(due)
            .order_by_asc(agent::Column::Id)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::agent)
    }

    async fn list_agents_in_pool(&mut self, pool: Option<&PoolId>) -> StoreResult<Vec<Agent>> {
        let filter = match pool {
            Some(p) => agent::Column::PoolId.eq(p.as_str()),
            None => agent::Column::PoolId.is_null(),
        };
        let rows = agent::Entity::find()
            .filter(filter)
            .order_by_asc(agent::Column::Id)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::agent)
    }

    async fn list_agents_of_token(&mut self, token: &AgentTokenId) -> StoreResult<Vec<Agent>> {
        let rows = agent::Entity::find()
            .filter(agent::Column::TokenId.eq(token.as_str()))
            .order_by_asc(agent::Column::Id)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::agent)
    }

    async fn touch_agents(&mut self, seen: &[(AgentId, Timestamp)]) -> StoreResult<()> {
        // The latest time per agent: one row of the VALUES list each.
        let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
        for (id, at) in seen {
            let e = latest.entry(id.as_str()).or_insert(at.0);
            *e = (*e).max(at.0);
        }
        let latest: Vec<(&str, i64)> = latest.into_iter().collect();
        for batch in latest.chunks(TOUCH_BATCH) {
            let mut rows = Vec::with_capacity(batch.len());
            let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 2);
            for (i, (id, at)) in batch.iter().enumerate() {
                rows.push(match self.backend {
                    Backend::Postgres => format!("(${}, ${}::bigint)", 2 * i + 1, 2 * i + 2),
                    Backend::Sqlite => "(?, ?)".to_string(),
                });
                values.push((*id).into());
                values.push((*at).into());
            }
            // Never lowers a time: only rows whose new time is later change.
            let sql = format!(
                "UPDATE agents SET last_ping_at = v.column2 FROM (VALUES {}) AS v \
                 WHERE agents.id = v.column1 AND v.column2 > agents.last_ping_at",
                rows.join(", ")
            );
            self.tx
                .execute(Statement::from_sql_and_values(
                    self.db_backend(),
                    sql,
                    values,
                ))
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    async fn delete_agent(&mut self, id: &AgentId) -> StoreResult<()> {
        agent::Entity::delete_by_id(id.as_str())
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl JobRepo for DbTx {
    async fn insert_job(&mut self, j: &Job) -> StoreResult<()> {
        self.insert_row(convert::job_row(j)).await
    }

    async fn update_job(&mut self, j: &Job) -> StoreResult<()> {
        // A job's run is its creation's, written once: not setting it
        // leaves its index entry alone (a page less per commit).
        let mut row = convert::job_row(j);
        row.not_set(job::Column::RunId);
        self.update_row(
            row,
            job::Column::Id.eq(j.id.as_str()),
            vec![j.id.as_str().into()],
            "job",
            j.id.as_str(),
        )
        .await
    }

    async fn get_job(&mut self, id: &JobId) -> StoreResult<Option<Job>> {
        self.by_id::<job::Entity>(id.as_str(), false)
            .await?
            .map(convert::job)
            .transpose()
    }

    async fn list_jobs_of_run(&mut self, run: &RunId) -> StoreResult<Vec<Job>> {
        let rows = self
            .all_of("list_jobs_of_run", [run.as_str().into()], |[run]| {
                job::Entity::find().filter(job::Column::RunId.eq(run))
            })
            .await?;
        let mut jobs = all(rows, convert::job)?;
        // Phase order is the enum's (plan before apply), not the wire text's.
        jobs.sort_by(|a, b| (a.phase, a.attempt, &a.id).cmp(&(b.phase, b.attempt, &b.id)));
        Ok(jobs)
    }

    async fn list_active_jobs(&mut self) -> StoreResult<Vec<Job>> {
        let rows = job::Entity::find()
            .filter(job::Column::Status.is_in(active_statuses()))
            .order_by_asc(job::Column::QueuedAt)
            .order_by_asc(job::Column::Id)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::job)
    }

    async fn list_jobs_of_agent(&mut self, a: &AgentId) -> StoreResult<Vec<Job>> {
        let rows = self
            .all_of("list_jobs_of_agent", [a.as_str().into()], |[a]| {
                job::Entity::find()
                    .filter(job::Column::AgentId.eq(a))
                    .filter(job::Column::Status.is_in(active_statuses()))
                    .order_by_asc(job::Column::Id)
            })
            .await?;
        all(rows, convert::job)
    }
}
