//! Use cases: every operation of the walkthrough and the run lifecycle, as
//! methods of [`Core`], generic over the [`Store`]. Each method authorizes the
//! subject, runs one transaction applying the pure rules, commits, then
//! publishes the resulting events.

mod agent_cache;
mod agents;
mod auth;
mod dispatch;
mod errors;
mod health;
mod jobs;
mod organizations;
pub use organizations::parse_org;
mod pools;
mod queue;
mod runs;
mod state;
mod tokens;
mod waiters;
mod workspaces;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use agents::{reconcile, AgentView, PingAnswer, RegisterAgent};
pub use dispatch::Dispatcher;
pub use errors::Error;
pub use jobs::{JobOutcome, StartedJob};
pub use pools::{PoolFilter, PoolSpec, PoolUpdate, PoolView};
pub use queue::QueuedJob;
pub use runs::{ConfigSpec, RunSpec, LOG_END, LOG_START};
pub use state::{StateSpec, VariableSpec};
pub use workspaces::{ModeRequest, WorkspaceFilter, WorkspaceSpec, WorkspaceUpdate};

use crate::agent::LivenessConfig;
use crate::auth::Denied;
use crate::clock::{Clock, Timestamp};
use crate::events::{Event, EventBus};
use crate::ids::AgentId;
use crate::random::Random;
use crate::secret::SecretHash;
use crate::store::Store;

/// Settings of the core's rules.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub liveness: LivenessConfig,
    /// How long after a cancel request force-cancel becomes available.
    pub force_cancel_cool_off: Duration,
    /// Hash of the site administrator's token, if one is configured.
    pub site_token: Option<SecretHash>,
    /// Minimum time between two durable updates of a token's `last_used_at`.
    pub token_touch_interval: Duration,
    /// Largest upload accepted (configuration tarball, plan files); otfd
    /// refuses a larger request body before reading it.
    pub max_upload_bytes: usize,
    /// Limits on what a configuration tarball unpacks to.
    pub tarball_limits: crate::tarball::TarballLimits,
    /// Bytes a job's log may hold ([`crate::log_limit`]).
    pub max_log_bytes: u64,
    /// Allocation lease and phase timeouts ([`crate::job::job_deadlines`]).
    pub job_timers: crate::job::JobTimers,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            liveness: LivenessConfig::default(),
            force_cancel_cool_off: Duration::from_secs(10),
            site_token: None,
            token_touch_interval: Duration::from_secs(60),
            max_upload_bytes: 100 * 1024 * 1024,
            tarball_limits: crate::tarball::TarballLimits::default(),
            max_log_bytes: 50 * 1024 * 1024,
            job_timers: crate::job::JobTimers::default(),
        }
    }
}

/// The application: rules plus the injected store, bus, clock and randomness.
/// Cheap to clone; clones share everything.
pub struct Core<S: Store> {
    store: Arc<S>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Random>,
    config: Arc<CoreConfig>,
    /// Pings that changed no status: agent -> last heard, flushed in batches by
    /// [`Core::flush_last_seen`] instead of one commit per ping.
    last_seen: Arc<Mutex<HashMap<AgentId, Timestamp>>>,
    /// Long-polls waiting for jobs and signals.
    waiters: Arc<waiters::Waiters>,
    /// Agent tokens recently looked up ([`auth::AGENT_TOKEN_CACHE_FOR`]).
    tokens: Arc<auth::TokenCache>,
    /// Agents recently read by pings and long-polls ([`agent_cache`]).
    agents: Arc<agent_cache::AgentCache>,
    /// The leader's reign this core writes for ([`Core::fenced`]): every
    /// transaction first checks it is still current.
    reign: Option<u64>,
}

impl<S: Store> Clone for Core<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            bus: self.bus.clone(),
            clock: self.clock.clone(),
            rng: self.rng.clone(),
            config: self.config.clone(),
            last_seen: self.last_seen.clone(),
            waiters: self.waiters.clone(),
            tokens: self.tokens.clone(),
            agents: self.agents.clone(),
            reign: self.reign,
        }
    }
}

