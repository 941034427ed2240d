//! The administrators' queue view: which job runs where, which wait and why.

mod common;

use std::time::Duration;

use common::World;
use otf_core::job::{JobPhase, JobStatus};
use otf_core::scheduler::WaitReason;
use otf_core::workspace::ExecutionMode;
use otf_core::Error;

#[tokio::test]
async fn queue_shows_the_agent_of_each_job_and_why_others_wait() {
    let mut w = World::new(7).await;
    w.org("acme").await;
    w.org("other").await;
    let pool = w.pool("acme", "pool1").await;
    let dev = w
        .workspace("acme", "dev", ExecutionMode::Agent(pool.id.clone()))
        .await;
    let prod = w
        .workspace("acme", "prod", ExecutionMode::Agent(pool.id.clone()))
        .await;

    // No agent in the pool yet.
    w.run(&dev).await;
    let queue = w
        .core
        .list_queue(
            &w.site,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].job.phase, JobPhase::Plan);
    assert_eq!(queue[0].job.status, JobStatus::Unallocated);
    assert_eq!(queue[0].wait, Some(WaitReason::NoAgent));

    // An agent with room for one job takes it; the next one waits for room.
    let (subject, _) = w.agent_subject(&pool).await;
    w.register(&subject, "agent-a", 1).await;
    w.advance(Duration::from_secs(1)).await;
    w.run(&prod).await;
    let queue = w
        .core
        .list_queue(
            &w.site,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(queue.len(), 2);
    assert_eq!(queue[0].job.workspace, dev.id);
    assert_eq!(queue[0].job.status, JobStatus::Allocated);
    assert_eq!(queue[0].agent_name.as_deref(), Some("agent-a"));
    assert_eq!(queue[0].wait, None);
    assert_eq!(queue[1].job.workspace, prod.id);
    assert_eq!(queue[1].wait, Some(WaitReason::NoCapacity));

    // Other organizations see none of it.
    assert!(w
        .core
        .list_queue(
            &w.site,
            &"other".parse::<otf_core::ids::OrganizationName>().unwrap()
        )
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        w.core
            .list_queue(
                &w.site,
                &"nope".parse::<otf_core::ids::OrganizationName>().unwrap()
            )
            .await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_selector_no_agent_matches_says_so_and_fixing_it_lets_the_run_go() {
    let mut w = World::new(8).await;
    w.org("acme").await;
    let pool = w.pool("acme", "gpu").await;
    let ws = w
        .workspace("acme", "train", ExecutionMode::Agent(pool.id.clone()))
        .await;
    let set_selector = |sel: &str| otf_core::services::WorkspaceUpdate {
        agent_selector: Some(sel.parse().unwrap()),
        ..Default::default()
    };
    w.core
        .update_workspace(&w.site, &ws.id, set_selector("region=eu"))
        .await
        .unwrap();
    let (subject, _) = w.agent_subject(&pool).await;
    w.register_labelled(&subject, "us-1", 1, "region=us").await;
    let ws = w.core.get_workspace(&w.site, &ws.id).await.unwrap();
    w.run(&ws).await;
    let queue = w
        .core
        .list_queue(
            &w.site,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(queue[0].job.status, JobStatus::Unallocated);
    assert_eq!(queue[0].wait, Some(WaitReason::NoMatchingAgent));
    assert_eq!(
        queue[0].wait_message.as_deref(),
        Some("no agent of pool gpu has labels region=eu")
    );
    // The selector is fixed: the waiting job follows it and is allocated.
    w.core
        .update_workspace(&w.site, &ws.id, set_selector("region=us"))
        .await
        .unwrap();
    w.settle().await;
    let queue = w
        .core
        .list_queue(
            &w.site,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(queue[0].job.status, JobStatus::Allocated);
    assert_eq!(queue[0].agent_name.as_deref(), Some("us-1"));
}
