//! Row of `runs`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub workspace_id: String,
    pub organization: String,
    pub configuration_version_id: String,
    pub status: String,
    pub is_destroy: bool,
    pub refresh: bool,
    pub refresh_only: bool,
    pub plan_only: bool,
    pub auto_apply_option: Option<bool>,
    pub message: String,
    /// JSON array of strings.
    pub target_addrs: String,
    /// JSON array of strings.
    pub replace_addrs: String,
    pub auto_apply: bool,
    pub terraform_version: String,
    pub has_changes: bool,
    pub plan_status: String,
    pub plan_additions: i64,
    pub plan_changes: i64,
    pub plan_destructions: i64,
    /// JSON array of `[status, millis]` pairs.
    pub plan_status_timestamps: String,
    pub apply_status: String,
    pub apply_additions: i64,
    pub apply_changes: i64,
    pub apply_destructions: i64,
    /// JSON array of `[status, millis]` pairs.
    pub apply_status_timestamps: String,
    pub created_at: i64,
    /// JSON array of `[status, millis]` pairs.
    pub status_timestamps: String,
    pub cancel_requested_at: Option<i64>,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
