//! Run lifecycle through the services: the workspace queue, auto-apply,
//! no-change plans, speculative runs, cancel and force-cancel, signals.

mod common;

use std::time::Duration;

use common::{changes, World};
use otf_core::auth::Subject;
use otf_core::job::{JobStatus, Signal};
use otf_core::run::{PhaseStatus, RunOptions, RunStatus};
use otf_core::services::{JobOutcome, WorkspaceUpdate};
use otf_core::workspace::ExecutionMode;
use otf_core::Error;

const SERVER: Subject = Subject::ServerRunner;

#[tokio::test]
async fn one_active_run_per_workspace_and_the_queue_moves_on_in_order() {
    let mut w = World::new(10).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let server = w.register(&SERVER, "server", 5).await;
    let first = w.run(&ws).await;
    let second = w.run(&ws).await;
    let third = w.run(&ws).await;
    assert_eq!(first.status, RunStatus::PlanQueued);
    assert_eq!(
        (second.status, third.status),
        (RunStatus::Pending, RunStatus::Pending)
    );
    // A speculative run does not queue behind them.
    let spec = w
        .run_with(
            &ws,
            RunOptions {
                plan_only: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(spec.status, RunStatus::PlanQueued);

    let jobs = w.allocated(&SERVER, &server).await;
    assert_eq!(jobs.len(), 2, "the active run and the speculative one");
    let mut tokens = Vec::new();
    for j in &jobs {
        let s = w.core.start_job(&SERVER, &server.id, &j.id).await.unwrap();
        tokens.push((
            s.run.id.clone(),
            w.core.authenticate(s.token.expose()).await.unwrap(),
        ));
    }
    w.settle().await;
    for (run, token) in &tokens {
        let after = w.finish(token, changes(1)).await;
        if *run == spec.id {
            assert_eq!(
                after.status,
                RunStatus::PlannedAndFinished,
                "speculative runs never apply"
            );
        } else {
            assert_eq!(after.status, RunStatus::Planned);
        }
    }
    assert_eq!(
        w.status(&second).await,
        RunStatus::Pending,
        "planned still holds the workspace"
    );
    w.core.discard_run(&w.site, &first.id).await.unwrap();
    w.settle().await;
    assert_eq!(w.status(&first).await, RunStatus::Discarded);
    assert_eq!(
        w.status(&second).await,
        RunStatus::PlanQueued,
        "the next one in order starts"
    );
    assert_eq!(w.status(&third).await, RunStatus::Pending);
    // Discarding a pending run takes it out of the queue.
    w.core.discard_run(&w.site, &third.id).await.unwrap();
    let (_, token) = w.start(&SERVER, &server).await;
    let after = w.finish(&token, changes(0)).await;
    assert_eq!(
        after.status,
        RunStatus::PlannedAndFinished,
        "no changes: nothing to apply"
    );
    assert_eq!(after.apply.status, PhaseStatus::Unreachable);
    let ws = w.core.get_workspace(&w.site, &ws.id).await.unwrap();
    assert_eq!(ws.lock, None);
    assert_eq!(w.status(&third).await, RunStatus::Discarded);
}

#[tokio::test]
async fn auto_apply_goes_straight_to_the_apply() {
    let mut w = World::new(11).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    w.core
        .update_workspace(
            &w.site,
            &ws.id,
            WorkspaceUpdate {
                auto_apply: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let server = w.register(&SERVER, "server", 1).await;
    let run = w.run(&ws).await;
    assert!(run.auto_apply);
    let (_, plan) = w.start(&SERVER, &server).await;
    let after = w.finish(&plan, changes(2)).await;
    assert_eq!(after.status, RunStatus::ApplyQueued);
    assert!(after.timestamp(RunStatus::Confirmed).is_some());
    let (_, apply) = w.start(&SERVER, &server).await;
    assert_eq!(
        w.finish(&apply, changes(2)).await.status,
        RunStatus::Applied
    );
}

#[tokio::test]
async fn plan_errors_end_the_run_and_free_the_workspace() {
    let mut w = World::new(12).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let server = w.register(&SERVER, "server", 1).await;
    let run = w.run(&ws).await;
    let next = w.run(&ws).await;
    let (_, plan) = w.start(&SERVER, &server).await;
    let after = w
        .finish(
            &plan,
            JobOutcome::Errored {
                message: "Error: Unsupported argument".into(),
            },
        )
        .await;
    assert_eq!(
        (after.status, after.plan.status),
        (RunStatus::Errored, PhaseStatus::Errored)
    );
    assert_eq!(after.error.as_deref(), Some("Error: Unsupported argument"));
    assert_eq!(w.status(&next).await, RunStatus::PlanQueued);
    assert_eq!(w.status(&run).await, RunStatus::Errored);
}

#[tokio::test]
async fn cancel_signals_the_runner_and_survives_a_reconnect() {
    let mut w = World::new(13).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let server = w.register(&SERVER, "server", 1).await;
    let run = w.run(&ws).await;
    let (started, token) = w.start(&SERVER, &server).await;
    // Nobody listens when the cancel is sent...
    let canceled = w.core.cancel_run(&w.site, &run.id).await.unwrap();
    assert_eq!(
        canceled.status,
        RunStatus::Planning,
        "a running plan is only signalled"
    );
    assert!(!canceled.is_cancelable());
    // ...and the agent that (re)connects still receives it.
    let signal = w
        .core
        .await_signal(&SERVER, &server.id, &started.job.id)
        .await
        .unwrap();
    assert_eq!(signal, Some(Signal::Cancel));
    let after = w.finish(&token, JobOutcome::Canceled).await;
    assert_eq!(
        (after.status, after.plan.status),
        (RunStatus::Canceled, PhaseStatus::Canceled)
    );
    let ws = w.core.get_workspace(&w.site, &ws.id).await.unwrap();
    assert_eq!(ws.lock, None);
}

#[tokio::test]
async fn a_waiting_listener_is_woken_by_the_cancel() {
    let mut w = World::new(14).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let server = w.register(&SERVER, "server", 1).await;
    let run = w.run(&ws).await;
    let (started, _) = w.start(&SERVER, &server).await;
    let core = w.core.clone();
    let (agent, job) = (server.id.to_string(), started.job.id.to_string());
    let waiter = tokio::spawn(async move {
        core.await_signal(
            &SERVER,
            &agent.parse::<otf_core::ids::AgentId>().unwrap(),
            &job.parse::<otf_core::ids::JobId>().unwrap(),
        )
        .await
    });
    tokio::task::yield_now().await;
    w.core.cancel_run(&w.site, &run.id).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Some(Signal::Cancel));
}

#[tokio::test]
async fn queued_runs_cancel_at_once_and_their_jobs_with_them() {
    let mut w = World::new(15).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    // No runner: the plan job stays unallocated.
    let run = w.run(&ws).await;
    let after = w.core.cancel_run(&w.site, &run.id).await.unwrap();
    assert_eq!(after.status, RunStatus::Canceled);
    let jobs = w.core.run_jobs(&w.site, &run.id).await.unwrap();
    assert_eq!(jobs[0].status, JobStatus::Canceled);
    let err = w.core.cancel_run(&w.site, &run.id).await.unwrap_err();
    assert!(err.to_string().contains("start a new run"), "{err}");
}

#[tokio::test]
async fn force_cancel_needs_a_cancel_first_then_ends_everything_at_once() {
    let mut w = World::new(16).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let server = w.register(&SERVER, "server", 1).await;
    let run = w.run(&ws).await;
    let next = w.run(&ws).await;
    let (started, token) = w.start(&SERVER, &server).await;
    let err = w.core.force_cancel_run(&w.site, &run.id).await.unwrap_err();
    assert!(matches!(err, Error::Transition(_)), "{err}");
    w.core.cancel_run(&w.site, &run.id).await.unwrap();
    w.clock.advance(Duration::from_secs(5));
    assert!(
        w.core.force_cancel_run(&w.site, &run.id).await.is_err(),
        "cool-off not over"
    );
    w.clock.advance(Duration::from_secs(5));
    let after = w.core.force_cancel_run(&w.site, &run.id).await.unwrap();
    w.settle().await;
    assert_eq!(after.status, RunStatus::ForceCanceled);
    let signal = w
        .core
        .await_signal(&SERVER, &server.id, &started.job.id)
        .await
        .unwrap();
    assert_eq!(signal, Some(Signal::ForceCancel));
    // The job token died with the job; the next run goes on.
    assert!(matches!(
        w.core.finish_job(&token, JobOutcome::Canceled).await,
        Err(Error::Unauthorized)
    ));
    assert!(matches!(
        w.core.authenticate(started.token.expose()).await,
        Err(Error::Unauthorized)
    ));
    assert_eq!(w.status(&next).await, RunStatus::PlanQueued);
}

#[tokio::test]
async fn job_tokens_are_phase_limited_and_scoped_to_their_run() {
    use otf_core::artifacts::ArtifactKind;
    let mut w = World::new(17).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let other = w.workspace("acme", "other", ExecutionMode::Remote).await;
    let server = w.register(&SERVER, "server", 2).await;
    w.run(&ws).await;
    let (_, plan) = w.start(&SERVER, &server).await;
    w.core
        .upload_artifact(&plan, ArtifactKind::Plan, b"plan")
        .await
        .unwrap();
    assert_eq!(
        w.core.job_config(&plan).await.unwrap(),
        common::config_tarball()
    );
    let err = w
        .core
        .job_create_state_version(&plan, 1, "l", b"{}")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Forbidden("only an apply job may create a state version")
        ),
        "{err}"
    );
    assert!(w.core.job_current_state(&plan).await.unwrap().is_none());
    // A job token is not an API token.
    let err = w.core.get_workspace(&plan, &other.id).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = w.core.get_workspace(&plan, &ws.id).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let after = w.finish(&plan, changes(1)).await;
    w.core.confirm_run(&w.site, &after.id).await.unwrap();
    w.settle().await;
    let (_, apply) = w.start(&SERVER, &server).await;
    assert_eq!(
        w.core
            .download_artifact(&apply, ArtifactKind::Plan)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"plan"[..])
    );
    assert!(matches!(
        w.core
            .upload_artifact(&apply, ArtifactKind::Plan, b"x")
            .await,
        Err(Error::Forbidden(_))
    ));
    let sv = w
        .core
        .job_create_state_version(&apply, 1, "lineage", b"{\"serial\":1}")
        .await
        .unwrap();
    assert_eq!(sv.md5.len(), 32);
    let (current, bytes) = w.core.job_current_state(&apply).await.unwrap().unwrap();
    assert_eq!((current.id, bytes), (sv.id, b"{\"serial\":1}".to_vec()));
}

