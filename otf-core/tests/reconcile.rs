//! Nothing stuck: the allocation lease, reconciliation of what a live agent
//! reports it runs, phase timeouts, and a cancel that outlives a lost plan.

mod common;

use std::time::Duration;

use common::{changes, World};
use otf_core::agent::ReportedStatus;
use otf_core::auth::Subject;
use otf_core::ids::JobId;
use otf_core::job::{JobPhase, JobStatus, JobTimers, Signal};
use otf_core::run::RunStatus;
use otf_core::workspace::ExecutionMode;

fn timers() -> JobTimers {
    JobTimers {
        allocation_lease: Duration::from_secs(5),
        plan_timeout: Duration::from_secs(20),
        apply_timeout: Duration::from_secs(40),
    }
}

async fn world(seed: u64) -> (World, otf_core::workspace::Workspace, Subject) {
    let w = World::with_timers(seed, timers()).await;
    w.org("acme").await;
    let pool = w.pool("acme", "pool").await;
    let ws = w
        .workspace("acme", "dev", ExecutionMode::Agent(pool.id.clone()))
        .await;
    let (subject, _) = w.agent_subject(&pool).await;
    (w, ws, subject)
}

/// A ping that reports `running`, as a current agent sends it.
async fn report(
    w: &World,
    subject: &Subject,
    agent: &otf_core::agent::Agent,
    running: &[JobId],
) -> Vec<JobId> {
    let status = if running.is_empty() {
        ReportedStatus::Idle
    } else {
        ReportedStatus::Busy
    };
    w.core
        .ping(subject, &agent.id, status, Some(running))
        .await
        .expect("ping")
        .cancel
}

/// The job as stored now.
async fn stored(w: &World, run: &otf_core::ids::RunId, id: &JobId) -> otf_core::job::Job {
    w.core
        .run_jobs(&w.site, run)
        .await
        .unwrap()
        .into_iter()
        .find(|j| &j.id == id)
        .expect("the job")
}

async fn plan_log(w: &World, run: &otf_core::run::Run) -> String {
    let log = w
        .core
        .read_log(&w.site, &run.id, JobPhase::Plan, 0, 1 << 20)
        .await
        .unwrap();
    String::from_utf8(log).unwrap()
}

#[tokio::test]
async fn a_job_its_agent_never_starts_is_allocated_again_after_the_lease() {
    let (mut w, ws, subject) = world(40).await;
    let a = w.register(&subject, "a", 1).await;
    w.run(&ws).await;
    let job = w.allocated(&subject, &a).await.remove(0);
    // a stays alive but never starts it (say its long-poll answer was lost).
    for _ in 0..4 {
        report(&w, &subject, &a, &[]).await;
        w.advance(Duration::from_secs(1)).await;
    }
    let b = w.register(&subject, "b", 1).await;
    report(&w, &subject, &a, &[]).await;
    w.advance(Duration::from_millis(999)).await;
    let stored = stored(&w, &job.run, &job.id).await;
    assert_eq!(stored.agent.as_ref(), Some(&a.id), "inside the lease");
    w.advance(Duration::from_millis(1)).await;
    let again = w.allocated(&subject, &b).await;
    assert_eq!(again[0].id, job.id, "the same job, allocated to b");
    // a's late start is refused: the job is no longer its own.
    assert!(w.core.start_job(&subject, &a.id, &job.id).await.is_err());
}

