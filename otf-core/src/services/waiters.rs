//! Wake-ups for long-polls. With many agents long-polling, each waiting on
//! its own bus subscription would make every event cost O(agents). Instead one
//! router ([`Core::route_wakeups`]) reads the bus and bumps only the keys an
//! event concerns (an agent, a job); waiters sleep on their key's `Notify`.
//! Without a running router (an embedding that does not start one), waiters
//! fall back to a bus subscription of their own.
//!
//! A job allocation committed by this process also leaves the job in its
//! agent's slot: a long-poll woken by nothing but such allocations answers
//! with them without reading the store again (the read that preceded its
//! wait found none, and an allocation committed since is one the agent does
//! not hold yet). The bus then repeats the allocation: its echo is noted as
//! one (it neither sends the long-poll to the store nor hands out the job
//! again), so a long-poll that began after the commit never takes the job
//! from the slot. Any other wake-up sends the long-poll to the store.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Core;
use crate::events::{Event, RecvError, Subscription};
use crate::ids::{AgentId, JobId};
use crate::job::{Job, JobStatus};
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
    /// The last allocations committed here to the slot's agent, each with
    /// the epoch its wake-up raised the slot to; `None`: the bus's echo of
    /// one of them.
    allocated: VecDeque<(u64, Option<Job>)>,
}

