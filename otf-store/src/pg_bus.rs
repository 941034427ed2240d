//! [`PgBus`]: change events for every otfd replica on one PostgreSQL
//! database, over LISTEN/NOTIFY.
//!
//! Payload format (our choice, since NOTIFY payloads stop at 8000 bytes):
//! events travel as *references*, never as encoded aggregates. A payload is
//! lines of text: the publishing bus's origin id, then one line per event,
//! `agent <id>`, `agent-deleted <id>`, `job <id>`, `run <id>`,
//! `workspace <id>`, `log <run> <phase> <end>` or `token-revoked <id>`. The
//! receiving replica re-reads agents, jobs and runs from the store to build
//! the [`Event`], so it always sees committed state (possibly newer than the
//! one that was published, which subscribers must accept anyway). Long
//! batches are split over several notifications.
//!
//! The publishing replica delivers its own events locally at once (with the
//! exact aggregates) and ignores their echo. Its NOTIFYs go out in order from
//! a task of their own: a commit's caller does not wait a round trip for
//! them, and what queued meanwhile (a burst of commits) shares a
//! notification.
//!
//! When the listening connection is lost, notifications sent meanwhile are
//! gone. Once it is back, every subscriber gets [`RecvError::Lagged`]
//! (`LocalBus::resync`) so it re-reads from the store instead of trusting the
//! stream.
//!
//! [`RecvError::Lagged`]: otf_core::events::RecvError::Lagged

use std::time::Duration;

use async_trait::async_trait;
use otf_core::events::{Event, EventBus, LocalBus, Subscription};
use otf_core::ids::{AgentId, AgentTokenId, JobId, RunId, WorkspaceId};
use otf_core::job::JobPhase;
use otf_core::store::{AgentRepo, JobRepo, RunRepo, Store, StoreError, StoreResult};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::sqlx_err;
use crate::DbStore;

/// The NOTIFY channel of otf's events.
const CHANNEL: &str = "otf_events";

/// Stay below PostgreSQL's 8000-byte payload limit.
const MAX_PAYLOAD: usize = 7000;

/// Events buffered per local subscriber before it lags (a power of two, as
/// tokio's broadcast rounds up to one).
const CAPACITY: usize = 1024;

/// Wait between attempts to re-establish the listening connection.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);

/// Publishes whose notifications are not sent yet, at most; a publisher
/// waits beyond it.
const OUTBOX: usize = 1024;

/// The event bus of a PostgreSQL store: local fan-out plus LISTEN/NOTIFY.
pub struct PgBus {
    local: LocalBus,
    /// The lines of each publish, to the task that sends them (it ends
    /// once this bus is dropped and the queue is sent).
    outbox: mpsc::Sender<Vec<String>>,
    /// Receives notifications and fans them out; aborted when the bus drops.
    listener: JoinHandle<()>,
}

impl Drop for PgBus {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PgBus {
    /// Listen on the store's database. Events published by any bus on the
    /// same database after this returns are delivered to its subscribers.
    pub async fn start(store: &DbStore) -> StoreResult<Self> {
        let (pool, _) = store.postgres().ok_or_else(|| {
            StoreError::unavailable("the PostgreSQL event bus needs a PostgreSQL store")
        })?;
        let pool = pool.clone();
        let listener = listen(&pool).await.map_err(sqlx_err)?;
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).map_err(|e| StoreError::unavailable(e.to_string()))?;
        // Random id of this bus, to recognise the echo of our own
        // notifications.
        let origin = hex::encode(bytes);
        let local = LocalBus::new(CAPACITY);
        let task = Relay {
            local: local.clone(),
            origin: origin.clone(),
            store: store.clone(),
            pool: pool.clone(),
        };
        let (outbox, queued) = mpsc::channel(OUTBOX);
        tokio::spawn(notify(origin, pool, queued));
        Ok(Self {
            local,
            outbox,
            listener: tokio::spawn(task.run(listener)),
        })
    }
}

