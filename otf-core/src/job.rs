//! Jobs: one phase of one run, the unit a runner executes.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::enums::wire_enum;
use crate::ids::{AgentId, JobId, OrganizationName, PoolId, RunId, WorkspaceId};
use crate::secret::SecretHash;
use crate::transition::TransitionRefused;

wire_enum!(
    /// The phase a job executes.
    JobPhase, "job phase" {
        Plan => "plan",
        Apply => "apply",
    }
);

wire_enum!(
    /// A job's status.
    JobStatus, "job status" {
        Unallocated => "unallocated",
        Allocated => "allocated",
        Running => "running",
        Finished => "finished",
        Errored => "errored",
        Canceled => "canceled",
    }
);

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Errored | JobStatus::Canceled
        )
    }
}

wire_enum!(
    /// A signal for the runner of a job, stored with the job so that an agent
    /// that reconnects still receives it.
    Signal, "signal" {
        Cancel => "cancel",
        ForceCancel => "force-cancel",
    }
);

/// Everything that moves a job's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// The scheduler hands the job to an agent.
    Allocate(AgentId),
    /// The agent holding an allocated job was lost before starting it.
    Reallocate,
    /// The agent starts executing it.
    Start,
    /// The runner reports success.
    Finish,
    /// The runner reports failure, or the job is given up on.
    Error,
    /// Canceled by a user, or the runner stopped after a cancel signal.
    Cancel,
}

impl JobEvent {
    fn name(&self) -> &'static str {
        match self {
            JobEvent::Allocate(_) => "allocate",
            JobEvent::Reallocate => "re-allocate",
            JobEvent::Start => "start",
            JobEvent::Finish => "finish",
            JobEvent::Error => "error",
            JobEvent::Cancel => "cancel",
        }
    }
}

/// The one transition function of job statuses: exactly the transitions of
/// the design, nothing else.
pub fn job_transition(
    id: &JobId,
    from: JobStatus,
    event: &JobEvent,
) -> Result<JobStatus, TransitionRefused> {
    use JobStatus::*;
    let to = match (from, event) {
        (Unallocated, JobEvent::Allocate(_)) => Some(Allocated),
        (Unallocated, JobEvent::Cancel) => Some(Canceled),
        (Allocated, JobEvent::Start) => Some(Running),
        (Allocated, JobEvent::Cancel) => Some(Canceled),
        (Allocated, JobEvent::Reallocate) => Some(Unallocated),
        (Running, JobEvent::Finish) => Some(Finished),
        (Running, JobEvent::Error) => Some(Errored),
        (Running, JobEvent::Cancel) => Some(Canceled),
        _ => None,
    };
    to.ok_or_else(|| TransitionRefused {
        entity: "job",
        id: id.to_string(),
        from: from.as_str(),
        event: event.name(),
        hint: if from.is_final() {
            "; it is over and accepts nothing more"
        } else {
            ""
        },
    })
}

/// Retries of a plan whose agent was lost while running it.
pub const MAX_PLAN_RETRIES: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub run: RunId,
    pub phase: JobPhase,
    pub status: JobStatus,
    /// None: the server runner executes it.
    pub pool: Option<PoolId>,
    pub organization: OrganizationName,
    pub workspace: WorkspaceId,
    /// The agent it is allocated to or running on.
    pub agent: Option<AgentId>,
    /// 1 for the first attempt of this phase of this run; a retry is a new job
    /// with the next number. Together with the job id it fences job tokens.
    pub attempt: u32,
    /// Order of service within a pool (first come, first served); a job that is
    /// re-allocated keeps its place.
    pub queued_at: Timestamp,
    pub signal: Option<Signal>,
    /// Hash of the job token issued when the attempt started.
    pub token_hash: Option<SecretHash>,
    /// Why it errored (shown to users).
    pub error: Option<String>,
    /// When `status` last changed: for an allocated job its allocation, for
    /// a running one its start (signals and log counters leave it alone).
    pub updated_at: Timestamp,
    /// Bytes of its output dropped past the log limit ([`crate::log_limit`]).
    pub log_dropped: u64,
    /// The agent this job waits for: the single-execution agent that
    /// planned the run keeps its apply (while it is live).
    pub affinity: Option<AgentId>,
    /// The workspace's agent selector when the job was queued (kept in step
    /// while it waits): the agent's labels must include every pair. Empty
    /// for server runner jobs.
    pub selector: crate::labels::Labels,
}

