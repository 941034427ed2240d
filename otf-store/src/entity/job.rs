//! Row of `jobs`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub run_id: String,
    pub phase: String,
    pub status: String,
    pub pool_id: Option<String>,
    pub organization: String,
    pub workspace_id: String,
    pub agent_id: Option<String>,
    pub attempt: i64,
    pub queued_at: i64,
    pub signal: Option<String>,
    pub token_hash: Option<String>,
    pub error: Option<String>,
    pub updated_at: i64,
    pub log_dropped: i64,
    pub affinity_agent_id: Option<String>,
    pub selector: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
