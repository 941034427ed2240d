//! The liveness manager: (agents, now) -> status changes. Pure.

use crate::agent::{Agent, AgentEvent, AgentStatus, LivenessConfig};
use crate::clock::Timestamp;
use crate::ids::AgentId;

/// A change the liveness manager decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LivenessChange {
    /// Apply this event (ping timeout or grace expiry) to the agent.
    Apply(AgentId, AgentEvent),
    /// Delete the final agent: its retention period is over.
    Purge(AgentId),
}

/// What must change for `agents` at `now`, in the order of `agents`.
pub fn liveness_changes(
    agents: &[Agent],
    now: Timestamp,
    cfg: &LivenessConfig,
) -> Vec<LivenessChange> {
    agents
        .iter()
        .filter_map(|a| match a.status {
            AgentStatus::Idle | AgentStatus::Busy
                if now.since(a.last_ping_at) > cfg.ping_timeout =>
            {
                Some(LivenessChange::Apply(a.id.clone(), AgentEvent::PingTimeout))
            }
            AgentStatus::Unknown if now.since(a.last_status_at) > cfg.unknown_grace => Some(
                LivenessChange::Apply(a.id.clone(), AgentEvent::GraceExpired),
            ),
            AgentStatus::Errored | AgentStatus::Exited
                if now.since(a.last_status_at) > cfg.retention =>
            {
                Some(LivenessChange::Purge(a.id.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The agents [`liveness_changes`] may change at a moment: those of each
/// status last heard of at or before its bound. A store lists just them
/// ([`crate::store::AgentRepo::list_agents_due`]), so a tick reads the few
/// agents that went quiet, not the whole fleet; the rule above still
/// decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentsDue {
    /// Idle and busy agents whose last ping is at or before this.
    pub live_pinged_by: Timestamp,
    /// Unknown agents whose status changed at or before this.
    pub unknown_since_by: Timestamp,
    /// Errored and exited agents whose status changed at or before this.
    pub final_since_by: Timestamp,
}

impl AgentsDue {
    pub fn at(now: Timestamp, cfg: &LivenessConfig) -> Self {
        let before = |d: std::time::Duration| {
            Timestamp(
                now.0
                    .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            )
        };
        AgentsDue {
            live_pinged_by: before(cfg.ping_timeout),
            unknown_since_by: before(cfg.unknown_grace),
            final_since_by: before(cfg.retention),
        }
    }

    /// Whether the store lists `a` (the memory store's filter; SQL stores
    /// say the same in their query).
    pub fn includes(&self, a: &Agent) -> bool {
        match a.status {
            AgentStatus::Idle | AgentStatus::Busy => a.last_ping_at <= self.live_pinged_by,
            AgentStatus::Unknown => a.last_status_at <= self.unknown_since_by,
            AgentStatus::Errored | AgentStatus::Exited => a.last_status_at <= self.final_since_by,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> LivenessConfig {
        LivenessConfig {
            ping_interval: Duration::from_secs(1),
            ping_timeout: Duration::from_secs(3),
            unknown_grace: Duration::from_secs(10),
            retention: Duration::from_secs(60),
        }
    }

    /// An agent for tests: numbered `n`, with its status and times.
    pub(crate) fn agent(n: u32, status: AgentStatus, last_ping: i64, last_status: i64) -> Agent {
        Agent {
            labels: Default::default(),
            id: format!("agent-{n:016}").parse().unwrap(),
            name: format!("a{n}"),
            version: "0".into(),
            pool: None,
            organization: None,
            status,
            max_jobs: 1,
            ip_address: String::new(),
            last_ping_at: Timestamp(last_ping),
            last_status_at: Timestamp(last_status),
            token: None,
            registered_at: Timestamp(0),
            drained: false,
            single: false,
        }
    }

    #[test]
    fn timeouts_grace_and_retention() {
        use AgentStatus::*;
        let agents = vec![
            agent(1, Idle, 7_000, 0),      // pinged 3 s ago: fine
            agent(2, Busy, 6_999, 0),      // 3.001 s: unknown
            agent(3, Unknown, 0, 0),       // unknown for 10 s exactly: not yet
            agent(4, Unknown, 0, -1),      // 10.001 s: errored
            agent(5, Exited, 0, -50_001),  // retention over: purge
            agent(6, Errored, 0, -49_000), // not yet
        ];
        let got = liveness_changes(&agents, Timestamp(10_000), &cfg());
        assert_eq!(
            got,
            vec![
                LivenessChange::Apply(agents[1].id.clone(), AgentEvent::PingTimeout),
                LivenessChange::Apply(agents[3].id.clone(), AgentEvent::GraceExpired),
                LivenessChange::Purge(agents[4].id.clone()),
            ]
        );
    }

    #[test]
    fn every_change_is_an_allowed_transition() {
        use crate::agent::agent_transition;
        for &status in AgentStatus::ALL {
            let a = agent(1, status, 0, 0);
            for c in liveness_changes(std::slice::from_ref(&a), Timestamp(1_000_000), &cfg()) {
                if let LivenessChange::Apply(_, ev) = c {
                    assert!(agent_transition(&a.id, status, ev).is_ok());
                }
            }
        }
    }

    #[test]
    fn the_due_agents_are_every_agent_the_rule_would_change() {
        let cfg = cfg();
        let statuses = [
            AgentStatus::Idle,
            AgentStatus::Busy,
            AgentStatus::Unknown,
            AgentStatus::Errored,
            AgentStatus::Exited,
        ];
        let mut agents = Vec::new();
        let mut n = 0;
        for status in statuses {
            for ping in (0..=70_000).step_by(500) {
                for last_status in [0, 9_999, 10_000, 10_001, 59_999, 60_000, 60_001, 70_000] {
                    n += 1;
                    agents.push(agent(n, status, ping, last_status));
                }
            }
        }
        for now in [0, 3_000, 3_001, 10_001, 60_000, 60_001, 70_000] {
            let now = Timestamp(now);
            let due = AgentsDue::at(now, &cfg);
            let listed: Vec<Agent> = agents.iter().filter(|a| due.includes(a)).cloned().collect();
            assert_eq!(
                liveness_changes(&listed, now, &cfg),
                liveness_changes(&agents, now, &cfg),
                "at {now:?}"
            );
            assert!(
                listed.len() < agents.len(),
                "the bound leaves quiet agents out"
            );
        }
    }
}
