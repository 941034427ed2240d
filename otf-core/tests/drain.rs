//! Draining: a drained agent gets no new job and the queue says why; a
//! pool's drain covers its agents and those that join it later; only the
//! pool's organization (or the site administrator) may drain.

mod common;

use std::time::Duration;

use common::World;
use otf_core::job::JobStatus;
use otf_core::scheduler::WaitReason;
use otf_core::workspace::ExecutionMode;
use otf_core::Error;

#[tokio::test]
async fn drained_agents_take_no_new_job_and_pools_drain_newcomers_too() {
    let mut w = World::new(50).await;
    w.org("acme").await;
    w.org("other").await;
    let pool = w.pool("acme", "pool").await;
    let dev = w
        .workspace("acme", "dev", ExecutionMode::Agent(pool.id.clone()))
        .await;
    let (subject, _) = w.agent_subject(&pool).await;
    let a = w.register(&subject, "a", 1).await;
    let view = w.core.drain_agent(&w.site, &a.id, true).await.unwrap();
    assert!(view.agent.drained);
    w.settle().await;
    w.run(&dev).await;
    w.advance(Duration::from_secs(1)).await;
    let queue = w
        .core
        .list_queue(
            &w.site,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(queue[0].job.status, JobStatus::Unallocated);
    assert_eq!(queue[0].wait, Some(WaitReason::Drained));
    // A drained agent keeps pinging and learns it is drained.
    let answer = w
        .core
        .ping(
            &subject,
            &a.id,
            otf_core::agent::ReportedStatus::Idle,
            Some(&[]),
        )
        .await
        .unwrap();
    assert!(answer.drained);

    // Undrain: the job goes.
    w.core.drain_agent(&w.site, &a.id, false).await.unwrap();
    w.settle().await;
    assert_eq!(w.allocated(&subject, &a).await.len(), 1);

    // A pool's drain covers its agents, and those that join later.
    let p = w.core.drain_pool(&w.site, &pool.id, true).await.unwrap();
    assert!(p.drained);
    let view = w.core.get_agent(&w.site, &a.id).await.unwrap();
    assert!(view.agent.drained);
    assert_eq!(view.current_jobs, 1, "it finishes what it holds");
    let b = w.register(&subject, "b", 1).await;
    assert!(b.drained, "joining a drained pool");
    w.core.drain_pool(&w.site, &pool.id, false).await.unwrap();
    assert!(
        !w.core
            .get_agent(&w.site, &b.id)
            .await
            .unwrap()
            .agent
            .drained
    );

    // Another organization may not; neither may an agent token.
    let other = w
        .core
        .create_org_token(
            &w.site,
            &"other".parse::<otf_core::ids::OrganizationName>().unwrap(),
            "ops",
        )
        .await
        .unwrap();
    let other = w.core.authenticate(other.1.expose()).await.unwrap();
    assert!(matches!(
        w.core.drain_pool(&other, &pool.id, true).await,
        Err(Error::Forbidden(_) | Error::NotFound { .. })
    ));
    assert!(w.core.drain_agent(&subject, &a.id, true).await.is_err());
}

async fn single_agent(w: &mut World, subject: &otf_core::auth::Subject) -> otf_core::agent::Agent {
    let a = w
        .core
        .register_agent(
            subject,
            otf_core::services::RegisterAgent {
                labels: Default::default(),
                name: "single".into(),
                version: "test".into(),
                max_jobs: 1,
                ip_address: "127.0.0.1".into(),
                protocol: *otf_core::agent::AGENT_PROTOCOLS.end(),
                single: true,
            },
        )
        .await
        .unwrap();
    w.settle().await;
    a
}

#[tokio::test]
async fn a_single_agent_keeps_the_apply_of_an_auto_applied_run_too() {
    let mut w = World::new(52).await;
    w.org("acme").await;
    let pool = w.pool("acme", "pool").await;
    let dev = w
        .workspace("acme", "dev", ExecutionMode::Agent(pool.id.clone()))
        .await;
    w.core
        .update_workspace(
            &w.site,
            &dev.id,
            otf_core::services::WorkspaceUpdate {
                auto_apply: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (subject, _) = w.agent_subject(&pool).await;
    let single = single_agent(&mut w, &subject).await;
    w.run(&dev).await;
    let (_, plan) = w.start(&subject, &single).await;
    // The plan's end queues the apply at once (auto-apply).
    w.finish(&plan, common::changes(1)).await;
    w.advance(Duration::from_secs(1)).await;
    let apply = w.allocated(&subject, &single).await;
    assert_eq!(apply[0].affinity.as_ref(), Some(&single.id), "{apply:?}");
}

#[tokio::test]
async fn a_single_agent_keeps_the_apply_of_the_run_it_planned() {
    let mut w = World::new(51).await;
    w.org("acme").await;
    let pool = w.pool("acme", "pool").await;
    let dev = w
        .workspace("acme", "dev", ExecutionMode::Agent(pool.id.clone()))
        .await;
    let (subject, _) = w.agent_subject(&pool).await;
    let single = single_agent(&mut w, &subject).await;
    let run = w.run(&dev).await;
    let (_, plan) = w.start(&subject, &single).await;
    // Started: it takes nothing else now.
    let view = w.core.get_agent(&w.site, &single.id).await.unwrap();
    assert!(
        view.agent.drained,
        "a single agent drains itself when it starts"
    );
    // Another agent arrives, more recently seen and idle.
    let other = w.register(&subject, "other", 1).await;
    w.finish(&plan, common::changes(1)).await;
    w.core.confirm_run(&w.site, &run.id).await.unwrap();
    w.settle().await;
    w.advance(Duration::from_secs(1)).await;
    let apply = w.allocated(&subject, &single).await;
    assert_eq!(
        apply.len(),
        1,
        "the apply waits for the agent that planned it"
    );
    assert_eq!(apply[0].affinity.as_ref(), Some(&single.id));
    let nothing = tokio::time::timeout(
        Duration::from_millis(50),
        w.core.await_allocated_jobs(&subject, &other.id),
    )
    .await;
    assert!(nothing.is_err() || nothing.unwrap().unwrap().is_empty());
}
