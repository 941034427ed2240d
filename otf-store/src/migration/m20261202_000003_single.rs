//! `agents.single` (a single-execution agent) and `jobs.affinity_agent_id`
//! (the agent an apply waits for: the single agent that planned its run).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("agents"))
                .add_column(
                    ColumnDef::new(Alias::new("single"))
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Alias::new("jobs"))
                .add_column(
                    ColumnDef::new(Alias::new("affinity_agent_id"))
                        .text()
                        .null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("jobs"))
                .drop_column(Alias::new("affinity_agent_id"))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Alias::new("agents"))
                .drop_column(Alias::new("single"))
                .to_owned(),
        )
        .await
    }
}