impl Job {
    /// Back in the queue (re-allocated, or retried with its pool kept): an
    /// agent job follows its workspace's selector of now.
    pub fn follow_selector(&mut self, ws: &crate::workspace::Workspace) {
        self.selector = match self.pool {
            Some(_) => ws.agent_selector.clone(),
            None => Default::default(),
        };
    }

    /// Apply `event` at `now`.
    pub fn apply(&mut self, event: JobEvent, now: Timestamp) -> Result<(), TransitionRefused> {
        let to = job_transition(&self.id, self.status, &event)?;
        match event {
            JobEvent::Allocate(agent) => self.agent = Some(agent),
            JobEvent::Reallocate => self.agent = None,
            _ => {}
        }
        if to.is_final() {
            // The attempt is over: its token must never work again.
            self.token_hash = None;
        }
        self.status = to;
        self.updated_at = now;
        Ok(())
    }

    /// Store a signal for the runner. A force-cancel supersedes a cancel.
    pub fn signal(&mut self, signal: Signal) {
        if self.signal != Some(Signal::ForceCancel) {
            self.signal = Some(signal);
        }
    }
}

/// What happens to a job when the agent holding it is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostJobAction {
    /// Allocated, never started: give it to another agent.
    Reallocate,
    /// A running plan: error this attempt and queue attempt `next_attempt`.
    RetryPlan { next_attempt: u32, message: String },
    /// A running plan whose run was being canceled: the cancel carries over,
    /// the run ends canceled instead of planning again.
    Cancel { message: String },
    /// A running apply, or a plan out of retries: error the job and its run.
    Fail { message: String },
    /// Unallocated or final: nothing to do.
    Nothing,
}

/// Why a job's runner is considered lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossCause {
    /// The agent went silent. `gone`: it is errored, exited or deleted and
    /// will not come back; otherwise it is merely unknown, and only
    /// allocated jobs move.
    AgentLost { gone: bool },
    /// The live agent's pings no longer list the running job: the answer to
    /// its start, or its end report, was lost.
    Unreported,
}

/// The rule for a job whose runner is lost. `cancel_requested`: a user (or
/// a timeout) asked to cancel the job's run.
pub fn lost_job_action(
    job: &Job,
    agent_name: &str,
    cause: LossCause,
    cancel_requested: bool,
) -> LostJobAction {
    let (phase_ing, what) = match job.phase {
        JobPhase::Plan => ("planning", "plan"),
        JobPhase::Apply => ("applying", "apply"),
    };
    let lost = match cause {
        LossCause::AgentLost { .. } => format!("agent {agent_name} was lost while {phase_ing}"),
        LossCause::Unreported => format!(
            "agent {agent_name} no longer runs this {what} (the answer to its start or its end report was lost)"
        ),
    };
    let moves_running = match cause {
        LossCause::AgentLost { gone } => gone,
        LossCause::Unreported => true,
    };
    match job.status {
        JobStatus::Allocated => LostJobAction::Reallocate,
        JobStatus::Running if moves_running => match job.phase {
            JobPhase::Plan if cancel_requested || job.signal.is_some() => LostJobAction::Cancel {
                message: format!("{lost}; the run was being canceled, so it is not planned again"),
            },
            JobPhase::Plan if job.attempt <= MAX_PLAN_RETRIES => LostJobAction::RetryPlan {
                next_attempt: job.attempt + 1,
                message: format!(
                    "{lost} (attempt {}); planning again as attempt {} of {}",
                    job.attempt,
                    job.attempt + 1,
                    MAX_PLAN_RETRIES + 1
                ),
            },
            JobPhase::Plan => LostJobAction::Fail {
                message: format!(
                    "{lost} and the plan was already retried {MAX_PLAN_RETRIES} times; start a new run"
                ),
            },
            JobPhase::Apply => LostJobAction::Fail {
                message: format!(
                    "{lost}; the apply may have been partly done, check the workspace's resources and state before starting a new run"
                ),
            },
        },
        _ => LostJobAction::Nothing,
    }
}

