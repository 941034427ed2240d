//! Runs and their TFE status machine, with the plan and apply phases.

use crate::clock::Timestamp;
use crate::enums::wire_enum;
use crate::ids::{ConfigVersionId, OrganizationName, RunId, WorkspaceId};
use crate::transition::TransitionRefused;
use crate::workspace::Workspace;

/// First byte of every phase log (STX), written when the phase starts.
pub const LOG_START: u8 = 0x02;
/// Last byte of a finished phase log (ETX), written when the phase ends: a
/// reader that sees it has the whole log.
pub const LOG_END: u8 = 0x03;

wire_enum!(
    /// A run's status; the wire spelling is TFE's.
    RunStatus, "run status" {
        Pending => "pending",
        PlanQueued => "plan_queued",
        Planning => "planning",
        Planned => "planned",
        Confirmed => "confirmed",
        ApplyQueued => "apply_queued",
        Applying => "applying",
        Applied => "applied",
        PlannedAndFinished => "planned_and_finished",
        Discarded => "discarded",
        Errored => "errored",
        Canceled => "canceled",
        ForceCanceled => "force_canceled",
    }
);

impl RunStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Applied
                | RunStatus::PlannedAndFinished
                | RunStatus::Discarded
                | RunStatus::Errored
                | RunStatus::Canceled
                | RunStatus::ForceCanceled
        )
    }
}

wire_enum!(
    /// Status of a plan or apply phase (TFE's `plans`/`applies` status).
    PhaseStatus, "phase status" {
        Pending => "pending",
        Queued => "queued",
        Running => "running",
        Finished => "finished",
        Errored => "errored",
        Canceled => "canceled",
        Unreachable => "unreachable",
    }
);

impl PhaseStatus {
    /// Terminal for a log reader.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PhaseStatus::Finished
                | PhaseStatus::Errored
                | PhaseStatus::Canceled
                | PhaseStatus::Unreachable
        )
    }
}

/// Resource changes counted by a plan or done by an apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceCounts {
    pub additions: u32,
    pub changes: u32,
    pub destructions: u32,
}

impl ResourceCounts {
    pub fn is_empty(&self) -> bool {
        self.additions == 0 && self.changes == 0 && self.destructions == 0
    }
}

/// One phase (plan or apply) of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub status: PhaseStatus,
    pub counts: ResourceCounts,
    pub status_timestamps: Vec<(PhaseStatus, Timestamp)>,
}

impl Phase {
    fn new(now: Timestamp) -> Self {
        Self {
            status: PhaseStatus::Pending,
            counts: ResourceCounts::default(),
            status_timestamps: vec![(PhaseStatus::Pending, now)],
        }
    }

    fn set(&mut self, status: PhaseStatus, now: Timestamp) {
        if self.status != status {
            self.status = status;
            self.status_timestamps.push((status, now));
        }
    }
}

/// How a run was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunOptions {
    pub is_destroy: bool,
    /// TFE's default is true; callers pass what the client sent.
    pub refresh: bool,
    pub refresh_only: bool,
    /// Speculative: plan only, never applied, does not queue.
    pub plan_only: bool,
    /// None: the workspace's setting.
    pub auto_apply: Option<bool>,
    pub message: String,
    pub target_addrs: Vec<String>,
    pub replace_addrs: Vec<String>,
}

/// Everything that moves a run's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// The run becomes the workspace's active run (or is speculative): its
    /// plan job is created.
    Enqueue,
    /// A runner started the plan.
    PlanStarted,
    /// The plan's runner was lost; a new attempt is queued.
    PlanRequeued,
    PlanFinished {
        counts: ResourceCounts,
        has_changes: bool,
    },
    /// A user (or auto-apply) confirmed the plan.
    Confirm,
    /// The apply job was created.
    ApplyQueued,
    ApplyStarted,
    ApplyFinished {
        counts: ResourceCounts,
    },
    /// The active phase failed.
    Error {
        message: String,
    },
    Discard,
    /// A user asked to cancel. Queued runs stop at once; running ones get a
    /// signal and stay as they are until the runner stops.
    Cancel,
    /// The runner stopped after a cancel signal.
    CancelCompleted,
    /// Stop at once, whatever the runner does.
    ForceCancel,
}

