//! Runs (with their plan and apply).

use async_trait::async_trait;
use otf_core::clock::Timestamp;
use otf_core::ids::{RunId, WorkspaceId};
use otf_core::run::{Run, RunStatus};
use otf_core::store::{RunRepo, StoreResult};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::all;
use crate::entity::run;
use crate::error::db_err;
use crate::{convert, DbTx};

#[async_trait]
impl RunRepo for DbTx {
    async fn insert_run(&mut self, r: &Run) -> StoreResult<()> {
        self.insert_row(convert::run_row(r)).await
    }

    async fn update_run(&mut self, r: &Run) -> StoreResult<()> {
        // A run's workspace and creation time are its creation's, written
        // once: not setting them leaves their index entry alone (a page
        // less per commit).
        let mut row = convert::run_row(r);
        row.not_set(run::Column::WorkspaceId);
        row.not_set(run::Column::CreatedAt);
        self.update_row(
            row,
            run::Column::Id.eq(r.id.as_str()),
            vec![r.id.as_str().into()],
            "run",
            r.id.as_str(),
        )
        .await
    }

    async fn get_run(&mut self, id: &RunId) -> StoreResult<Option<Run>> {
        self.by_id::<run::Entity>(id.as_str(), false)
            .await?
            .map(convert::run)
            .transpose()
    }

    async fn list_runs(
        &mut self,
        ws: &WorkspaceId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(Vec<Run>, u64)> {
        let of_ws = || run::Entity::find().filter(run::Column::WorkspaceId.eq(ws.as_str()));
        let total = self.count_rows(of_ws()).await?;
        // Both backends take at most i64::MAX for OFFSET and LIMIT.
        let cap = |v: u64| v.min(i64::MAX as u64);
        let rows = of_ws()
            .order_by_desc(run::Column::CreatedAt)
            .order_by_desc(run::Column::Id)
            .offset(cap(offset))
            .limit(cap(limit))
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        Ok((all(rows, convert::run)?, total))
    }

    async fn newest_run_created_at(&mut self, ws: &WorkspaceId) -> StoreResult<Option<Timestamp>> {
        // The (workspace_id, created_at) index answers this at once.
        #[derive(FromQueryResult)]
        struct Newest {
            newest: Option<i64>,
        }
        let newest: Option<Newest> = self
            .one_of("newest_run_created_at", [ws.as_str().into()], |[ws]| {
                run::Entity::find()
                    .select_only()
                    .column_as(run::Column::CreatedAt.max(), "newest")
                    .filter(run::Column::WorkspaceId.eq(ws))
            })
            .await?;
        Ok(newest.and_then(|n| n.newest).map(Timestamp))
    }

    async fn next_pending_run(&mut self, ws: &WorkspaceId) -> StoreResult<Option<Run>> {
        self.one_of("next_pending_run", [ws.as_str().into()], |[ws]| {
            run::Entity::find()
                .filter(run::Column::WorkspaceId.eq(ws))
                .filter(run::Column::Status.eq(RunStatus::Pending.as_str()))
                .filter(run::Column::PlanOnly.eq(false))
                .order_by_asc(run::Column::CreatedAt)
                .order_by_asc(run::Column::Id)
        })
        .await?
        .map(convert::run)
        .transpose()
    }

    async fn count_runs_by_status(&mut self) -> StoreResult<Vec<(RunStatus, u64)>> {
        // Columns by name: rows of the store's SQLite connections keep no
        // column order.
        #[derive(FromQueryResult)]
        struct Count {
            status: String,
            n: i64,
        }
        let rows = run::Entity::find()
            .select_only()
            .column(run::Column::Status)
            .column_as(run::Column::Id.count(), "n")
            .group_by(run::Column::Status)
            .into_model::<Count>()
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        rows.into_iter()
            .map(|Count { status, n }| {
                let status = status.parse::<RunStatus>().map_err(|e| {
                    otf_core::store::StoreError::unavailable(format!(
                        "bad run status in the database: {e}"
                    ))
                })?;
                Ok((status, n.max(0) as u64))
            })
            .collect()
    }

    async fn active_run_statuses(&mut self) -> StoreResult<Vec<(RunId, RunStatus)>> {
        let finals: Vec<&str> = RunStatus::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        #[derive(FromQueryResult)]
        struct Active {
            id: String,
            status: String,
        }
        let rows = run::Entity::find()
            .select_only()
            .column(run::Column::Id)
            .column(run::Column::Status)
            .filter(run::Column::Status.is_not_in(finals))
            .order_by_asc(run::Column::Id)
            .into_model::<Active>()
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        rows.into_iter()
            .map(|Active { id, status }| {
                let bad = |e: String| {
                    otf_core::store::StoreError::unavailable(format!(
                        "bad run in the database: {e}"
                    ))
                };
                Ok((
                    id.parse().map_err(|e| bad(format!("{e}")))?,
                    status.parse().map_err(|e| bad(format!("{e}")))?,
                ))
            })
            .collect()
    }
}
