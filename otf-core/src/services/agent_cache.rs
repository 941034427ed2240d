//! Agents recently read by the agent protocol's hot reads (pings and
//! long-polls), and whether they held any job: most pings and long-polls of
//! an idle fleet then read nothing from the store.
//!
//! Only used while the process routes the bus's events
//! ([`super::Core::route_wakeups`]): every change of an agent, and every
//! job event naming one, reaches [`AgentCache::forget`] here (from this
//! process's commits at once, from other replicas' through the bus), and a
//! bus that may have missed events clears the cache. A read that began
//! before an invalidation of its agent is not cached (per-agent
//! generations), so a late reader cannot put back what an event dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::agent::Agent;
use crate::clock::Timestamp;
use crate::events::Event;
use crate::ids::AgentId;

/// A backstop: an entry is read again from the store after this long
/// even when no event dropped it.
pub const AGENT_CACHE_FOR: Duration = Duration::from_secs(60);

/// Entries kept at most (beyond it the cache starts over).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub(crate) struct AgentCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<AgentId, Entry>,
    /// Raised by every invalidation.
    seq: u64,
    /// The `seq` of the last [`AgentCache::clear`].
    cleared_at: u64,
}

#[derive(Debug, Default)]
struct Entry {
    /// The agent as read, and when.
    agent: Option<(Agent, Timestamp)>,
    /// Since when the agent is known to hold no job that is not final.
    no_jobs_since: Option<Timestamp>,
    /// The `seq` of the last invalidation of this agent.
    invalidated_at: u64,
}

/// What the cache knows of an agent.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub agent: Agent,
    /// It held no job that is not final when its jobs were last read, and
    /// no event about a job of it came since (an allocation is one).
    pub no_jobs: bool,
}

/// The moment a reader took before reading the store
/// ([`AgentCache::before_read`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadStart(u64);

