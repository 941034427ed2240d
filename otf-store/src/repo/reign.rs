//! The leader's fencing epoch: one row of `leader_reign`.

use async_trait::async_trait;
use otf_core::store::{ReignRepo, StoreError, StoreResult};
use sea_orm::{ConnectionTrait, Statement};

use crate::error::db_err;
use crate::store::Backend;
use crate::DbTx;

impl DbTx {
    async fn epoch(&self, sql: &str) -> StoreResult<u64> {
        let row = self
            .tx
            .query_one(Statement::from_string(self.db_backend(), sql))
            .await
            .map_err(db_err)?
            .ok_or_else(|| StoreError::unavailable("the leader_reign row is missing"))?;
        let epoch: i64 = row.try_get("", "epoch").map_err(db_err)?;
        Ok(epoch.max(0) as u64)
    }
}

#[async_trait]
impl ReignRepo for DbTx {
    async fn begin_reign(&mut self) -> StoreResult<u64> {
        self.epoch("UPDATE leader_reign SET epoch = epoch + 1 WHERE id = 1 RETURNING epoch")
            .await
    }

    async fn holds_reign(&mut self, epoch: u64) -> StoreResult<bool> {
        // FOR SHARE: a new reign's UPDATE waits until this transaction ends,
        // so nothing this one writes can land after it. SQLite transactions
        // are serialised anyway.
        let sql = match self.backend {
            Backend::Postgres => "SELECT epoch FROM leader_reign WHERE id = 1 FOR SHARE",
            Backend::Sqlite => "SELECT epoch FROM leader_reign WHERE id = 1",
        };
        Ok(self.epoch(sql).await? == epoch)
    }
}