impl RunEvent {
    fn name(&self) -> &'static str {
        match self {
            RunEvent::Enqueue => "enqueue",
            RunEvent::PlanStarted => "start planning",
            RunEvent::PlanRequeued => "queue the plan again for",
            RunEvent::PlanFinished { .. } => "finish the plan of",
            RunEvent::Confirm => "confirm",
            RunEvent::ApplyQueued => "queue the apply of",
            RunEvent::ApplyStarted => "start applying",
            RunEvent::ApplyFinished { .. } => "finish the apply of",
            RunEvent::Error { .. } => "error",
            RunEvent::Discard => "discard",
            RunEvent::Cancel => "cancel",
            RunEvent::CancelCompleted => "complete the cancelation of",
            RunEvent::ForceCancel => "force-cancel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub workspace: WorkspaceId,
    pub organization: OrganizationName,
    pub configuration_version: ConfigVersionId,
    pub status: RunStatus,
    pub options: RunOptions,
    /// The effective auto-apply (the run's option or the workspace's).
    pub auto_apply: bool,
    pub terraform_version: String,
    pub has_changes: bool,
    pub plan: Phase,
    pub apply: Phase,
    pub created_at: Timestamp,
    pub status_timestamps: Vec<(RunStatus, Timestamp)>,
    /// When a user asked to cancel; force-cancel is possible only after it.
    pub cancel_requested_at: Option<Timestamp>,
    /// Why the run errored, for people.
    pub error: Option<String>,
}

impl Run {
    /// A new `pending` run of `workspace`.
    pub fn new(
        id: RunId,
        workspace: &Workspace,
        configuration_version: ConfigVersionId,
        options: RunOptions,
        now: Timestamp,
    ) -> Self {
        let auto_apply = options.auto_apply.unwrap_or(workspace.auto_apply);
        Run {
            id,
            workspace: workspace.id.clone(),
            organization: workspace.organization.clone(),
            configuration_version,
            status: RunStatus::Pending,
            auto_apply: !options.plan_only && auto_apply,
            options,
            terraform_version: workspace.terraform_version.clone(),
            has_changes: false,
            plan: Phase::new(now),
            apply: Phase::new(now),
            created_at: now,
            status_timestamps: vec![(RunStatus::Pending, now)],
            cancel_requested_at: None,
            error: None,
        }
    }

    pub fn is_speculative(&self) -> bool {
        self.options.plan_only
    }

    /// When the run entered `status` (the latest time, if several).
    pub fn timestamp(&self, status: RunStatus) -> Option<Timestamp> {
        self.status_timestamps
            .iter()
            .rev()
            .find(|(s, _)| *s == status)
            .map(|(_, t)| *t)
    }

    /// TFE's `is-cancelable`.
    pub fn is_cancelable(&self) -> bool {
        use RunStatus::*;
        matches!(self.status, Pending | PlanQueued | Confirmed | ApplyQueued)
            || (matches!(self.status, Planning | Applying) && self.cancel_requested_at.is_none())
    }

    /// TFE's `is-confirmable`.
    pub fn is_confirmable(&self) -> bool {
        self.status == RunStatus::Planned
    }

    /// TFE's `is-discardable`.
    pub fn is_discardable(&self) -> bool {
        matches!(self.status, RunStatus::Pending | RunStatus::Planned)
    }

    /// When force-cancel becomes available (None: not yet asked to cancel).
    pub fn force_cancel_available_at(&self, cool_off: std::time::Duration) -> Option<Timestamp> {
        if self.status.is_final() {
            return None;
        }
        self.cancel_requested_at.map(|t| t.plus(cool_off))
    }

    /// TFE's `is-force-cancelable`.
    pub fn is_force_cancelable(&self, now: Timestamp, cool_off: std::time::Duration) -> bool {
        self.force_cancel_available_at(cool_off)
            .is_some_and(|t| now >= t)
    }

    fn refuse(&self, event: &RunEvent, hint: &'static str) -> TransitionRefused {
        TransitionRefused {
            entity: "run",
            id: self.id.to_string(),
            from: self.status.as_str(),
            event: event.name(),
            hint,
        }
    }

    fn set(&mut self, status: RunStatus, now: Timestamp) {
        self.status = status;
        self.status_timestamps.push((status, now));
    }

    /// The active phase (what a runner would be working on now).
    fn active_phase(&mut self) -> &mut Phase {
        use RunStatus::*;
        match self.status {
            Confirmed | ApplyQueued | Applying => &mut self.apply,
            _ => &mut self.plan,
        }
    }

