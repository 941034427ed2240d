//! `jobs.log_dropped`: bytes of a job's output dropped past the log limit
//! (`--max-log-bytes`), so that the job's last log line can say how much.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("jobs"))
                .add_column(
                    ColumnDef::new(Alias::new("log_dropped"))
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("jobs"))
                .drop_column(Alias::new("log_dropped"))
                .to_owned(),
        )
        .await
    }
}