impl<S: Store> Core<S> {
    pub fn new(
        store: S,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Random>,
        config: CoreConfig,
    ) -> Self {
        Self {
            store: Arc::new(store),
            bus,
            clock,
            rng,
            config: Arc::new(config),
            last_seen: Arc::default(),
            waiters: Arc::default(),
            tokens: Arc::default(),
            agents: Arc::default(),
            reign: None,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.bus
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn begin(&self) -> Result<S::Tx, Error> {
        let mut tx = self.store.begin().await?;
        if let Some(epoch) = self.reign {
            if !crate::store::ReignRepo::holds_reign(&mut tx, epoch).await? {
                return Err(Error::Deposed { epoch });
            }
        }
        Ok(tx)
    }

    /// A transaction that only reads (no fencing: a deposed leader's reads
    /// change nothing, and its next write fails).
    async fn read(&self) -> Result<S::Tx, Error> {
        Ok(self.store.begin_read().await?)
    }

    /// Start a new leader reign (on taking the leader lock): from now on
    /// only transactions of a core [`Core::fenced`] with the returned epoch
    /// count as the leader's, and those of earlier reigns fail with
    /// [`Error::Deposed`].
    pub async fn begin_reign(&self) -> Result<u64, Error> {
        let mut tx = self.store.begin().await?;
        let epoch = crate::store::ReignRepo::begin_reign(&mut tx).await?;
        crate::store::Tx::commit(tx).await?;
        Ok(epoch)
    }

    /// A clone whose every transaction belongs to leader reign `epoch`: it
    /// fails with [`Error::Deposed`] once another reign began (the
    /// dispatcher runs on one).
    pub fn fenced(&self, epoch: u64) -> Self {
        Self {
            reign: Some(epoch),
            ..self.clone()
        }
    }

    /// Drop what an event makes stale from this process's caches.
    fn forget_stale(&self, e: &Event) {
        self.tokens.forget(e);
        self.agents.forget(e);
    }

    /// Empty this process's caches (events may have been missed).
    fn clear_caches(&self) {
        self.tokens.clear();
        self.agents.clear();
    }

    /// Commit, then tell everyone what changed.
    async fn commit(&self, tx: S::Tx, events: Vec<Event>) -> Result<(), Error> {
        crate::store::Tx::commit(tx).await?;
        let events = last_per_aggregate(events);
        if !events.is_empty() {
            events.iter().for_each(|e| self.forget_stale(e));
            // Long-polls of this process wake at once; the bus (another
            // replica's, or a later wake-up here) follows.
            if self.waiters.routing() {
                events.iter().for_each(|e| self.waiters.wake_committed(e));
            }
            self.bus.publish(events).await;
        }
        Ok(())
    }
}

/// Within one transaction only the final state of an aggregate matters:
/// keep the last event per run, job, agent and workspace, in order.
fn last_per_aggregate(events: Vec<Event>) -> Vec<Event> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Event> = events
        .into_iter()
        .rev()
        .filter(|e| {
            let key = match e {
                Event::Run(r) => format!("{}", r.id),
                Event::Job(j) => format!("{}", j.id),
                Event::Agent(a) => format!("{}", a.id),
                Event::Workspace(w) => format!("{w}"),
                _ => return true,
            };
            seen.insert(key)
        })
        .collect();
    out.reverse();
    out
}

/// Turn an authorization decision into a service error about `kind` `id`.
fn allow(decision: Result<(), Denied>, kind: &'static str, id: impl ToString) -> Result<(), Error> {
    decision.map_err(|d| match d {
        Denied::NotFound => Error::NotFound {
            kind,
            id: id.to_string(),
        },
        Denied::Forbidden(why) => Error::Forbidden(why),
    })
}

/// `Option` from the store to a not-found error.
fn found<T>(value: Option<T>, kind: &'static str, id: impl ToString) -> Result<T, Error> {
    value.ok_or_else(|| Error::NotFound {
        kind,
        id: id.to_string(),
    })
}
