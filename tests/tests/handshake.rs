//! The version handshake: registration carries the agent's version and
//! protocol; otfd refuses a protocol it does not speak with a 426 saying
//! which versions each side speaks and what to upgrade, and keeps taking
//! older agents that send no protocol at all.

mod e2e;
mod support;

use e2e::Api;
use serde_json::json;
use support::{Db, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_speaking_another_protocol_is_told_what_to_upgrade() {
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "pool").await;
    let (_, token) = api.token(&pool).await;
    let http = reqwest::Client::new();
    let register = |body: serde_json::Value| {
        http.post(format!("{}/api/agent/register", server.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let newer =
        register(json!({"name": "n", "version": "9.9.9", "concurrency": 1, "protocol": 99}))
            .await
            .expect("an answer");
    assert_eq!(newer.status(), 426);
    let text = newer.text().await.unwrap_or_default();
    assert!(
        text.contains("otf-agent 9.9.9 speaks agent protocol 99")
            && text.contains("speaks protocols 1 to 2")
            && text.contains("upgrade otfd"),
        "{text}"
    );
    let older = register(json!({"name": "o", "version": "0.0.9", "concurrency": 1}))
        .await
        .expect("an answer");
    assert_eq!(
        older.status(),
        200,
        "an agent that sends no protocol speaks the first"
    );
    // Nothing was registered for the refused one.
    let agents = api.agents(&pool).await;
    assert_eq!(
        agents.iter().map(|a| a.1.as_str()).collect::<Vec<_>>(),
        vec!["o"]
    );
}
