//! Agents (runners) and their status machine.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::enums::wire_enum;
use crate::ids::{AgentId, AgentTokenId, OrganizationName, PoolId};
use crate::transition::TransitionRefused;

wire_enum!(
    /// An agent's status; the wire spelling is TFE's.
    AgentStatus, "agent status" {
        Idle => "idle",
        Busy => "busy",
        Unknown => "unknown",
        Errored => "errored",
        Exited => "exited",
    }
);

impl AgentStatus {
    /// Errored and exited agents never come back; they must re-register.
    pub fn is_final(self) -> bool {
        matches!(self, AgentStatus::Errored | AgentStatus::Exited)
    }

    /// Whether the scheduler may hand the agent jobs.
    pub fn is_schedulable(self) -> bool {
        matches!(self, AgentStatus::Idle | AgentStatus::Busy)
    }
}

/// Which agents a listing keeps, as a client writes `filter[status]`:
/// statuses separated by commas, `live` for idle or busy, or nothing for
/// every agent. A word that names no status matches no agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentStatusFilter {
    /// None: every agent.
    words: Option<Vec<String>>,
}

impl AgentStatusFilter {
    pub fn parse(text: Option<&str>) -> Self {
        Self {
            words: text
                .filter(|t| !t.is_empty())
                .map(|t| t.split(',').map(|w| w.trim().to_string()).collect()),
        }
    }

    pub fn allows(&self, status: AgentStatus) -> bool {
        self.words.as_ref().is_none_or(|words| {
            words
                .iter()
                .any(|w| w == status.as_str() || (w == "live" && status.is_schedulable()))
        })
    }
}

wire_enum!(
    /// What an agent may report about itself in a status ping.
    ReportedStatus, "reported agent status" {
        Idle => "idle",
        Busy => "busy",
        /// Graceful shutdown.
        Exited => "exited",
    }
);

/// Everything that moves an agent's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEvent {
    /// The agent's own ping.
    Ping(ReportedStatus),
    /// No ping arrived within the ping timeout.
    PingTimeout,
    /// An unknown agent stayed silent for the further grace period.
    GraceExpired,
    /// The token the agent registered with was deleted.
    TokenRevoked,
}

impl AgentEvent {
    fn name(self) -> &'static str {
        match self {
            AgentEvent::Ping(ReportedStatus::Exited) => "report exit of",
            AgentEvent::Ping(_) => "accept a status ping from",
            AgentEvent::PingTimeout => "time out",
            AgentEvent::GraceExpired => "expire the grace period of",
            AgentEvent::TokenRevoked => "revoke the token of",
        }
    }
}

/// The one transition function of agent statuses.
pub fn agent_transition(
    id: &AgentId,
    from: AgentStatus,
    event: AgentEvent,
) -> Result<AgentStatus, TransitionRefused> {
    use AgentStatus::*;
    let to = match (from, event) {
        (Idle | Busy | Unknown, AgentEvent::Ping(ReportedStatus::Idle)) => Some(Idle),
        (Idle | Busy | Unknown, AgentEvent::Ping(ReportedStatus::Busy)) => Some(Busy),
        (Idle | Busy | Unknown, AgentEvent::Ping(ReportedStatus::Exited)) => Some(Exited),
        (Idle | Busy, AgentEvent::PingTimeout) => Some(Unknown),
        (Unknown, AgentEvent::GraceExpired) => Some(Errored),
        (Idle | Busy | Unknown, AgentEvent::TokenRevoked) => Some(Exited),
        _ => None,
    };
    to.ok_or_else(|| TransitionRefused {
        entity: "agent",
        id: id.to_string(),
        from: from.as_str(),
        event: event.name(),
        hint: if from.is_final() {
            "; the agent must register again"
        } else {
            ""
        },
    })
}

/// The agent protocol versions this otfd speaks. 1: the first (no job
/// lists in pings, no version sent at registration); 2: pings carry the
/// jobs an agent holds and answer which to cancel and whether it is
/// drained.
pub const AGENT_PROTOCOLS: std::ops::RangeInclusive<u32> = 1..=2;

