//! Pool views: a pool with its assigned workspaces and live agent count,
//! read in one transaction; listings filtered by name and by the workspace
//! that may use them.

mod common;

use common::World;
use otf_core::ids::OrganizationName;
use otf_core::services::{PoolFilter, PoolSpec, PoolUpdate};
use otf_core::workspace::ExecutionMode;
use otf_core::Error;

#[tokio::test]
async fn a_pool_view_counts_live_agents_and_lists_assigned_workspaces() {
    let mut w = World::new(60).await;
    w.org("acme").await;
    let pool = w.pool("acme", "linux").await;
    let dev = w
        .workspace("acme", "dev", ExecutionMode::Agent(pool.id.clone()))
        .await;
    w.workspace("acme", "prod", ExecutionMode::Remote).await;
    let (subject, _) = w.agent_subject(&pool).await;
    let a = w.register(&subject, "a", 1).await;
    w.register(&subject, "b", 1).await;
    let view = w.core.pool_view(&w.site, &pool.id).await.unwrap();
    assert_eq!(view.live_agents, 2);
    assert_eq!(
        view.assigned.iter().map(|ws| &ws.id).collect::<Vec<_>>(),
        [&dev.id]
    );
    // An agent that exited no longer counts.
    w.ping(&subject, &a, otf_core::agent::ReportedStatus::Exited)
        .await;
    let view = w.core.pool_view(&w.site, &pool.id).await.unwrap();
    assert_eq!(view.live_agents, 1);
}

#[tokio::test]
async fn listings_filter_by_name_and_by_the_workspace_allowed() {
    let w = World::new(61).await;
    w.org("acme").await;
    let acme: OrganizationName = "acme".parse().unwrap();
    let ws = w.workspace("acme", "dev", ExecutionMode::Remote).await;
    w.pool("acme", "linux-any").await;
    let granted = w
        .core
        .create_pool(
            &w.site,
            &acme,
            PoolSpec {
                name: "linux-granted".into(),
                organization_scoped: false,
                allowed_workspaces: vec![ws.id.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let other = w
        .core
        .create_pool(
            &w.site,
            &acme,
            PoolSpec {
                name: "windows".into(),
                organization_scoped: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let names = |views: Vec<otf_core::services::PoolView>| {
        views.into_iter().map(|v| v.pool.name).collect::<Vec<_>>()
    };
    let all = w
        .core
        .list_pool_views(&w.site, &acme, &PoolFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let linux = PoolFilter {
        name_contains: Some("linux".into()),
        ..Default::default()
    };
    let mut got = names(
        w.core
            .list_pool_views(&w.site, &acme, &linux)
            .await
            .unwrap(),
    );
    got.sort();
    assert_eq!(got, ["linux-any", "linux-granted"]);
    let for_dev = PoolFilter {
        allowed_workspace: Some("dev".into()),
        ..Default::default()
    };
    let mut got = names(
        w.core
            .list_pool_views(&w.site, &acme, &for_dev)
            .await
            .unwrap(),
    );
    got.sort();
    assert_eq!(got, ["linux-any", "linux-granted"]);
    // Granting the workspace lists the pool for it.
    w.core
        .update_pool(
            &w.site,
            &other.id,
            PoolUpdate {
                allowed_workspaces: Some(vec![ws.id.clone()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let got = names(
        w.core
            .list_pool_views(&w.site, &acme, &for_dev)
            .await
            .unwrap(),
    );
    assert_eq!(got.len(), 3, "{got:?}");
    // A workspace that does not exist is not found, as by name elsewhere.
    let nobody = PoolFilter {
        allowed_workspace: Some("nope".into()),
        ..Default::default()
    };
    assert!(matches!(
        w.core.list_pool_views(&w.site, &acme, &nobody).await,
        Err(Error::NotFound { .. })
    ));
    let _ = granted;
}
