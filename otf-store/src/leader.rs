//! [`PgLeader`]: exactly one replica leads, by holding a PostgreSQL advisory
//! lock on a dedicated connection.
//!
//! The lock is a session lock: it lives exactly as long as the connection.
//! When the leader's process dies or its connection breaks, PostgreSQL
//! releases the lock and the next waiting replica (blocked in
//! `pg_advisory_lock`) gets it at once.

use std::time::Duration;

use async_trait::async_trait;
use otf_core::events::{LeaderElection, LeaderLease};
use otf_core::store::{StoreError, StoreResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::error::sqlx_err;
use crate::DbStore;

/// The advisory lock key of leadership ("otf_lead" in ASCII).
pub const LEADER_LOCK: i64 = 0x6f74_665f_6c65_6164;

/// How often a leader checks that its lock connection is still alive.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Leader election on a PostgreSQL database.
#[derive(Clone)]
pub struct PgLeader {
    options: PgConnectOptions,
    check_interval: Duration,
}

impl PgLeader {
    pub fn new(store: &DbStore) -> StoreResult<Self> {
        let (_, options) = store.postgres().ok_or_else(|| {
            StoreError::unavailable("the PostgreSQL leader lock needs a PostgreSQL store")
        })?;
        Ok(Self {
            options: options.clone(),
            check_interval: DEFAULT_CHECK_INTERVAL,
        })
    }

    /// How often a lease checks its connection (and so how soon a leader
    /// notices it lost the lock).
    pub fn with_check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }
}

impl PgLeader {
    /// How long a check may hang before the lease counts as lost.
    fn ping_timeout(&self) -> Duration {
        self.check_interval.max(Duration::from_secs(1))
    }
}

#[async_trait]
impl LeaderElection for PgLeader {
    /// A deposed leader notices within one check interval plus one ping
    /// timeout; a quarter second more covers scheduling.
    fn takeover_delay(&self) -> Duration {
        self.check_interval + self.ping_timeout() + Duration::from_millis(250)
    }

    /// Waits (server-side, without polling) until the lock is free. An error
    /// means the waiting connection failed; call again to retry.
    async fn acquire(&self) -> StoreResult<Box<dyn LeaderLease>> {
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(sqlx_err)?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .execute(&mut conn)
            .await
            .map_err(sqlx_err)?;
        Ok(Box::new(PgLease {
            conn,
            check_interval: self.check_interval,
            ping_timeout: self.ping_timeout(),
        }))
    }
}

/// Held while leading. Dropping it closes the connection, which releases the
/// lock for the next replica.
struct PgLease {
    /// The session that holds the advisory lock; leadership is exactly its
    /// life.
    conn: PgConnection,
    check_interval: Duration,
    ping_timeout: Duration,
}

#[async_trait]
impl LeaderLease for PgLease {
    async fn lost(&mut self) {
        loop {
            tokio::time::sleep(self.check_interval).await;
            // A ping that fails or hangs means the session (and the lock with
            // it) may be gone: stop leading before another replica starts.
            let ping = sqlx::query("SELECT 1").execute(&mut self.conn);
            match tokio::time::timeout(self.ping_timeout, ping).await {
                Ok(Ok(_)) => continue,
                _ => return,
            }
        }
    }
}
