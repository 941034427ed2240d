//! The repository traits of otf-core implemented on [`DbTx`], one file per
//! group of aggregates, with the few helpers they share.

mod agents;
mod artifacts;
mod organizations;
mod pools;
mod reign;
mod runs;
mod workspaces;

use otf_core::store::{StoreError, StoreResult};
use sea_orm::sea_query::Expr;
use sea_orm::sea_query::IntoCondition;
use sea_orm::{
    ActiveModelTrait, EntityTrait, IntoActiveModel, Iterable, PrimaryKeyToColumn, QueryFilter,
    QuerySelect, Select,
};

use crate::error::db_err;
use crate::store::DbTx;

impl DbTx {
    /// Insert one row; a duplicate key is a conflict.
    pub(crate) async fn insert_row<A>(&self, row: A) -> StoreResult<()>
    where
        A: ActiveModelTrait + Send,
        <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    {
        <A::Entity as EntityTrait>::insert(row)
            .exec_without_returning(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Overwrite every column but the key of the row matching `key`;
    /// [`StoreError::NotFound`] if there is none.
    pub(crate) async fn update_row<A>(
        &self,
        mut row: A,
        key: impl IntoCondition,
        kind: &'static str,
        id: &str,
    ) -> StoreResult<()>
    where
        A: ActiveModelTrait + Send,
    {
        for k in <<A::Entity as EntityTrait>::PrimaryKey as Iterable>::iter() {
            row.not_set(k.into_column());
        }
        let done = <A::Entity as EntityTrait>::update_many()
            .set(row)
            .filter(key)
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected == 0 {
            return Err(StoreError::NotFound {
                kind,
                id: id.to_string(),
            });
        }
        Ok(())
    }
}

impl DbTx {
    /// How many rows `select` finds. (sea-orm's `count` reads SQLite's
    /// count as a 32-bit integer, which the store's SQLite connections,
    /// typing an expression by its value, give it as 64-bit.)
    pub(crate) async fn count_rows<E: EntityTrait>(&self, select: Select<E>) -> StoreResult<u64> {
        let n: Option<i64> = select
            .select_only()
            .column_as(Expr::cust("COUNT(*)"), "n")
            .into_tuple()
            .one(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Whether `select` finds any row.
    pub(crate) async fn any_row<E: EntityTrait>(&self, select: Select<E>) -> StoreResult<bool> {
        let found: Option<i64> = select
            .select_only()
            .column_as(Expr::cust("CAST(1 AS BIGINT)"), "found")
            .limit(1)
            .into_tuple()
            .one(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(found.is_some())
    }
}

/// Convert every row with `f`.
pub(crate) fn all<M, T>(rows: Vec<M>, f: impl Fn(M) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.into_iter().map(f).collect()
}