/// Why an agent may not register: it speaks a protocol this otfd does not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("otf-agent {agent_version} speaks agent protocol {protocol}, and this otfd {server_version} speaks protocols {min} to {max}: {advice}")]
pub struct IncompatibleAgent {
    pub agent_version: String,
    pub protocol: u32,
    pub server_version: String,
    pub min: u32,
    pub max: u32,
    pub advice: &'static str,
}

/// Whether an agent of `agent_version` speaking `protocol` may register
/// with an otfd of `server_version`.
pub fn check_agent_protocol(
    agent_version: &str,
    protocol: u32,
    server_version: &str,
) -> Result<(), IncompatibleAgent> {
    if AGENT_PROTOCOLS.contains(&protocol) {
        return Ok(());
    }
    Err(IncompatibleAgent {
        agent_version: agent_version.to_string(),
        protocol,
        server_version: server_version.to_string(),
        min: *AGENT_PROTOCOLS.start(),
        max: *AGENT_PROTOCOLS.end(),
        advice: if protocol > *AGENT_PROTOCOLS.end() {
            "upgrade otfd (or run an older otf-agent)"
        } else {
            "upgrade otf-agent"
        },
    })
}

/// A runner: a pool agent, or the server runner (no pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub version: String,
    /// None for the server runner.
    pub pool: Option<PoolId>,
    pub organization: Option<OrganizationName>,
    pub status: AgentStatus,
    /// Jobs the agent runs at once.
    pub max_jobs: u32,
    pub ip_address: String,
    /// Last time the agent was heard from; drives the liveness manager.
    pub last_ping_at: Timestamp,
    /// Last time `status` changed.
    pub last_status_at: Timestamp,
    /// The token it registered with (None for the server runner).
    pub token: Option<AgentTokenId>,
    pub registered_at: Timestamp,
    /// Drained: it gets no new job, finishes what it runs and keeps
    /// pinging (its status stays TFE's idle/busy).
    pub drained: bool,
    /// A single-execution agent (`otf-agent --single`): it runs one run (its
    /// plan, then its apply, which waits for it) and exits.
    pub single: bool,
    /// Labels it registered with (`otf-agent --label k=v`); workspaces'
    /// agent selectors match against them.
    pub labels: crate::labels::Labels,
}

impl Agent {
    pub fn is_server(&self) -> bool {
        self.pool.is_none()
    }

    /// The agent for people: its name and id (just the id when unnamed).
    pub fn label(&self) -> String {
        if self.name == self.id.as_str() {
            self.id.to_string()
        } else {
            format!("{} ({})", self.name, self.id)
        }
    }

    /// Apply `event` at `now`. Pings also record the time they were heard.
    pub fn apply(&mut self, event: AgentEvent, now: Timestamp) -> Result<bool, TransitionRefused> {
        let to = agent_transition(&self.id, self.status, event)?;
        if matches!(event, AgentEvent::Ping(_)) {
            self.last_ping_at = self.last_ping_at.max(now);
        }
        let changed = to != self.status;
        if changed {
            self.status = to;
            self.last_status_at = now;
        }
        Ok(changed)
    }
}

