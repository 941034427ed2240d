//! Every table of otf's first schema.
//!
//! Text columns compare byte-wise on both backends (`COLLATE "C"` on
//! PostgreSQL, SQLite's default `BINARY`), so lists sort exactly as the
//! in-memory store sorts Rust strings. Blobs live in tables of their own so
//! that listing metadata never reads them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Column builders that know the backend.
struct Cols {
    postgres: bool,
}

impl Cols {
    fn text(&self, name: &str) -> ColumnDef {
        let mut c = ColumnDef::new(Alias::new(name));
        c.text().not_null();
        if self.postgres {
            c.extra("COLLATE \"C\"");
        }
        c
    }

    fn text_null(&self, name: &str) -> ColumnDef {
        let mut c = ColumnDef::new(Alias::new(name));
        c.text().null();
        if self.postgres {
            c.extra("COLLATE \"C\"");
        }
        c
    }

    fn key(&self, name: &str) -> ColumnDef {
        let mut c = self.text(name);
        c.primary_key();
        c
    }

    fn int(&self, name: &str) -> ColumnDef {
        let mut c = ColumnDef::new(Alias::new(name));
        c.big_integer().not_null();
        c
    }

    fn int_null(&self, name: &str) -> ColumnDef {
        let mut c = ColumnDef::new(Alias::new(name));
        c.big_integer().null();
        c
    }

    fn flag(&self, name: &str) -> ColumnDef {
        let mut c = ColumnDef::new(Alias::new(name));
        c.boolean().not_null();
        c
    }

    fn flag_null(&self, name: &str) -> ColumnDef {
        let mut c = ColumnDef::new(Alias::new(name));
        c.boolean().null();
        c
    }

    fn blob(&self, name: &str) -> ColumnDef {
        let mut c = ColumnDef::new(Alias::new(name));
        c.binary().not_null();
        c
    }
}

fn t(name: &str) -> Alias {
    Alias::new(name)
}

