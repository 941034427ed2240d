//! [`DbStore`]: opening a database (SQLite file or PostgreSQL URL), running
//! the migrations, and handing out transactions ([`DbTx`]).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use otf_core::store::{Store, StoreError, StoreResult, Tx};
use sea_orm::{
    AccessMode, DatabaseConnection, DatabaseTransaction, DbBackend, IsolationLevel,
    SqlxPostgresConnector, SqlxSqliteConnector, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use crate::error::{db_err, sqlx_err};
use crate::migration::Migrator;
use crate::sqlite_conn::SqliteConn;

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
    /// SQLite only: every transaction holds its lock for its whole life,
    /// so writers of this process never interleave (SQLite allows one
    /// writer; serialising here avoids deadlocks between deferred
    /// transactions that read, then try to write), and commits together
    /// with the transactions that waited for it ([`Writer`]). Shared by
    /// every store on the same file.
    writer: Option<Arc<Writer>>,
    /// PostgreSQL only: the pool behind `db`, and how to open dedicated
    /// connections (LISTEN, the leader lock).
    pg: Option<(PgPool, PgConnectOptions)>,
    /// SQLite only: read-only connections for [`Store::begin_read`]; WAL
    /// lets them read a snapshot while the writer writes.
    readers: Option<Arc<Readers>>,
}

impl std::fmt::Debug for DbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Transactions committed with one `fsync` at most.
const MAX_BATCH: usize = 32;

/// The one writer of a SQLite file, and its group commit: a transaction
/// runs in the batch's transaction (the batch's first directly, each later
/// one as a savepoint of it, so it can be undone alone). When it commits while
/// others wait to begin, it releases its savepoint and hands the open batch
/// on; the last one commits the batch, and only then is every member
/// answered (each caller's changes are durable before its commit returns;
/// a failed batch commit fails every member, none of whose changes land).
/// A member that handed the batch on also queues for the lock again, and
/// commits the batch itself if it finds it still open (its successor
/// failed, say), so no batch waits for a transaction that never comes.
///
/// Its statements run on [`SqliteConn`], on the thread of the task that
/// holds `lock`: no hand-off to a connection thread per statement.
pub(crate) struct Writer {
    lock: Arc<Mutex<WriterState>>,
    /// Transactions waiting to begin (not members waiting for a commit).
    waiting: AtomicUsize,
    conn: SqliteConn,
    /// sea-orm's connection onto `conn`.
    db: DatabaseConnection,
}

#[derive(Default)]
struct WriterState {
    batch: Option<Batch>,
    batches: u64,
}

/// Counts a transaction waiting to begin, also when its wait is abandoned.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Members released into the open transaction on the writer's connection,
/// waiting for its commit.
struct Batch {
    id: u64,
    members: Vec<oneshot::Sender<StoreResult<()>>>,
}

/// The savepoint each member of a batch after its first runs in (one at a
/// time): taken, released into the batch, and rolled back alone.
const SAVEPOINT: &str = "SAVEPOINT otf_member";
const RELEASE: &str = "RELEASE otf_member";
const ROLLBACK_MEMBER: &str = "ROLLBACK TO otf_member";

impl Writer {
    /// Commit the open batch and answer its members. The commit (one
    /// `fdatasync` of the WAL) runs on a blocking thread: the tasks behind
    /// this one go on meanwhile and queue for the next batch. The members
    /// are answered there, and the lock released only after, so a caller
    /// that stops waiting (its request dropped) leaves nobody unanswered
    /// and no next transaction begins before the commit has ended.
    async fn commit_batch(&self, mut state: OwnedMutexGuard<WriterState>) -> StoreResult<()> {
        let Some(batch) = state.batch.take() else {
            return Ok(());
        };
        let conn = self.conn.clone();
        let commit = move || {
            let _lock = state;
            let result = conn.run("COMMIT").map_err(db_err);
            if result.is_err() {
                // A COMMIT that failed (SQLITE_BUSY, a full disk) may
                // leave the transaction open: nothing of it may land later.
                let _ = conn.run("ROLLBACK");
            }
            for member in batch.members {
                let _ = member.send(result.clone());
            }
            result
        };
        tokio::task::spawn_blocking(commit)
            .await
            .unwrap_or_else(|e| Err(StoreError::unavailable(format!("the commit failed: {e}"))))
    }

