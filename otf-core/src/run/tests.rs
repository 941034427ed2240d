use std::time::Duration;

use super::*;
use crate::enums::assert_round_trip;
use crate::workspace::ExecutionMode;
use RunStatus::*;

const COOL_OFF: Duration = Duration::from_secs(10);

fn workspace() -> Workspace {
    Workspace {
        agent_selector: Default::default(),
        id: "ws-0123456789abcdef".parse().unwrap(),
        organization: "acme".parse().unwrap(),
        name: "dev".into(),
        execution_mode: ExecutionMode::Remote,
        auto_apply: false,
        terraform_version: "1.0.3".into(),
        working_directory: String::new(),
        lock: None,
        current_run: None,
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
    }
}

fn run_in(status: RunStatus) -> Run {
    let mut r = Run::new(
        "run-0123456789abcdef".parse().unwrap(),
        &workspace(),
        "cv-0123456789abcdef".parse().unwrap(),
        RunOptions {
            refresh: true,
            ..RunOptions::default()
        },
        Timestamp(0),
    );
    r.status = status;
    r
}

fn events() -> Vec<RunEvent> {
    let counts = ResourceCounts {
        additions: 1,
        changes: 0,
        destructions: 0,
    };
    vec![
        RunEvent::Enqueue,
        RunEvent::PlanStarted,
        RunEvent::PlanRequeued,
        RunEvent::PlanFinished {
            counts,
            has_changes: true,
        },
        RunEvent::Confirm,
        RunEvent::ApplyQueued,
        RunEvent::ApplyStarted,
        RunEvent::ApplyFinished { counts },
        RunEvent::Error {
            message: "boom".into(),
        },
        RunEvent::Discard,
        RunEvent::Cancel,
        RunEvent::CancelCompleted,
        RunEvent::ForceCancel,
    ]
}

/// Every (status, event) pair for a run with no cancel request: the allowed
/// ones and where they lead; every other pair is refused and changes nothing.
#[test]
fn transition_table_without_cancel_request() {
    let allowed: &[(RunStatus, &str, RunStatus)] = &[
        (Pending, "enqueue", PlanQueued),
        (PlanQueued, "start planning", Planning),
        (Planning, "queue the plan again for", PlanQueued),
        (Planning, "finish the plan of", Planned),
        (Planned, "confirm", Confirmed),
        (Confirmed, "queue the apply of", ApplyQueued),
        (ApplyQueued, "start applying", Applying),
        (Applying, "finish the apply of", Applied),
        (PlanQueued, "error", Errored),
        (Planning, "error", Errored),
        (Confirmed, "error", Errored),
        (ApplyQueued, "error", Errored),
        (Applying, "error", Errored),
        (Pending, "discard", Discarded),
        (Planned, "discard", Discarded),
        (Pending, "cancel", Canceled),
        (PlanQueued, "cancel", Canceled),
        (Confirmed, "cancel", Canceled),
        (ApplyQueued, "cancel", Canceled),
        // A running phase only records the request.
        (Planning, "cancel", Planning),
        (Applying, "cancel", Applying),
        (Planning, "complete the cancelation of", Canceled),
        (Applying, "complete the cancelation of", Canceled),
    ];
    let mut count = 0;
    for &from in RunStatus::ALL {
        for ev in events() {
            let mut r = run_in(from);
            let before = r.clone();
            let name = ev.name();
            let res = r.apply_event(ev, Timestamp(100), COOL_OFF);
            let want = allowed
                .iter()
                .find(|(f, e, _)| *f == from && *e == name)
                .map(|t| t.2);
            match want {
                Some(to) => {
                    assert!(res.is_ok(), "{from} + {name}: {res:?}");
                    assert_eq!(r.status, to, "{from} + {name}");
                    count += 1;
                }
                None => {
                    assert!(res.is_err(), "{from} + {name} should be refused");
                    assert_eq!(r, before, "a refused event changes nothing");
                }
            }
        }
    }
    assert_eq!(count, allowed.len());
}

#[test]
fn wire_names() {
    assert_round_trip(RunStatus::ALL);
    assert_round_trip(PhaseStatus::ALL);
}

#[test]
fn happy_path_with_changes() {
    let mut r = run_in(Pending);
    let c = ResourceCounts {
        additions: 2,
        changes: 1,
        destructions: 0,
    };
    for ev in [
        RunEvent::Enqueue,
        RunEvent::PlanStarted,
        RunEvent::PlanFinished {
            counts: c,
            has_changes: true,
        },
    ] {
        r.apply_event(ev, Timestamp(1), COOL_OFF).unwrap();
    }
    assert_eq!(r.status, Planned);
    assert!(r.is_confirmable() && r.is_discardable() && r.has_changes);
    assert_eq!((r.plan.status, r.plan.counts), (PhaseStatus::Finished, c));
    for ev in [
        RunEvent::Confirm,
        RunEvent::ApplyQueued,
        RunEvent::ApplyStarted,
        RunEvent::ApplyFinished { counts: c },
    ] {
        r.apply_event(ev, Timestamp(2), COOL_OFF).unwrap();
    }
    assert_eq!(
        (r.status, r.apply.status, r.apply.counts),
        (Applied, PhaseStatus::Finished, c)
    );
    assert!(r.timestamp(Confirmed).is_some());
    assert!(r
        .apply_event(RunEvent::Cancel, Timestamp(3), COOL_OFF)
        .unwrap_err()
        .to_string()
        .contains("start a new run"));
}

