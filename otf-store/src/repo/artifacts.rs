//! Configuration versions, state versions, variables, logs and run artifacts.

use async_trait::async_trait;
use otf_core::artifacts::{
    ArtifactKind, ConfigStatus, ConfigurationVersion, LogChunk, StateVersion, Variable,
};
use otf_core::ids::{ConfigVersionId, RunId, StateVersionId, VariableId, WorkspaceId};
use otf_core::job::JobPhase;
use otf_core::store::{
    ArtifactRepo, Cause, ConfigRepo, LogRepo, StateRepo, StoreError, StoreResult, VariableRepo,
};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};

use super::all;
use crate::convert::{self, log_len, signed};
use crate::entity::{
    artifact, config_tarball, config_version, log_chunk, state_blob, state_version, variable,
};
use crate::error::{db_err, invalid};
use crate::store::Backend;
use crate::DbTx;

/// First key of the transaction-scoped advisory locks that serialise appends
/// to one log on PostgreSQL ("otfl" in ASCII); the second is a hash of the
/// run and phase. Two-key locks never collide with one-key locks.
const LOG_LOCK_CLASS: i32 = 0x6f74_666c;

/// Append a chunk (run, phase, length, data) at its log's end, which the
/// statement finds itself; its offset comes back. On PostgreSQL it runs
/// after the log's advisory lock, and reads the end in a snapshot taken
/// after the lock was granted.
const APPEND_LOG_POSTGRES: &str =
    "INSERT INTO log_chunks (run_id, phase, byte_offset, byte_len, data) \
     SELECT $1, $2, COALESCE(MAX(byte_offset + byte_len), 0), $3, $4 FROM log_chunks \
     WHERE run_id = $1 AND phase = $2 RETURNING byte_offset";
const APPEND_LOG_SQLITE: &str =
    "INSERT INTO log_chunks (run_id, phase, byte_offset, byte_len, data) \
     SELECT ?1, ?2, COALESCE(MAX(byte_offset + byte_len), 0), ?3, ?4 FROM log_chunks \
     WHERE run_id = ?1 AND phase = ?2 RETURNING byte_offset";

/// FNV-1a: a stable 32-bit hash, the same in every replica.
fn log_key(run: &RunId, phase: JobPhase) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in run
        .as_str()
        .bytes()
        .chain([b'/'])
        .chain(phase.as_str().bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

#[async_trait]
impl ConfigRepo for DbTx {
    async fn insert_config_version(&mut self, cv: &ConfigurationVersion) -> StoreResult<()> {
        self.insert_row(convert::config_version_row(cv)).await
    }

    async fn update_config_version(&mut self, cv: &ConfigurationVersion) -> StoreResult<()> {
        self.update_row(
            convert::config_version_row(cv),
            config_version::Column::Id.eq(cv.id.as_str()),
            vec![cv.id.as_str().into()],
            "configuration version",
            cv.id.as_str(),
        )
        .await
    }

    async fn get_config_version(
        &mut self,
        id: &ConfigVersionId,
    ) -> StoreResult<Option<ConfigurationVersion>> {
        self.by_id::<config_version::Entity>(id.as_str(), false)
            .await?
            .map(convert::config_version)
            .transpose()
    }

    async fn latest_config_version(
        &mut self,
        ws: &WorkspaceId,
    ) -> StoreResult<Option<ConfigurationVersion>> {
        self.one_of("latest_config_version", [ws.as_str().into()], |[ws]| {
            config_version::Entity::find()
                .filter(config_version::Column::WorkspaceId.eq(ws))
                .filter(config_version::Column::Status.eq(ConfigStatus::Uploaded.as_str()))
                .order_by_desc(config_version::Column::CreatedAt)
                .order_by_desc(config_version::Column::Id)
        })
        .await?
        .map(convert::config_version)
        .transpose()
    }

    async fn put_config_tarball(
        &mut self,
        id: &ConfigVersionId,
        tarball: &[u8],
    ) -> StoreResult<()> {
        let row = config_tarball::ActiveModel {
            configuration_version_id: Set(id.to_string()),
            tarball: Set(tarball.to_vec()),
        };
        config_tarball::Entity::insert(row)
            .on_conflict(
                OnConflict::column(config_tarball::Column::ConfigurationVersionId)
                    .update_column(config_tarball::Column::Tarball)
                    .to_owned(),
            )
            .exec_without_returning(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_config_tarball(&mut self, id: &ConfigVersionId) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .by_id::<config_tarball::Entity>(id.as_str(), false)
            .await?
            .map(|r| r.tarball))
    }
}

#[async_trait]
impl StateRepo for DbTx {
    async fn insert_state_version(&mut self, sv: &StateVersion, state: &[u8]) -> StoreResult<()> {
        self.insert_row(convert::state_version_row(sv)?).await?;
        self.insert_row(state_blob::ActiveModel {
            state_version_id: Set(sv.id.to_string()),
            state: Set(state.to_vec()),
        })
        .await
    }

    async fn get_state_version(
        &mut self,
        id: &StateVersionId,
    ) -> StoreResult<Option<StateVersion>> {
        self.by_id::<state_version::Entity>(id.as_str(), false)
            .await?
            .map(convert::state_version)
            .transpose()
    }

    async fn current_state_version(
        &mut self,
        ws: &WorkspaceId,
    ) -> StoreResult<Option<StateVersion>> {
        Ok(self.list_state_versions_limited(ws, Some(1)).await?.pop())
    }

    async fn list_state_versions(&mut self, ws: &WorkspaceId) -> StoreResult<Vec<StateVersion>> {
        self.list_state_versions_limited(ws, None).await
    }

    async fn get_state_bytes(&mut self, id: &StateVersionId) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .by_id::<state_blob::Entity>(id.as_str(), false)
            .await?
            .map(|r| r.state))
    }
}

