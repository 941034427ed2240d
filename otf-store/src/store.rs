//! [`DbStore`]: opening a database (SQLite file or PostgreSQL URL), running
//! the migrations, and handing out transactions ([`DbTx`]).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use otf_core::store::{Store, StoreError, StoreResult, Tx};
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbBackend, SqlxPostgresConnector, SqlxSqliteConnector,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::{db_err, sqlx_err};
use crate::migration::Migrator;

/// Which database a [`DbStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Advisory lock key (one 64-bit key: "otfmigr" in ASCII) that serialises
/// migrations of replicas starting at the same time.
const MIGRATION_LOCK: i64 = 0x006f_7466_6d69_6772;

/// How long SQLite waits for another process's write lock before the
/// statement fails with a conflict.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Read-only SQLite connections: reads of this many requests go on at once,
/// beside the one writer.
const SQLITE_READERS: u32 = 4;

/// Connections of a PostgreSQL store's pool.
const PG_MAX_CONNECTIONS: u32 = 16;

/// A durable store on SQLite or PostgreSQL. Clones share the connection pool.
#[derive(Clone)]
pub struct DbStore {
    db: DatabaseConnection,
    backend: Backend,
    /// SQLite only: every transaction holds this for its whole life, so
    /// writers of this process never interleave (SQLite allows one writer;
    /// serialising here avoids deadlocks between deferred transactions that
    /// read, then try to write). Shared by every store on the same file.
    writer: Option<Arc<Mutex<()>>>,
    /// PostgreSQL only: the pool behind `db`, and how to open dedicated
    /// connections (LISTEN, the leader lock).
    pg: Option<(PgPool, PgConnectOptions)>,
    /// SQLite only: read-only connections for [`Store::begin_read`]; WAL
    /// lets them read a snapshot while the writer writes.
    readers: Option<DatabaseConnection>,
}

impl std::fmt::Debug for DbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The writer lock of each SQLite file opened by this process.
fn writer_for(path: &str) -> Arc<Mutex<()>> {
    static WRITERS: OnceLock<StdMutex<HashMap<String, Weak<Mutex<()>>>>> = OnceLock::new();
    let mut map = WRITERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(w) = map.get(path).and_then(Weak::upgrade) {
        return w;
    }
    let w = Arc::new(Mutex::new(()));
    map.insert(path.to_string(), Arc::downgrade(&w));
    w
}

