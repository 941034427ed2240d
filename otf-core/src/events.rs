//! Change events, published after commit, and the bus that carries them.
//!
//! Subscribers must treat the stream as a hint: after [`RecvError::Lagged`]
//! (or a reconnect, for a distributed bus) they re-read what they care about
//! from the store instead of trusting what they saw.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::agent::Agent;
use crate::ids::{AgentTokenId, RunId, WorkspaceId};
use crate::job::{Job, JobPhase};
use crate::run::Run;

/// Something changed; carries the new state of the aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Agent(Agent),
    /// An agent row was deleted (purged or deleted by an administrator).
    AgentDeleted(crate::ids::AgentId),
    Job(Job),
    Run(Run),
    Workspace(WorkspaceId),
    /// New log bytes for a phase; `end` is the log's length after them.
    Log {
        run: RunId,
        phase: JobPhase,
        end: u64,
    },
    /// An agent token was deleted.
    TokenRevoked(AgentTokenId),
}

/// Why a subscription yielded no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    #[error("events were missed; re-read the state from the store")]
    Lagged,
    #[error("the event bus is closed")]
    Closed,
}

/// What travels on a local bus: an event, or the news that events may have
/// been missed (e.g. a distributed bus reconnected).
#[derive(Debug, Clone)]
enum Message {
    Event(Box<Event>),
    Resync,
}

/// A stream of events from the moment of subscription.
pub struct Subscription {
    rx: broadcast::Receiver<Message>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        match self.rx.recv().await {
            Ok(Message::Event(e)) => Ok(*e),
            Ok(Message::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                Err(RecvError::Lagged)
            }
            Err(broadcast::error::RecvError::Closed) => Err(RecvError::Closed),
        }
    }

    /// The next event if one is already there; `None` when there is none yet.
    pub fn try_recv(&mut self) -> Option<Result<Event, RecvError>> {
        match self.rx.try_recv() {
            Ok(Message::Event(e)) => Some(Ok(*e)),
            Ok(Message::Resync) | Err(broadcast::error::TryRecvError::Lagged(_)) => {
                Some(Err(RecvError::Lagged))
            }
            Err(broadcast::error::TryRecvError::Empty) => None,
            Err(broadcast::error::TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        }
    }
}

/// Carries events to every subscriber (of every replica, for a distributed
/// implementation).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publish events that were committed.
    async fn publish(&self, events: Vec<Event>);
    fn subscribe(&self) -> Subscription;
}

/// The single-process bus.
#[derive(Debug, Clone)]
pub struct LocalBus {
    tx: broadcast::Sender<Message>,
}

impl LocalBus {
    /// `capacity` events may be buffered per subscriber before it lags.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// A subscription without going through the trait object.
    pub fn subscribe_local(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
        }
    }

    /// Deliver locally; used by distributed buses to fan out what they receive.
    pub fn deliver(&self, event: Event) {
        // No subscriber is not an error: nobody is waiting.
        let _ = self.tx.send(Message::Event(Box::new(event)));
    }

    /// Tell every current subscriber that events may have been missed: its
    /// next `recv` answers [`RecvError::Lagged`], so it re-reads the store.
    pub fn resync(&self) {
        let _ = self.tx.send(Message::Resync);
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

#[async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, events: Vec<Event>) {
        for e in events {
            self.deliver(e);
        }
    }

    fn subscribe(&self) -> Subscription {
        self.subscribe_local()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resync_reads_as_lagged_then_events_flow_again() {
        let bus = LocalBus::new(8);
        let mut sub = bus.subscribe_local();
        bus.resync();
        bus.deliver(Event::AgentDeleted(
            "agent-0123456789abcdef".parse().unwrap(),
        ));
        assert_eq!(sub.recv().await, Err(RecvError::Lagged));
        assert!(matches!(sub.try_recv(), Some(Ok(Event::AgentDeleted(_)))));
        assert!(sub.try_recv().is_none());
    }
}

/// Exactly one replica leads (runs the scheduler and the liveness manager).
#[async_trait]
pub trait LeaderElection: Send + Sync {
    /// Wait until this replica leads.
    async fn acquire(&self) -> Result<Box<dyn LeaderLease>, crate::store::StoreError>;

    /// How long a new leader waits after acquiring before it acts: longer
    /// than a deposed leader needs to notice ([`LeaderLease::lost`]).
    fn takeover_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Held while leading.
#[async_trait]
pub trait LeaderLease: Send {
    /// Resolves when leadership is lost (e.g. the lock's connection broke).
    async fn lost(&mut self);
}

/// A single process is always the leader.
#[derive(Debug, Default, Clone, Copy)]
pub struct SoleLeader;

struct ForeverLease;

#[async_trait]
impl LeaderLease for ForeverLease {
    async fn lost(&mut self) {
        std::future::pending::<()>().await
    }
}

#[async_trait]
impl LeaderElection for SoleLeader {
    async fn acquire(&self) -> Result<Box<dyn LeaderLease>, crate::store::StoreError> {
        Ok(Box::new(ForeverLease))
    }
}
