//! Authorization through the services: organization tokens, agent tokens and
//! job tokens stay in their scope; reads outside it are "not found", writes
//! "forbidden"; wrong or revoked tokens are unauthorized.

mod common;

use common::World;
use otf_core::artifacts::ArtifactKind;
use otf_core::auth::Subject;
use otf_core::services::{PoolSpec, StateSpec, VariableSpec, WorkspaceSpec};
use otf_core::workspace::ExecutionMode;
use otf_core::Error;

#[tokio::test]
async fn organization_tokens_stay_in_their_organization() {
    let w = World::new(30).await;
    w.org("acme").await;
    w.org("other").await;
    let theirs = w.workspace("other", "secret", ExecutionMode::Remote).await;
    let (_, secret) = w
        .core
        .create_org_token(
            &w.site,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
            "ci",
        )
        .await
        .unwrap();
    let acme = w.core.authenticate(secret.expose()).await.unwrap();
    assert!(matches!(acme, Subject::Organization { .. }));
    // Own organization: full access.
    let mine = w
        .core
        .create_workspace(
            &acme,
            &"acme".parse::<otf_core::ids::OrganizationName>().unwrap(),
            WorkspaceSpec {
                name: "mine".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.core.get_workspace(&acme, &mine.id).await.unwrap();
    // Another organization: reads are not found, writes forbidden.
    assert!(matches!(
        w.core.get_workspace(&acme, &theirs.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        w.core
            .list_workspaces(
                &acme,
                &"other".parse::<otf_core::ids::OrganizationName>().unwrap(),
                &Default::default()
            )
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        w.core
            .get_organization(
                &acme,
                &"other".parse::<otf_core::ids::OrganizationName>().unwrap()
            )
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        w.core
            .create_pool(
                &acme,
                &"other".parse::<otf_core::ids::OrganizationName>().unwrap(),
                PoolSpec {
                    name: "p".into(),
                    ..Default::default()
                }
            )
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        w.core.delete_workspace(&acme, &theirs.id).await,
        Err(Error::Forbidden(_))
    ));
    // Writes that name another organization's workspace are forbidden too,
    // whether by id or by name; a missing one is still not found.
    let var = VariableSpec {
        key: Some("k".into()),
        value: Some("v".into()),
        category: Some(otf_core::artifacts::VariableCategory::Env),
        ..Default::default()
    };
    assert!(matches!(
        w.core.create_variable(&acme, &theirs.id, var.clone()).await,
        Err(Error::Forbidden(_))
    ));
    let state = StateSpec {
        serial: 1,
        lineage: "l".into(),
        md5: None,
        state: b"{}".to_vec(),
        force: false,
        run: None,
    };
    assert!(matches!(
        w.core.create_state_version(&acme, &theirs.id, state).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        w.core.get_workspace_to_change(&acme, &theirs.id).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        w.core
            .get_workspace_by_name_to_change(
                &acme,
                &"other".parse::<otf_core::ids::OrganizationName>().unwrap(),
                "secret"
            )
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        w.core
            .get_workspace_by_name_to_change(
                &acme,
                &"other".parse::<otf_core::ids::OrganizationName>().unwrap(),
                "missing"
            )
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        w.core
            .get_workspace_to_change(
                &acme,
                &"ws-AAAAAAAAAAAAAAAA"
                    .parse::<otf_core::ids::WorkspaceId>()
                    .unwrap()
            )
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(w
        .core
        .list_variables(&w.site, &theirs.id)
        .await
        .unwrap()
        .is_empty());
    assert!(w
        .core
        .current_state_version(&w.site, &theirs.id)
        .await
        .unwrap()
        .is_none());
    // Only the site administrator creates organizations.
    assert!(matches!(
        w.core
            .create_organization(
                &acme,
                &"mine".parse::<otf_core::ids::OrganizationName>().unwrap(),
                "a@b.c"
            )
            .await,
        Err(Error::Forbidden(_))
    ));
    let orgs = w.core.list_organizations(&acme).await.unwrap();
    assert_eq!(
        orgs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        ["acme"]
    );
}

#[tokio::test]
async fn agent_tokens_only_speak_the_agent_protocol_of_their_pool() {
    let mut w = World::new(31).await;
    w.org("acme").await;
    let pool_a = w.pool("acme", "a").await;
    let pool_b = w.pool("acme", "b").await;
    let ws = w
        .workspace("acme", "dev", ExecutionMode::Agent(pool_b.id.clone()))
        .await;
    let (token_a, _) = w.agent_subject(&pool_a).await;
    let (token_b, _) = w.agent_subject(&pool_b).await;
    let agent_b = w.register(&token_b, "b", 1).await;
    w.run(&ws).await;
    let jobs = w.allocated(&token_b, &agent_b).await;
    // Pool A's token sees nothing of pool B.
    let err = w
        .core
        .start_job(&token_a, &agent_b.id, &jobs[0].id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = w
        .core
        .await_allocated_jobs(&token_a, &agent_b.id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = w
        .core
        .await_signal(&token_a, &agent_b.id, &jobs[0].id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    // Agent tokens are not API tokens.
    assert!(matches!(
        w.core.get_workspace(&token_b, &ws.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        w.core
            .list_pools(
                &token_b,
                &"acme".parse::<otf_core::ids::OrganizationName>().unwrap()
            )
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        w.core
            .create_agent_token(&token_b, &pool_b.id, "more")
            .await,
        Err(Error::Forbidden(_))
    ));
    // Another token of the same pool cannot act as this agent either.
    let (token_b2, _) = w.agent_subject(&pool_b).await;
    assert!(matches!(
        w.core
            .ping(
                &token_b2,
                &agent_b.id,
                otf_core::agent::ReportedStatus::Busy,
                None
            )
            .await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn job_tokens_cannot_reach_another_workspaces_run() {
    let mut w = World::new(32).await;
    w.org("acme").await;
    let dev = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let prod = w.workspace("acme", "prod", ExecutionMode::Remote).await;
    let server = w.register(&Subject::ServerRunner, "server", 2).await;
    w.run(&dev).await;
    let prod_run = w.run(&prod).await;
    let jobs = w.allocated(&Subject::ServerRunner, &server).await;
    let dev_job = jobs.iter().find(|j| j.workspace == dev.id).unwrap();
    let started = w
        .core
        .start_job(&Subject::ServerRunner, &server.id, &dev_job.id)
        .await
        .unwrap();
    let dev_token = w.core.authenticate(started.token.expose()).await.unwrap();
    assert!(matches!(
        w.core.get_run(&dev_token, &prod_run.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        w.core
            .read_log(
                &dev_token,
                &prod_run.id,
                otf_core::job::JobPhase::Plan,
                0,
                10
            )
            .await,
        Err(Error::NotFound { .. })
    ));
    // Its own job context is the dev run only.
    let (_, run, ws) = w
        .core
        .job_context(&dev_token, otf_core::auth::JobAction::ReadCurrentState)
        .await
        .unwrap();
    assert_eq!((run.workspace, ws.id), (dev.id.clone(), dev.id));
}

#[tokio::test]
async fn wrong_and_malformed_tokens_are_unauthorized() {
    let w = World::new(33).await;
    w.org("acme").await;
    let pool = w.pool("acme", "p").await;
    let (_, secret) = w.agent_subject(&pool).await;
    assert!(matches!(
        w.core.authenticate(common::SITE_TOKEN).await,
        Ok(Subject::SiteAdmin)
    ));
    let mut tampered = secret.clone();
    tampered.pop();
    tampered.push(if secret.ends_with('0') { '1' } else { '0' });
    for bad in [
        "",
        "nope",
        "at-xxxx.yyyy",
        tampered.as_str(),
        &format!("job-0000000000000000.{}", "0".repeat(64)),
    ] {
        assert!(
            matches!(w.core.authenticate(bad).await, Err(Error::Unauthorized)),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn a_job_token_authenticated_before_its_attempt_ended_writes_nothing_after() {
    // A runner's request authenticated while its attempt ran, answered
    // after the attempt ended (a race with its own finish, or with otfd
    // giving the job up): each job service checks the attempt again in the
    // transaction that writes or reads, so nothing lands.
    let mut w = World::new(34).await;
    w.org("acme").await;
    let dev = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    let server = w.register(&Subject::ServerRunner, "server", 1).await;
    w.run(&dev).await;
    let (_, token) = w.start(&Subject::ServerRunner, &server).await;
    w.core
        .upload_artifact(&token, ArtifactKind::Plan, b"while it runs")
        .await
        .expect("the running attempt may upload");
    w.finish(&token, otf_core::services::JobOutcome::Canceled)
        .await;
    let refused = |r: Result<(), Error>| matches!(r, Err(Error::Unauthorized));
    assert!(refused(
        w.core
            .upload_artifact(&token, ArtifactKind::Plan, b"after its end")
            .await
    ));
    assert!(matches!(
        w.core.append_job_log(&token, b"after its end").await,
        Err(Error::Unauthorized)
    ));
    assert!(matches!(
        w.core.job_variables(&token).await,
        Err(Error::Unauthorized)
    ));
}

#[tokio::test]
async fn an_agent_token_used_again_soon_is_not_touched_again() {
    // The token cache must learn the touch: else every use within its
    // window would write `last_used_at` (a commit on every agent request).
    let mut w = World::new(34).await;
    w.org("acme").await;
    let pool = w.pool("acme", "p").await;
    let (subject, secret) = w.agent_subject(&pool).await;
    let Subject::AgentToken { token, .. } = subject else {
        panic!("not an agent token: {subject:?}")
    };
    let last_used = |w: &World| {
        let (core, site, token) = (w.core.clone(), w.site.clone(), token.clone());
        async move {
            core.get_agent_token(&site, &token)
                .await
                .unwrap()
                .last_used_at
        }
    };
    let first = last_used(&w).await;
    assert!(first.is_some(), "the first use is recorded");
    w.clock.advance(std::time::Duration::from_millis(500));
    w.core.authenticate(&secret).await.unwrap();
    assert_eq!(
        last_used(&w).await,
        first,
        "a use within the touch interval writes nothing"
    );
    // After the touch interval (and the cache window) it is written again.
    w.advance(std::time::Duration::from_secs(61)).await;
    w.core.authenticate(&secret).await.unwrap();
    let third = last_used(&w).await;
    assert!(third > first, "{third:?} after {first:?}");
}