impl DbTx {
    /// Newest first: by creation time, then serial, then id.
    async fn list_state_versions_limited(
        &self,
        ws: &WorkspaceId,
        limit: Option<u64>,
    ) -> StoreResult<Vec<StateVersion>> {
        let rows = state_version::Entity::find()
            .filter(state_version::Column::WorkspaceId.eq(ws.as_str()))
            .order_by_desc(state_version::Column::CreatedAt)
            .order_by_desc(state_version::Column::Serial)
            .order_by_desc(state_version::Column::Id)
            .limit(limit)
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        all(rows, convert::state_version)
    }
}

#[async_trait]
impl VariableRepo for DbTx {
    async fn insert_variable(&mut self, var: &Variable) -> StoreResult<()> {
        let taken = self
            .any_row(
                variable::Entity::find()
                    .filter(variable::Column::WorkspaceId.eq(var.workspace.as_str()))
                    .filter(variable::Column::Key.eq(var.key.as_str()))
                    .filter(variable::Column::Category.eq(var.category.as_str())),
            )
            .await?;
        if taken {
            return Err(StoreError::Conflict(Cause::new(format!(
                "variable {} already exists",
                var.key
            ))));
        }
        self.insert_row(convert::variable_row(var)).await
    }

    async fn update_variable(&mut self, var: &Variable) -> StoreResult<()> {
        self.update_row(
            convert::variable_row(var),
            variable::Column::Id.eq(var.id.as_str()),
            vec![var.id.as_str().into()],
            "variable",
            var.id.as_str(),
        )
        .await
    }

    async fn get_variable(&mut self, id: &VariableId) -> StoreResult<Option<Variable>> {
        self.by_id::<variable::Entity>(id.as_str(), false)
            .await?
            .map(convert::variable)
            .transpose()
    }

    async fn list_variables(&mut self, ws: &WorkspaceId) -> StoreResult<Vec<Variable>> {
        let rows = variable::Entity::find()
            .filter(variable::Column::WorkspaceId.eq(ws.as_str()))
            .all(&self.tx)
            .await
            .map_err(db_err)?;
        let mut vars = all(rows, convert::variable)?;
        // Category order is the enum's, not the wire text's.
        vars.sort_by(|a, b| a.key.cmp(&b.key).then(a.category.cmp(&b.category)));
        Ok(vars)
    }

