//! Row of `agents`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub version: String,
    pub pool_id: Option<String>,
    pub organization: Option<String>,
    pub status: String,
    pub max_jobs: i64,
    pub ip_address: String,
    pub last_ping_at: i64,
    pub last_status_at: i64,
    pub token_id: Option<String>,
    pub registered_at: i64,
    pub drained: bool,
    pub single: bool,
    pub labels: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
