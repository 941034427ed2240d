//! Schema migrations, in code, named by date and sequence. They run at every
//! start ([`crate::DbStore::connect`]); applied ones are recorded in
//! `seaql_migrations`, so running them again changes nothing.

use sea_orm_migration::prelude::*;

mod m20250601_000001_create_tables;
mod m20261201_000001_job_log_dropped;
mod m20261202_000001_leader_reign;
mod m20261202_000002_drain;
mod m20261202_000003_single;
mod m20261202_000004_pool_exclusions;
mod m20261203_000001_labels;
mod m20261207_000001_dispatch_indexes;

pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250601_000001_create_tables::Migration),
            Box::new(m20261201_000001_job_log_dropped::Migration),
            Box::new(m20261202_000001_leader_reign::Migration),
            Box::new(m20261202_000002_drain::Migration),
            Box::new(m20261202_000003_single::Migration),
            Box::new(m20261202_000004_pool_exclusions::Migration),
            Box::new(m20261203_000001_labels::Migration),
            Box::new(m20261207_000001_dispatch_indexes::Migration),
        ]
    }
}
