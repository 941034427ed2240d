//! Agent pools (with their allowed workspaces) and agent tokens.

use std::collections::BTreeMap;

use async_trait::async_trait;
use otf_core::agent_token::AgentToken;
use otf_core::ids::{AgentTokenId, OrganizationName, PoolId};
use otf_core::pool::AgentPool;
use otf_core::store::{AgentTokenRepo, PoolRepo, StoreResult};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::all;
use crate::entity::{agent_token, pool, pool_exclusion, pool_grant};
use crate::error::db_err;
use crate::{convert, DbTx};

impl DbTx {
    /// Attach their grants and exclusions to pool rows, in one query each.
    async fn with_grants(&self, rows: Vec<pool::Model>) -> StoreResult<Vec<AgentPool>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows.iter().map(|p| p.id.clone()).collect();
        let mut grants: BTreeMap<String, Vec<pool_grant::Model>> = BTreeMap::new();
        for g in pool_grant::Entity::find()
            .filter(pool_grant::Column::PoolId.is_in(ids.clone()))
            .all(&self.tx)
            .await
            .map_err(db_err)?
        {
            grants.entry(g.pool_id.clone()).or_default().push(g);
        }
        let mut exclusions: BTreeMap<String, Vec<pool_exclusion::Model>> = BTreeMap::new();
        for e in pool_exclusion::Entity::find()
            .filter(pool_exclusion::Column::PoolId.is_in(ids))
            .all(&self.tx)
            .await
            .map_err(db_err)?
        {
            exclusions.entry(e.pool_id.clone()).or_default().push(e);
        }
        rows.into_iter()
            .map(|p| {
                let g = grants.remove(&p.id).unwrap_or_default();
                let e = exclusions.remove(&p.id).unwrap_or_default();
                convert::pool(p, g, e)
            })
            .collect()
    }

    async fn one_pool(&self, row: Option<pool::Model>) -> StoreResult<Option<AgentPool>> {
        Ok(self.with_grants(row.into_iter().collect()).await?.pop())
    }

    async fn insert_grants(&self, p: &AgentPool) -> StoreResult<()> {
        let rows = convert::pool_grant_rows(p);
        if !rows.is_empty() {
            pool_grant::Entity::insert_many(rows)
                .exec_without_returning(&self.tx)
                .await
                .map_err(db_err)?;
        }
        let rows = convert::pool_exclusion_rows(p);
        if !rows.is_empty() {
            pool_exclusion::Entity::insert_many(rows)
                .exec_without_returning(&self.tx)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }
}

#[async_trait]
impl PoolRepo for DbTx {
    async fn insert_pool(&mut self, p: &AgentPool) -> StoreResult<()> {
        self.insert_row(convert::pool_row(p)).await?;
        self.insert_grants(p).await
    }

    async fn update_pool(&mut self, p: &AgentPool) -> StoreResult<()> {
        self.update_row(
            convert::pool_row(p),
            pool::Column::Id.eq(p.id.as_str()),
            vec![p.id.as_str().into()],
            "agent pool",
            p.id.as_str(),
        )
        .await?;
        pool_grant::Entity::delete_many()
            .filter(pool_grant::Column::PoolId.eq(p.id.as_str()))
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        pool_exclusion::Entity::delete_many()
            .filter(pool_exclusion::Column::PoolId.eq(p.id.as_str()))
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        self.insert_grants(p).await
    }

    async fn get_pool(&mut self, id: &PoolId) -> StoreResult<Option<AgentPool>> {
        let row = self.by_id::<pool::Entity>(id.as_str(), false).await?;
        self.one_pool(row).await
    }

    async fn lock_pool(&mut self, id: &PoolId) -> StoreResult<Option<AgentPool>> {
        let row = self.by_id::<pool::Entity>(id.as_str(), true).await?;
        self.one_pool(row).await
    }

    async fn list_pools(&mut self, org: &OrganizationName) -> StoreResult<Vec<AgentPool>> {
        let rows = pool::Entity::find()
            .filter(pool::Column::Organization.eq(org.as_str()))
            .order_by_asc(pool::Column::Name)
            .order_by_asc(pool::Column::Id)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        self.with_grants(rows).await
    }

    async fn delete_pool(&mut self, id: &PoolId) -> StoreResult<()> {
        // Foreign keys cascade to its tokens and grants.
        pool::Entity::delete_by_id(id.as_str())
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl AgentTokenRepo for DbTx {
    async fn insert_agent_token(&mut self, token: &AgentToken) -> StoreResult<()> {
        self.insert_row(convert::agent_token_row(token)).await
    }

    async fn update_agent_token(&mut self, token: &AgentToken) -> StoreResult<()> {
        self.update_row(
            convert::agent_token_row(token),
            agent_token::Column::Id.eq(token.id.as_str()),
            vec![token.id.as_str().into()],
            "agent token",
            token.id.as_str(),
        )
        .await
    }

    async fn get_agent_token(&mut self, id: &AgentTokenId) -> StoreResult<Option<AgentToken>> {
        self.by_id::<agent_token::Entity>(id.as_str(), false)
            .await?
            .map(convert::agent_token)
            .transpose()
    }

    async fn list_agent_tokens(&mut self, p: &PoolId) -> StoreResult<Vec<AgentToken>> {
        let rows = agent_token::Entity::find()
            .filter(agent_token::Column::PoolId.eq(p.as_str()))
            .order_by_asc(agent_token::Column::CreatedAt)
            .order_by_asc(agent_token::Column::Id)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::agent_token)
    }

    async fn delete_agent_token(&mut self, id: &AgentTokenId) -> StoreResult<()> {
        agent_token::Entity::delete_by_id(id.as_str())
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
