//! Workspaces.

use async_trait::async_trait;
use otf_core::ids::{OrganizationName, PoolId, WorkspaceId};
use otf_core::store::{Cause, StoreError, StoreResult, WorkspaceRepo};
use otf_core::workspace::Workspace;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};

use super::all;
use crate::entity::workspace;
use crate::error::db_err;
use crate::{convert, DbTx};

impl DbTx {
    /// The same clear message as the in-memory store, before the unique
    /// index would answer with a driver's message.
    async fn check_workspace_name_free(&self, ws: &Workspace) -> StoreResult<()> {
        let taken = workspace::Entity::find()
            .filter(workspace::Column::Organization.eq(ws.organization.as_str()))
            .filter(workspace::Column::Name.eq(ws.name.as_str()))
            .filter(workspace::Column::Id.ne(ws.id.as_str()))
            .count(&self.tx)
            .await
            .map_err(db_err)?;
        if taken > 0 {
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
        self.check_workspace_name_free(ws).await?;
        self.update_row(
            convert::workspace_row(ws),
            workspace::Column::Id.eq(ws.id.as_str()),
            "workspace",
            ws.id.as_str(),
        )
        .await
    }

    async fn get_workspace(&mut self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        workspace::Entity::find_by_id(id.as_str())
            .one(&self.tx)
            .await
            .map_err(db_err)?
            .map(convert::workspace)
            .transpose()
    }

    async fn lock_workspace(&mut self, id: &WorkspaceId) -> StoreResult<Option<Workspace>> {
        // FOR UPDATE on PostgreSQL; SQLite transactions are serialised.
        workspace::Entity::find_by_id(id.as_str())
            .lock_exclusive()
            .one(&self.tx)
            .await
            .map_err(db_err)?
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
