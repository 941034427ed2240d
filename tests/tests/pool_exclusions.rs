//! Excluded workspaces (TFE's `excluded-workspaces` of agent pools) through
//! the API: an excluded workspace cannot be assigned (a 422 naming the
//! rule), an assigned one cannot be excluded, and the pool shows them.

mod e2e;
mod support;

use e2e::Api;
use serde_json::json;
use support::{Db, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_workspaces_cannot_use_an_organization_scoped_pool() {
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let dev = api.workspace("acme", "dev", None).await;
    let prod = api.workspace("acme", "prod", None).await;
    let (status, body) = api
        .post(
            "/organizations/acme/agent-pools",
            json!({"data": {"type": "agent-pools", "attributes": {"name": "pool"},
                "relationships": {"excluded-workspaces": {"data": [{"type": "workspaces", "id": dev}]}}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let pool = body["data"]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        body["data"]["relationships"]["excluded-workspaces"]["data"][0]["id"],
        json!(dev),
        "{body}"
    );
    let assign = |ws: String| {
        let api = api.clone();
        let pool = pool.clone();
        async move {
            api.patch(
                &format!("/workspaces/{ws}"),
                json!({"data": {"type": "workspaces", "attributes":
                    {"execution-mode": "agent", "agent-pool-id": pool}}}),
            )
            .await
        }
    };
    let (status, body) = assign(dev.clone()).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string()
            .contains("workspace dev is excluded from agent pool pool"),
        "{body}"
    );
    let (status, body) = assign(prod.clone()).await;
    assert_eq!(status, 200, "{body}");
    // Excluding the assigned prod is refused; nothing changes.
    let (status, body) = api
        .patch(
            &format!("/agent-pools/{pool}"),
            json!({"data": {"type": "agent-pools", "relationships": {"excluded-workspaces":
                {"data": [{"type": "workspaces", "id": prod}]}}}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("prod"), "{body}");
    let now = api.data(&format!("/agent-pools/{pool}")).await;
    assert_eq!(
        now["relationships"]["excluded-workspaces"]["data"]
            .as_array()
            .map(|a| a.len()),
        Some(1),
        "{now}"
    );
}
