//! Background work of otfd: the leader loop (dispatcher: scheduler, liveness,
//! recovery) while this replica leads, and the per-replica flush of batched
//! pings.

use std::sync::Arc;
use std::time::Duration;

use otf_core::events::{Event, EventBus, LeaderElection, RecvError};
use otf_core::job::JobStatus;
use otf_core::store::Store;
use otf_core::{Core, Dispatcher};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Lead whenever this replica holds the leader lock, until shutdown.
pub async fn lead<S: Store>(
    core: Core<S>,
    bus: Arc<dyn EventBus>,
    election: Arc<dyn LeaderElection>,
    metrics: Arc<Metrics>,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let mut lease = tokio::select! {
            l = election.acquire() => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take part in the leader election; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(tick) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            },
            _ = shutdown.changed() => return,
        };
        // A deposed leader notices within the lease's detection bound; wait
        // that long, so two replicas never both act as (or report being)
        // the leader.
        tokio::select! {
            _ = tokio::time::sleep(election.takeover_delay()) => {}
            _ = shutdown.changed() => return,
        }
        // A new reign fences the previous leader's transactions out.
        let epoch = match core.begin_reign().await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a leader reign; retrying");
                drop(lease);
                tokio::select! {
                    _ = tokio::time::sleep(tick) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        tracing::info!(
            reign = epoch,
            "leading: running the scheduler and the liveness manager"
        );
        metrics.set_leader(true);
        // One watch of the lease for the whole reign: a new `lost()` per
        // loop pass would restart its check interval on every event and
        // tick, and never check at all.
        let lost = lease.lost();
        tokio::pin!(lost);
        let mut events = bus.subscribe();
        let mut dispatcher = Dispatcher::new(core.fenced(epoch));
        if let Err(e) = dispatcher.rebuild().await {
            tracing::warn!(error = %e, "rebuilding the scheduler failed; retrying on the next tick");
        }
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let result = tokio::select! {
                _ = &mut lost => {
                    tracing::warn!("lost the leader lock; no longer dispatching");
                    metrics.set_leader(false);
                    break;
                }
                _ = shutdown.changed() => {
                    metrics.set_leader(false);
                    return;
                }
                e = events.recv() => match e {
                    Ok(e) => {
                        if let Event::Job(j) = &e {
                            if j.status == JobStatus::Allocated {
                                metrics.observe_scheduling(core.now().since(j.queued_at));
                            }
                        }
                        dispatcher.handle(&e).await
                    }
                    Err(RecvError::Lagged) => dispatcher.rebuild().await,
                    Err(RecvError::Closed) => {
                        metrics.set_leader(false);
                        return;
                    }
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
                    metrics.set_leader(false);
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "rebuilding the scheduler failed"),
                Ok(()) => {}
            }
        }
    }
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
