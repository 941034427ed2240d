//! `agent_pool_excluded_workspaces`: workspaces an organization-scoped pool
//! excludes (TFE's `excluded-workspaces`); rows go with their pool or
//! workspace.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const TABLE: &str = "agent_pool_excluded_workspaces";

fn cascade(column: &str, parent: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{TABLE}_{column}"))
        .from(Alias::new(TABLE), Alias::new(column))
        .to(Alias::new(parent), Alias::new("id"))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Alias::new(TABLE))
                .if_not_exists()
                .col(ColumnDef::new(Alias::new("pool_id")).text().not_null())
                .col(ColumnDef::new(Alias::new("workspace_id")).text().not_null())
                .primary_key(
                    Index::create()
                        .col(Alias::new("pool_id"))
                        .col(Alias::new("workspace_id")),
                )
                .foreign_key(&mut cascade("pool_id", "agent_pools"))
                .foreign_key(&mut cascade("workspace_id", "workspaces"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(format!("idx_{TABLE}_workspace_id"))
                .table(Alias::new(TABLE))
                .col(Alias::new("workspace_id"))
                .if_not_exists()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new(TABLE)).to_owned())
            .await
    }
}