/// Timers of the liveness protocol. Tests use short ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// How often agents ping.
    pub ping_interval: Duration,
    /// Silence after which an idle/busy agent becomes unknown.
    pub ping_timeout: Duration,
    /// Further silence after which an unknown agent becomes errored.
    pub unknown_grace: Duration,
    /// How long errored and exited agents stay listed before being purged.
    pub retention: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(30),
            unknown_grace: Duration::from_secs(300),
            retention: Duration::from_secs(3600),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_filter() {
        use AgentStatus::*;
        let keeps = |text: Option<&str>| -> Vec<AgentStatus> {
            let f = AgentStatusFilter::parse(text);
            AgentStatus::ALL
                .iter()
                .copied()
                .filter(|s| f.allows(*s))
                .collect()
        };
        assert_eq!(keeps(None), AgentStatus::ALL);
        assert_eq!(keeps(Some("")), AgentStatus::ALL);
        assert_eq!(keeps(Some("live")), [Idle, Busy]);
        assert_eq!(keeps(Some("errored, exited")), [Errored, Exited]);
        assert_eq!(keeps(Some("sleeping")), []);
    }

    use super::*;
    use crate::enums::assert_round_trip;
    use AgentStatus::*;

    fn id() -> AgentId {
        "agent-0123456789abcdef".parse().unwrap()
    }

    const EVENTS: [AgentEvent; 6] = [
        AgentEvent::Ping(ReportedStatus::Idle),
        AgentEvent::Ping(ReportedStatus::Busy),
        AgentEvent::Ping(ReportedStatus::Exited),
        AgentEvent::PingTimeout,
        AgentEvent::GraceExpired,
        AgentEvent::TokenRevoked,
    ];

    #[test]
    fn wire_names() {
        assert_round_trip(AgentStatus::ALL);
        assert_round_trip(ReportedStatus::ALL);
    }

    #[test]
    fn protocol_handshake() {
        assert_eq!(check_agent_protocol("0.1.0", 1, "0.2.0"), Ok(()));
        assert_eq!(check_agent_protocol("0.2.0", 2, "0.2.0"), Ok(()));
        let newer = check_agent_protocol("9.0.0", 7, "0.2.0").unwrap_err();
        assert_eq!(
            newer.to_string(),
            "otf-agent 9.0.0 speaks agent protocol 7, and this otfd 0.2.0 speaks protocols 1 to 2: upgrade otfd (or run an older otf-agent)"
        );
        let older = check_agent_protocol("0.0.1", 0, "0.2.0").unwrap_err();
        assert!(older.to_string().ends_with("upgrade otf-agent"), "{older}");
    }

    /// The whole table: every (status, event) pair, allowed or refused.
    #[test]
    fn transition_table() {
        let expected = |from: AgentStatus, ev: AgentEvent| -> Option<AgentStatus> {
            match (from, ev) {
                (Idle | Busy | Unknown, AgentEvent::Ping(ReportedStatus::Idle)) => Some(Idle),
                (Idle | Busy | Unknown, AgentEvent::Ping(ReportedStatus::Busy)) => Some(Busy),
                (Idle | Busy | Unknown, AgentEvent::Ping(ReportedStatus::Exited)) => Some(Exited),
                (Idle | Busy, AgentEvent::PingTimeout) => Some(Unknown),
                (Unknown, AgentEvent::GraceExpired) => Some(Errored),
                (Idle | Busy | Unknown, AgentEvent::TokenRevoked) => Some(Exited),
                _ => None,
            }
        };
        let mut allowed = 0;
        for &from in AgentStatus::ALL {
            for ev in EVENTS {
                let got = agent_transition(&id(), from, ev).ok();
                assert_eq!(got, expected(from, ev), "{from} + {ev:?}");
                allowed += got.is_some() as usize;
            }
        }
        assert_eq!(allowed, 15);
    }

    #[test]
    fn final_statuses_refuse_everything_and_say_to_register_again() {
        for from in [Errored, Exited] {
            for ev in EVENTS {
                let err = agent_transition(&id(), from, ev).unwrap_err();
                assert!(
                    err.to_string().ends_with("the agent must register again"),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn apply_records_ping_and_status_times() {
        let mut a = Agent {
            labels: Default::default(),
            id: id(),
            name: "a".into(),
            version: "0".into(),
            pool: None,
            organization: None,
            status: Idle,
            max_jobs: 1,
            ip_address: "127.0.0.1".into(),
            last_ping_at: Timestamp(0),
            last_status_at: Timestamp(0),
            token: None,
            registered_at: Timestamp(0),
            drained: false,
            single: false,
        };
        assert!(!a
            .apply(AgentEvent::Ping(ReportedStatus::Idle), Timestamp(10))
            .unwrap());
        assert_eq!(
            (a.last_ping_at, a.last_status_at),
            (Timestamp(10), Timestamp(0))
        );
        assert!(a.apply(AgentEvent::PingTimeout, Timestamp(50)).unwrap());
        assert_eq!(
            (a.status, a.last_ping_at, a.last_status_at),
            (Unknown, Timestamp(10), Timestamp(50))
        );
        assert!(a
            .apply(AgentEvent::Ping(ReportedStatus::Busy), Timestamp(60))
            .unwrap());
        assert_eq!(a.status, Busy);
    }
}
