//! Row of `configuration_tarballs`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "configuration_tarballs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub configuration_version_id: String,
    pub tarball: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