    /// Roll the open batch back and fail its members with `e`.
    fn fail_batch(&self, state: &mut WriterState, e: &StoreError) {
        if let Some(batch) = state.batch.take() {
            let _ = self.conn.run("ROLLBACK");
            for member in batch.members {
                let _ = member.send(Err(e.clone()));
            }
        }
    }

    /// Undo an uncommitted member's changes. A batch no earlier member
    /// waits on is rolled back whole (nothing in it is anyone's), so it
    /// holds no write lock on the file meanwhile.
    fn drop_member(&self, state: &mut WriterState) {
        let Some(batch) = &state.batch else {
            return;
        };
        if batch.members.is_empty() {
            state.batch = None;
            let _ = self.conn.run("ROLLBACK");
            return;
        }
        let undone = self
            .conn
            .run(ROLLBACK_MEMBER)
            .and_then(|()| self.conn.run(RELEASE));
        if let Err(e) = undone {
            self.fail_batch(state, &db_err(e));
        }
    }
}

/// The writer of each SQLite file opened by this process (opened on first
/// use, closed when the last store on the file is dropped).
fn writer_for(path: &str) -> StoreResult<Arc<Writer>> {
    static WRITERS: OnceLock<StdMutex<HashMap<String, Weak<Writer>>>> = OnceLock::new();
    let mut map = WRITERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(w) = map.get(path).and_then(Weak::upgrade) {
        return Ok(w);
    }
    let conn = SqliteConn::open(Path::new(path), true, SQLITE_BUSY_TIMEOUT).map_err(db_err)?;
    let w = Arc::new(Writer {
        lock: Arc::new(Mutex::new(WriterState::default())),
        waiting: AtomicUsize::new(0),
        db: conn.database(),
        conn,
    });
    map.insert(path.to_string(), Arc::downgrade(&w));
    Ok(w)
}