/// Send the queued publishes' lines as notifications, in order; whatever
/// queued while one was sent goes out together next.
async fn notify(origin: String, pool: PgPool, mut queued: mpsc::Receiver<Vec<String>>) {
    while let Some(mut lines) = queued.recv().await {
        while let Ok(more) = queued.try_recv() {
            lines.extend(more);
        }
        for payload in payloads(&origin, &lines) {
            // A failed NOTIFY loses these events for other replicas only;
            // their leader re-reads agents and jobs on every tick anyway.
            if sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&pool)
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    l.listen(CHANNEL).await?;
    Ok(l)
}

fn encode(e: &Event) -> String {
    match e {
        Event::Agent(a) => format!("agent {}", a.id),
        Event::AgentDeleted(id) => format!("agent-deleted {id}"),
        Event::Job(j) => format!("job {}", j.id),
        Event::Run(r) => format!("run {}", r.id),
        Event::Workspace(id) => format!("workspace {id}"),
        Event::Log { run, phase, end } => format!("log {run} {phase} {end}"),
        Event::TokenRevoked(id) => format!("token-revoked {id}"),
    }
}

/// Split `lines` into payloads under the size limit, each starting with the
/// origin.
fn payloads(origin: &str, lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = origin.to_string();
    for line in lines {
        if cur.len() + 1 + line.len() > MAX_PAYLOAD && cur.len() > origin.len() {
            out.push(std::mem::replace(&mut cur, origin.to_string()));
        }
        cur.push('\n');
        cur.push_str(line);
    }
    if cur.len() > origin.len() {
        out.push(cur);
    }
    out
}

#[async_trait]
impl EventBus for PgBus {
    async fn publish(&self, events: Vec<Event>) {
        let lines: Vec<String> = events.iter().map(encode).collect();
        self.local.publish(events).await;
        if !lines.is_empty() {
            // Fails only once the sending task is gone (the runtime shuts
            // down): nobody is left to notify.
            let _ = self.outbox.send(lines).await;
        }
    }

    fn subscribe(&self) -> Subscription {
        self.local.subscribe()
    }
}

/// The listening side: turns notifications back into events.
struct Relay {
    local: LocalBus,
    origin: String,
    store: DbStore,
    pool: PgPool,
}

impl Relay {
    async fn run(self, mut listener: PgListener) {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => self.relay(n.payload()).await,
                // Lost and already reconnected (eager reconnect).
                Ok(None) => self.lag(),
                Err(sqlx::Error::PoolClosed) => return,
                Err(_) => {
                    // Start afresh until a listening connection is back.
                    listener = loop {
                        match listen(&self.pool).await {
                            Ok(l) => break l,
                            Err(sqlx::Error::PoolClosed) => return,
                            Err(_) => tokio::time::sleep(RECONNECT_BACKOFF).await,
                        }
                    };
                    self.lag();
                }
            }
        }
    }

    /// Make every current subscriber see `Lagged`, so it re-reads the store.
    fn lag(&self) {
        self.local.resync();
    }

    async fn relay(&self, payload: &str) {
        let mut lines = payload.lines();
        if lines.next() == Some(self.origin.as_str()) {
            return;
        }
        let events = match self.rebuild(lines).await {
            Ok(events) => events,
            // The store is unreachable: what we had is lost, say so.
            Err(_) => return self.lag(),
        };
        for e in events {
            self.local.deliver(e);
        }
    }

    /// Re-read the referenced aggregates; unparsable lines are skipped.
    async fn rebuild<'a>(&self, lines: impl Iterator<Item = &'a str>) -> StoreResult<Vec<Event>> {
        let mut tx = self.store.begin().await?;
        let mut events = Vec::new();
        for line in lines {
            let mut words = line.split(' ');
            let (Some(kind), Some(id)) = (words.next(), words.next()) else {
                continue;
            };
            let event = match kind {
                "agent" => match id.parse::<AgentId>() {
                    Ok(id) => Some(match tx.get_agent(&id).await? {
                        Some(a) => Event::Agent(a),
                        None => Event::AgentDeleted(id),
                    }),
                    Err(_) => None,
                },
                "agent-deleted" => id.parse().ok().map(Event::AgentDeleted),
                "job" => match id.parse::<JobId>() {
                    Ok(id) => tx.get_job(&id).await?.map(Event::Job),
                    Err(_) => None,
                },
                "run" => match id.parse::<RunId>() {
                    Ok(id) => tx.get_run(&id).await?.map(Event::Run),
                    Err(_) => None,
                },
                "workspace" => id.parse::<WorkspaceId>().ok().map(Event::Workspace),
                "token-revoked" => id.parse::<AgentTokenId>().ok().map(Event::TokenRevoked),
                "log" => {
                    let phase = words.next().and_then(|p| p.parse::<JobPhase>().ok());
                    let end = words.next().and_then(|e| e.parse::<u64>().ok());
                    match (id.parse::<RunId>(), phase, end) {
                        (Ok(run), Some(phase), Some(end)) => Some(Event::Log { run, phase, end }),
                        _ => None,
                    }
                }
                _ => None,
            };
            events.extend(event);
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_the_limit_and_keep_every_line() {
        let lines: Vec<String> = (0..1000).map(|i| format!("job job-{i:016}")).collect();
        let p = payloads("origin", &lines);
        assert!(p.len() > 1);
        assert!(p
            .iter()
            .all(|p| p.len() <= MAX_PAYLOAD && p.starts_with("origin\n")));
        let back: Vec<&str> = p.iter().flat_map(|p| p.lines().skip(1)).collect();
        assert_eq!(back, lines.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(payloads("origin", &[]).is_empty());
    }
}
