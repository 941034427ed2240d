//! SQLite's connections (the writer and the readers), driven on the
//! caller's thread.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every
//! statement to it and its rows back: two thread wake-ups per statement,
//! tens of microseconds on a small VM, more than SQLite takes to run one.
//! The store's SQLite connections are plain `rusqlite` connections instead,
//! which the task holding one (the writer lock, or a reader) drives
//! directly; sea-orm reaches them through its proxy interface
//! ([`SqliteConn::database`]), so the repositories issue the same sea-orm
//! statements on both backends.
//!
//! Rows are typed by their columns' declared types (the migrations declare
//! `text`, `bigint`, `boolean` and `blob`), as sea-orm's proxy rows must
//! carry the variant each entity field expects; an expression's column
//! (`COUNT(*)`, `MAX(..)`) is typed by its value. Errors come out as sqlx
//! database errors with SQLite's extended code, as the sqlx driver reports
//! them, so one classification ([`crate::error::db_err`]) serves both.
//!
//! Every statement runs while the caller holds the connection for its
//! transaction (the store's writer lock, or a reader's), so the mutex here
//! is never contended.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use sea_orm::sea_query::Value;
use sea_orm::{
    DatabaseConnection, DbBackend, DbErr, ProxyDatabaseTrait, ProxyExecResult, ProxyRow,
    RuntimeErr, Statement,
};

/// Distinct statements kept prepared: the repositories issue a few dozen
/// shapes; lists of different lengths (`IN (...)`) add some.
const STATEMENT_CACHE: usize = 256;

/// Result columns of distinct statements kept: as many as statements
/// kept prepared, and some; past it they are forgotten and read again.
const COLUMNS_KEPT: usize = 4 * STATEMENT_CACHE;

/// One connection to a SQLite file.
#[derive(Clone)]
pub(crate) struct SqliteConn {
    conn: Arc<Mutex<ConnState>>,
    /// Queries and changes run (not transaction control): see
    /// [`Self::statements`].
    statements: Arc<AtomicU64>,
}

/// The connection, and the result columns (name and kind) of each query
/// it ran, by SQL text: a statement's columns are the same every time.
struct ConnState {
    conn: Connection,
    columns: HashMap<String, Arc<[(String, Kind)]>>,
}

impl std::fmt::Debug for SqliteConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteConn")
    }
}

impl SqliteConn {
    /// Open the (migrated) database file at `path`, for writing or only
    /// for reading: WAL, every commit synced before it returns, foreign
    /// keys enforced.
    pub(crate) fn open(path: &Path, writer: bool, busy_timeout: Duration) -> Result<Self, DbErr> {
        let access = if writer {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(conn_err)?;
        conn.busy_timeout(busy_timeout).map_err(conn_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        if writer {
            // temp_store = MEMORY keeps the savepoints' sub-journal in
            // memory: by default it spills to a temporary file past 64 KiB,
            // which a batch of savepoints reaches. A checkpoint every 8,192
            // WAL pages (32 MiB; SQLite's default is 1,000) copies the index
            // pages dispatch rewrites all the time back once for many
            // commits.
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                 PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 8192;",
            )
            .map_err(conn_err)?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(ConnState {
                conn,
                columns: HashMap::new(),
            })),
            statements: Arc::new(AtomicU64::new(0)),
        })
    }

    /// sea-orm's connection onto this one. Its transactions' begin, commit
    /// and rollback do nothing: the store runs them with [`Self::run`],
    /// where their errors are seen.
    pub(crate) fn database(&self) -> DatabaseConnection {
        let proxy: Arc<Box<dyn ProxyDatabaseTrait>> = Arc::new(Box::new(self.clone()));
        sea_orm::ProxyDatabaseConnector::connect(DbBackend::Sqlite, proxy)
            .expect("a proxy connection is made without I/O")
    }

    /// Run one statement of transaction control (`BEGIN`, `SAVEPOINT`,
    /// `COMMIT`, ...), kept prepared: a few run for every transaction.
    pub(crate) fn run(&self, sql: &str) -> Result<(), DbErr> {
        let held = self.lock();
        let mut stmt = held.conn.prepare_cached(sql).map_err(exec_err)?;
        stmt.execute([]).map(drop).map_err(exec_err)
    }

    /// The queries and changes this connection has run (BEGIN, COMMIT and
    /// savepoints not counted): what the repositories issued.
    pub(crate) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, ConnState> {
        // A panic mid-statement leaves nothing half-done in the connection
        // itself (SQLite's statement is atomic); the transaction around it
        // is the store's to roll back.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn query_rows(&self, statement: &Statement) -> rusqlite::Result<Vec<ProxyRow>> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        let mut held = self.lock();
        let ConnState { conn, columns } = &mut *held;
        let mut stmt = conn.prepare_cached(&statement.sql)?;
        let columns = match columns.get(&statement.sql) {
            Some(known) => known.clone(),
            None => {
                if columns.len() >= COLUMNS_KEPT {
                    columns.clear();
                }
                let read: Arc<[(String, Kind)]> = stmt
                    .columns()
                    .iter()
                    .map(|c| (c.name().to_string(), Kind::of(c.decl_type())))
                    .collect();
                columns.insert(statement.sql.clone(), read.clone());
                read
            }
        };
        let mut rows = stmt.query(params(statement))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = BTreeMap::new();
            for (i, (name, kind)) in columns.iter().enumerate() {
                values.insert(name.clone(), kind.value(i, row.get_ref(i)?)?);
            }
            out.push(ProxyRow::new(values));
        }
        Ok(out)
    }

    fn execute_statement(&self, statement: &Statement) -> rusqlite::Result<ProxyExecResult> {
        self.statements.fetch_add(1, Ordering::Relaxed);
        let held = self.lock();
        let mut stmt = held.conn.prepare_cached(&statement.sql)?;
        let changed = stmt.execute(params(statement))?;
        Ok(ProxyExecResult::new(
            held.conn.last_insert_rowid().max(0) as u64,
            changed as u64,
        ))
    }
}

