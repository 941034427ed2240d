//! Wake-ups for long-polls. With many agents long-polling, each waiting on
//! its own bus subscription would make every event cost O(agents). Instead one
//! router ([`Core::route_wakeups`]) reads the bus and bumps only the keys an
//! event concerns (an agent, a job); waiters sleep on their key's `Notify`.
//! Without a running router (an embedding that does not start one), waiters
//! fall back to a bus subscription of their own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Core;
use crate::events::{Event, RecvError, Subscription};
use crate::ids::{AgentId, JobId};
use crate::job::JobStatus;
use crate::store::Store;

/// What a long-poll waits on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum WaitKey {
    /// Jobs allocated to the agent, or the agent changing.
    Agent(AgentId),
    /// Any change of the job (a signal, its end).
    Job(JobId),
}

impl WaitKey {
    fn woken_by(&self, e: &Event) -> bool {
        match (self, e) {
            (WaitKey::Agent(id), Event::Job(j)) => {
                j.status == JobStatus::Allocated && j.agent.as_ref() == Some(id)
            }
            (WaitKey::Agent(id), Event::Agent(a)) => &a.id == id,
            (WaitKey::Agent(id), Event::AgentDeleted(a)) => a == id,
            (WaitKey::Agent(_), Event::TokenRevoked(_)) => true,
            (WaitKey::Job(id), Event::Job(j)) => &j.id == id,
            _ => false,
        }
    }

    /// The keys an event wakes, except for wake-everyone events.
    fn of(e: &Event) -> Vec<WaitKey> {
        match e {
            Event::Job(j) => {
                let mut keys = vec![WaitKey::Job(j.id.clone())];
                if let (JobStatus::Allocated, Some(a)) = (j.status, &j.agent) {
                    keys.push(WaitKey::Agent(a.clone()));
                }
                keys
            }
            Event::Agent(a) => vec![WaitKey::Agent(a.id.clone())],
            Event::AgentDeleted(a) => vec![WaitKey::Agent(a.clone())],
            _ => Vec::new(),
        }
    }
}

struct Slot {
    notify: Arc<Notify>,
    /// Bumped on every wake-up; a waiter compares it with what it saw.
    epoch: Arc<AtomicU64>,
    waiters: usize,
}

/// The registry of waiting long-polls.
#[derive(Default)]
pub(crate) struct Waiters {
    slots: Mutex<HashMap<WaitKey, Slot>>,
    /// Whether a router is delivering wake-ups.
    routing: AtomicBool,
}

/// A registered waiter; unregisters on drop.
pub(crate) struct Registration {
    waiters: Arc<Waiters>,
    key: WaitKey,
    notify: Arc<Notify>,
    epoch: Arc<AtomicU64>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut slots = self.waiters.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get_mut(&self.key) {
            slot.waiters -= 1;
            if slot.waiters == 0 {
                slots.remove(&self.key);
            }
        }
    }
}

impl Registration {
    /// The wake-up count now; pass it to [`Registration::changed_since`].
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Resolves once a wake-up happened after `seen`.
    pub(crate) async fn changed_since(&self, seen: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.epoch() != seen {
                return;
            }
            notified.await;
        }
    }
}

impl Waiters {
    pub(crate) fn routing(&self) -> bool {
        self.routing.load(Ordering::SeqCst)
    }

    pub(crate) fn register(self: &Arc<Self>, key: WaitKey) -> Registration {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(key.clone()).or_insert_with(|| Slot {
            notify: Arc::new(Notify::new()),
            epoch: Arc::new(AtomicU64::new(0)),
            waiters: 0,
        });
        slot.waiters += 1;
        Registration {
            waiters: self.clone(),
            key,
            notify: slot.notify.clone(),
            epoch: slot.epoch.clone(),
        }
    }

    fn bump(slot: &Slot) {
        slot.epoch.fetch_add(1, Ordering::SeqCst);
        slot.notify.notify_waiters();
    }

    /// Wake the waiters an event concerns: O(1) per event.
    pub(crate) fn wake(&self, e: &Event) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(e, Event::TokenRevoked(_)) {
            slots.values().for_each(Self::bump);
            return;
        }
        for key in WaitKey::of(e) {
            if let Some(slot) = slots.get(&key) {
                Self::bump(slot);
            }
        }
    }

    fn wake_all(&self) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.values().for_each(Self::bump);
    }
}

/// How one long-poll waits: on the router, or on its own subscription.
pub(crate) enum Wait {
    Routed(Registration, u64),
    Subscribed(Subscription, WaitKey),
}

impl Wait {
    /// Resolves when something the key cares about may have changed; `false`
    /// when the bus closed (stop waiting).
    pub(crate) async fn next(&mut self) -> bool {
        match self {
            Wait::Routed(reg, seen) => {
                reg.changed_since(*seen).await;
                true
            }
            Wait::Subscribed(sub, key) => loop {
                match sub.recv().await {
                    Ok(e) if key.woken_by(&e) => return true,
                    Ok(_) => continue,
                    Err(RecvError::Lagged) => return true,
                    Err(RecvError::Closed) => return false,
                }
            },
        }
    }
}

impl<S: Store> Core<S> {
    /// Start waiting on `key`, before looking at the store, so that nothing
    /// slips between the look and the wait.
    pub(crate) fn wait_on(&self, key: WaitKey) -> Wait {
        if self.waiters.routing() {
            let reg = self.waiters.register(key);
            let seen = reg.epoch();
            Wait::Routed(reg, seen)
        } else {
            Wait::Subscribed(self.bus.subscribe(), key)
        }
    }

    /// Whether a router ([`Core::route_wakeups`]) is delivering wake-ups.
    pub fn wakeups_routed(&self) -> bool {
        self.waiters.routing()
    }

    /// Deliver wake-ups to long-polls from one bus subscription until
    /// `shutdown` resolves. A process that serves many long-polls runs this
    /// once (otfd does); without it each long-poll subscribes on its own.
    pub async fn route_wakeups(&self, shutdown: impl Future<Output = ()>) {
        let mut sub = self.bus.subscribe();
        self.waiters.routing.store(true, Ordering::SeqCst);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                e = sub.recv() => match e {
                    Ok(e) => {
                        self.forget_stale(&e);
                        self.waiters.wake(&e);
                    }
                    Err(RecvError::Lagged) => {
                        self.clear_caches();
                        self.waiters.wake_all();
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = &mut shutdown => break,
            }
        }
        self.waiters.routing.store(false, Ordering::SeqCst);
        // Waiters registered on the router must not sleep forever.
        self.waiters.wake_all();
    }
}
