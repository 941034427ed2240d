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
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult,
    IntoActiveModel, Iterable, PrimaryKeyToColumn, QueryFilter, QuerySelect, QueryTrait, Select,
    Statement, Value,
};

use crate::error::db_err;
use crate::sql_cache::{self, Key};
use crate::store::DbTx;

impl DbTx {
    /// Insert one row; a duplicate key is a conflict.
    pub(crate) async fn insert_row<A>(&self, row: A) -> StoreResult<()>
    where
        A: ActiveModelTrait + Send,
        <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    {
        let backend = self.db_backend();
        // sea-orm inserts the columns that are set or unchanged.
        let stmt = match row_values(&row, |v| v.is_set() || v.is_unchanged()) {
            Some((columns, values)) => sql_cache::with_values(
                Key::new::<A::Entity>("insert_row", columns, backend),
                backend,
                values,
                || <A::Entity as EntityTrait>::insert(row).build(backend),
            ),
            None => <A::Entity as EntityTrait>::insert(row).build(backend),
        };
        self.tx.execute(stmt).await.map_err(db_err)?;
        Ok(())
    }

    /// Overwrite every column but the key of the row matching `key`, whose
    /// values, in the order it uses them, are `key_values`;
    /// [`StoreError::NotFound`] if there is none.
    pub(crate) async fn update_row<A>(
        &self,
        mut row: A,
        key: impl IntoCondition,
        key_values: Vec<Value>,
        kind: &'static str,
        id: &str,
    ) -> StoreResult<()>
    where
        A: ActiveModelTrait + Send,
    {
        for k in <<A::Entity as EntityTrait>::PrimaryKey as Iterable>::iter() {
            row.not_set(k.into_column());
        }
        let backend = self.db_backend();
        let build = |row: A, key| {
            <A::Entity as EntityTrait>::update_many()
                .set(row)
                .filter(key)
                .build(backend)
        };
        // sea-orm updates the columns that are set.
        let stmt = match row_values(&row, |v| v.is_set()) {
            Some((columns, mut values)) => {
                values.extend(key_values);
                sql_cache::with_values(
                    Key::new::<A::Entity>("update_row", columns, backend),
                    backend,
                    values,
                    || build(row, key),
                )
            }
            None => build(row, key),
        };
        let done = self.tx.execute(stmt).await.map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind,
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// The statement `select` makes of `args`, its text written once per
    /// `site` (see [`sql_cache::with_args`]).
    fn select_statement<E: EntityTrait, const N: usize>(
        &self,
        site: &'static str,
        args: [Value; N],
        select: impl Fn([Value; N]) -> Select<E>,
    ) -> Statement {
        let backend = self.db_backend();
        sql_cache::with_args(Key::new::<E>(site, 0, backend), backend, args, |a| {
            select(a).build(backend)
        })
    }

    /// The first row `select` finds, read as `M` (its entity's model, or a
    /// struct of the columns it selects); `args` are its variable values.
    pub(crate) async fn one_of<M, E, const N: usize>(
        &self,
        site: &'static str,
        args: [Value; N],
        select: impl Fn([Value; N]) -> Select<E>,
    ) -> StoreResult<Option<M>>
    where
        M: FromQueryResult,
        E: EntityTrait,
    {
        // What `Select::one` adds.
        let stmt = self.select_statement(site, args, |a| select(a).limit(1));
        M::find_by_statement(stmt)
            .one(&self.tx)
            .await
            .map_err(db_err)
    }

    /// Every row `select` finds, read as `M`.
    pub(crate) async fn all_of<M, E, const N: usize>(
        &self,
        site: &'static str,
        args: [Value; N],
        select: impl Fn([Value; N]) -> Select<E>,
    ) -> StoreResult<Vec<M>>
    where
        M: FromQueryResult,
        E: EntityTrait,
    {
        let stmt = self.select_statement(site, args, select);
        M::find_by_statement(stmt)
            .all(&self.tx)
            .await
            .map_err(db_err)
    }

    /// The row of `E` whose (single-column) primary key is `id`, locked for
    /// the transaction when `lock` (PostgreSQL's `FOR UPDATE`; SQLite's
    /// writer holds the whole database).
    pub(crate) async fn by_id<E>(&self, id: &str, lock: bool) -> StoreResult<Option<E::Model>>
    where
        E: EntityTrait,
    {
        let select = |[id]: [Value; 1]| {
            let mut q = E::find();
            for k in <E::PrimaryKey as Iterable>::iter() {
                q = q.filter(k.into_column().eq(id.clone()));
            }
            q
        };
        if lock {
            self.one_of("by_id.lock", [id.into()], |a| select(a).lock_exclusive())
                .await
        } else {
            self.one_of("by_id", [id.into()], select).await
        }
    }
}

/// Which columns of `row` `has` accepts (a bit each, in the entity's column
/// order) and their values in that order; `None` for an entity of more
/// columns than the bits.
fn row_values<A: ActiveModelTrait>(
    row: &A,
    has: impl Fn(&ActiveValue<Value>) -> bool,
) -> Option<(u64, Vec<Value>)> {
    let mut columns = 0u64;
    let mut values = Vec::new();
    for (i, c) in <<A::Entity as EntityTrait>::Column as Iterable>::iter().enumerate() {
        let v = row.get(c);
        if has(&v) {
            columns |= 1u64.checked_shl(u32::try_from(i).ok()?)?;
            values.push(v.into_value()?);
        }
    }
    Some((columns, values))
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
