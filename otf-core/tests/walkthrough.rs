//! The walkthrough of the design (pools, grants, assignment, tokens, agents,
//! runs) through the services, on the in-memory store.

mod common;

use common::{changes, World};
use otf_core::agent::{AgentStatus, ReportedStatus};
use otf_core::job::{JobPhase, JobStatus};
use otf_core::pool::PoolError;
use otf_core::run::RunStatus;
use otf_core::services::{PoolUpdate, WorkspaceUpdate};
use otf_core::workspace::{ExecutionMode, WorkspaceLock};
use otf_core::Error;

#[tokio::test]
async fn walkthrough_run_executes_on_an_agent_of_the_assigned_pool() {
    let mut w = World::new(1).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    // 1. A pool, organization-scoped by default.
    let pool = w.pool("acme", "pool1").await;
    assert!(pool.organization_scoped);
    // 3. Assign the workspace.
    let ws = w
        .core
        .update_workspace(
            &w.site,
            &ws.id,
            WorkspaceUpdate {
                execution_mode: Some(ExecutionMode::Agent(pool.id.clone()).into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let assigned = w.core.pool_workspaces(&w.site, &pool.id).await.unwrap();
    assert_eq!(
        assigned.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
        ["dev"]
    );
    // 4. A token; 5. an agent registers with it; 6. it shows idle.
    let (agent_subject, _) = w.agent_subject(&pool).await;
    let agent = w.register(&agent_subject, "agent-a", 2).await;
    assert_eq!(agent.pool.as_ref(), Some(&pool.id));
    let listed = w
        .core
        .list_agents(&w.site, &pool.id, &Default::default())
        .await
        .unwrap();
    assert_eq!(
        (listed.len(), listed[0].agent.status),
        (1, AgentStatus::Idle)
    );

    // 7. A run executes on the agent.
    let run = w.run(&ws).await;
    assert_eq!(run.status, RunStatus::PlanQueued);
    let (plan, plan_token) = w.start(&agent_subject, &agent).await;
    assert_eq!(plan.job.phase, JobPhase::Plan);
    assert_eq!(plan.job.agent.as_ref(), Some(&agent.id));
    w.ping(&agent_subject, &agent, ReportedStatus::Busy).await;
    assert_eq!(w.status(&run).await, RunStatus::Planning);
    let after_plan = w.finish(&plan_token, changes(1)).await;
    assert_eq!(after_plan.status, RunStatus::Planned);
    assert!(after_plan.is_confirmable() && after_plan.has_changes);

    w.core.confirm_run(&w.site, &run.id).await.unwrap();
    w.settle().await;
    let (apply, apply_token) = w.start(&agent_subject, &agent).await;
    assert_eq!(apply.job.phase, JobPhase::Apply);
    let done = w.finish(&apply_token, changes(1)).await;
    assert_eq!(done.status, RunStatus::Applied);
    assert_eq!(done.apply.counts.additions, 1);

    // The workspace is free again, the job tokens are dead.
    let ws = w.core.get_workspace(&w.site, &ws.id).await.unwrap();
    assert_eq!(ws.lock, None);
    assert_eq!(ws.current_run, Some(run.id.clone()));
    assert!(matches!(
        w.core.authenticate(apply.token.expose()).await,
        Err(Error::Unauthorized)
    ));
    assert!(matches!(
        w.core.authenticate(plan.token.expose()).await,
        Err(Error::Unauthorized)
    ));
    let jobs = w.core.run_jobs(&w.site, &run.id).await.unwrap();
    assert!(jobs.iter().all(|j| j.status == JobStatus::Finished));
}

#[tokio::test]
async fn remote_workspaces_run_on_the_server_runner_only() {
    let mut w = World::new(2).await;
    w.org("acme").await;
    let pool = w.pool("acme", "pool1").await;
    let (agent_subject, _) = w.agent_subject(&pool).await;
    let agent = w.register(&agent_subject, "pool-agent", 5).await;
    let server = w
        .register(&otf_core::auth::Subject::ServerRunner, "server", 5)
        .await;
    assert!(server.is_server());
    let ws = w.workspace("acme", "web", ExecutionMode::Remote).await;
    let run = w.run(&ws).await;
    let (started, _) = w
        .start(&otf_core::auth::Subject::ServerRunner, &server)
        .await;
    assert_eq!(started.run.id, run.id);
    // The pool agent never sees it; an agent token cannot reach server jobs.
    let err = w
        .core
        .start_job(&agent_subject, &server.id, &started.job.id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let pending = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        w.core.await_allocated_jobs(&agent_subject, &agent.id),
    )
    .await;
    assert!(pending.is_err(), "the pool agent has nothing to do");
}

#[tokio::test]
async fn local_workspaces_get_no_runs() {
    let w = World::new(3).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "laptop", ExecutionMode::Local).await;
    let cv = w.upload(&ws).await;
    let err = w
        .core
        .create_run(
            &w.site,
            otf_core::services::RunSpec {
                workspace: ws.id.clone(),
                configuration_version: Some(cv),
                options: Default::default(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LocalExecution { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("set its execution mode to remote or agent"));
}

#[tokio::test]
async fn restricted_pools_take_only_granted_workspaces() {
    let w = World::new(4).await;
    w.org("acme").await;
    w.org("other").await;
    let dev = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let prod = w.workspace("acme", "prod", ExecutionMode::Remote).await;
    let foreign = w.workspace("other", "x", ExecutionMode::Remote).await;
    let pool = w.pool("acme", "private").await;
    // 2. Restrict the pool to dev.
    let pool = w
        .core
        .update_pool(
            &w.site,
            &pool.id,
            PoolUpdate {
                organization_scoped: Some(false),
                allowed_workspaces: Some(vec![dev.id.clone()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!pool.organization_scoped);
    let assign = |ws: &otf_core::workspace::Workspace| {
        let core = w.core.clone();
        let site = w.site.clone();
        let id = ws.id.to_string();
        let mode = ExecutionMode::Agent(pool.id.clone());
        async move {
            core.update_workspace(
                &site,
                &id.parse::<otf_core::ids::WorkspaceId>().unwrap(),
                WorkspaceUpdate {
                    execution_mode: Some(mode.into()),
                    ..Default::default()
                },
            )
            .await
        }
    };
    let err = assign(&prod).await.unwrap_err();
    assert!(
        matches!(err, Error::Pool(PoolError::NotGranted { .. })),
        "{err}"
    );
    let err = assign(&foreign).await.unwrap_err();
    assert!(
        matches!(err, Error::Pool(PoolError::CrossOrganization { .. })),
        "{err}"
    );
    assign(&dev).await.unwrap();
    // `agent` alone keeps the pool a workspace is on, decided on the
    // workspace as the update finds it; a workspace on no pool is refused.
    let agent_alone = WorkspaceUpdate {
        execution_mode: Some(otf_core::services::ModeRequest::AgentWithCurrentPool),
        ..Default::default()
    };
    let kept = w
        .core
        .update_workspace(&w.site, &dev.id, agent_alone.clone())
        .await
        .unwrap();
    assert_eq!(kept.execution_mode, ExecutionMode::Agent(pool.id.clone()));
    let err = w
        .core
        .update_workspace(&w.site, &prod.id, agent_alone)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: "execution-mode",
                ..
            }
        ),
        "{err}"
    );
    // Both granted and assigned now; revoking the grant is refused by name.
    let err = w
        .core
        .revoke_workspace(&w.site, &pool.id, &dev.id)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("workspaces it is assigned to: dev"),
        "{err}"
    );
    let err = w
        .core
        .update_pool(
            &w.site,
            &pool.id,
            PoolUpdate {
                allowed_workspaces: Some(vec![]),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Pool(PoolError::WouldUngrantAssigned { .. })
    ));
    // Granting prod works and is saved.
    let pool = w
        .core
        .grant_workspace(&w.site, &pool.id, &prod.id)
        .await
        .unwrap();
    assert!(pool.allowed_workspaces.contains(&prod.id));
    // A foreign workspace cannot even be granted.
    let err = w
        .core
        .grant_workspace(&w.site, &pool.id, &foreign.id)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Pool(PoolError::CrossOrganization { .. })
    ));
    // Deleting the pool is refused while dev is assigned, naming it.
    let err = w.core.delete_pool(&w.site, &pool.id).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "agent pool private is still used by workspaces: dev; change their execution mode before deleting the pool"
    );
    w.core
        .update_workspace(
            &w.site,
            &dev.id,
            WorkspaceUpdate {
                execution_mode: Some(ExecutionMode::Remote.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.core.delete_pool(&w.site, &pool.id).await.unwrap();
    assert!(matches!(
        w.core.get_pool(&w.site, &pool.id).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn token_secrets_are_shown_once_and_revocation_shuts_agents_out() {
    let mut w = World::new(5).await;
    w.org("acme").await;
    let pool = w.pool("acme", "p").await;
    let err = w
        .core
        .create_agent_token(&w.site, &pool.id, "")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs a description"), "{err}");
    let (subject, secret) = w.agent_subject(&pool).await;
    let tokens = w.core.list_agent_tokens(&w.site, &pool.id).await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(
        !format!("{tokens:?}").contains(&secret[secret.len() - 64..]),
        "only the hash is kept"
    );
    let agent = w.register(&subject, "a", 1).await;
    w.core
        .delete_agent_token(&w.site, &tokens[0].id)
        .await
        .unwrap();
    w.settle().await;
    assert!(matches!(
        w.core.authenticate(&secret).await,
        Err(Error::Unauthorized)
    ));
    let view = w.core.get_agent(&w.site, &agent.id).await.unwrap();
    assert_eq!(view.agent.status, AgentStatus::Exited);
    // Even a request that slipped past authentication finds the agent gone.
    let err = w
        .core
        .ping(&subject, &agent.id, ReportedStatus::Idle, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::AgentGone {
                status: AgentStatus::Exited,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn workspace_lock_holds_runs_until_unlocked() {
    let mut w = World::new(6).await;
    w.org("acme").await;
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let server = w
        .register(&otf_core::auth::Subject::ServerRunner, "server", 5)
        .await;
    w.core.lock_workspace(&w.site, &ws.id).await.unwrap();
    let run = w.run(&ws).await;
    assert_eq!(
        run.status,
        RunStatus::Pending,
        "a manually locked workspace holds runs"
    );
    let err = w.core.lock_workspace(&w.site, &ws.id).await.unwrap_err();
    assert!(err.to_string().contains("already locked"), "{err}");
    let ws = w
        .core
        .unlock_workspace(&w.site, &ws.id, false)
        .await
        .unwrap();
    w.settle().await;
    assert_eq!(ws.lock, Some(WorkspaceLock::Run(run.id.clone())));
    assert_eq!(w.status(&run).await, RunStatus::PlanQueued);
    let (started, _) = w
        .start(&otf_core::auth::Subject::ServerRunner, &server)
        .await;
    assert_eq!(started.run.id, run.id);
    // A run's lock cannot be forced open.
    assert!(w
        .core
        .unlock_workspace(&w.site, &ws.id, true)
        .await
        .is_err());
}
