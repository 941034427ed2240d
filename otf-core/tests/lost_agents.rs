//! Liveness and lost agents: pings, timeouts, re-allocation, plan retries,
//! failed applies, zombie tokens, purge.

mod common;

use std::time::Duration;

use common::{changes, World};
use otf_core::agent::{AgentStatus, ReportedStatus};
use otf_core::job::{JobPhase, JobStatus};
use otf_core::run::RunStatus;
use otf_core::services::{JobOutcome, WorkspaceUpdate};
use otf_core::workspace::ExecutionMode;
use otf_core::Error;

async fn agent_world(
    seed: u64,
) -> (
    World,
    otf_core::workspace::Workspace,
    otf_core::auth::Subject,
) {
    let w = World::new(seed).await;
    w.org("acme").await;
    let pool = w.pool("acme", "pool").await;
    let ws = w
        .workspace("acme", "dev", ExecutionMode::Agent(pool.id.clone()))
        .await;
    let (subject, _) = w.agent_subject(&pool).await;
    (w, ws, subject)
}

async fn agent_status(w: &World, id: &otf_core::ids::AgentId) -> AgentStatus {
    w.core.get_agent(&w.site, id).await.unwrap().agent.status
}

#[tokio::test]
async fn silent_agents_go_unknown_then_errored_then_are_purged() {
    let (mut w, _, subject) = agent_world(20).await;
    let a = w.register(&subject, "a", 1).await;
    w.advance(Duration::from_secs(2)).await;
    w.ping(&subject, &a, ReportedStatus::Idle).await;
    // The ping changed nothing: it is batched, not committed...
    let stored = w.core.get_agent(&w.site, &a.id).await.unwrap().agent;
    assert_eq!(stored.last_ping_at, a.last_ping_at);
    // ...until the next flush (every tick).
    w.advance(Duration::from_secs(2)).await;
    assert_eq!(
        agent_status(&w, &a.id).await,
        AgentStatus::Idle,
        "pinged 2 s ago"
    );
    w.advance(Duration::from_millis(1_001)).await;
    assert_eq!(
        agent_status(&w, &a.id).await,
        AgentStatus::Unknown,
        "3.001 s of silence"
    );
    // Pings resume: back to idle.
    w.ping(&subject, &a, ReportedStatus::Busy).await;
    assert_eq!(agent_status(&w, &a.id).await, AgentStatus::Busy);
    w.advance(Duration::from_secs(4)).await;
    assert_eq!(agent_status(&w, &a.id).await, AgentStatus::Unknown);
    w.advance(Duration::from_secs(10)).await;
    assert_eq!(
        agent_status(&w, &a.id).await,
        AgentStatus::Unknown,
        "grace not over yet"
    );
    w.advance(Duration::from_millis(1)).await;
    assert_eq!(agent_status(&w, &a.id).await, AgentStatus::Errored);
    let err = w
        .core
        .ping(&subject, &a.id, ReportedStatus::Idle, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("register again"), "{err}");
    w.advance(Duration::from_secs(61)).await;
    assert!(matches!(
        w.core.get_agent(&w.site, &a.id).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn graceful_exit_is_final() {
    let (mut w, _, subject) = agent_world(21).await;
    let a = w.register(&subject, "a", 1).await;
    w.ping(&subject, &a, ReportedStatus::Exited).await;
    assert_eq!(agent_status(&w, &a.id).await, AgentStatus::Exited);
    assert!(matches!(
        w.core
            .ping(&subject, &a.id, ReportedStatus::Idle, None)
            .await,
        Err(Error::AgentGone { .. })
    ));
    w.core.delete_agent(&w.site, &a.id).await.unwrap();
}

#[tokio::test]
async fn live_agents_cannot_be_deleted() {
    let (mut w, _, subject) = agent_world(22).await;
    let a = w.register(&subject, "a", 1).await;
    let err = w.core.delete_agent(&w.site, &a.id).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::AgentStillLive {
                status: AgentStatus::Idle,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_allocated_job_of_an_unknown_agent_goes_to_another_agent() {
    let (mut w, ws, subject) = agent_world(23).await;
    let a = w.register(&subject, "a", 1).await;
    let run = w.run(&ws).await;
    let jobs = w.allocated(&subject, &a).await;
    assert_eq!(jobs[0].agent.as_ref(), Some(&a.id));
    // Agent a falls silent before starting it; b arrives.
    w.advance(Duration::from_secs(2)).await;
    let b = w.register(&subject, "b", 1).await;
    w.advance(Duration::from_millis(1_500)).await;
    assert_eq!(agent_status(&w, &a.id).await, AgentStatus::Unknown);
    let (started, token) = w.start(&subject, &b).await;
    assert_eq!(
        (started.run.id.clone(), started.job.id.clone()),
        (run.id.clone(), jobs[0].id.clone())
    );
    // The late agent a can no longer start it.
    let err = w
        .core
        .start_job(&subject, &a.id, &jobs[0].id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert_eq!(
        w.finish(&token, changes(1)).await.status,
        RunStatus::Planned
    );
}

#[tokio::test]
async fn a_plan_whose_agent_dies_runs_again_elsewhere_and_the_zombie_is_fenced() {
    let (mut w, ws, subject) = agent_world(24).await;
    let a = w.register(&subject, "alpha", 1).await;
    let run = w.run(&ws).await;
    let (first, zombie) = w.start(&subject, &a).await;
    w.core
        .append_job_log(&zombie, b"Terraform will perform...\n")
        .await
        .unwrap();
    let b = w.register(&subject, "beta", 1).await;
    // Both ping; then alpha goes silent for good.
    for _ in 0..3 {
        w.ping(&subject, &b, ReportedStatus::Idle).await;
        w.advance(Duration::from_secs(1)).await;
    }
    w.ping(&subject, &b, ReportedStatus::Idle).await;
    w.advance(Duration::from_millis(1)).await;
    assert_eq!(agent_status(&w, &a.id).await, AgentStatus::Unknown);
    assert_eq!(
        w.status(&run).await,
        RunStatus::Planning,
        "unknown is not yet lost"
    );
    for _ in 0..11 {
        w.ping(&subject, &b, ReportedStatus::Idle).await;
        w.advance(Duration::from_secs(1)).await;
    }
    assert_eq!(agent_status(&w, &a.id).await, AgentStatus::Errored);
    assert_eq!(w.status(&run).await, RunStatus::PlanQueued, "queued again");
    let (second, token) = w.start(&subject, &b).await;
    assert_eq!((second.job.attempt, second.job.phase), (2, JobPhase::Plan));
    assert_ne!(second.job.id, first.job.id);
    // The zombie's token is dead: nothing it sends is accepted.
    assert!(matches!(
        w.core.authenticate(first.token.expose()).await,
        Err(Error::Unauthorized)
    ));
    assert!(matches!(
        w.core.finish_job(&zombie, changes(1)).await,
        Err(Error::Unauthorized)
    ));
    assert!(w
        .core
        .job_create_state_version(&zombie, 9, "x", b"{}")
        .await
        .is_err());
    // The retry is visible in the run's plan log.
    let log = w
        .core
        .read_log(&w.site, &run.id, JobPhase::Plan, 0, 1 << 20)
        .await
        .unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(log.contains("agent alpha"), "{log}");
    assert!(log.contains("planning again as attempt 2 of 3"), "{log}");
    assert_eq!(
        w.finish(&token, changes(1)).await.status,
        RunStatus::Planned
    );
    let jobs = w.core.run_jobs(&w.site, &run.id).await.unwrap();
    assert_eq!(
        jobs.iter()
            .map(|j| (j.attempt, j.status))
            .collect::<Vec<_>>(),
        vec![(1, JobStatus::Errored), (2, JobStatus::Finished)]
    );
}

#[tokio::test]
async fn an_apply_whose_agent_dies_errors_the_run_naming_the_agent_and_the_queue_moves_on() {
    let (mut w, ws, subject) = agent_world(25).await;
    let a = w.register(&subject, "alpha", 1).await;
    let run = w.run(&ws).await;
    let next = w.run(&ws).await;
    let (_, plan) = w.start(&subject, &a).await;
    w.finish(&plan, changes(1)).await;
    w.core.confirm_run(&w.site, &run.id).await.unwrap();
    w.settle().await;
    let (_, apply) = w.start(&subject, &a).await;
    // alpha exits without finishing (e.g. its token was revoked).
    w.ping(&subject, &a, ReportedStatus::Exited).await;
    w.settle().await;
    let after = w.core.get_run(&w.site, &run.id).await.unwrap();
    assert_eq!(after.status, RunStatus::Errored);
    let message = after.error.unwrap();
    assert!(
        message.contains("alpha") && message.contains(a.id.as_str()),
        "{message}"
    );
    assert!(matches!(
        w.core.finish_job(&apply, changes(1)).await,
        Err(Error::Unauthorized)
    ));
    assert_eq!(
        w.status(&next).await,
        RunStatus::PlanQueued,
        "the workspace is not stuck"
    );
}

#[tokio::test]
async fn plan_retries_are_bounded() {
    let (mut w, ws, subject) = agent_world(26).await;
    let run = w.run(&ws).await;
    for attempt in 1..=3 {
        let a = w.register(&subject, &format!("a{attempt}"), 1).await;
        let (s, _) = w.start(&subject, &a).await;
        assert_eq!(s.job.attempt, attempt);
        w.ping(&subject, &a, ReportedStatus::Exited).await;
        w.settle().await;
    }
    let after = w.core.get_run(&w.site, &run.id).await.unwrap();
    assert_eq!(after.status, RunStatus::Errored);
    assert!(after.error.unwrap().contains("already retried 2 times"));
}

#[tokio::test]
async fn dispatcher_rebuild_recovers_what_happened_while_nobody_led() {
    let (mut w, ws, subject) = agent_world(27).await;
    let a = w.register(&subject, "a", 1).await;
    let run = w.run(&ws).await;
    let (_, _zombie) = w.start(&subject, &a).await;
    // The agent exits while no dispatcher listens (events are dropped).
    w.core
        .ping(&subject, &a.id, ReportedStatus::Exited, None)
        .await
        .unwrap();
    while w.sub.try_recv().is_some() {}
    assert_eq!(w.status(&run).await, RunStatus::Planning);
    // A new leader rebuilds from the store and recovers the plan.
    let b = w.register(&subject, "b", 1).await;
    w.dispatcher.rebuild().await.unwrap();
    w.settle().await;
    let (s, _) = w.start(&subject, &b).await;
    assert_eq!((s.run.id, s.job.attempt), (run.id, 2));
}

#[tokio::test]
async fn reassigning_a_workspace_routes_its_next_jobs_to_the_new_pool() {
    let (mut w, ws, subject) = agent_world(28).await;
    let a = w.register(&subject, "a", 1).await;
    let server = w
        .register(&otf_core::auth::Subject::ServerRunner, "server", 1)
        .await;
    w.core
        .update_workspace(
            &w.site,
            &ws.id,
            WorkspaceUpdate {
                execution_mode: Some(ExecutionMode::Remote.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.run(&ws).await;
    let (s, token) = w
        .start(&otf_core::auth::Subject::ServerRunner, &server)
        .await;
    assert_eq!(s.job.pool, None);
    w.finish(
        &token,
        JobOutcome::Finished {
            counts: Default::default(),
            has_changes: false,
        },
    )
    .await;
    let idle = tokio::time::timeout(
        Duration::from_millis(20),
        w.core.await_allocated_jobs(&subject, &a.id),
    )
    .await;
    assert!(idle.is_err());
}
