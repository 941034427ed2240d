//! Background work of otfd: the leader loop (dispatcher: scheduler, liveness,
//! recovery) while this replica leads, and the per-replica flush of batched
//! pings.

use std::sync::Arc;
use std::time::Duration;

use otf_core::events::{Event, EventBus, LeaderElection, LeaderLease, RecvError};
use otf_core::job::JobStatus;
use otf_core::store::Store;
use otf_core::{Core, Dispatcher};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// What the leader loop does next.
enum Next {
    /// Take part in the election again.
    Again,
    /// Shut down.
    Stop,
}

/// Wait `pause`, unless shutdown comes first.
async fn pause(pause: Duration, shutdown: &mut watch::Receiver<bool>) -> Next {
    tokio::select! {
        _ = tokio::time::sleep(pause) => Next::Again,
        _ = shutdown.changed() => Next::Stop,
    }
}

/// Lead whenever this replica holds the leader lock, until shutdown.
pub async fn lead<S: Store>(
    core: Core<S>,
    bus: Arc<dyn EventBus>,
    election: Arc<dyn LeaderElection>,
    metrics: Arc<Metrics>,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let leader = Leader {
        core,
        bus,
        metrics,
        tick,
    };
    loop {
        let next = match win(&leader, &*election, &mut shutdown).await {
            Ok((lease, epoch)) => leader.reign(lease, epoch, &mut shutdown).await,
            Err(next) => next,
        };
        if let Next::Stop = next {
            return;
        }
    }
}

/// Take the leader lock and start a reign: the lease and the reign's
/// epoch, or what to do instead.
async fn win<S: Store>(
    leader: &Leader<S>,
    election: &dyn LeaderElection,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(Box<dyn LeaderLease>, u64), Next> {
    let lease = tokio::select! {
        l = election.acquire() => match l {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take part in the leader election; retrying");
                return Err(pause(leader.tick, shutdown).await);
            }
        },
        _ = shutdown.changed() => return Err(Next::Stop),
    };
    // A deposed leader notices within the lease's detection bound; wait
    // that long, so two replicas never both act as (or report being) the
    // leader.
    if let Next::Stop = pause(election.takeover_delay(), shutdown).await {
        return Err(Next::Stop);
    }
    // A new reign fences the previous leader's transactions out.
    match leader.core.begin_reign().await {
        Ok(epoch) => Ok((lease, epoch)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a leader reign; retrying");
            drop(lease);
            Err(pause(leader.tick, shutdown).await)
        }
    }
}

/// What a reign needs.
struct Leader<S: Store> {
    core: Core<S>,
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
    tick: Duration,
}

impl<S: Store> Leader<S> {
    /// Dispatch while the lease holds and no other replica took over.
    async fn reign(
        &self,
        mut lease: Box<dyn LeaderLease>,
        epoch: u64,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Next {
        tracing::info!(
            reign = epoch,
            "leading: running the scheduler and the liveness manager"
        );
        self.metrics.set_leader(true);
        // One watch of the lease for the whole reign: a new `lost()` per
        // loop pass would restart its check interval on every event and
        // tick, and never check at all.
        let lost = lease.lost();
        tokio::pin!(lost);
        let mut events = self.bus.subscribe();
        let mut dispatcher = Dispatcher::new(self.core.fenced(epoch));
        if let Err(e) = dispatcher.rebuild().await {
            tracing::warn!(error = %e, "rebuilding the scheduler failed; retrying on the next tick");
        }
        let mut interval = tokio::time::interval(self.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let next = loop {
            let result = tokio::select! {
                _ = &mut lost => {
                    tracing::warn!("lost the leader lock; no longer dispatching");
                    break Next::Again;
                }
                _ = shutdown.changed() => break Next::Stop,
                e = events.recv() => match burst(e, &mut events) {
                    Ok(burst) => {
                        burst.iter().for_each(|e| self.observe(e));
                        dispatcher.handle_all(&burst).await
                    }
                    Err(RecvError::Lagged) => dispatcher.rebuild().await,
                    Err(RecvError::Closed) => break Next::Stop,
                },
                _ = interval.tick() => dispatcher.tick().await,
            };
            let result = match result {
                Err(e) if !is_deposed(&e) => {
                    tracing::warn!(error = %e, "dispatcher step failed; rebuilding");
                    dispatcher.rebuild().await
                }
                other => other,
            };
            match result {
                Err(e) if is_deposed(&e) => {
                    tracing::warn!(error = %e, "another replica leads now; no longer dispatching");
                    break Next::Again;
                }
                Err(e) => tracing::warn!(error = %e, "rebuilding the scheduler failed"),
                Ok(()) => {}
            }
        };
        self.metrics.set_leader(false);
        next
    }

    /// Scheduling latency: queued to allocated.
    fn observe(&self, e: &Event) {
        if let Event::Job(j) = e {
            if j.status == JobStatus::Allocated {
                self.metrics
                    .observe_scheduling(self.core.now().since(j.queued_at));
            }
        }
    }
}

/// The event `first` and those already waiting behind it: a burst the
/// dispatcher takes in at once (one allocation transaction for all).
fn burst(
    first: Result<Event, RecvError>,
    events: &mut otf_core::events::Subscription,
) -> Result<Vec<Event>, RecvError> {
    /// Enough for a burst of run creations; the rest waits for the next.
    const MAX_BURST: usize = 256;
    let mut burst = vec![first?];
    while burst.len() < MAX_BURST {
        match events.try_recv() {
            Some(Ok(e)) => burst.push(e),
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok(burst)
}

fn is_deposed(e: &otf_core::Error) -> bool {
    matches!(e, otf_core::Error::Deposed { .. })
}

/// Write this replica's batched pings once per `tick`.
pub async fn flush_pings<S: Store>(
    core: Core<S>,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(tick);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Err(e) = core.flush_last_seen().await {
                    tracing::warn!(error = %e, "flushing agent pings failed");
                }
            }
            _ = shutdown.changed() => {
                let _ = core.flush_last_seen().await;
                return;
            }
        }
    }
}