impl AgentCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take before reading an agent (or its jobs) from the store.
    pub(crate) fn before_read(&self) -> ReadStart {
        ReadStart(self.lock().seq)
    }

    pub(crate) fn get(&self, id: &AgentId, now: Timestamp) -> Option<Cached> {
        let fresh = AGENT_CACHE_FOR.as_millis() as i64;
        let inner = self.lock();
        let entry = inner.entries.get(id)?;
        let (agent, at) = entry.agent.as_ref()?;
        if now.0.saturating_sub(at.0) >= fresh {
            return None;
        }
        let no_jobs = entry
            .no_jobs_since
            .is_some_and(|at| now.0.saturating_sub(at.0) < fresh);
        Some(Cached {
            agent: agent.clone(),
            no_jobs,
        })
    }

    /// Remember `agent` as read since `start`, and what its jobs were then
    /// when they were read too (`no_jobs`: it held none that is not final;
    /// None: they were not read).
    /// Ignored when anything invalidated it since.
    pub(crate) fn put(
        &self,
        agent: &Agent,
        no_jobs: Option<bool>,
        start: ReadStart,
        now: Timestamp,
    ) {
        let mut inner = self.lock();
        if inner.cleared_at > start.0 {
            return;
        }
        if let Some(e) = inner.entries.get(&agent.id) {
            if e.invalidated_at > start.0 {
                return;
            }
        }
        if inner.entries.len() >= MAX_ENTRIES && !inner.entries.contains_key(&agent.id) {
            Self::clear_locked(&mut inner);
            return;
        }
        let entry = inner.entries.entry(agent.id.clone()).or_default();
        entry.agent = Some((agent.clone(), now));
        match no_jobs {
            Some(true) => entry.no_jobs_since = Some(now),
            Some(false) => entry.no_jobs_since = None,
            None => {}
        }
    }

    /// Drop what `e` makes stale: the agent it changes, or the agent of the
    /// job it changes.
    pub(crate) fn forget(&self, e: &Event) {
        let id = match e {
            Event::Agent(a) => &a.id,
            Event::AgentDeleted(id) => id,
            Event::Job(j) => match &j.agent {
                Some(a) => a,
                None => return,
            },
            Event::TokenRevoked(_) => return self.clear(),
            Event::Run(_) | Event::Workspace(_) | Event::Log { .. } => return,
        };
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        if inner.entries.len() >= MAX_ENTRIES && !inner.entries.contains_key(id) {
            return Self::clear_locked(&mut inner);
        }
        let entry = inner.entries.entry(id.clone()).or_default();
        *entry = Entry {
            invalidated_at: seq,
            ..Entry::default()
        };
    }

    /// Forget everything (events may have been missed).
    pub(crate) fn clear(&self) {
        Self::clear_locked(&mut self.lock());
    }

    fn clear_locked(inner: &mut Inner) {
        inner.seq += 1;
        inner.cleared_at = inner.seq;
        inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentStatus;
    use crate::job::{Job, JobPhase, JobStatus};

    fn agent(n: u32) -> Agent {
        crate::liveness::tests::agent(n, AgentStatus::Idle, 0, 0)
    }

    const T: Timestamp = Timestamp(1_000);

    #[test]
    fn an_agent_is_served_from_the_cache_until_an_event_about_it_or_its_jobs() {
        let cache = AgentCache::default();
        let (a, b) = (agent(1), agent(2));
        cache.put(&a, Some(true), cache.before_read(), T);
        cache.put(&b, Some(false), cache.before_read(), T);
        let got = cache.get(&a.id, T).expect("cached");
        assert_eq!(got.agent, a);
        assert!(got.no_jobs);
        assert!(!cache.get(&b.id, T).expect("cached").no_jobs);

        // A job event naming the agent drops it; others are untouched.
        let mut job: Job = crate::job::tests::job(JobStatus::Allocated, JobPhase::Plan, 1);
        job.agent = Some(a.id.clone());
        cache.forget(&Event::Job(job.clone()));
        assert!(cache.get(&a.id, T).is_none());
        assert!(cache.get(&b.id, T).is_some());
        job.agent = None;
        cache.forget(&Event::Job(job));
        assert!(
            cache.get(&b.id, T).is_some(),
            "a job of no agent drops nothing"
        );

        cache.forget(&Event::Agent(b.clone()));
        assert!(cache.get(&b.id, T).is_none());
        cache.put(&b, Some(true), cache.before_read(), T);
        cache.forget(&Event::AgentDeleted(b.id.clone()));
        assert!(cache.get(&b.id, T).is_none());
    }

    #[test]
    fn a_read_that_began_before_an_invalidation_is_not_cached() {
        let cache = AgentCache::default();
        let (a, b) = (agent(1), agent(2));
        // Read a; meanwhile a changes (its event comes first): stale.
        let start = cache.before_read();
        cache.forget(&Event::Agent(a.clone()));
        cache.put(&a, Some(true), start, T);
        assert!(cache.get(&a.id, T).is_none());
        // Another agent's event does not spoil b's read.
        cache.put(&b, Some(true), start, T);
        assert!(cache.get(&b.id, T).is_some());
        // A clear spoils every read begun before it.
        let start = cache.before_read();
        cache.clear();
        cache.put(&a, Some(true), start, T);
        assert!(cache.get(&a.id, T).is_none());
        cache.put(&a, None, cache.before_read(), T);
        assert!(cache.get(&a.id, T).is_some());
    }

    #[test]
    fn entries_expire_after_the_backstop() {
        let cache = AgentCache::default();
        let a = agent(1);
        cache.put(&a, Some(true), cache.before_read(), T);
        let later = Timestamp(T.0 + AGENT_CACHE_FOR.as_millis() as i64);
        assert!(cache.get(&a.id, Timestamp(later.0 - 1)).is_some());
        assert!(cache.get(&a.id, later).is_none());
        // A put without news of jobs keeps what was known of them.
        cache.put(&a, None, cache.before_read(), T);
        assert!(cache.get(&a.id, T).expect("cached").no_jobs);
        cache.put(&a, Some(false), cache.before_read(), T);
        assert!(!cache.get(&a.id, T).expect("cached").no_jobs);
    }
}