#[async_trait]
impl ProxyDatabaseTrait for SqliteConn {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.query_rows(&statement).map_err(query_err)
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        self.execute_statement(&statement).map_err(exec_err)
    }
}

/// The values of `statement` as SQLite parameters.
fn params(statement: &Statement) -> rusqlite::ParamsFromIter<impl Iterator<Item = Bind<'_>>> {
    let values = statement.values.as_ref().map(|v| v.0.as_slice());
    rusqlite::params_from_iter(values.unwrap_or_default().iter().map(Bind))
}

/// One sea-query value bound to a statement.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let int = |v: Option<i64>| match v {
            Some(v) => ToSqlOutput::Owned(SqlValue::Integer(v)),
            None => ToSqlOutput::Owned(SqlValue::Null),
        };
        Ok(match self.0 {
            Value::Bool(v) => int(v.map(i64::from)),
            Value::TinyInt(v) => int(v.map(i64::from)),
            Value::SmallInt(v) => int(v.map(i64::from)),
            Value::Int(v) => int(v.map(i64::from)),
            Value::BigInt(v) => int(*v),
            Value::TinyUnsigned(v) => int(v.map(i64::from)),
            Value::SmallUnsigned(v) => int(v.map(i64::from)),
            Value::Unsigned(v) => int(v.map(i64::from)),
            Value::BigUnsigned(v) => match v {
                Some(v) => match i64::try_from(*v) {
                    Ok(v) => int(Some(v)),
                    Err(e) => return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
                },
                None => int(None),
            },
            Value::Float(v) => match v {
                Some(v) => ToSqlOutput::Owned(SqlValue::Real(f64::from(*v))),
                None => ToSqlOutput::Owned(SqlValue::Null),
            },
            Value::Double(v) => match v {
                Some(v) => ToSqlOutput::Owned(SqlValue::Real(*v)),
                None => ToSqlOutput::Owned(SqlValue::Null),
            },
            Value::String(v) => match v {
                Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
                None => ToSqlOutput::Owned(SqlValue::Null),
            },
            Value::Char(v) => match v {
                Some(c) => ToSqlOutput::Owned(SqlValue::Text(c.to_string())),
                None => ToSqlOutput::Owned(SqlValue::Null),
            },
            Value::Bytes(v) => match v {
                Some(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b.as_slice())),
                None => ToSqlOutput::Owned(SqlValue::Null),
            },
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("no SQLite binding for {other:?}").into(),
                ))
            }
        })
    }
}

/// What an entity field reads from a column, by the column's declared
/// type (SQLite's own affinity rules: INT, then CHAR/CLOB/TEXT, then BLOB;
/// `boolean` is ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    Text,
    Blob,
    /// No declared type (an expression): typed by the value itself.
    Value,
}

impl Kind {
    fn of(decl: Option<&str>) -> Self {
        let Some(decl) = decl else {
            return Kind::Value;
        };
        let decl = decl.to_ascii_uppercase();
        if decl.contains("BOOL") {
            Kind::Bool
        } else if decl.contains("INT") {
            Kind::Int
        } else if decl.contains("CHAR") || decl.contains("CLOB") || decl.contains("TEXT") {
            Kind::Text
        } else if decl.contains("BLOB") || decl.contains("BINARY") {
            Kind::Blob
        } else {
            Kind::Value
        }
    }