    /// The one transition function of runs. `cool_off` is how long after a
    /// cancel request force-cancel becomes available.
    pub fn apply_event(
        &mut self,
        event: RunEvent,
        now: Timestamp,
        cool_off: std::time::Duration,
    ) -> Result<(), TransitionRefused> {
        use RunStatus::*;
        let s = self.status;
        match (&event, s) {
            (RunEvent::Enqueue, Pending) => {
                self.set(PlanQueued, now);
                self.plan.set(PhaseStatus::Queued, now);
            }
            (RunEvent::PlanStarted, PlanQueued) => {
                self.set(Planning, now);
                self.plan.set(PhaseStatus::Running, now);
            }
            (RunEvent::PlanRequeued, Planning) => {
                self.set(PlanQueued, now);
                self.plan.set(PhaseStatus::Queued, now);
            }
            (
                RunEvent::PlanFinished {
                    counts,
                    has_changes,
                },
                Planning,
            ) => {
                self.plan.counts = *counts;
                self.plan.set(PhaseStatus::Finished, now);
                self.has_changes = *has_changes;
                if *has_changes && !self.options.plan_only {
                    self.set(Planned, now);
                } else {
                    self.set(PlannedAndFinished, now);
                    self.apply.set(PhaseStatus::Unreachable, now);
                }
            }
            (RunEvent::Confirm, Planned) => self.set(Confirmed, now),
            (RunEvent::ApplyQueued, Confirmed) => {
                self.set(ApplyQueued, now);
                self.apply.set(PhaseStatus::Queued, now);
            }
            (RunEvent::ApplyStarted, ApplyQueued) => {
                self.set(Applying, now);
                self.apply.set(PhaseStatus::Running, now);
            }
            (RunEvent::ApplyFinished { counts }, Applying) => {
                self.apply.counts = *counts;
                self.apply.set(PhaseStatus::Finished, now);
                self.set(Applied, now);
            }
            (
                RunEvent::Error { message },
                PlanQueued | Planning | Confirmed | ApplyQueued | Applying,
            ) => {
                let is_apply = matches!(s, Confirmed | ApplyQueued | Applying);
                self.active_phase().set(PhaseStatus::Errored, now);
                if !is_apply {
                    self.apply.set(PhaseStatus::Unreachable, now);
                }
                self.error = Some(message.clone());
                self.set(Errored, now);
            }
            (RunEvent::Discard, Pending | Planned) => {
                if s == Pending {
                    self.plan.set(PhaseStatus::Unreachable, now);
                }
                self.apply.set(PhaseStatus::Unreachable, now);
                self.set(Discarded, now);
            }
            (RunEvent::Cancel, Pending | PlanQueued | Confirmed | ApplyQueued) => {
                self.cancel_requested_at = Some(now);
                let is_apply = matches!(s, Confirmed | ApplyQueued);
                self.active_phase().set(PhaseStatus::Canceled, now);
                if !is_apply {
                    self.apply.set(PhaseStatus::Unreachable, now);
                }
                self.set(Canceled, now);
            }
            (RunEvent::Cancel, Planning | Applying) if self.cancel_requested_at.is_none() => {
                // Signal only: the runner interrupts terraform and reports back.
                self.cancel_requested_at = Some(now);
            }
            (RunEvent::Cancel, Planning | Applying) => {
                return Err(self.refuse(
                    &event,
                    "; a cancel was already requested, force-cancel it if it does not stop",
                ))
            }
            (RunEvent::Cancel, Planned) => return Err(self.refuse(&event, "; discard it instead")),
            (RunEvent::CancelCompleted, Planning | Applying) => {
                let is_apply = s == Applying;
                self.active_phase().set(PhaseStatus::Canceled, now);
                if !is_apply {
                    self.apply.set(PhaseStatus::Unreachable, now);
                }
                self.set(Canceled, now);
            }
            (RunEvent::ForceCancel, _) if !s.is_final() => {
                if !self.is_force_cancelable(now, cool_off) {
                    return Err(self.refuse(
                        &event,
                        "; force-cancel is available only some time after a cancel was requested",
                    ));
                }
                let is_apply = matches!(s, Confirmed | ApplyQueued | Applying);
                self.active_phase().set(PhaseStatus::Canceled, now);
                if !is_apply {
                    self.apply.set(PhaseStatus::Unreachable, now);
                }
                self.set(ForceCanceled, now);
            }
            _ => {
                let hint = if s.is_final() {
                    "; it is over, start a new run"
                } else {
                    ""
                };
                return Err(self.refuse(&event, hint));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