/// Timers that bound how long a job may sit in one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobTimers {
    /// How long an allocated job waits for its agent to start it before it
    /// is allocated again.
    pub allocation_lease: Duration,
    /// How long a plan may run before it is canceled.
    pub plan_timeout: Duration,
    /// How long an apply may run before it is canceled.
    pub apply_timeout: Duration,
}

impl Default for JobTimers {
    fn default() -> Self {
        Self {
            allocation_lease: Duration::from_secs(30),
            plan_timeout: Duration::from_secs(2 * 3600),
            apply_timeout: Duration::from_secs(24 * 3600),
        }
    }
}

impl JobTimers {
    pub fn timeout(&self, phase: JobPhase) -> Duration {
        match phase {
            JobPhase::Plan => self.plan_timeout,
            JobPhase::Apply => self.apply_timeout,
        }
    }
}

/// What a job's timer decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deadline {
    /// Its agent did not start it within the allocation lease.
    Reallocate,
    /// It ran past its phase's timeout: cancel it as a user's cancel would.
    Cancel { message: String },
    /// It was canceled but still runs a cool-off after its timeout: end it
    /// as a force-cancel would (the runner kills terraform).
    ForceCancel { message: String },
}

/// The timer decisions for `jobs` at `now` (`updated_at` of an allocated or
/// running job is when it entered that status). Pure.
pub fn job_deadlines(
    jobs: &[Job],
    now: Timestamp,
    timers: &JobTimers,
    cool_off: Duration,
) -> Vec<(JobId, Deadline)> {
    jobs.iter()
        .filter_map(|j| {
            let held = now.since(j.updated_at);
            let decision = match j.status {
                JobStatus::Allocated if held >= timers.allocation_lease => Deadline::Reallocate,
                JobStatus::Running => {
                    let limit = timers.timeout(j.phase);
                    let flag = match j.phase {
                        JobPhase::Plan => "--plan-timeout",
                        JobPhase::Apply => "--apply-timeout",
                    };
                    let what = j.phase.as_str();
                    match j.signal {
                        None if held >= limit => Deadline::Cancel {
                            message: format!(
                                "the {what} ran longer than its timeout of {} (otfd {flag}); canceling it",
                                crate::duration::human(limit)
                            ),
                        },
                        Some(Signal::Cancel) if held >= limit.saturating_add(cool_off) => {
                            Deadline::ForceCancel {
                                message: format!(
                                    "the {what} ran past its timeout of {} (otfd {flag}) and did not stop within {} of being canceled; force-canceling it",
                                    crate::duration::human(limit),
                                    crate::duration::human(cool_off)
                                ),
                            }
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            };
            Some((j.id.clone(), decision))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::enums::assert_round_trip;
    use JobStatus::*;

    fn id() -> JobId {
        "job-0123456789abcdef".parse().unwrap()
    }

    fn agent() -> AgentId {
        "agent-0123456789abcdef".parse().unwrap()
    }

    fn events() -> Vec<JobEvent> {
        vec![
            JobEvent::Allocate(agent()),
            JobEvent::Reallocate,
            JobEvent::Start,
            JobEvent::Finish,
            JobEvent::Error,
            JobEvent::Cancel,
        ]
    }

    pub(crate) fn job(status: JobStatus, phase: JobPhase, attempt: u32) -> Job {
        Job {
            selector: Default::default(),
            id: id(),
            run: "run-0123456789abcdef".parse().unwrap(),
            phase,
            status,
            pool: None,
            organization: "acme".parse().unwrap(),
            workspace: "ws-0123456789abcdef".parse().unwrap(),
            agent: None,
            attempt,
            queued_at: Timestamp(0),
            signal: None,
            token_hash: None,
            error: None,
            updated_at: Timestamp(0),
            log_dropped: 0,
            affinity: None,
        }
    }

    #[test]
    fn wire_names() {
        assert_round_trip(JobStatus::ALL);
        assert_round_trip(JobPhase::ALL);
        assert_round_trip(Signal::ALL);
    }

    #[test]
    fn transition_table() {
        let allowed: &[(JobStatus, &str, JobStatus)] = &[
            (Unallocated, "allocate", Allocated),
            (Unallocated, "cancel", Canceled),
            (Allocated, "start", Running),
            (Allocated, "cancel", Canceled),
            (Allocated, "re-allocate", Unallocated),
            (Running, "finish", Finished),
            (Running, "error", Errored),
            (Running, "cancel", Canceled),
        ];
        let mut count = 0;
        for &from in JobStatus::ALL {
            for ev in events() {
                let want = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == ev.name())
                    .map(|t| t.2);
                assert_eq!(
                    job_transition(&id(), from, &ev).ok(),
                    want,
                    "{from} + {}",
                    ev.name()
                );
                count += want.is_some() as usize;
            }
        }
        assert_eq!(count, allowed.len());
    }

    #[test]
    fn final_jobs_accept_nothing_and_say_so() {
        for from in [Finished, Errored, Canceled] {
            for ev in events() {
                let err = job_transition(&id(), from, &ev).unwrap_err();
                assert!(err.to_string().contains("accepts nothing more"), "{err}");
            }
        }
    }

    #[test]
    fn allocation_records_agent_and_final_status_drops_token() {
        let mut j = job(Unallocated, JobPhase::Plan, 1);
        j.apply(JobEvent::Allocate(agent()), Timestamp(1)).unwrap();
        assert_eq!(j.agent, Some(agent()));
        j.apply(JobEvent::Reallocate, Timestamp(2)).unwrap();
        assert_eq!((j.status, j.agent.clone()), (Unallocated, None));
        j.apply(JobEvent::Allocate(agent()), Timestamp(3)).unwrap();
        j.apply(JobEvent::Start, Timestamp(4)).unwrap();
        j.token_hash = Some(SecretHash::of("t"));
        j.apply(JobEvent::Finish, Timestamp(5)).unwrap();
        assert_eq!(j.token_hash, None);
        assert_eq!(j.updated_at, Timestamp(5));
    }

    #[test]
    fn force_cancel_supersedes_cancel() {
        let mut j = job(Running, JobPhase::Plan, 1);
        j.signal(Signal::Cancel);
        j.signal(Signal::ForceCancel);
        j.signal(Signal::Cancel);
        assert_eq!(j.signal, Some(Signal::ForceCancel));
    }

    const GONE: LossCause = LossCause::AgentLost { gone: true };
    const UNKNOWN: LossCause = LossCause::AgentLost { gone: false };

    #[test]
    fn lost_job_rules() {
        assert_eq!(
            lost_job_action(&job(Allocated, JobPhase::Apply, 1), "a", UNKNOWN, false),
            LostJobAction::Reallocate
        );
        assert_eq!(
            lost_job_action(&job(Running, JobPhase::Plan, 1), "a", UNKNOWN, false),
            LostJobAction::Nothing
        );
        for cause in [GONE, LossCause::Unreported] {
            assert!(matches!(
                lost_job_action(&job(Running, JobPhase::Plan, 1), "a", cause, false),
                LostJobAction::RetryPlan {
                    next_attempt: 2,
                    ..
                }
            ));
        }
        assert!(matches!(
            lost_job_action(&job(Running, JobPhase::Plan, 2), "a", GONE, false),
            LostJobAction::RetryPlan {
                next_attempt: 3,
                ..
            }
        ));
        assert!(matches!(
            lost_job_action(&job(Running, JobPhase::Plan, 3), "a", GONE, false),
            LostJobAction::Fail { .. }
        ));
        match lost_job_action(&job(Running, JobPhase::Apply, 1), "agent-x", GONE, false) {
            LostJobAction::Fail { message } => assert!(message.contains("agent-x"), "{message}"),
            other => panic!("{other:?}"),
        }
        match lost_job_action(
            &job(Running, JobPhase::Apply, 1),
            "agent-x",
            LossCause::Unreported,
            false,
        ) {
            LostJobAction::Fail { message } => {
                assert!(message.contains("no longer runs this apply"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        for s in [Unallocated, Finished, Errored, Canceled] {
            assert_eq!(
                lost_job_action(&job(s, JobPhase::Plan, 1), "a", GONE, false),
                LostJobAction::Nothing
            );
        }
    }

    #[test]
    fn a_cancel_carries_over_instead_of_a_retry() {
        assert!(matches!(
            lost_job_action(&job(Running, JobPhase::Plan, 1), "a", GONE, true),
            LostJobAction::Cancel { .. }
        ));
        let mut signalled = job(Running, JobPhase::Plan, 1);
        signalled.signal(Signal::Cancel);
        assert!(matches!(
            lost_job_action(&signalled, "a", LossCause::Unreported, false),
            LostJobAction::Cancel { .. }
        ));
        // An apply is never silently canceled: it may have changed things.
        assert!(matches!(
            lost_job_action(&job(Running, JobPhase::Apply, 1), "a", GONE, true),
            LostJobAction::Fail { .. }
        ));
    }

    fn timers() -> JobTimers {
        JobTimers {
            allocation_lease: Duration::from_secs(30),
            plan_timeout: Duration::from_secs(100),
            apply_timeout: Duration::from_secs(200),
        }
    }

    fn at(status: JobStatus, phase: JobPhase, since_ms: i64) -> Job {
        let mut j = job(status, phase, 1);
        j.updated_at = Timestamp(since_ms);
        j
    }

    #[test]
    fn allocation_lease_and_phase_timeouts() {
        let cool = Duration::from_secs(10);
        let now = Timestamp(1_000_000);
        let decide = |j: Job| job_deadlines(&[j], now, &timers(), cool).pop().map(|d| d.1);
        // Allocated: inside and past the lease.
        assert_eq!(
            decide(at(Allocated, JobPhase::Plan, 1_000_000 - 29_999)),
            None
        );
        assert_eq!(
            decide(at(Allocated, JobPhase::Plan, 1_000_000 - 30_000)),
            Some(Deadline::Reallocate)
        );
        // Running plan: its own timeout, not the apply's.
        assert_eq!(
            decide(at(Running, JobPhase::Plan, 1_000_000 - 99_999)),
            None
        );
        match decide(at(Running, JobPhase::Plan, 1_000_000 - 100_000)) {
            Some(Deadline::Cancel { message }) => {
                assert!(message.contains("1m40s"), "{message}");
                assert!(message.contains("--plan-timeout"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(at(Running, JobPhase::Apply, 1_000_000 - 199_999)),
            None
        );
        assert!(matches!(
            decide(at(Running, JobPhase::Apply, 1_000_000 - 200_000)),
            Some(Deadline::Cancel { .. })
        ));
        // Canceled but still running: force-cancel after the cool-off.
        let mut canceled = at(Running, JobPhase::Plan, 1_000_000 - 105_000);
        canceled.signal(Signal::Cancel);
        assert_eq!(decide(canceled.clone()), None);
        canceled.updated_at = Timestamp(1_000_000 - 110_000);
        assert!(matches!(
            decide(canceled),
            Some(Deadline::ForceCancel { .. })
        ));
        // Nothing else has a deadline.
        for s in [Unallocated, Finished, Errored, Canceled] {
            assert_eq!(decide(at(s, JobPhase::Plan, 0)), None);
        }
    }
}
