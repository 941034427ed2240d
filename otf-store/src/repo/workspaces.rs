//! Workspaces.

use async_trait::async_trait;
use otf_core::ids::{OrganizationName, PoolId, WorkspaceId};
use otf_core::store::{Cause, StoreError, StoreResult, WorkspaceRepo};
use otf_core::workspace::Workspace;
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};

use super::all;
use crate::entity::workspace;
use crate::error::db_err;
use crate::{convert, DbTx};

impl DbTx {
    /// The same clear message as the in-memory store, before the unique
    /// index would answer with a driver's message.
    async fn check_workspace_name_free(&self, ws: &Workspace) -> StoreResult<()> {
        let taken = self
            .any_row(
                workspace::Entity::find()
                    .filter(workspace::Column::Organization.eq(ws.organization.as_str()))
                    .filter(workspace::Column::Name.eq(ws.name.as_str()))
                    .filter(workspace::Column::Id.ne(ws.id.as_str())),
            )
            .await?;
        if taken {
            return Err(StoreError::Conflict(Cause::new(format!(
                "workspace {} already exists in organization {}",
                ws.name, ws.organization
            ))));
        }
        Ok(())
    }
}

#[async_trait]
impl WorkspaceRepo for DbTx {
    async fn insert_workspace(&mut self, ws: &Workspace) -> StoreResult<()> {
        self.check_workspace_name_free(ws).await?;
        self.insert_row(convert::workspace_row(ws)).await
    }

    async fn update_workspace(&mut self, ws: &Workspace) -> StoreResult<()> {
        // One statement: the row changes only while no other workspace of
        // its organization has its name (the unique index backs this up
        // against a concurrent insert); which of the two stopped it is
        // asked only when one did.
        let other = Alias::new("other");
        let name_taken = Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from_as(workspace::Entity, other.clone())
                .and_where(
                    Expr::col((other.clone(), workspace::Column::Organization))
                        .eq(ws.organization.as_str()),
                )
                .and_where(Expr::col((other.clone(), workspace::Column::Name)).eq(ws.name.as_str()))
                .and_where(Expr::col((other, workspace::Column::Id)).ne(ws.id.as_str()))
                .to_owned(),
        );
        let key = Condition::all()
            .add(workspace::Column::Id.eq(ws.id.as_str()))
            .add(name_taken.not());
        match self
            .update_row(
                convert::workspace_row(ws),
                key,
                vec![
                    ws.id.as_str().into(),
                    1i32.into(),
                    ws.organization.as_str().into(),
                    ws.name.as_str().into(),
                    ws.id.as_str().into(),
                ],
                "workspace",
                ws.id.as_str(),
            )
            .await
        {
            Err(StoreError::NotFound { .. }) if self.get_workspace(&ws.id).await?.is_some() => {
                self.check_workspace_name_free(ws).await?;
                // Freed again meanwhile (PostgreSQL): still not written.
                Err(StoreError::Conflict(Cause::new(format!(
                    "workspace {} was renamed concurrently; retry",
                    ws.id
                ))))
            }
            done => done,
        }
    }

    async fn update_workspace_runs(&mut self, ws: &Workspace) -> StoreResult<()> {
        let mut row = <workspace::ActiveModel as Default>::default();
        let full = convert::workspace_row(ws);
        for c in [
            workspace::Column::LockedByRun,
            workspace::Column::LockedByHolder,
            workspace::Column::CurrentRunId,
            workspace::Column::UpdatedAt,
        ] {
            if let Some(v) = full.get(c).into_value() {
                row.set(c, v);
            }
        }
        self.update_row(
            row,
            workspace::Column::Id.eq(ws.id.as_str()),
            vec![ws.id.as_str().into()],
            "workspace",
            ws.id.as_str(),
        )
        .await
    }

    async fn get_workspace(&mut self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        self.by_id::<workspace::Entity>(id.as_str(), false)
            .await?
            .map(convert::workspace)
            .transpose()
    }

    async fn lock_workspace(&mut self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        // FOR UPDATE on PostgreSQL; SQLite transactions are serialised.
        self.by_id::<workspace::Entity>(id.as_str(), true)
            .await?
            .map(convert::workspace)
            .transpose()
    }

    async fn get_workspace_by_name(
        &mut self,
        org: &OrganizationName,
        name: &str,
    ) -> StoreResult<Option<Workspace>> {
        workspace::Entity::find()
            .filter(workspace::Column::Organization.eq(org.as_str()))
            .filter(workspace::Column::Name.eq(name))
            .one(&self.tx)
            .await
            .map_err(db_err)?
            .map(convert::workspace)
            .transpose()
    }

    async fn list_workspaces(&mut self, org: &OrganizationName) -> StoreResult<Vec<Workspace>> {
        let rows = workspace::Entity::find()
            .filter(workspace::Column::Organization.eq(org.as_str()))
            .order_by_asc(workspace::Column::Name)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::workspace)
    }

    async fn list_workspaces_in_pool(&mut self, pool: &PoolId) -> StoreResult<Vec<Workspace>> {
        let rows = workspace::Entity::find()
            .filter(workspace::Column::AgentPoolId.eq(pool.as_str()))
            .filter(workspace::Column::ExecutionMode.eq("agent"))
            .order_by_asc(workspace::Column::Name)
            .order_by_asc(workspace::Column::Id)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::workspace)
    }

    async fn delete_workspace(&mut self, id: &WorkspaceId) -> StoreResult<()> {
        // Foreign keys cascade to runs, jobs, logs, artifacts, configuration
        // and state versions, variables and pool grants.
        workspace::Entity::delete_by_id(id.as_str())
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