#[tokio::test]
async fn a_running_plan_its_live_agent_no_longer_reports_is_planned_again() {
    let (mut w, ws, subject) = world(41).await;
    let a = w.register(&subject, "alpha", 1).await;
    let run = w.run(&ws).await;
    let (first, zombie) = w.start(&subject, &a).await;
    // Just started: a ping sent before the agent took it may not list it.
    report(&w, &subject, &a, &[]).await;
    assert_eq!(w.status(&run).await, RunStatus::Planning);
    // One ping interval later the agent still does not hold it: the answer
    // to its start was lost, and it dropped the job.
    w.advance(Duration::from_secs(1)).await;
    report(&w, &subject, &a, &[]).await;
    w.settle().await;
    assert_eq!(w.status(&run).await, RunStatus::PlanQueued);
    assert!(
        plan_log(&w, &run).await.contains("agent alpha (agent-"),
        "names the agent"
    );
    assert!(plan_log(&w, &run)
        .await
        .contains("no longer runs this plan"));
    let (second, token) = w.start(&subject, &a).await;
    assert_eq!(second.job.attempt, 2);
    assert!(w.core.finish_job(&zombie, changes(1)).await.is_err());
    assert_ne!(first.job.id, second.job.id);
    assert_eq!(
        w.finish(&token, changes(1)).await.status,
        RunStatus::Planned
    );
}

#[tokio::test]
async fn an_agent_still_running_a_job_otfd_ended_is_told_to_cancel_it() {
    let (mut w, ws, subject) = world(42).await;
    let a = w.register(&subject, "a", 1).await;
    let run = w.run(&ws).await;
    let (started, _token) = w.start(&subject, &a).await;
    assert!(
        report(&w, &subject, &a, std::slice::from_ref(&started.job.id))
            .await
            .is_empty()
    );
    w.core
        .force_cancel_run(&w.site, &run.id)
        .await
        .expect_err("force-cancel needs a cancel first");
    w.core.cancel_run(&w.site, &run.id).await.unwrap();
    w.advance(Duration::from_secs(10)).await;
    w.core.force_cancel_run(&w.site, &run.id).await.unwrap();
    w.settle().await;
    let stranger: JobId = "job-00000000000000ff".parse().unwrap();
    let cancel = report(
        &w,
        &subject,
        &a,
        &[started.job.id.clone(), stranger.clone()],
    )
    .await;
    assert_eq!(cancel, vec![started.job.id.clone(), stranger]);
}

#[tokio::test]
async fn a_cancel_carries_over_a_lost_plan_instead_of_a_retry() {
    let (mut w, ws, subject) = world(43).await;
    let a = w.register(&subject, "a", 1).await;
    let run = w.run(&ws).await;
    let (started, _) = w.start(&subject, &a).await;
    w.core.cancel_run(&w.site, &run.id).await.unwrap();
    w.advance(Duration::from_secs(1)).await;
    report(&w, &subject, &a, &[]).await;
    w.settle().await;
    assert_eq!(w.status(&run).await, RunStatus::Canceled);
    let jobs = w.core.run_jobs(&w.site, &run.id).await.unwrap();
    assert_eq!(
        jobs.iter()
            .map(|j| (j.id.clone(), j.status))
            .collect::<Vec<_>>(),
        vec![(started.job.id, JobStatus::Canceled)],
        "no retry was queued"
    );
    assert!(plan_log(&w, &run).await.contains("not planned again"));
}

#[tokio::test]
async fn a_plan_past_its_timeout_is_canceled_then_force_canceled() {
    let (mut w, ws, subject) = world(44).await;
    let a = w.register(&subject, "a", 1).await;
    let run = w.run(&ws).await;
    let (started, _) = w.start(&subject, &a).await;
    let held = [started.job.id.clone()];
    for _ in 0..19 {
        report(&w, &subject, &a, &held).await;
        w.advance(Duration::from_secs(1)).await;
    }
    let job = stored(&w, &run.id, &started.job.id).await;
    assert_eq!(job.signal, None, "19 s of a 20 s timeout");
    report(&w, &subject, &a, &held).await;
    w.advance(Duration::from_secs(1)).await;
    let job = stored(&w, &run.id, &started.job.id).await;
    assert_eq!(job.signal, Some(Signal::Cancel), "canceled as a user would");
    assert!(plan_log(&w, &run)
        .await
        .contains("ran longer than its timeout of 20s (otfd --plan-timeout)"));
    assert_eq!(
        w.status(&run).await,
        RunStatus::Planning,
        "terraform is told to stop"
    );
    // terraform ignores the interrupt: after the cool-off it is force-canceled.
    for _ in 0..10 {
        report(&w, &subject, &a, &held).await;
        w.advance(Duration::from_secs(1)).await;
    }
    assert_eq!(w.status(&run).await, RunStatus::ForceCanceled);
    assert!(plan_log(&w, &run).await.contains("force-canceling it"));
    // The workspace is free for the next run.
    let next = w.run(&ws).await;
    assert_eq!(w.status(&next).await, RunStatus::PlanQueued);
}