/// Allocations a slot remembers at most; a waiter that missed more reads.
const ALLOCATIONS_KEPT: usize = 8;

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
    /// The jobs allocated to the agent by this process's commits, when
    /// every wake-up after `seen` (up to now) was one of them; None when
    /// any was something else (the caller reads the store).
    pub(crate) fn allocated_since(&self, seen: u64) -> Option<Vec<Job>> {
        let slots = self.waiters.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get(&self.key)?;
        let now = slot.epoch.load(Ordering::SeqCst);
        let woke: Vec<&Option<Job>> = slot
            .allocated
            .iter()
            .filter(|(at, _)| *at > seen && *at <= now)
            .map(|(_, j)| j)
            .collect();
        if woke.len() as u64 != now - seen {
            return None;
        }
        let mut jobs: Vec<Job> = Vec::with_capacity(woke.len());
        for j in woke.into_iter().flatten() {
            match jobs.iter_mut().find(|k| k.id == j.id) {
                Some(k) => *k = j.clone(),
                None => jobs.push(j.clone()),
            }
        }
        (!jobs.is_empty()).then_some(jobs)
    }

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
            allocated: VecDeque::new(),
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

    /// Wake the waiters an event from the bus concerns: O(1) per event.
    pub(crate) fn wake(&self, e: &Event) {
        self.wake_with(e, false);
    }

    /// Wake the waiters an event this process just committed concerns; an
    /// allocation is also left in its agent's slot
    /// ([`Registration::allocated_since`]).
    pub(crate) fn wake_committed(&self, e: &Event) {
        self.wake_with(e, true);
    }

    fn wake_with(&self, e: &Event, committed: bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(e, Event::TokenRevoked(_)) {
            slots.values().for_each(Self::bump);
            return;
        }
        for key in WaitKey::of(e) {
            let Some(slot) = slots.get_mut(&key) else {
                continue;
            };
            if let (WaitKey::Agent(_), Event::Job(j)) = (&key, e) {
                let entry = if committed {
                    Some(Some(j.clone()))
                } else {
                    // The echo of an allocation committed here.
                    let echo = slot.allocated.iter().any(|(_, k)| k.as_ref() == Some(j));
                    echo.then_some(None)
                };
                if let Some(entry) = entry {
                    if slot.allocated.len() == ALLOCATIONS_KEPT {
                        slot.allocated.pop_front();
                    }
                    let next = slot.epoch.load(Ordering::SeqCst) + 1;
                    slot.allocated.push_back((next, entry));
                }
            }
            Self::bump(slot);
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
    /// After [`Wait::next`]: the jobs this process allocated to the agent
    /// since the wait began, when that is all that happened (see
    /// [`Registration::allocated_since`]).
    pub(crate) fn allocations(&self) -> Option<Vec<Job>> {
        match self {
            Wait::Routed(reg, seen) => reg.allocated_since(*seen),
            Wait::Subscribed(..) => None,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::tests::job;
    use crate::job::JobPhase;

    fn agent() -> AgentId {
        "agent-0123456789abcdef".parse().unwrap()
    }

    fn allocation(n: u8) -> Event {
        let mut j = job(JobStatus::Allocated, JobPhase::Plan, 1);
        j.id = format!("job-{n:016}").parse().unwrap();
        j.agent = Some(agent());
        Event::Job(j)
    }

    fn ids(jobs: Option<Vec<Job>>) -> Option<Vec<String>> {
        jobs.map(|js| js.iter().map(|j| j.id.to_string()).collect())
    }

    fn waiting(w: &Arc<Waiters>) -> (Registration, u64) {
        let reg = w.register(WaitKey::Agent(agent()));
        let seen = reg.epoch();
        (reg, seen)
    }

    #[test]
    fn a_long_poll_woken_by_committed_allocations_takes_them() {
        let w = Arc::new(Waiters::default());
        let (reg, seen) = waiting(&w);
        assert_eq!(reg.allocated_since(seen), None, "nothing happened yet");
        w.wake_committed(&allocation(1));
        w.wake_committed(&allocation(2));
        assert_eq!(
            ids(reg.allocated_since(seen)),
            Some(vec![
                "job-0000000000000001".into(),
                "job-0000000000000002".into()
            ])
        );
    }

    #[test]
    fn the_echo_of_a_committed_allocation_changes_nothing() {
        let w = Arc::new(Waiters::default());
        let (reg, seen) = waiting(&w);
        w.wake_committed(&allocation(1));
        w.wake(&allocation(1));
        assert_eq!(
            ids(reg.allocated_since(seen)),
            Some(vec!["job-0000000000000001".into()])
        );
    }

    #[test]
    fn any_other_wake_up_sends_the_long_poll_to_the_store() {
        let w = Arc::new(Waiters::default());
        // Another replica's allocation, from the bus only.
        let (reg, seen) = waiting(&w);
        w.wake(&allocation(3));
        assert_eq!(reg.allocated_since(seen), None);

        // The agent changed (drained, say), or a token was revoked.
        let mut a = crate::liveness::tests::agent(0, crate::agent::AgentStatus::Idle, 0, 0);
        a.id = agent();
        for e in [
            Event::Agent(a),
            Event::TokenRevoked("at-0123456789abcdef".parse().unwrap()),
        ] {
            let (reg, seen) = waiting(&w);
            w.wake_committed(&allocation(4));
            w.wake_committed(&e);
            assert_eq!(reg.allocated_since(seen), None, "{e:?}");
        }
    }

    #[test]
    fn a_later_long_poll_never_takes_an_earlier_allocation() {
        let w = Arc::new(Waiters::default());
        let (_first, _) = waiting(&w);
        w.wake_committed(&allocation(1));
        let (reg, seen) = waiting(&w);
        // The bus's echo of the same allocation wakes the later poll.
        w.wake(&allocation(1));
        assert_eq!(reg.allocated_since(seen), None);
        // A changed job (allocated again, say) from the bus is no echo.
        let Event::Job(mut j) = allocation(1) else {
            unreachable!()
        };
        j.attempt = 2;
        w.wake(&Event::Job(j));
        assert_eq!(reg.allocated_since(seen), None);
    }

    #[test]
    fn a_waiter_that_missed_more_than_the_slot_keeps_reads() {
        let w = Arc::new(Waiters::default());
        let (reg, seen) = waiting(&w);
        for n in 0..=ALLOCATIONS_KEPT as u8 {
            w.wake_committed(&allocation(n));
        }
        assert_eq!(reg.allocated_since(seen), None);
    }
}
