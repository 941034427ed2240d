//! Row of `workspaces`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workspaces")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub organization: String,
    pub name: String,
    pub execution_mode: String,
    pub agent_pool_id: Option<String>,
    pub auto_apply: bool,
    pub terraform_version: String,
    pub working_directory: String,
    pub locked_by_run: Option<String>,
    pub locked_by_holder: Option<String>,
    pub current_run_id: Option<String>,
    pub agent_selector: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