/// Plan and confirm a run, and start its apply on `agent`.
async fn applying(
    w: &mut World,
    ws: &otf_core::workspace::Workspace,
    subject: &Subject,
    agent: &otf_core::agent::Agent,
) -> (otf_core::run::Run, otf_core::services::StartedJob) {
    let run = w.run(ws).await;
    let (_, plan) = w.start(subject, agent).await;
    w.finish(&plan, changes(1)).await;
    w.core.confirm_run(&w.site, &run.id).await.unwrap();
    w.settle().await;
    let (started, _) = w.start(subject, agent).await;
    (run, started)
}

#[tokio::test]
async fn a_given_up_apply_delivers_its_state_late_once_and_never_over_a_newer_one() {
    let (mut w, ws, subject) = world(45).await;
    let a = w.register(&subject, "alpha", 1).await;
    let (first, first_apply) = applying(&mut w, &ws, &subject, &a).await;
    // otfd loses track of the apply: its live agent stops reporting it.
    w.advance(Duration::from_secs(1)).await;
    report(&w, &subject, &a, &[]).await;
    w.settle().await;
    assert_eq!(w.status(&first).await, RunStatus::Errored);
    // A second run applies meanwhile, and is given up too.
    let (second, second_apply) = applying(&mut w, &ws, &subject, &a).await;
    w.advance(Duration::from_secs(1)).await;
    report(&w, &subject, &a, &[]).await;
    w.settle().await;
    assert_eq!(w.status(&second).await, RunStatus::Errored);

    // The second's state arrives first: taken (nothing newer exists).
    let late_second = w
        .core
        .authenticate(second_apply.token.expose())
        .await
        .expect("a given-up apply's token still delivers its state");
    assert!(matches!(late_second, Subject::Job { late: true, .. }));
    assert!(w.core.append_job_log(&late_second, b"more").await.is_err());
    let sv = w
        .core
        .job_create_state_version(&late_second, 3, "L", b"{\"serial\":3}")
        .await
        .expect("the late state is recorded");
    assert_eq!(sv.run.as_ref(), Some(&second.id));
    // Once only: the token is spent.
    assert!(w
        .core
        .authenticate(second_apply.token.expose())
        .await
        .is_err());
    // The first's older state must not replace it.
    let late_first = w
        .core
        .authenticate(first_apply.token.expose())
        .await
        .unwrap();
    let err = w
        .core
        .job_create_state_version(&late_first, 2, "L", b"{\"serial\":2}")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not newer"), "{err}");
    let current = w
        .core
        .current_state_version(&w.site, &ws.id)
        .await
        .unwrap()
        .expect("a current state");
    assert_eq!((current.serial, current.id.clone()), (3, sv.id));
    // Each run's error says what became of its state.
    let second = w.core.get_run(&w.site, &second.id).await.unwrap();
    let error = second.error.unwrap_or_default();
    assert!(
        error.contains("no longer runs this apply")
            && error.contains(&format!("recorded as state version {}", current.id)),
        "{error}"
    );
    let first = w.core.get_run(&w.site, &first.id).await.unwrap();
    let error = first.error.unwrap_or_default();
    assert!(
        error.contains("not newer") && error.contains("the runner keeps it"),
        "{error}"
    );
}