#[tokio::test]
async fn phase_logs_start_with_stx_and_end_with_etx_when_the_phase_ends() {
    use otf_core::job::JobPhase;
    let mut w = World::new(18).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let server = w.register(&SERVER, "server", 1).await;
    let run = w.run(&ws).await;
    let log = |w: &World, phase| {
        let core = w.core.clone();
        let site = w.site.clone();
        let id = run.id.to_string();
        async move {
            core.read_log(
                &site,
                &id.parse::<otf_core::ids::RunId>().unwrap(),
                phase,
                0,
                1 << 20,
            )
            .await
            .unwrap()
        }
    };
    assert!(
        log(&w, JobPhase::Plan).await.is_empty(),
        "nothing before the phase starts"
    );
    let (_, token) = w.start(&SERVER, &server).await;
    assert_eq!(log(&w, JobPhase::Plan).await, vec![0x02]);
    w.core
        .append_job_log(&token, b"Plan: 1 to add\n")
        .await
        .unwrap();
    w.finish(&token, changes(1)).await;
    assert_eq!(
        log(&w, JobPhase::Plan).await,
        b"\x02Plan: 1 to add\n\x03".to_vec()
    );
    // A run discarded before its apply never opens the apply log.
    w.core.discard_run(&w.site, &run.id).await.unwrap();
    assert!(log(&w, JobPhase::Apply).await.is_empty());
}

