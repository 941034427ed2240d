//! [`Runtime`]: a store with the event bus and leader election that suit its
//! backend.

use std::sync::Arc;

use otf_core::events::{EventBus, LeaderElection, LocalBus, SoleLeader};
use otf_core::store::StoreResult;

use crate::{Backend, DbStore, PgBus, PgLeader};

/// Everything otfd needs from the database.
pub struct Runtime {
    pub store: DbStore,
    /// SQLite: an in-process bus. PostgreSQL: LISTEN/NOTIFY between replicas.
    pub bus: Arc<dyn EventBus>,
    /// SQLite: this process always leads. PostgreSQL: an advisory lock.
    pub leader: Arc<dyn LeaderElection>,
}

impl Runtime {
    /// Open the database at `url` (see [`DbStore::connect`]).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let store = DbStore::connect(url).await?;
        let (bus, leader): (Arc<dyn EventBus>, Arc<dyn LeaderElection>) = match store.backend() {
            Backend::Sqlite => (Arc::new(LocalBus::default()), Arc::new(SoleLeader)),
            Backend::Postgres => (
                Arc::new(PgBus::start(&store).await?),
                Arc::new(PgLeader::new(&store)?),
            ),
        };
        Ok(Self { store, bus, leader })
    }
}
