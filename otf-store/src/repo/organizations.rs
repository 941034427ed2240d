//! Organizations and organization tokens.

use async_trait::async_trait;
use otf_core::ids::{OrgTokenId, OrganizationName};
use otf_core::organization::{Organization, OrganizationToken};
use otf_core::store::{OrganizationRepo, StoreResult};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::all;
use crate::entity::{org_token, organization};
use crate::error::db_err;
use crate::{convert, DbTx};

#[async_trait]
impl OrganizationRepo for DbTx {
    async fn insert_organization(&mut self, org: &Organization) -> StoreResult<()> {
        self.insert_row(convert::organization_row(org)).await
    }

    async fn get_organization(
        &mut self,
        name: &OrganizationName,
    ) -> StoreResult<Option<Organization>> {
        self.by_id::<organization::Entity>(name.as_str(), false)
            .await?
            .map(convert::organization)
            .transpose()
    }

    async fn list_organizations(&mut self) -> StoreResult<Vec<Organization>> {
        let rows = organization::Entity::find()
            .order_by_asc(organization::Column::Name)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::organization)
    }

    async fn delete_organization(&mut self, name: &OrganizationName) -> StoreResult<()> {
        // Foreign keys cascade to everything in it.
        organization::Entity::delete_by_id(name.as_str())
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn insert_org_token(&mut self, token: &OrganizationToken) -> StoreResult<()> {
        self.insert_row(convert::org_token_row(token)).await
    }

    async fn update_org_token(&mut self, token: &OrganizationToken) -> StoreResult<()> {
        self.update_row(
            convert::org_token_row(token),
            org_token::Column::Id.eq(token.id.as_str()),
            vec![token.id.as_str().into()],
            "organization token",
            token.id.as_str(),
        )
        .await
    }

    async fn get_org_token(&mut self, id: &OrgTokenId) -> StoreResult<Option<OrganizationToken>> {
        self.by_id::<org_token::Entity>(id.as_str(), false)
            .await?
            .map(convert::org_token)
            .transpose()
    }

    async fn list_org_tokens(
        &mut self,
        org: &OrganizationName,
    ) -> StoreResult<Vec<OrganizationToken>> {
        let rows = org_token::Entity::find()
            .filter(org_token::Column::Organization.eq(org.as_str()))
            .order_by_asc(org_token::Column::CreatedAt)
            .order_by_asc(org_token::Column::Id)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::org_token)
    }

    async fn delete_org_token(&mut self, id: &OrgTokenId) -> StoreResult<()> {
        org_token::Entity::delete_by_id(id.as_str())
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