impl DbStore {
    /// Open `sqlite://PATH` (created if missing) or `postgres://...` and
    /// bring its schema up to date.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            // The writer and the readers are connections of their own; an
            // in-memory database would be a different one on each.
            let rest = rest.trim_start_matches("//");
            if rest.starts_with(":memory:") || rest.contains("mode=memory") {
                return Err(StoreError::unavailable(
                    "an in-memory SQLite database is not supported: use sqlite://PATH (a file), \
                     or otf_core::memory::MemoryStore when embedding",
                ));
            }
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
        // The migrations run on an sqlx connection of their own, closed
        // before the writer's connection opens.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(sqlx_err)?;
        let migrated = Migrator::up(
            &SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone()),
            None,
        )
        .await
        .map_err(db_err);
        pool.close().await;
        migrated?;
        let writer = writer_for(&path)?;
        // Opened after the migrations, so they see the whole schema.
        let readers = (0..SQLITE_READERS)
            .map(|_| {
                let conn = SqliteConn::open(Path::new(&path), false, SQLITE_BUSY_TIMEOUT)?;
                Ok(Reader {
                    busy: Arc::new(Mutex::new(())),
                    db: conn.database(),
                    conn,
                })
            })
            .collect::<Result<Vec<_>, sea_orm::DbErr>>()
            .map_err(db_err)?;
        Ok(Self {
            db: writer.db.clone(),
            backend: Backend::Sqlite,
            writer: Some(writer),
            pg: None,
            readers: Some(Arc::new(Readers {
                all: readers,
                next: AtomicUsize::new(0),
            })),
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

    /// SQLite: the batches its writer has committed or opened (each one
    /// durable commit for all its transactions), and the transactions
    /// waiting to begin now. None on PostgreSQL. For tests and diagnostics.
    pub fn sqlite_writer(&self) -> Option<(u64, usize)> {
        let w = self.writer.as_ref()?;
        let batches = w.lock.try_lock().map(|s| s.batches).unwrap_or(0);
        Some((batches, w.waiting.load(Ordering::SeqCst)))
    }

    /// SQLite: the queries and changes run so far on the file's writer and
    /// on this store's readers (BEGIN, COMMIT and savepoints not counted).
    /// None on PostgreSQL. For tests and benchmarks: what a use case costs
    /// in statements.
    pub fn sqlite_statements(&self) -> Option<u64> {
        let writer = self.writer.as_ref()?.conn.statements();
        let readers = self.readers.as_ref().map_or(0, |r| {
            r.all.iter().map(|reader| reader.conn.statements()).sum()
        });
        Some(writer + readers)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool and connection options of a PostgreSQL store.
    pub(crate) fn postgres(&self) -> Option<&(PgPool, PgConnectOptions)> {
        self.pg.as_ref()
    }

    /// PostgreSQL: close every connection of the pool (clones of this store
    /// stop working). SQLite: let go of this store's connections; the file's
    /// writer closes with the last store on the file.
    pub async fn close(self) {
        let _ = self.db.close().await;
    }
}

/// A transaction of a [`DbStore`]. Dropping it without [`Tx::commit`] rolls
/// it back.
pub struct DbTx {
    /// sea-orm's transaction the repositories issue statements through
    /// (on SQLite's writer, a handle onto [`SqliteConn`] whose own begin,
    /// commit and rollback do nothing: `writer` runs those).
    pub(crate) tx: DatabaseTransaction,
    pub(crate) backend: Backend,
    writer: Held,
}

/// What a read transaction holds its SQLite connection with (only held:
/// dropping it lets the next transaction have the connection).
enum ReadLock {
    Writer(#[expect(dead_code, reason = "held, never read")] OwnedMutexGuard<WriterState>),
    Reader(#[expect(dead_code, reason = "held, never read")] OwnedMutexGuard<()>),
}

/// A SQLite store's read-only connections.
struct Readers {
    all: Vec<Reader>,
    /// Where the next read starts looking for a free connection.
    next: AtomicUsize,
}

struct Reader {
    /// Held by the read transaction that uses `conn`.
    busy: Arc<Mutex<()>>,
    conn: SqliteConn,
    /// sea-orm's connection onto `conn`.
    db: DatabaseConnection,
}

impl Readers {
    /// A free reader, or (all busy) the next one once it is free.
    async fn take(&self) -> (&Reader, OwnedMutexGuard<()>) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.all.len();
        for i in 0..n {
            let r = &self.all[(start + i) % n];
            if let Ok(guard) = r.busy.clone().try_lock_owned() {
                return (r, guard);
            }
        }
        let r = &self.all[start % n];
        (r, r.busy.clone().lock_owned().await)
    }
}

/// What a transaction holds of its store's SQLite writer; dropped
/// uncommitted, it rolls back what it holds.
enum Held {
    /// Nothing (PostgreSQL, or a read on a read-only connection).
    Nothing,
    /// A read transaction on `conn` (the writer's, while no batch is
    /// open, or a reader's), holding it until it ends.
    Read(SqliteConn, Option<ReadLock>),
    /// A savepoint of the open batch.
    Member(Arc<Writer>, Option<OwnedMutexGuard<WriterState>>),
}

impl Drop for Held {
    fn drop(&mut self) {
        match self {
            Held::Read(conn, Some(_)) => {
                let _ = conn.run("ROLLBACK");
            }
            Held::Member(writer, Some(state)) => writer.drop_member(state),
            _ => {}
        }
    }
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
    ///
    /// `read`: a transaction that only reads, in one snapshot (REPEATABLE
    /// READ, READ ONLY; sea-orm sets them with a `SET TRANSACTION` after
    /// the `BEGIN`, one more round trip). Writes use READ COMMITTED and
    /// row locks.
    async fn begin_postgres(&self, read: bool) -> StoreResult<DatabaseTransaction> {
        let mut attempts = 0;
        loop {
            let begun = match read {
                true => {
                    self.db
                        .begin_with_config(
                            Some(IsolationLevel::RepeatableRead),
                            Some(AccessMode::ReadOnly),
                        )
                        .await
                }
                false => self.db.begin().await,
            };
            match begun {
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
        let Some(writer) = &self.writer else {
            return Ok(DbTx {
                tx: self.begin_postgres(false).await?,
                backend: self.backend,
                writer: Held::Nothing,
            });
        };
        let waiting = Waiting::new(&writer.waiting);
        let mut state = writer.lock.clone().lock_owned().await;
        drop(waiting);
        if state.batch.is_none() {
            writer.conn.run("BEGIN").map_err(db_err)?;
            state.batches += 1;
            state.batch = Some(Batch {
                id: state.batches,
                members: Vec::new(),
            });
        }
        // The batch's first member needs no savepoint of its own: undoing
        // it is rolling the whole batch back (see `drop_member`). Only a
        // member after others has changes of theirs to keep around it
        // (each savepoint copies every page it first changes).
        if state.batch.as_ref().is_some_and(|b| !b.members.is_empty()) {
            if let Err(e) = writer.conn.run(SAVEPOINT) {
                writer.drop_member(&mut state);
                return Err(db_err(e));
            }
        }
        let held = Held::Member(writer.clone(), Some(state));
        Ok(DbTx {
            tx: writer.db.begin().await.map_err(db_err)?,
            backend: self.backend,
            writer: held,
        })
    }

    /// On SQLite: on the writer's connection when no writer holds it (its
    /// page cache is the warm one), else on one of the read-only
    /// connections (reads take turns on them), so a read never waits for a
    /// writer; a SQLite transaction reads one snapshot. On PostgreSQL:
    /// REPEATABLE READ, READ ONLY (its default, READ COMMITTED, would give
    /// each statement a snapshot of its own).
    async fn begin_read(&self) -> StoreResult<DbTx> {
        let Some(readers) = &self.readers else {
            return Ok(DbTx {
                tx: self.begin_postgres(true).await?,
                backend: self.backend,
                writer: Held::Nothing,
            });
        };
        // Not inside an open batch: it would read changes not yet durable.
        let idle = self.writer.as_ref().and_then(|w| {
            w.lock
                .clone()
                .try_lock_owned()
                .ok()
                .filter(|state| state.batch.is_none())
                .map(|state| (w.conn.clone(), w.db.clone(), ReadLock::Writer(state)))
        });
        let (conn, db, lock) = match idle {
            Some(idle) => idle,
            None => {
                let (reader, busy) = readers.take().await;
                (
                    reader.conn.clone(),
                    reader.db.clone(),
                    ReadLock::Reader(busy),
                )
            }
        };
        conn.run("BEGIN").map_err(db_err)?;
        let held = Held::Read(conn, Some(lock));
        Ok(DbTx {
            tx: db.begin().await.map_err(db_err)?,
            backend: self.backend,
            writer: held,
        })
    }
}

#[async_trait]
impl Tx for DbTx {
    async fn commit(self) -> StoreResult<()> {
        let DbTx {
            tx,
            writer: mut held,
            ..
        } = self;
        let (writer, mut state) = match &mut held {
            Held::Nothing => return tx.commit().await.map_err(db_err),
            Held::Read(conn, lock) => {
                // The connection is held until the read has ended on it,
                // and a failed end still ends it.
                let _lock = lock.take();
                let ended = conn.run("COMMIT").map_err(db_err);
                if ended.is_err() {
                    let _ = conn.run("ROLLBACK");
                }
                return ended;
            }
            Held::Member(writer, state) => match state.take() {
                Some(state) => (writer.clone(), state),
                None => return Ok(()),
            },
        };
        drop(tx);
        // Only a member after the batch's first took a savepoint.
        let joined = state.batch.as_ref().is_some_and(|b| !b.members.is_empty());
        let released = if joined {
            writer.conn.run(RELEASE)
        } else {
            Ok(())
        };
        if let Err(e) = released {
            // Its savepoint could not be released: fail the whole batch
            // rather than commit part of this transaction.
            let e = db_err(e);
            writer.fail_batch(&mut state, &e);
            return Err(e);
        }
        let waiting = writer.waiting.load(Ordering::SeqCst) > 0;
        let Some(batch) = state
            .batch
            .as_mut()
            .filter(|b| waiting && b.members.len() + 1 < MAX_BATCH)
        else {
            return writer.commit_batch(state).await;
        };
        // Others wait to begin: they join this batch, and the last one
        // commits it.
        let (answer, mut answered) = oneshot::channel();
        batch.members.push(answer);
        let id = batch.id;
        drop(state);
        let gone = || {
            StoreError::Unavailable(otf_core::store::Cause::new(
                "the batch of this transaction was dropped uncommitted",
            ))
        };
        tokio::select! {
            biased;
            r = &mut answered => r.unwrap_or_else(|_| Err(gone())),
            state = writer.lock.clone().lock_owned() => {
                if state.batch.as_ref().is_some_and(|b| b.id == id) {
                    // Still open: nobody came after us, or they failed.
                    writer.commit_batch(state).await
                } else {
                    // Committed meanwhile; the answer is there.
                    drop(state);
                    answered.await.unwrap_or_else(|_| Err(gone()))
                }
            }
        }
    }

    fn serialized(&self) -> bool {
        // One writer at a time (the process-wide writer lock; SQLite is
        // one otfd's), and a reader sees one snapshot.
        self.backend == Backend::Sqlite
    }
}
