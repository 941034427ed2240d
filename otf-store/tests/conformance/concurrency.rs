//! Transactional read-modify-write under real parallel tasks: N tasks each
//! add one to a field of the same agent, job and run, every one in its own
//! transaction through the `lock_*` methods (the workspace is the lock root
//! of its runs and jobs). No increment may be lost.

use otf_core::artifacts::ConfigStatus;
use otf_core::job::JobPhase;
use otf_core::store::*;

use crate::checks::{begin, commit};
use crate::fixtures::*;

const TASKS: u32 = 12;

pub async fn concurrent_updates_never_lose_a_change<S: Store + Clone>(s: &S) {
    let o = org("acme");
    let w = workspace(&o, "ws");
    let cv = config_version(&w, 1, ConfigStatus::Uploaded);
    let r = run(&w, &cv, 1);
    let j = job(&r, JobPhase::Plan, 1, 1);
    let mut a = agent(None, None);
    a.max_jobs = 0;
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    tx.insert_run(&r).await.unwrap();
    tx.insert_job(&j).await.unwrap();
    tx.insert_agent(&a).await.unwrap();
    commit(tx).await;

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (s, agent, ws, job, run) = (
            s.clone(),
            a.id.clone(),
            w.id.clone(),
            j.id.clone(),
            r.id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tx = s.begin().await?;
            let mut a = tx.lock_agent(&agent).await?.expect("the agent");
            tokio::task::yield_now().await;
            a.max_jobs += 1;
            tx.update_agent(&a).await?;
            tx.commit().await?;

            let mut tx = s.begin().await?;
            tx.lock_workspace(&ws).await?.expect("the workspace");
            let mut j = tx.get_job(&job).await?.expect("the job");
            let mut r = tx.get_run(&run).await?.expect("the run");
            tokio::task::yield_now().await;
            j.attempt += 1;
            r.plan.counts.additions += 1;
            tx.update_job(&j).await?;
            tx.update_run(&r).await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        }));
    }
    for t in tasks {
        t.await
            .expect("the task ran")
            .expect("the updates committed");
    }

    let mut tx = begin(s).await;
    assert_eq!(tx.get_agent(&a.id).await.unwrap().unwrap().max_jobs, TASKS);
    assert_eq!(tx.get_job(&j.id).await.unwrap().unwrap().attempt, 1 + TASKS);
    assert_eq!(
        tx.get_run(&r.id)
            .await
            .unwrap()
            .unwrap()
            .plan
            .counts
            .additions,
        TASKS
    );
}