/// A foreign key from `table.column` to `parent.parent_column` that deletes
/// the row with its parent.
fn cascade(
    table: &str,
    column: &str,
    parent: &str,
    parent_column: &str,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(t(table), t(column))
        .to(t(parent), t(parent_column))
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index(table: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(format!("idx_{table}_{}", columns.join("_")))
        .table(t(table))
        .if_not_exists();
    for c in columns {
        i.col(t(c));
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let c = Cols {
            postgres: m.get_database_backend() == DbBackend::Postgres,
        };

        m.create_table(
            Table::create()
                .table(t("organizations"))
                .if_not_exists()
                .col(c.key("name"))
                .col(c.text("email"))
                .col(c.int("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("organization_tokens"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("organization"))
                .col(c.text("description"))
                .col(c.int("created_at"))
                .col(c.int_null("last_used_at"))
                .col(c.text("hash"))
                .foreign_key(&mut cascade(
                    "organization_tokens",
                    "organization",
                    "organizations",
                    "name",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("organization_tokens", &["organization"]))
            .await?;

        m.create_table(
            Table::create()
                .table(t("agent_pools"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("organization"))
                .col(c.text("name"))
                .col(c.flag("organization_scoped"))
                .col(c.int("created_at"))
                .foreign_key(&mut cascade(
                    "agent_pools",
                    "organization",
                    "organizations",
                    "name",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("agent_pools", &["organization", "name"]))
            .await?;

        m.create_table(
            Table::create()
                .table(t("workspaces"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("organization"))
                .col(c.text("name"))
                .col(c.text("execution_mode"))
                .col(c.text_null("agent_pool_id"))
                .col(c.flag("auto_apply"))
                .col(c.text("terraform_version"))
                .col(c.text("working_directory"))
                .col(c.text_null("locked_by_run"))
                .col(c.text_null("locked_by_holder"))
                .col(c.text_null("current_run_id"))
                .col(c.int("created_at"))
                .col(c.int("updated_at"))
                .foreign_key(&mut cascade(
                    "workspaces",
                    "organization",
                    "organizations",
                    "name",
                ))
                // A pool in use cannot disappear under its workspaces (the core
                // refuses first; this is the database's backstop).
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_workspaces_agent_pool_id")
                        .from(t("workspaces"), t("agent_pool_id"))
                        .to(t("agent_pools"), t("id")),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("workspaces", &["organization", "name"])
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(index("workspaces", &["agent_pool_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table(t("agent_pool_allowed_workspaces"))
                .if_not_exists()
                .col(c.text("pool_id"))
                .col(c.text("workspace_id"))
                .primary_key(Index::create().col(t("pool_id")).col(t("workspace_id")))
                .foreign_key(&mut cascade(
                    "agent_pool_allowed_workspaces",
                    "pool_id",
                    "agent_pools",
                    "id",
                ))
                .foreign_key(&mut cascade(
                    "agent_pool_allowed_workspaces",
                    "workspace_id",
                    "workspaces",
                    "id",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("agent_pool_allowed_workspaces", &["workspace_id"]))
            .await?;

        m.create_table(
            Table::create()
                .table(t("agent_tokens"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("pool_id"))
                .col(c.text("organization"))
                .col(c.text("description"))
                .col(c.int("created_at"))
                .col(c.int_null("last_used_at"))
                .col(c.text("hash"))
                .foreign_key(&mut cascade("agent_tokens", "pool_id", "agent_pools", "id"))
                .foreign_key(&mut cascade(
                    "agent_tokens",
                    "organization",
                    "organizations",
                    "name",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("agent_tokens", &["pool_id"])).await?;

        // Agents keep no foreign key to their pool or token: an agent whose
        // token was deleted stays (as `exited`) until it is purged.
        m.create_table(
            Table::create()
                .table(t("agents"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("name"))
                .col(c.text("version"))
                .col(c.text_null("pool_id"))
                .col(c.text_null("organization"))
                .col(c.text("status"))
                .col(c.int("max_jobs"))
                .col(c.text("ip_address"))
                .col(c.int("last_ping_at"))
                .col(c.int("last_status_at"))
                .col(c.text_null("token_id"))
                .col(c.int("registered_at"))
                .foreign_key(&mut cascade(
                    "agents",
                    "organization",
                    "organizations",
                    "name",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("agents", &["pool_id"])).await?;
        m.create_index(index("agents", &["token_id"])).await?;

        m.create_table(
            Table::create()
                .table(t("configuration_versions"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("workspace_id"))
                .col(c.text("organization"))
                .col(c.text("status"))
                .col(c.flag("speculative"))
                .col(c.flag("auto_queue_runs"))
                .col(c.text_null("error"))
                .col(c.int("created_at"))
                .foreign_key(&mut cascade(
                    "configuration_versions",
                    "workspace_id",
                    "workspaces",
                    "id",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "configuration_versions",
            &["workspace_id", "created_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(t("configuration_tarballs"))
                .if_not_exists()
                .col(c.key("configuration_version_id"))
                .col(c.blob("tarball"))
                .foreign_key(&mut cascade(
                    "configuration_tarballs",
                    "configuration_version_id",
                    "configuration_versions",
                    "id",
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("runs"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("workspace_id"))
                .col(c.text("organization"))
                .col(c.text("configuration_version_id"))
                .col(c.text("status"))
                .col(c.flag("is_destroy"))
                .col(c.flag("refresh"))
                .col(c.flag("refresh_only"))
                .col(c.flag("plan_only"))
                .col(c.flag_null("auto_apply_option"))
                .col(c.text("message"))
                .col(c.text("target_addrs"))
                .col(c.text("replace_addrs"))
                .col(c.flag("auto_apply"))
                .col(c.text("terraform_version"))
                .col(c.flag("has_changes"))
                .col(c.text("plan_status"))
                .col(c.int("plan_additions"))
                .col(c.int("plan_changes"))
                .col(c.int("plan_destructions"))
                .col(c.text("plan_status_timestamps"))
                .col(c.text("apply_status"))
                .col(c.int("apply_additions"))
                .col(c.int("apply_changes"))
                .col(c.int("apply_destructions"))
                .col(c.text("apply_status_timestamps"))
                .col(c.int("created_at"))
                .col(c.text("status_timestamps"))
                .col(c.int_null("cancel_requested_at"))
                .col(c.text_null("error"))
                .foreign_key(&mut cascade("runs", "workspace_id", "workspaces", "id"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("runs", &["workspace_id", "created_at"]))
            .await?;
        m.create_index(index("runs", &["workspace_id", "status"]))
            .await?;

        m.create_table(
            Table::create()
                .table(t("jobs"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("run_id"))
                .col(c.text("phase"))
                .col(c.text("status"))
                .col(c.text_null("pool_id"))
                .col(c.text("organization"))
                .col(c.text("workspace_id"))
                .col(c.text_null("agent_id"))
                .col(c.int("attempt"))
                .col(c.int("queued_at"))
                .col(c.text_null("signal"))
                .col(c.text_null("token_hash"))
                .col(c.text_null("error"))
                .col(c.int("updated_at"))
                .foreign_key(&mut cascade("jobs", "run_id", "runs", "id"))
                .foreign_key(&mut cascade("jobs", "workspace_id", "workspaces", "id"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("jobs", &["run_id"])).await?;
        m.create_index(index("jobs", &["agent_id"])).await?;
        m.create_index(index("jobs", &["status", "queued_at"]))
            .await?;

        m.create_table(
            Table::create()
                .table(t("state_versions"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("workspace_id"))
                .col(c.text("organization"))
                .col(c.int("serial"))
                .col(c.text("lineage"))
                .col(c.text("md5"))
                .col(c.int("size"))
                .col(c.text_null("run_id"))
                .col(c.int("created_at"))
                .foreign_key(&mut cascade(
                    "state_versions",
                    "workspace_id",
                    "workspaces",
                    "id",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index("state_versions", &["workspace_id", "created_at"]))
            .await?;

        m.create_table(
            Table::create()
                .table(t("state_blobs"))
                .if_not_exists()
                .col(c.key("state_version_id"))
                .col(c.blob("state"))
                .foreign_key(&mut cascade(
                    "state_blobs",
                    "state_version_id",
                    "state_versions",
                    "id",
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("variables"))
                .if_not_exists()
                .col(c.key("id"))
                .col(c.text("workspace_id"))
                .col(c.text("key"))
                .col(c.text("value"))
                .col(c.text("description"))
                .col(c.text("category"))
                .col(c.flag("hcl"))
                .col(c.flag("sensitive"))
                .foreign_key(&mut cascade(
                    "variables",
                    "workspace_id",
                    "workspaces",
                    "id",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            index("variables", &["workspace_id", "key", "category"])
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("log_chunks"))
                .if_not_exists()
                .col(c.text("run_id"))
                .col(c.text("phase"))
                .col(c.int("byte_offset"))
                .col(c.int("byte_len"))
                .col(c.blob("data"))
                .primary_key(
                    Index::create()
                        .col(t("run_id"))
                        .col(t("phase"))
                        .col(t("byte_offset")),
                )
                .foreign_key(&mut cascade("log_chunks", "run_id", "runs", "id"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(t("run_artifacts"))
                .if_not_exists()
                .col(c.text("run_id"))
                .col(c.text("kind"))
                .col(c.blob("data"))
                .primary_key(Index::create().col(t("run_id")).col(t("kind")))
                .foreign_key(&mut cascade("run_artifacts", "run_id", "runs", "id"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "run_artifacts",
            "log_chunks",
            "variables",
            "state_blobs",
            "state_versions",
            "jobs",
            "runs",
            "configuration_tarballs",
            "configuration_versions",
            "agents",
            "agent_tokens",
            "agent_pool_allowed_workspaces",
            "workspaces",
            "agent_pools",
            "organization_tokens",
            "organizations",
        ] {
            m.drop_table(Table::drop().table(t(table)).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
