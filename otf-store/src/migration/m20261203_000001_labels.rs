//! `agents.labels` (the labels an agent registered with),
//! `workspaces.agent_selector` (the labels its jobs' agents must carry) and
//! `jobs.selector` (the selector a waiting job is matched with), each in the
//! canonical text form `k=v,k2=v2` of `otf_core::labels::Labels` (empty: none).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const COLUMNS: [(&str, &str); 3] = [
    ("agents", "labels"),
    ("workspaces", "agent_selector"),
    ("jobs", "selector"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in COLUMNS {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .add_column(
                        ColumnDef::new(Alias::new(column))
                            .text()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in COLUMNS {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .drop_column(Alias::new(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