    /// The sea-query value of `v` read from `column`, of this kind. NULL is
    /// the kind's null (an expression's NULL reads as a missing integer).
    fn value(self, column: usize, v: ValueRef<'_>) -> rusqlite::Result<Value> {
        let mismatch = |found: &str| {
            rusqlite::Error::FromSqlConversionFailure(
                column,
                v.data_type(),
                format!("a {self:?} column holds {found}").into(),
            )
        };
        Ok(match (self, v) {
            (Kind::Bool, ValueRef::Null) => Value::Bool(None),
            (Kind::Bool, ValueRef::Integer(i)) => Value::Bool(Some(i != 0)),
            (Kind::Int | Kind::Value, ValueRef::Null) => Value::BigInt(None),
            (Kind::Int | Kind::Value, ValueRef::Integer(i)) => Value::BigInt(Some(i)),
            (Kind::Text, ValueRef::Null) => Value::String(None),
            (Kind::Text | Kind::Value, ValueRef::Text(t)) => Value::String(Some(Box::new(
                String::from_utf8(t.to_vec()).map_err(|_| mismatch("text that is not UTF-8"))?,
            ))),
            (Kind::Blob, ValueRef::Null) => Value::Bytes(None),
            (Kind::Blob | Kind::Value, ValueRef::Blob(b)) => {
                Value::Bytes(Some(Box::new(b.to_vec())))
            }
            (Kind::Value, ValueRef::Real(r)) => Value::Double(Some(r)),
            (_, ValueRef::Integer(_)) => return Err(mismatch("an integer")),
            (_, ValueRef::Real(_)) => return Err(mismatch("a real")),
            (_, ValueRef::Text(_)) => return Err(mismatch("text")),
            (_, ValueRef::Blob(_)) => return Err(mismatch("a blob")),
        })
    }
}

/// A SQLite error as the sqlx driver reports one: its message and its
/// extended result code, so conflicts are told apart the same way.
#[derive(Debug)]
struct SqliteError {
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteError {}

impl sqlx::error::DatabaseError for SqliteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Owned(self.code.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        match self.code {
            // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
            2067 | 1555 => ErrorKind::UniqueViolation,
            // SQLITE_CONSTRAINT_FOREIGNKEY
            787 => ErrorKind::ForeignKeyViolation,
            // SQLITE_CONSTRAINT_NOTNULL
            1299 => ErrorKind::NotNullViolation,
            // SQLITE_CONSTRAINT_CHECK
            275 => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn sqlx_of(e: rusqlite::Error) -> RuntimeErr {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => {
            let message = message.unwrap_or_else(|| f.to_string());
            RuntimeErr::SqlxError(sqlx::Error::Database(Box::new(SqliteError {
                code: f.extended_code,
                message,
            })))
        }
        other => RuntimeErr::Internal(other.to_string()),
    }
}

fn exec_err(e: rusqlite::Error) -> DbErr {
    DbErr::Exec(sqlx_of(e))
}

fn query_err(e: rusqlite::Error) -> DbErr {
    DbErr::Query(sqlx_of(e))
}

fn conn_err(e: rusqlite::Error) -> DbErr {
    DbErr::Conn(sqlx_of(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_as_their_declared_type() {
        assert_eq!(Kind::of(Some("boolean")), Kind::Bool);
        assert_eq!(Kind::of(Some("bigint")), Kind::Int);
        assert_eq!(Kind::of(Some("integer")), Kind::Int);
        assert_eq!(Kind::of(Some("text")), Kind::Text);
        assert_eq!(Kind::of(Some("varchar(20)")), Kind::Text);
        assert_eq!(Kind::of(Some("blob")), Kind::Blob);
        assert_eq!(Kind::of(None), Kind::Value);
        assert_eq!(
            Kind::Bool.value(0, ValueRef::Integer(1)).unwrap(),
            Value::Bool(Some(true))
        );
        assert_eq!(
            Kind::Bool.value(0, ValueRef::Null).unwrap(),
            Value::Bool(None)
        );
        assert_eq!(
            Kind::Value.value(0, ValueRef::Integer(7)).unwrap(),
            Value::BigInt(Some(7))
        );
        // A column that holds what its type does not is an error, never
        // a silent NULL.
        assert!(Kind::Int.value(0, ValueRef::Text(b"7")).is_err());
        assert!(Kind::Text.value(0, ValueRef::Integer(7)).is_err());
    }

    #[test]
    fn constraint_errors_keep_sqlites_extended_code() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY); INSERT INTO t VALUES ('a');")
            .unwrap();
        let e = conn.execute("INSERT INTO t VALUES ('a')", []).unwrap_err();
        let DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(d))) = exec_err(e) else {
            panic!("not a database error");
        };
        assert_eq!(d.code().as_deref(), Some("1555"));
        assert!(d.is_unique_violation());
        assert!(
            d.message().contains("UNIQUE constraint failed"),
            "{}",
            d.message()
        );
    }
}