#[test]
fn no_changes_or_speculative_ends_planned_and_finished() {
    let mut r = run_in(Planning);
    r.apply_event(
        RunEvent::PlanFinished {
            counts: ResourceCounts::default(),
            has_changes: false,
        },
        Timestamp(1),
        COOL_OFF,
    )
    .unwrap();
    assert_eq!(
        (r.status, r.apply.status),
        (PlannedAndFinished, PhaseStatus::Unreachable)
    );

    let mut r = run_in(Planning);
    r.options.plan_only = true;
    r.apply_event(
        RunEvent::PlanFinished {
            counts: ResourceCounts {
                additions: 1,
                ..Default::default()
            },
            has_changes: true,
        },
        Timestamp(1),
        COOL_OFF,
    )
    .unwrap();
    assert_eq!(r.status, PlannedAndFinished);
    assert!(r.has_changes);
}

#[test]
fn speculative_runs_never_auto_apply() {
    let mut ws = workspace();
    ws.auto_apply = true;
    let opts = RunOptions {
        plan_only: true,
        ..Default::default()
    };
    let r = Run::new(
        "run-0123456789abcdef".parse().unwrap(),
        &ws,
        "cv-0123456789abcdef".parse().unwrap(),
        opts,
        Timestamp(0),
    );
    assert!(!r.auto_apply);
    let r = Run::new(
        "run-0123456789abcdef".parse().unwrap(),
        &ws,
        "cv-0123456789abcdef".parse().unwrap(),
        RunOptions::default(),
        Timestamp(0),
    );
    assert!(r.auto_apply);
}

#[test]
fn cancel_of_a_running_phase_signals_then_completes() {
    let mut r = run_in(Planning);
    assert!(r.is_cancelable());
    r.apply_event(RunEvent::Cancel, Timestamp(5), COOL_OFF)
        .unwrap();
    assert_eq!(
        (r.status, r.cancel_requested_at),
        (Planning, Some(Timestamp(5)))
    );
    assert!(!r.is_cancelable());
    let err = r
        .apply_event(RunEvent::Cancel, Timestamp(6), COOL_OFF)
        .unwrap_err();
    assert!(err.to_string().contains("force-cancel"), "{err}");
    r.apply_event(RunEvent::CancelCompleted, Timestamp(7), COOL_OFF)
        .unwrap();
    assert_eq!(
        (r.status, r.plan.status, r.apply.status),
        (Canceled, PhaseStatus::Canceled, PhaseStatus::Unreachable)
    );
}

#[test]
fn force_cancel_needs_a_cancel_request_and_the_cool_off() {
    let mut r = run_in(Applying);
    let err = r
        .apply_event(RunEvent::ForceCancel, Timestamp(1), COOL_OFF)
        .unwrap_err();
    assert!(
        err.to_string().contains("after a cancel was requested"),
        "{err}"
    );
    r.apply_event(RunEvent::Cancel, Timestamp(1_000), COOL_OFF)
        .unwrap();
    assert!(!r.is_force_cancelable(Timestamp(10_999), COOL_OFF));
    assert!(r
        .apply_event(RunEvent::ForceCancel, Timestamp(10_999), COOL_OFF)
        .is_err());
    assert!(r.is_force_cancelable(Timestamp(11_000), COOL_OFF));
    r.apply_event(RunEvent::ForceCancel, Timestamp(11_000), COOL_OFF)
        .unwrap();
    assert_eq!(
        (r.status, r.apply.status),
        (ForceCanceled, PhaseStatus::Canceled)
    );
    assert_eq!(r.force_cancel_available_at(COOL_OFF), None);
}

#[test]
fn errors_keep_their_message_and_mark_the_active_phase() {
    let mut r = run_in(Applying);
    r.apply_event(
        RunEvent::Error {
            message: "agent x lost".into(),
        },
        Timestamp(1),
        COOL_OFF,
    )
    .unwrap();
    assert_eq!(
        (r.status, r.apply.status, r.error.as_deref()),
        (Errored, PhaseStatus::Errored, Some("agent x lost"))
    );
    let mut r = run_in(Planning);
    r.apply_event(
        RunEvent::Error {
            message: "bad".into(),
        },
        Timestamp(1),
        COOL_OFF,
    )
    .unwrap();
    assert_eq!(
        (r.plan.status, r.apply.status),
        (PhaseStatus::Errored, PhaseStatus::Unreachable)
    );
}
