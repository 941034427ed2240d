//! Agent tokens are cached by each replica for up to a minute, and a
//! revocation made on one replica still shuts the token out of every other
//! one at once: two otfd replicas on one PostgreSQL database; an agent
//! token used on replica B (so B caches it) is revoked on A, by deleting the
//! token, its pool, or its organization; B refuses it within seconds, far
//! inside the cache's minute.

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::api::{register, register_raw, Api, OrgFixture};
use support::{eventually, Db, Server};

/// Well inside `AGENT_TOKEN_CACHE_FOR` (60 s): only an invalidation that
/// crossed the bus can make B refuse the token this soon.
const WITHIN: Duration = Duration::from_secs(10);

/// A status ping of `agent` with `token`.
async fn ping(api: &Api, token: &str, agent: &str) -> support::api::Answer {
    api.agent(
        token,
        agent,
        Method::POST,
        "/api/agent/status",
        Some(json!({"status": "idle"})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_shuts_the_token_out_of_the_other_at_once() {
    let Some(admin) = std::env::var("OTF_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("note: OTF_TEST_DATABASE_URL is not set; the two-replica revocation test needs PostgreSQL and was not run");
        return;
    };
    let a = Server::start(&Db::Postgres(admin), &["--concurrency", "0"]);
    let b = a.replica(&["--concurrency", "0"]);
    let site = a.site_token.clone();
    let (on_a, on_b) = (Api::new(&a.url), Api::new(&b.url));

    // Each way a token dies, on its own organization.
    for (org, how) in [("tok", "token"), ("pol", "pool"), ("org", "organization")] {
        let f = OrgFixture::create(&on_a, &site, org).await;
        if how == "pool" {
            // A pool with a workspace assigned cannot be deleted.
            on_a.delete(&site, &format!("/api/v2/workspaces/{}", f.ws))
                .await
                .expect(204, "delete the pool's workspace");
        }
        // B looks the token up (and caches it, with its agent, which pings).
        let agent = register(&on_b, &f.agent_token, "b").await;
        ping(&on_b, &f.agent_token, &agent)
            .await
            .expect(200, "the agent pings B");
        let path = match how {
            "token" => format!("/api/v2/authentication-tokens/{}", f.agent_token_id),
            "pool" => format!("/api/v2/agent-pools/{}", f.pool),
            _ => format!("/api/v2/organizations/{org}"),
        };
        on_a.delete(&site, &path)
            .await
            .expect(204, &format!("delete the {how} on A"));
        let revoked = Instant::now();
        eventually(
            WITHIN,
            &format!("B to refuse the token of a deleted {how}"),
            || async {
                (register_raw(&on_b, &f.agent_token).await.status.as_u16() == 401).then_some(())
            },
        )
        .await;
        ping(&on_b, &f.agent_token, &agent)
            .await
            .expect(401, &format!("the agent of a deleted {how} pings B"));
        eprintln!(
            "B refused the token of a deleted {how} {:?} after the deletion",
            revoked.elapsed()
        );
    }
}
