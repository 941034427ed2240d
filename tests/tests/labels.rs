//! Agent labels and workspace agent selectors with real processes: two
//! agents with different labels (one from `--label`, one from `OTF_LABELS`)
//! and two workspaces selecting them; each run lands on the right agent,
//! proved by a value from that agent's environment in the plan. A selector
//! no agent matches waits with the reason in the queue and on the run, and
//! fixing the selector lets the run go. Bad labels are refused.

mod e2e;
mod support;

use std::time::Duration;

use e2e::{terraform, Agent, Api};
use serde_json::json;
use support::{eventually, Db, Server};

const RUN: Duration = Duration::from_secs(90);
/// The plan shows `zone`, which only the agent's environment sets.
const ZONE: &str = "variable \"agent_zone\" {}\noutput \"zone\" { value = var.agent_zone }\n";

async fn select(api: &Api, ws: &str, selector: serde_json::Value) -> (u16, serde_json::Value) {
    api.patch(
        &format!("/workspaces/{ws}"),
        json!({"data": {"type": "workspaces", "attributes": {"agent-selector": selector}}}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_land_on_the_agents_their_workspaces_select() {
    let tf = terraform();
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "fleet").await;
    let (_, token) = api.token(&pool).await;
    let eu = Agent::start(
        &server,
        &token,
        "eu-1",
        &tf,
        &["--label", "region=eu", "--label", "tier=gold"],
        &[("TF_VAR_agent_zone", "eu")],
    );
    let us = Agent::start(
        &server,
        &token,
        "us-1",
        &tf,
        &[],
        &[
            ("OTF_LABELS", "region=us,disk=ssd"),
            ("TF_VAR_agent_zone", "us"),
        ],
    );
    let labels = api.data(&format!("/agents/{}", eu.id)).await["attributes"]["labels"].clone();
    assert_eq!(labels, json!({"region": "eu", "tier": "gold"}));
    let labels = api.data(&format!("/agents/{}", us.id)).await["attributes"]["labels"].clone();
    assert_eq!(labels, json!({"region": "us", "disk": "ssd"}));

    let ws_eu = api.workspace("acme", "in-eu", Some(&pool)).await;
    let ws_us = api.workspace("acme", "in-us", Some(&pool)).await;
    let (status, body) = select(&api, &ws_eu, json!({"region": "eu"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["attributes"]["agent-selector"],
        json!({"region": "eu"})
    );
    let (status, body) = select(&api, &ws_us, json!({"region": "us", "disk": "ssd"})).await;
    assert_eq!(status, 200, "{body}");

    // Several runs each, so that luck cannot place them right.
    let mut runs = Vec::new();
    for _ in 0..2 {
        runs.push((api.run(&ws_eu, &[("main.tf", ZONE)], false).await, "eu"));
        runs.push((api.run(&ws_us, &[("main.tf", ZONE)], false).await, "us"));
    }
    for (run, zone) in &runs {
        api.wait_for(run, "planned", RUN).await;
        let log = api.log(run, "plan").await;
        assert!(log.contains(&format!("zone = \"{zone}\"")), "{run}: {log}");
        api.post(&format!("/runs/{run}/actions/discard"), json!({}))
            .await;
    }

    // A selector no agent matches: the run waits and says why.
    let ws_ap = api.workspace("acme", "in-ap", Some(&pool)).await;
    let (status, body) = select(&api, &ws_ap, json!({"region": "ap"})).await;
    assert_eq!(status, 200, "{body}");
    let waiting = api.run(&ws_ap, &[("main.tf", ZONE)], false).await;
    let sentence = "no agent of pool fleet has labels region=ap";
    let job = eventually(RUN, "the queue to say why the run waits", || async {
        let jobs = api.data("/organizations/acme/jobs").await;
        jobs.as_array()
            .into_iter()
            .flatten()
            .find(|j| j["relationships"]["run"]["data"]["id"] == json!(waiting))
            .filter(|j| j["attributes"]["wait-reason"] == "no-matching-agent")
            .cloned()
    })
    .await;
    assert_eq!(job["attributes"]["wait-message"], sentence, "{job}");
    let run = api.data(&format!("/runs/{waiting}")).await;
    assert_eq!(run["attributes"]["status"], "plan_queued");
    assert_eq!(run["attributes"]["wait-message"], sentence, "{run}");
    let listed = api.data(&format!("/workspaces/{ws_ap}/runs")).await;
    assert_eq!(
        listed[0]["attributes"]["wait-message"], sentence,
        "{listed}"
    );
    // Administrators read the pool's queue numbers too (the TUI's pool
    // screen shows them): one job waits, both agents have room.
    let queue = eventually(RUN, "the pool's queue to count the waiting job", || async {
        let (status, q) = api.get(&format!("/agent-pools/{pool}/queue")).await;
        (status == 200 && q["queued"] == json!(1)).then_some(q)
    })
    .await;
    assert_eq!(queue["running"], json!(0), "{queue}");
    assert_eq!(queue["capacity"], json!(10), "{queue}");
    assert_eq!(queue["agents"]["idle"], json!(2), "{queue}");
    // The selector is fixed: the waiting run follows it.
    let (status, body) = select(&api, &ws_ap, json!({"tier": "gold"})).await;
    assert_eq!(status, 200, "{body}");
    api.wait_for(&waiting, "planned", RUN).await;
    assert!(api.log(&waiting, "plan").await.contains("zone = \"eu\""));
    let run = api.data(&format!("/runs/{waiting}")).await;
    assert_eq!(run["attributes"]["wait-message"], json!(null), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_labels_and_selectors_are_refused_with_the_rule() {
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "fleet").await;
    let (_, token) = api.token(&pool).await;
    let ws = api.workspace("acme", "ws", Some(&pool)).await;
    for (selector, says) in [
        (json!({"region": 5}), "an object of string values"),
        (json!(["region=eu"]), "an object of string values"),
        (
            json!({"bad key": "x"}),
            "label key \\\"bad key\\\" is invalid",
        ),
        (json!({"region": "e u"}), "label value"),
    ] {
        let (status, body) = select(&api, &ws, selector.clone()).await;
        assert_eq!(status, 422, "{selector}: {body}");
        assert!(body.to_string().contains(says), "{selector}: {body}");
    }
    let attrs = api.data(&format!("/workspaces/{ws}")).await["attributes"].clone();
    assert_eq!(attrs["agent-selector"], json!({}), "nothing changed");

    // An agent with a malformed label stops before registering.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otf-agent-e2e"))
        .args(["--address", &server.url, "--label", "region"])
        .env("OTF_AGENT_TOKEN", &token)
        .output()
        .expect("run otf-agent");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("write key=value"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otf-agent-e2e"))
        .args(["--address", &server.url])
        .env("OTF_LABELS", "a=1,a=2")
        .env("OTF_AGENT_TOKEN", &token)
        .output()
        .expect("run otf-agent");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("given twice"), "{stderr}");
    assert!(api.agents(&pool).await.is_empty());
}
