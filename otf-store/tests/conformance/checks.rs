//! The story every store must tell the same way: round trips of every
//! aggregate, sort orders, conflicts, cascades and rollback.

use otf_core::agent::AgentStatus;
use otf_core::artifacts::{ArtifactKind, ConfigStatus, VariableCategory};
use otf_core::clock::Timestamp;
use otf_core::ids::WorkspaceId;
use otf_core::job::{JobEvent, JobPhase, JobStatus, Signal};
use otf_core::run::{PhaseStatus, ResourceCounts, RunEvent, RunStatus};
use otf_core::secret::SecretHash;
use otf_core::store::*;
use otf_core::workspace::{ExecutionMode, WorkspaceLock};

use crate::fixtures::*;

pub async fn begin<S: Store>(s: &S) -> S::Tx {
    s.begin().await.expect("begin a transaction")
}

/// Commit what `tx` did.
pub async fn commit<T: Tx>(tx: T) {
    tx.commit().await.expect("commit");
}

pub async fn organizations_and_their_tokens<S: Store>(s: &S) {
    let (b, a) = (org("bravo"), org("alpha"));
    let mut tx = begin(s).await;
    tx.insert_organization(&b).await.unwrap();
    tx.insert_organization(&a).await.unwrap();
    commit(tx).await;

    let mut tx = begin(s).await;
    assert_eq!(tx.get_organization(&a.name).await.unwrap(), Some(a.clone()));
    assert_eq!(
        tx.list_organizations().await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert!(matches!(
        tx.insert_organization(&a).await,
        Err(StoreError::Conflict(_))
    ));
    drop(tx);

    let mut late = org_token(&a, 20);
    let early = org_token(&a, 10);
    let mut tx = begin(s).await;
    tx.insert_org_token(&late).await.unwrap();
    tx.insert_org_token(&early).await.unwrap();
    late.last_used_at = Some(Timestamp(99));
    tx.update_org_token(&late).await.unwrap();
    commit(tx).await;

    let mut tx = begin(s).await;
    assert_eq!(
        tx.get_org_token(&late.id).await.unwrap(),
        Some(late.clone())
    );
    assert_eq!(
        tx.list_org_tokens(&a.name).await.unwrap(),
        vec![early.clone(), late.clone()]
    );
    assert!(tx.list_org_tokens(&b.name).await.unwrap().is_empty());
    let ghost = org_token(&a, 1);
    assert!(matches!(
        tx.update_org_token(&ghost).await,
        Err(StoreError::NotFound { .. })
    ));
    tx.delete_org_token(&early.id).await.unwrap();
    tx.delete_org_token(&ghost.id).await.unwrap();
    assert_eq!(tx.list_org_tokens(&a.name).await.unwrap(), vec![late]);
}

pub async fn workspaces<S: Store>(s: &S) {
    let o = org("acme");
    let other = org("other");
    let (mut web, api) = (workspace(&o, "web"), workspace(&o, "api"));
    let elsewhere = workspace(&other, "web");
    let p = pool(&o, "pool", &[]);
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_organization(&other).await.unwrap();
    tx.insert_pool(&p).await.unwrap();
    for w in [&web, &api, &elsewhere] {
        tx.insert_workspace(w).await.unwrap();
    }
    commit(tx).await;

    let mut tx = begin(s).await;
    assert_eq!(tx.get_workspace(&web.id).await.unwrap(), Some(web.clone()));
    assert_eq!(tx.lock_workspace(&web.id).await.unwrap(), Some(web.clone()));
    assert_eq!(
        tx.get_workspace_by_name(&o.name, "api").await.unwrap(),
        Some(api.clone())
    );
    assert_eq!(
        tx.get_workspace_by_name(&o.name, "nope").await.unwrap(),
        None
    );
    assert_eq!(
        tx.list_workspaces(&o.name).await.unwrap(),
        vec![api.clone(), web.clone()]
    );
    let mut twin = workspace(&o, "web");
    assert!(matches!(
        tx.insert_workspace(&twin).await,
        Err(StoreError::Conflict(_))
    ));
    twin.id = WorkspaceId::generate(&otf_core::random::OsRandom);
    twin.name = "ghost".into();
    assert!(matches!(
        tx.update_workspace(&twin).await,
        Err(StoreError::NotFound { .. })
    ));
    let mut renamed = api.clone();
    renamed.name = "web".into();
    match tx.update_workspace(&renamed).await {
        Err(StoreError::Conflict(why)) => assert!(
            why.to_string().contains("already exists"),
            "a clear message: {why}"
        ),
        other => panic!("a rename onto a taken name: {other:?}"),
    }
    // Nothing changed, and the transaction goes on.
    assert_eq!(
        tx.get_workspace(&api.id).await.unwrap().unwrap().name,
        api.name
    );
    drop(tx);

    // Every field survives: agent mode with its pool, a lock, a current run.
    web.execution_mode = ExecutionMode::Agent(p.id.clone());
    web.auto_apply = true;
    web.terraform_version = "1.5.0".into();
    web.working_directory = "infra/prod".into();
    web.lock = Some(WorkspaceLock::Holder("ot-0123456789abcdef".into()));
    web.current_run = Some("run-0123456789abcdef".parse().unwrap());
    web.updated_at = Timestamp(5_000);
    let mut tx = begin(s).await;
    tx.update_workspace(&web).await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(tx.get_workspace(&web.id).await.unwrap(), Some(web.clone()));
    assert_eq!(
        tx.list_workspaces_in_pool(&p.id).await.unwrap(),
        vec![web.clone()]
    );
    web.lock = Some(WorkspaceLock::Run("run-0123456789abcdef".parse().unwrap()));
    web.execution_mode = ExecutionMode::Local;
    tx.update_workspace(&web).await.unwrap();
    assert_eq!(tx.get_workspace(&web.id).await.unwrap(), Some(web.clone()));
    assert!(tx.list_workspaces_in_pool(&p.id).await.unwrap().is_empty());

    // A run's bookkeeping writes the lock, the current run and the update
    // time, and nothing else of what it is given.
    let mut runs = web.clone();
    runs.lock = None;
    runs.current_run = Some("run-fedcba9876543210".parse().unwrap());
    runs.updated_at = Timestamp(6_000);
    runs.name = "not-written".into();
    runs.auto_apply = false;
    tx.update_workspace_runs(&runs).await.unwrap();
    let mut expected = web.clone();
    expected.lock = None;
    expected.current_run = runs.current_run.clone();
    expected.updated_at = runs.updated_at;
    assert_eq!(tx.get_workspace(&web.id).await.unwrap(), Some(expected));
    runs.lock = Some(WorkspaceLock::Run("run-fedcba9876543210".parse().unwrap()));
    tx.update_workspace_runs(&runs).await.unwrap();
    assert_eq!(
        tx.get_workspace(&web.id).await.unwrap().unwrap().lock,
        runs.lock
    );
    assert!(matches!(
        tx.update_workspace_runs(&twin).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn pools_grants_and_agent_tokens<S: Store>(s: &S) {
    let o = org("acme");
    let (w1, w2) = (workspace(&o, "one"), workspace(&o, "two"));
    let mut restricted = pool(&o, "b-restricted", &[&w1]);
    let open = pool(&o, "a-open", &[]);
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w1).await.unwrap();
    tx.insert_workspace(&w2).await.unwrap();
    tx.insert_pool(&restricted).await.unwrap();
    tx.insert_pool(&open).await.unwrap();
    commit(tx).await;

    let mut tx = begin(s).await;
    assert_eq!(
        tx.get_pool(&restricted.id).await.unwrap(),
        Some(restricted.clone())
    );
    assert_eq!(tx.lock_pool(&open.id).await.unwrap(), Some(open.clone()));
    assert_eq!(
        tx.list_pools(&o.name).await.unwrap(),
        vec![open.clone(), restricted.clone()]
    );
    restricted.allowed_workspaces.insert(w2.id.clone());
    restricted.allowed_workspaces.remove(&w1.id);
    restricted.excluded_workspaces.insert(w1.id.clone());
    restricted.name = "c-restricted".into();
    tx.update_pool(&restricted).await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(
        tx.get_pool(&restricted.id).await.unwrap(),
        Some(restricted.clone())
    );
    // Deleting a workspace takes its grants with it.
    tx.delete_workspace(&w2.id).await.unwrap();
    restricted.allowed_workspaces.clear();
    assert_eq!(
        tx.get_pool(&restricted.id).await.unwrap(),
        Some(restricted.clone())
    );
    commit(tx).await;

    let mut second = agent_token(&restricted, 20);
    let first = agent_token(&restricted, 10);
    let mut tx = begin(s).await;
    tx.insert_agent_token(&second).await.unwrap();
    tx.insert_agent_token(&first).await.unwrap();
    second.last_used_at = Some(Timestamp(77));
    tx.update_agent_token(&second).await.unwrap();
    assert!(matches!(
        tx.insert_agent_token(&first).await,
        Err(StoreError::Conflict(_))
    ));
    drop(tx);
    // The failed insert rolled everything of that transaction back.
    let mut tx = begin(s).await;
    assert!(tx
        .list_agent_tokens(&restricted.id)
        .await
        .unwrap()
        .is_empty());
    tx.insert_agent_token(&second).await.unwrap();
    tx.insert_agent_token(&first).await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(
        tx.get_agent_token(&second.id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        tx.list_agent_tokens(&restricted.id).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    tx.delete_agent_token(&first.id).await.unwrap();
    assert_eq!(tx.get_agent_token(&first.id).await.unwrap(), None);
    // Deleting a pool takes its tokens with it.
    tx.delete_pool(&restricted.id).await.unwrap();
    assert_eq!(tx.get_pool(&restricted.id).await.unwrap(), None);
    assert_eq!(tx.get_agent_token(&second.id).await.unwrap(), None);
    assert_eq!(tx.list_pools(&o.name).await.unwrap(), vec![open]);
}

pub async fn agents<S: Store>(s: &S) {
    let o = org("acme");
    let p = pool(&o, "pool", &[]);
    let t = agent_token(&p, 1);
    let mut pooled: Vec<_> = (0..3).map(|_| agent(Some(&p), Some(&t))).collect();
    let server = agent(None, None);
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_pool(&p).await.unwrap();
    tx.insert_agent_token(&t).await.unwrap();
    for a in pooled.iter().chain([&server]) {
        tx.insert_agent(a).await.unwrap();
    }
    commit(tx).await;
    pooled.sort_by(|a, b| a.id.cmp(&b.id));

    let mut tx = begin(s).await;
    let mut everyone = pooled.clone();
    everyone.push(server.clone());
    everyone.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(tx.list_agents().await.unwrap(), everyone);
    assert_eq!(tx.list_agents_in_pool(Some(&p.id)).await.unwrap(), pooled);
    assert_eq!(
        tx.list_agents_in_pool(None).await.unwrap(),
        vec![server.clone()]
    );
    assert_eq!(tx.list_agents_of_token(&t.id).await.unwrap(), pooled);
    assert!(matches!(
        tx.insert_agent(&server).await,
        Err(StoreError::Conflict(_))
    ));
    drop(tx);

    let mut a = pooled[0].clone();
    a.status = AgentStatus::Busy;
    a.max_jobs = 7;
    a.last_status_at = Timestamp(11_000);
    let mut tx = begin(s).await;
    assert_eq!(tx.lock_agent(&a.id).await.unwrap(), Some(pooled[0].clone()));
    tx.update_agent(&a).await.unwrap();
    // Raises, never lowers; unknown ids are ignored; the latest time wins.
    let ghost = agent(None, None);
    tx.touch_agents(&[
        (a.id.clone(), Timestamp(20_000)),
        (a.id.clone(), Timestamp(25_000)),
        (server.id.clone(), Timestamp(5)),
        (ghost.id.clone(), Timestamp(30_000)),
    ])
    .await
    .unwrap();
    tx.touch_agents(&[]).await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    a.last_ping_at = Timestamp(25_000);
    assert_eq!(tx.get_agent(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        tx.get_agent(&server.id).await.unwrap(),
        Some(server.clone())
    );
    assert!(matches!(
        tx.update_agent(&ghost).await,
        Err(StoreError::NotFound { .. })
    ));
    tx.delete_agent(&a.id).await.unwrap();
    tx.delete_agent(&ghost.id).await.unwrap();
    assert_eq!(tx.get_agent(&a.id).await.unwrap(), None);
    assert_eq!(tx.list_agents().await.unwrap().len(), 3);
}

/// The tick's listing of quiet agents: each status against its own bound,
/// bounds inclusive, sorted by id.
pub async fn agents_due<S: Store>(s: &S) {
    use otf_core::liveness::AgentsDue;
    let due = AgentsDue {
        live_pinged_by: Timestamp(5_000),
        unknown_since_by: Timestamp(6_000),
        final_since_by: Timestamp(7_000),
    };
    let with = |status: AgentStatus, ping: i64, since: i64| {
        let mut a = agent(None, None);
        a.status = status;
        a.last_ping_at = Timestamp(ping);
        a.last_status_at = Timestamp(since);
        a
    };
    let mut listed = vec![
        with(AgentStatus::Idle, 5_000, 9_000),
        with(AgentStatus::Busy, 4_000, 9_000),
        with(AgentStatus::Unknown, 9_000, 6_000),
        with(AgentStatus::Errored, 9_000, 7_000),
        with(AgentStatus::Exited, 9_000, 1_000),
    ];
    let left_out = [
        with(AgentStatus::Idle, 5_001, 0),
        with(AgentStatus::Busy, 9_000, 0),
        with(AgentStatus::Unknown, 0, 6_001),
        with(AgentStatus::Errored, 0, 7_001),
        with(AgentStatus::Exited, 0, 9_000),
    ];
    let mut tx = begin(s).await;
    for a in listed.iter().chain(&left_out) {
        tx.insert_agent(a).await.unwrap();
    }
    commit(tx).await;
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    let mut tx = begin(s).await;
    assert_eq!(tx.list_agents_due(&due).await.unwrap(), listed);
    for a in listed.iter().chain(&left_out) {
        assert_eq!(due.includes(a), listed.contains(a), "{a:?}");
    }
}

pub async fn jobs<S: Store>(s: &S) {
    let o = org("acme");
    let w = workspace(&o, "ws");
    let cv = config_version(&w, 1, ConfigStatus::Uploaded);
    let r = run(&w, &cv, 100);
    let runner = agent(None, None);
    let apply = job(&r, JobPhase::Apply, 1, 300);
    let plan2 = job(&r, JobPhase::Plan, 2, 200);
    let mut plan1 = job(&r, JobPhase::Plan, 1, 200);
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    tx.insert_run(&r).await.unwrap();
    tx.insert_agent(&runner).await.unwrap();
    for j in [&apply, &plan2, &plan1] {
        tx.insert_job(j).await.unwrap();
    }
    commit(tx).await;

    let mut tx = begin(s).await;
    assert_eq!(
        tx.list_jobs_of_run(&r.id).await.unwrap(),
        vec![plan1.clone(), plan2.clone(), apply.clone()]
    );
    let mut queued = vec![plan1.clone(), plan2.clone()];
    queued.sort_by(|a, b| a.id.cmp(&b.id));
    queued.push(apply.clone());
    assert_eq!(tx.list_active_jobs().await.unwrap(), queued);

    plan1
        .apply(JobEvent::Allocate(runner.id.clone()), Timestamp(400))
        .unwrap();
    plan1.apply(JobEvent::Start, Timestamp(401)).unwrap();
    plan1.signal = Some(Signal::Cancel);
    plan1.token_hash = Some(SecretHash::of("job token"));
    plan1.error = Some("boom".into());
    tx.update_job(&plan1).await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(tx.get_job(&plan1.id).await.unwrap(), Some(plan1.clone()));
    assert_eq!(
        tx.list_jobs_of_agent(&runner.id).await.unwrap(),
        vec![plan1.clone()]
    );
    plan1.apply(JobEvent::Finish, Timestamp(500)).unwrap();
    assert_eq!(plan1.status, JobStatus::Finished);
    tx.update_job(&plan1).await.unwrap();
    assert!(tx.list_jobs_of_agent(&runner.id).await.unwrap().is_empty());
    assert!(!tx.list_active_jobs().await.unwrap().contains(&plan1));
    let ghost = job(&r, JobPhase::Plan, 9, 1);
    assert!(matches!(
        tx.update_job(&ghost).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn runs<S: Store>(s: &S) {
    let o = org("acme");
    let w = workspace(&o, "ws");
    let cv = config_version(&w, 1, ConfigStatus::Uploaded);
    let mut r1 = run(&w, &cv, 100);
    let r2 = run(&w, &cv, 200);
    let mut speculative = run(&w, &cv, 50);
    speculative.options.plan_only = true;
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    assert_eq!(tx.newest_run_created_at(&w.id).await.unwrap(), None);
    for r in [&r1, &r2, &speculative] {
        tx.insert_run(r).await.unwrap();
    }
    commit(tx).await;

    let mut tx = begin(s).await;
    assert_eq!(
        tx.newest_run_created_at(&w.id).await.unwrap(),
        Some(Timestamp(200)),
        "the newest of every run, speculative ones included"
    );
    assert_eq!(tx.next_pending_run(&w.id).await.unwrap(), Some(r1.clone()));
    let (page, total) = tx.list_runs(&w.id, 0, 2).await.unwrap();
    assert_eq!((page, total), (vec![r2.clone(), r1.clone()], 3));
    let (page, _) = tx.list_runs(&w.id, 2, 10).await.unwrap();
    assert_eq!(page, vec![speculative.clone()]);
    let (page, _) = tx.list_runs(&w.id, 0, u64::MAX).await.unwrap();
    assert_eq!(page.len(), 3);

    // Every field survives, including the timelines and address lists.
    r1.options.is_destroy = true;
    r1.options.auto_apply = Some(true);
    r1.options.target_addrs = vec!["null_resource.a".into(), "module.x[\"k\"]".into()];
    r1.options.replace_addrs = vec!["null_resource.b".into()];
    r1.apply_event(RunEvent::Enqueue, Timestamp(110), std::time::Duration::ZERO)
        .unwrap();
    r1.apply_event(
        RunEvent::PlanStarted,
        Timestamp(120),
        std::time::Duration::ZERO,
    )
    .unwrap();
    r1.plan.counts = ResourceCounts {
        additions: 3,
        changes: 2,
        destructions: 1,
    };
    r1.has_changes = true;
    r1.cancel_requested_at = Some(Timestamp(130));
    r1.error = Some("why".into());
    tx.update_run(&r1).await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    let back = tx.get_run(&r1.id).await.unwrap().expect("the run");
    assert_eq!(back, r1);
    assert_eq!(back.plan.status, PhaseStatus::Running);
    assert_eq!(back.status, RunStatus::Planning);
    assert_eq!(tx.next_pending_run(&w.id).await.unwrap(), Some(r2.clone()));
    let mut counts = tx.count_runs_by_status().await.unwrap();
    counts.sort();
    assert_eq!(
        counts,
        vec![(RunStatus::Pending, 2), (RunStatus::Planning, 1)]
    );
    let mut active = tx.active_run_statuses().await.unwrap();
    assert_eq!(active.len(), 3);
    assert!(active.contains(&(r1.id.clone(), RunStatus::Planning)));
    active.retain(|(_, s)| *s == RunStatus::Pending);
    assert_eq!(active.len(), 2);
    let ghost = run(&w, &cv, 1);
    assert!(matches!(
        tx.update_run(&ghost).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn configuration_and_state_versions<S: Store>(s: &S) {
    let o = org("acme");
    let w = workspace(&o, "ws");
    let old = config_version(&w, 1, ConfigStatus::Uploaded);
    let mut new = config_version(&w, 2, ConfigStatus::Pending);
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&old).await.unwrap();
    tx.insert_config_version(&new).await.unwrap();
    assert_eq!(
        tx.latest_config_version(&w.id).await.unwrap(),
        Some(old.clone())
    );
    tx.put_config_tarball(&new.id, b"first").await.unwrap();
    tx.put_config_tarball(&new.id, b"tarball bytes \x00\xff")
        .await
        .unwrap();
    new.status = ConfigStatus::Uploaded;
    new.error = Some("none really".into());
    tx.update_config_version(&new).await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(
        tx.get_config_version(&new.id).await.unwrap(),
        Some(new.clone())
    );
    assert_eq!(
        tx.latest_config_version(&w.id).await.unwrap(),
        Some(new.clone())
    );
    assert_eq!(
        tx.get_config_tarball(&new.id).await.unwrap().as_deref(),
        Some(&b"tarball bytes \x00\xff"[..])
    );
    assert_eq!(tx.get_config_tarball(&old.id).await.unwrap(), None);

    let s1 = state_version(&w, 1, 10, b"{\"serial\":1}");
    let s2 = state_version(&w, 2, 20, b"{\"serial\":2}");
    let mut s3 = state_version(&w, 3, 20, b"{\"serial\":3}");
    s3.run = Some("run-0123456789abcdef".parse().unwrap());
    for sv in [&s2, &s1, &s3] {
        let bytes = format!("{{\"serial\":{}}}", sv.serial);
        tx.insert_state_version(sv, bytes.as_bytes()).await.unwrap();
    }
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(
        tx.get_state_version(&s3.id).await.unwrap(),
        Some(s3.clone())
    );
    assert_eq!(
        tx.current_state_version(&w.id).await.unwrap(),
        Some(s3.clone())
    );
    assert_eq!(
        tx.list_state_versions(&w.id).await.unwrap(),
        vec![s3.clone(), s2, s1.clone()]
    );
    assert_eq!(
        tx.get_state_bytes(&s1.id).await.unwrap().as_deref(),
        Some(&b"{\"serial\":1}"[..])
    );
    assert!(matches!(
        tx.insert_state_version(&s1, b"").await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn variables<S: Store>(s: &S) {
    let o = org("acme");
    let w = workspace(&o, "ws");
    let tf = variable(&w, "region", VariableCategory::Terraform);
    let env = variable(&w, "region", VariableCategory::Env);
    let mut a = variable(&w, "AWS", VariableCategory::Env);
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    for v in [&env, &tf, &a] {
        tx.insert_variable(v).await.unwrap();
    }
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(
        tx.list_variables(&w.id).await.unwrap(),
        vec![a.clone(), tf.clone(), env.clone()]
    );
    let twin = variable(&w, "region", VariableCategory::Env);
    assert!(matches!(
        tx.insert_variable(&twin).await,
        Err(StoreError::Conflict(_))
    ));
    drop(tx);
    let mut tx = begin(s).await;
    a.value = "new".into();
    a.hcl = true;
    a.description = "credentials".into();
    tx.update_variable(&a).await.unwrap();
    assert_eq!(tx.get_variable(&a.id).await.unwrap(), Some(a.clone()));
    tx.delete_variable(&tf.id).await.unwrap();
    assert_eq!(tx.list_variables(&w.id).await.unwrap(), vec![a, env]);
    assert!(matches!(
        tx.update_variable(&tf).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn logs_and_artifacts<S: Store>(s: &S) {
    let o = org("acme");
    let w = workspace(&o, "ws");
    let cv = config_version(&w, 1, ConfigStatus::Uploaded);
    let r = run(&w, &cv, 1);
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    tx.insert_run(&r).await.unwrap();
    let c = tx
        .append_log(&r.id, JobPhase::Plan, b"hello ")
        .await
        .unwrap();
    assert_eq!((c.offset, c.data.as_slice()), (0, &b"hello "[..]));
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(
        tx.append_log(&r.id, JobPhase::Plan, b"")
            .await
            .unwrap()
            .offset,
        6
    );
    assert_eq!(
        tx.append_log(&r.id, JobPhase::Plan, b"world")
            .await
            .unwrap()
            .offset,
        6
    );
    assert_eq!(
        tx.append_log(&r.id, JobPhase::Plan, b"!")
            .await
            .unwrap()
            .offset,
        11
    );
    assert_eq!(
        tx.append_log(&r.id, JobPhase::Apply, b"apply")
            .await
            .unwrap()
            .offset,
        0
    );
    commit(tx).await;
    let mut tx = begin(s).await;
    let read = |o, l| (o, l);
    for ((offset, limit), want) in [
        (read(0, u64::MAX), &b"hello world!"[..]),
        (read(0, 3), b"hel"),
        (read(4, 4), b"o wo"),
        (read(6, 5), b"world"),
        (read(11, 100), b"!"),
        (read(12, 10), b""),
        (read(50, 10), b""),
        (read(3, 0), b""),
    ] {
        assert_eq!(
            tx.read_log(&r.id, JobPhase::Plan, offset, limit)
                .await
                .unwrap(),
            want,
            "{offset}+{limit}"
        );
    }
    assert_eq!(
        tx.read_log(&r.id, JobPhase::Apply, 0, 100).await.unwrap(),
        b"apply"
    );

    assert_eq!(
        tx.get_artifact(&r.id, ArtifactKind::Plan).await.unwrap(),
        None
    );
    tx.put_artifact(&r.id, ArtifactKind::Plan, b"plan v1")
        .await
        .unwrap();
    tx.put_artifact(&r.id, ArtifactKind::Plan, b"plan v2")
        .await
        .unwrap();
    tx.put_artifact(&r.id, ArtifactKind::JsonPlan, b"{}")
        .await
        .unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(
        tx.get_artifact(&r.id, ArtifactKind::Plan)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"plan v2"[..])
    );
    assert_eq!(
        tx.get_artifact(&r.id, ArtifactKind::JsonPlan)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"{}"[..])
    );
    assert_eq!(
        tx.get_artifact(&r.id, ArtifactKind::LockFile)
            .await
            .unwrap(),
        None
    );
}

pub async fn deletes_cascade<S: Store>(s: &S) {
    let o = org("acme");
    let keep = workspace(&o, "keep");
    let gone = workspace(&o, "gone");
    let mut p = pool(&o, "pool", &[&keep, &gone]);
    p.excluded_workspaces.insert(gone.id.clone());
    let t = agent_token(&p, 1);
    let a = agent(Some(&p), Some(&t));
    let cv = config_version(&gone, 1, ConfigStatus::Uploaded);
    let r = run(&gone, &cv, 1);
    let j = job(&r, JobPhase::Plan, 1, 1);
    let sv = state_version(&gone, 1, 1, b"{}");
    let v = variable(&gone, "k", VariableCategory::Env);
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&keep).await.unwrap();
    tx.insert_workspace(&gone).await.unwrap();
    tx.insert_pool(&p).await.unwrap();
    tx.insert_agent_token(&t).await.unwrap();
    tx.insert_agent(&a).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    tx.put_config_tarball(&cv.id, b"tar").await.unwrap();
    tx.insert_run(&r).await.unwrap();
    tx.insert_job(&j).await.unwrap();
    tx.insert_state_version(&sv, b"{}").await.unwrap();
    tx.insert_variable(&v).await.unwrap();
    tx.append_log(&r.id, JobPhase::Plan, b"log").await.unwrap();
    tx.put_artifact(&r.id, ArtifactKind::Plan, b"plan")
        .await
        .unwrap();
    commit(tx).await;

    let mut tx = begin(s).await;
    tx.delete_workspace(&gone.id).await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(tx.get_workspace(&gone.id).await.unwrap(), None);
    assert_eq!(tx.get_run(&r.id).await.unwrap(), None);
    assert_eq!(tx.get_job(&j.id).await.unwrap(), None);
    assert_eq!(tx.get_config_version(&cv.id).await.unwrap(), None);
    assert_eq!(tx.get_config_tarball(&cv.id).await.unwrap(), None);
    assert_eq!(tx.get_state_version(&sv.id).await.unwrap(), None);
    assert_eq!(tx.get_state_bytes(&sv.id).await.unwrap(), None);
    assert_eq!(tx.get_variable(&v.id).await.unwrap(), None);
    assert!(tx
        .read_log(&r.id, JobPhase::Plan, 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        tx.get_artifact(&r.id, ArtifactKind::Plan).await.unwrap(),
        None
    );
    let left = tx.get_pool(&p.id).await.unwrap().expect("the pool stays");
    assert!(left.excluded_workspaces.is_empty(), "exclusions go too");
    assert_eq!(
        left.allowed_workspaces.into_iter().collect::<Vec<_>>(),
        vec![keep.id.clone()]
    );

    tx.delete_organization(&o.name).await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    assert_eq!(tx.get_organization(&o.name).await.unwrap(), None);
    assert_eq!(tx.get_workspace(&keep.id).await.unwrap(), None);
    assert_eq!(tx.get_pool(&p.id).await.unwrap(), None);
    assert_eq!(tx.get_agent_token(&t.id).await.unwrap(), None);
    assert_eq!(tx.get_agent(&a.id).await.unwrap(), None);
}

pub async fn dropped_transactions_roll_back<S: Store>(s: &S) {
    let o = org("acme");
    let w = workspace(&o, "ws");
    let cv = config_version(&w, 1, ConfigStatus::Uploaded);
    let r = run(&w, &cv, 1);
    let j = job(&r, JobPhase::Plan, 1, 1);
    let mut tx = begin(s).await;
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    tx.insert_run(&r).await.unwrap();
    tx.insert_job(&j).await.unwrap();
    assert!(
        tx.get_job(&j.id).await.unwrap().is_some(),
        "a transaction reads its own writes"
    );
    drop(tx);
    let mut tx = begin(s).await;
    assert_eq!(tx.get_organization(&o.name).await.unwrap(), None);
    assert_eq!(tx.get_job(&j.id).await.unwrap(), None);
    tx.insert_organization(&o).await.unwrap();
    tx.insert_workspace(&w).await.unwrap();
    tx.insert_config_version(&cv).await.unwrap();
    tx.insert_run(&r).await.unwrap();
    tx.insert_job(&j).await.unwrap();
    commit(tx).await;

    // A service's read-modify-write whose transition the core refuses: what
    // it wrote before the refusal is undone with the transaction.
    let mut tx = begin(s).await;
    tx.lock_workspace(&w.id).await.unwrap();
    let mut run = tx.get_run(&r.id).await.unwrap().expect("the run");
    run.apply_event(RunEvent::Enqueue, Timestamp(2), std::time::Duration::ZERO)
        .unwrap();
    tx.update_run(&run).await.unwrap();
    let mut job = tx.get_job(&j.id).await.unwrap().expect("the job");
    let refused = job.apply(JobEvent::Finish, Timestamp(3));
    assert!(refused.is_err(), "an unallocated job cannot finish");
    drop(tx);
    let mut tx = begin(s).await;
    assert_eq!(tx.get_run(&r.id).await.unwrap(), Some(r));
    assert_eq!(tx.get_job(&j.id).await.unwrap(), Some(j));
}

pub async fn leader_reigns_fence_each_other<S: Store>(s: &S) {
    let mut tx = begin(s).await;
    let first = tx.begin_reign().await.unwrap();
    commit(tx).await;
    let mut tx = begin(s).await;
    assert!(tx.holds_reign(first).await.unwrap());
    drop(tx);
    // A new reign that rolls back changes nothing.
    let mut tx = begin(s).await;
    assert_eq!(tx.begin_reign().await.unwrap(), first + 1);
    drop(tx);
    let mut tx = begin(s).await;
    assert!(tx.holds_reign(first).await.unwrap());
    drop(tx);
    let mut tx = begin(s).await;
    let second = tx.begin_reign().await.unwrap();
    commit(tx).await;
    assert_eq!(second, first + 1);
    let mut tx = begin(s).await;
    assert!(!tx.holds_reign(first).await.unwrap(), "deposed");
    assert!(tx.holds_reign(second).await.unwrap());
}