#[tokio::test]
async fn bad_archives_are_refused_and_change_nothing() {
    let w = World::new(19).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let cv = w
        .core
        .create_configuration_version(&w.site, &ws.id, otf_core::services::ConfigSpec::default())
        .await
        .unwrap();
    let err = w
        .core
        .upload_configuration(&w.site, &cv.id, b"not a tarball")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tarball(_)), "{err}");
    let after = w
        .core
        .get_configuration_version(&w.site, &cv.id)
        .await
        .unwrap();
    assert_eq!(after.status, otf_core::artifacts::ConfigStatus::Pending);
    w.core
        .upload_configuration(&w.site, &cv.id, &common::config_tarball())
        .await
        .unwrap();
}

#[tokio::test]
async fn routed_wakeups_reach_long_polls_for_jobs_and_signals() {
    let mut w = World::new(21).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let server = w.register(&SERVER, "server", 1).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let core = w.core.clone();
    let router = tokio::spawn(async move {
        core.route_wakeups(async {
            let _ = stopped.await;
        })
        .await
    });
    while !w.core.wakeups_routed() {
        tokio::task::yield_now().await;
    }
    let (core, agent) = (w.core.clone(), server.id.to_string());
    let poll = tokio::spawn(async move {
        core.await_allocated_jobs(&SERVER, &agent.parse::<otf_core::ids::AgentId>().unwrap())
            .await
    });
    tokio::task::yield_now().await;
    let run = w.run(&ws).await;
    let jobs = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let started = w
        .core
        .start_job(&SERVER, &server.id, &jobs[0].id)
        .await
        .unwrap();
    let (core, agent, job) = (
        w.core.clone(),
        server.id.to_string(),
        started.job.id.to_string(),
    );
    let signal = tokio::spawn(async move {
        core.await_signal(
            &SERVER,
            &agent.parse::<otf_core::ids::AgentId>().unwrap(),
            &job.parse::<otf_core::ids::JobId>().unwrap(),
        )
        .await
    });
    tokio::task::yield_now().await;
    w.core.cancel_run(&w.site, &run.id).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), signal)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Some(Signal::Cancel));
    stop.send(()).unwrap();
    router.await.unwrap();
    assert!(!w.core.wakeups_routed());
}
