//! Indexes that keep dispatch's lookups independent of history:
//!
//! * `runs (workspace_id, status, created_at, id)`: a workspace's oldest
//!   pending run (`next_pending_run`, after every run that ends) was found
//!   by walking all its runs oldest first, past every finished one; it
//!   replaces `runs (workspace_id, status)`, a prefix of it.
//! * `jobs (agent_id, status)`: an agent's active jobs (every long-poll and
//!   job start) were found among all the jobs it ever ran; it replaces
//!   `jobs (agent_id)`, a prefix of it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// (table, the new index's columns, the columns of the index it replaces)
const INDEXES: [(&str, &[&str], &[&str]); 2] = [
    (
        "runs",
        &["workspace_id", "status", "created_at", "id"],
        &["workspace_id", "status"],
    ),
    ("jobs", &["agent_id", "status"], &["agent_id"]),
];

fn name(table: &str, columns: &[&str]) -> String {
    format!("idx_{table}_{}", columns.join("_"))
}

fn index_create(table: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index
        .name(name(table, columns))
        .table(Alias::new(table))
        .if_not_exists();
    for c in columns {
        index.col(Alias::new(*c));
    }
    index.to_owned()
}

fn index_drop(table: &str, columns: &[&str]) -> IndexDropStatement {
    Index::drop()
        .name(name(table, columns))
        .table(Alias::new(table))
        .if_exists()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, columns, replaced) in INDEXES {
            m.create_index(index_create(table, columns)).await?;
            m.drop_index(index_drop(table, replaced)).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, columns, replaced) in INDEXES {
            m.create_index(index_create(table, replaced)).await?;
            m.drop_index(index_drop(table, columns)).await?;
        }
        Ok(())
    }
}