    async fn delete_variable(&mut self, id: &VariableId) -> StoreResult<()> {
        variable::Entity::delete_by_id(id.as_str())
            .exec(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl LogRepo for DbTx {
    async fn append_log(
        &mut self,
        run: &RunId,
        phase: JobPhase,
        data: &[u8],
    ) -> StoreResult<LogChunk> {
        if self.backend == Backend::Postgres {
            // Two appends to the same log must not both read the same end.
            self.tx
                .execute(Statement::from_sql_and_values(
                    self.db_backend(),
                    "SELECT pg_advisory_xact_lock($1, $2)",
                    [LOG_LOCK_CLASS.into(), log_key(run, phase).into()],
                ))
                .await
                .map_err(db_err)?;
        }
        let offset = if data.is_empty() {
            // An empty chunk changes nothing and would take the next
            // chunk's key: only the log's end.
            #[derive(FromQueryResult)]
            struct End {
                log_end: i64,
            }
            let end: Option<End> = self
                .one_of(
                    "append_log.end",
                    [run.as_str().into(), phase.as_str().into()],
                    |[run, phase]| {
                        log_chunk::Entity::find()
                            .select_only()
                            .column_as(
                                Expr::cust("COALESCE(MAX(byte_offset + byte_len), 0)"),
                                "log_end",
                            )
                            .filter(log_chunk::Column::RunId.eq(run))
                            .filter(log_chunk::Column::Phase.eq(phase))
                    },
                )
                .await?;
            end.map_or(0, |e| e.log_end)
        } else {
            // The chunk goes at the log's end, found by the insert itself
            // (one statement; the aggregate always yields one row).
            #[derive(FromQueryResult)]
            struct Appended {
                byte_offset: i64,
            }
            let sql = match self.backend {
                Backend::Postgres => APPEND_LOG_POSTGRES,
                Backend::Sqlite => APPEND_LOG_SQLITE,
            };
            let appended = Appended::find_by_statement(Statement::from_sql_and_values(
                self.db_backend(),
                sql,
                [
                    run.as_str().into(),
                    phase.as_str().into(),
                    signed(data.len() as u64)?.into(),
                    data.to_vec().into(),
                ],
            ))
            .one(&self.tx)
            .await
            .map_err(db_err)?
            .ok_or_else(|| StoreError::unavailable("appending to a log returned no row"))?;
            appended.byte_offset
        };
        let offset = log_len("log end", offset)?;
        Ok(LogChunk {
            run: run.clone(),
            phase,
            offset,
            data: data.to_vec(),
        })
    }

    async fn read_log(
        &mut self,
        run: &RunId,
        phase: JobPhase,
        offset: u64,
        limit: u64,
    ) -> StoreResult<Vec<u8>> {
        let start = offset.min(i64::MAX as u64);
        let stop = offset.saturating_add(limit).min(i64::MAX as u64);
        if stop <= start {
            return Ok(Vec::new());
        }
        let chunks: Vec<log_chunk::Model> = self
            .all_of(
                "read_log",
                [
                    run.as_str().into(),
                    phase.as_str().into(),
                    signed(stop)?.into(),
                    signed(start)?.into(),
                ],
                |[run, phase, stop, start]| {
                    log_chunk::Entity::find()
                        .filter(log_chunk::Column::RunId.eq(run))
                        .filter(log_chunk::Column::Phase.eq(phase))
                        .filter(log_chunk::Column::ByteOffset.lt(stop))
                        .filter(
                            Expr::expr(
                                Expr::col(log_chunk::Column::ByteOffset)
                                    .add(Expr::col(log_chunk::Column::ByteLen)),
                            )
                            .gt(start),
                        )
                        .order_by_asc(log_chunk::Column::ByteOffset)
                },
            )
            .await?;
        let mut out = Vec::new();
        for c in chunks {
            let at = log_len("log chunk offset", c.byte_offset)?;
            if c.data.len() as u64 != log_len("log chunk length", c.byte_len)? {
                return Err(invalid("log chunk", "its length does not match its bytes"));
            }
            let from = start.saturating_sub(at) as usize;
            let to = ((stop - at) as usize).min(c.data.len());
            if from < to {
                out.extend_from_slice(&c.data[from..to]);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ArtifactRepo for DbTx {
    async fn put_artifact(
        &mut self,
        run: &RunId,
        kind: ArtifactKind,
        data: &[u8],
    ) -> StoreResult<()> {
        let row = artifact::ActiveModel {
            run_id: Set(run.to_string()),
            kind: Set(kind.as_str().to_string()),
            data: Set(data.to_vec()),
        };
        artifact::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([artifact::Column::RunId, artifact::Column::Kind])
                    .update_column(artifact::Column::Data)
                    .to_owned(),
            )
            .exec_without_returning(&self.tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_artifact(
        &mut self,
        run: &RunId,
        kind: ArtifactKind,
    ) -> StoreResult<Option<Vec<u8>>> {
        Ok(
            artifact::Entity::find_by_id((run.to_string(), kind.as_str().to_string()))
                .one(&self.tx)
                .await
                .map_err(db_err)?
                .map(|r| r.data),
        )
    }
}