impl DbStore {
    /// Open `sqlite://PATH` (created if missing) or `postgres://...` and
    /// bring its schema up to date.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(sqlx_err)?;
            Self::open_sqlite_with(options).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url).await
        } else {
            // Only the scheme: the rest may hold a password.
            let scheme = url.split(':').next().unwrap_or("");
            Err(StoreError::unavailable(format!(
                "unsupported database URL scheme {scheme:?}: use sqlite://PATH or postgres://USER@HOST/DB"
            )))
        }
    }

    /// Open (or create) the SQLite database in the file at `path`.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_sqlite_with(SqliteConnectOptions::new().filename(path)).await
    }

    async fn open_sqlite_with(options: SqliteConnectOptions) -> StoreResult<Self> {
        let path = options.get_filename().to_string_lossy().into_owned();
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every commit reaches the disk before it is acknowledged.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        // One connection: transactions are serialised by `writer` anyway.
        // No ping before each use: a dead connection fails the transaction
        // anyway, and the ping would cost every transaction a round trip.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(sqlx_err)?;
        let db = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
        Migrator::up(&db, None).await.map_err(db_err)?;
        // Opened after the migrations, so they see the whole schema.
        let readers = SqlitePoolOptions::new()
            .max_connections(SQLITE_READERS)
            .test_before_acquire(false)
            .connect_with(options.read_only(true).create_if_missing(false))
            .await
            .map_err(sqlx_err)?;
        Ok(Self {
            db,
            backend: Backend::Sqlite,
            writer: Some(writer_for(&path)),
            pg: None,
            readers: Some(SqlxSqliteConnector::from_sqlx_sqlite_pool(readers)),
        })
    }

    /// Connect to PostgreSQL at `url` and bring its schema up to date.
    pub async fn connect_postgres(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(sqlx_err)?;
        let pool = PgPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(sqlx_err)?;
        let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
        // Replicas that start together migrate one after the other; the lock
        // lives on a dedicated session so it outlives the migration's own
        // connection use.
        let mut lock = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(sqlx_err)?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut lock)
            .await
            .map_err(sqlx_err)?;
        let migrated = Migrator::up(&db, None).await.map_err(db_err);
        // Closing the session releases the lock whatever happened.
        let _ = lock.close().await;
        migrated?;
        Ok(Self {
            db,
            backend: Backend::Postgres,
            writer: None,
            pg: Some((pool, options)),
            readers: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool and connection options of a PostgreSQL store.
    pub(crate) fn postgres(&self) -> Option<&(PgPool, PgConnectOptions)> {
        self.pg.as_ref()
    }

    /// Close every connection of the pool (clones of this store stop working).
    pub async fn close(self) {
        if let Some(readers) = self.readers {
            let _ = readers.close().await;
        }
        let _ = self.db.close().await;
    }
}

/// A transaction of a [`DbStore`]. Dropping it without [`Tx::commit`] rolls
/// it back.
pub struct DbTx {
    // Field order matters: the transaction (and its rollback) goes before the
    // writer lock is released.
    pub(crate) tx: DatabaseTransaction,
    pub(crate) backend: Backend,
    _writer: Option<OwnedMutexGuard<()>>,
}

impl DbTx {
    pub(crate) fn db_backend(&self) -> DbBackend {
        match self.backend {
            Backend::Sqlite => DbBackend::Sqlite,
            Backend::Postgres => DbBackend::Postgres,
        }
    }
}

impl DbStore {
    /// BEGIN on PostgreSQL. After a server restart every pooled connection
    /// is dead, and each fails on first use (and is then dropped from the
    /// pool): try again, at most once per pooled connection plus one fresh
    /// one, so a restart costs callers nothing. Waiting for a connection
    /// (the pool exhausted, or the server unreachable) is not retried.
    async fn begin_postgres(&self) -> StoreResult<DatabaseTransaction> {
        let mut attempts = 0;
        loop {
            match self.db.begin().await {
                Ok(tx) => return Ok(tx),
                Err(e @ sea_orm::DbErr::ConnectionAcquire(_)) => return Err(db_err(e)),
                Err(e) if attempts > PG_MAX_CONNECTIONS => return Err(db_err(e)),
                Err(_) => attempts += 1,
            }
        }
    }
}

#[async_trait]
impl Store for DbStore {
    type Tx = DbTx;

    async fn begin(&self) -> StoreResult<DbTx> {
        let writer = match &self.writer {
            Some(w) => Some(w.clone().lock_owned().await),
            None => None,
        };
        let tx = match self.backend {
            Backend::Sqlite => self.db.begin().await.map_err(db_err)?,
            Backend::Postgres => self.begin_postgres().await?,
        };
        Ok(DbTx {
            tx,
            backend: self.backend,
            _writer: writer,
        })
    }

    /// On SQLite: on the writer's connection when no writer holds it (its
    /// page cache is the warm one), else on a read-only connection, so a
    /// read never waits for a writer.
    async fn begin_read(&self) -> StoreResult<DbTx> {
        let Some(readers) = &self.readers else {
            return self.begin().await;
        };
        if let Some(idle) = self
            .writer
            .as_ref()
            .and_then(|w| w.clone().try_lock_owned().ok())
        {
            return Ok(DbTx {
                tx: self.db.begin().await.map_err(db_err)?,
                backend: self.backend,
                _writer: Some(idle),
            });
        }
        Ok(DbTx {
            tx: readers.begin().await.map_err(db_err)?,
            backend: self.backend,
            _writer: None,
        })
    }
}

#[async_trait]
impl Tx for DbTx {
    async fn commit(self) -> StoreResult<()> {
        let DbTx { tx, _writer, .. } = self;
        tx.commit().await.map_err(db_err)
    }

    fn serialized(&self) -> bool {
        // One writer at a time (the process-wide writer lock; SQLite is
        // one otfd's), and a reader sees one snapshot.
        self.backend == Backend::Sqlite
    }
}
