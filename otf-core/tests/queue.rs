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
    let queue = w.core.list_queue(&w.site, "acme").await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].job.phase, JobPhase::Plan);
    assert_eq!(queue[0].job.status, JobStatus::Unallocated);
    assert_eq!(queue[0].wait, Some(WaitReason::NoAgent));

    // An agent with room for one job takes it; the next one waits for room.
    let (subject, _) = w.agent_subject(&pool).await;
    w.register(&subject, "agent-a", 1).await;
    w.advance(Duration::from_secs(1)).await;
    w.run(&prod).await;
    let queue = w.core.list_queue(&w.site, "acme").await.unwrap();
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
        .list_queue(&w.site, "other")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        w.core.list_queue(&w.site, "nope").await,
        Err(Error::NotFound { .. })
    ));
}
