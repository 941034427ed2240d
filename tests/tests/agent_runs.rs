//! Runs with real terraform on real agents and on the server runner: the
//! README's walkthrough end to end, remote workspaces, a pool with two
//! agents, restricted pools, on SQLite and PostgreSQL.

mod e2e;
mod support;

use std::time::Duration;

use e2e::{terraform, Agent, Api, HELLO};
use serde_json::json;
use support::{databases, Server};

const RUN: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_runs_on_an_agent_of_the_pool() {
    let tf = terraform();
    for db in databases() {
        eprintln!("== {}", db.name());
        let server = Server::start(&db, &["--concurrency", "0"]);
        let api = Api::new(&server);
        api.org("acme").await;
        // 1-4: a pool, a workspace assigned to it, a token.
        let pool = api.pool("acme", "pool1").await;
        let ws = api.workspace("acme", "dev", Some(&pool)).await;
        let pool_doc = api.data(&format!("/agent-pools/{pool}")).await;
        assert_eq!(
            pool_doc["relationships"]["workspaces"]["data"][0]["id"],
            json!(ws)
        );
        let (_, secret) = api.token(&pool).await;
        // 5: the agent starts and logs the three lines.
        let agent = Agent::start(
            &server,
            &secret,
            "agent-one",
            &tf,
            &["--concurrency", "1"],
            &[],
        );
        let log = agent.log();
        assert!(log.contains("starting agent version="), "{log}");
        assert!(
            log.contains(&format!(
                "agent.id={} agent.server=false agent.status=idle",
                agent.id
            )),
            "{log}"
        );
        assert!(log.contains(&format!("agent.pool_id={pool}")), "{log}");
        // 6: the pool lists it idle.
        api.wait_agent(&pool, &agent.id, "idle", Duration::from_secs(10))
            .await;
        support::eventually(
            Duration::from_secs(10),
            "the agent to wait for jobs",
            || async { agent.log().contains("waiting for next job").then_some(()) },
        )
        .await;
        // 7: a run creates a null_resource on the agent.
        let run = api.run(&ws, HELLO, false).await;
        let planned = api.wait_for(&run, "planned", RUN).await;
        assert_eq!(planned["attributes"]["has-changes"], json!(true));
        let plan = api
            .data(&format!("/plans/{}", run.replacen("run-", "plan-", 1)))
            .await;
        assert_eq!(plan["attributes"]["resource-additions"], json!(1));
        let plan_log = api.log(&run, "plan").await;
        assert!(plan_log.contains("on agent agent-one"), "{plan_log}");
        assert!(
            plan_log.contains("Plan: 1 to add, 0 to change, 0 to destroy."),
            "{plan_log}"
        );
        api.apply(&run).await;
        api.wait_for(&run, "applied", RUN).await;
        let apply_log = api.log(&run, "apply").await;
        assert!(
            apply_log.contains("Apply complete! Resources: 1 added, 0 changed, 0 destroyed."),
            "{apply_log}"
        );
        let apply = api
            .data(&format!("/applies/{}", run.replacen("run-", "apply-", 1)))
            .await;
        assert_eq!(apply["attributes"]["resource-additions"], json!(1));
        // The outputs landed in the workspace's current state.
        let outputs = api
            .data(&format!("/workspaces/{ws}/current-state-version-outputs"))
            .await;
        assert_eq!(outputs[0]["attributes"]["name"], json!("greeting"));
        assert_eq!(outputs[0]["attributes"]["value"], json!("hello"));
        // A second run plans no changes.
        let again = api.run(&ws, HELLO, false).await;
        let done = api.wait_for(&again, "planned_and_finished", RUN).await;
        assert_eq!(done["attributes"]["has-changes"], json!(false));
        // A destroy run removes the resource.
        let destroy = api.run(&ws, HELLO, true).await;
        api.wait_for(&destroy, "planned", RUN).await;
        api.apply(&destroy).await;
        api.wait_for(&destroy, "applied", RUN).await;
        let apply = api
            .data(&format!(
                "/applies/{}",
                destroy.replacen("run-", "apply-", 1)
            ))
            .await;
        assert_eq!(apply["attributes"]["resource-destructions"], json!(1));
        let ws_doc = api.data(&format!("/workspaces/{ws}")).await;
        assert_eq!(ws_doc["attributes"]["locked"], json!(false));
        // Prometheus metrics tell the story.
        let metrics = reqwest::get(format!("{}/metrics", server.url))
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        for needle in [
            "otf_runs{status=\"applied\"} 2",
            "otf_runs{status=\"planned_and_finished\"} 1",
            &format!("otf_agents{{pool=\"{pool}\",status=\"idle\"}} 1"),
            "otf_scheduling_latency_seconds_count",
            "otf_http_requests_total{route=\"Run\",status=\"200\"}",
        ] {
            assert!(
                metrics.contains(needle),
                "{needle} missing from:\n{metrics}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_workspaces_run_on_the_server_runner() {
    let tf = terraform();
    for db in databases() {
        let server = Server::start(&db, &["--engine-bin", &tf, "--concurrency", "2"]);
        let api = Api::new(&server);
        api.org("acme").await;
        let ws = api.workspace("acme", "web", None).await;
        let run = api.run(&ws, HELLO, false).await;
        api.wait_for(&run, "planned", RUN).await;
        let log = api.log(&run, "plan").await;
        assert!(log.contains("on the server runner"), "{log}");
        api.apply(&run).await;
        api.wait_for(&run, "applied", RUN).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_two_agents_runs_jobs_on_both() {
    let tf = terraform();
    for db in databases() {
        let server = Server::start(&db, &["--concurrency", "0"]);
        let api = Api::new(&server);
        api.org("acme").await;
        let pool = api.pool("acme", "pool").await;
        let (_, secret) = api.token(&pool).await;
        let a = Agent::start(&server, &secret, "alpha", &tf, &["--concurrency", "1"], &[]);
        let b = Agent::start(&server, &secret, "beta", &tf, &["--concurrency", "1"], &[]);
        for agent in [&a, &b] {
            api.wait_agent(&pool, &agent.id, "idle", Duration::from_secs(10))
                .await;
        }
        let one = api.workspace("acme", "one", Some(&pool)).await;
        let two = api.workspace("acme", "two", Some(&pool)).await;
        let r1 = api.run(&one, HELLO, false).await;
        let r2 = api.run(&two, HELLO, false).await;
        api.wait_for(&r1, "planned", RUN).await;
        api.wait_for(&r2, "planned", RUN).await;
        let (l1, l2) = (api.log(&r1, "plan").await, api.log(&r2, "plan").await);
        let on = |l: &str| {
            if l.contains("agent alpha") {
                "alpha"
            } else {
                "beta"
            }
        };
        assert_ne!(
            on(&l1),
            on(&l2),
            "two jobs at once go to two agents with one slot each"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_pool_refuses_workspaces_it_is_not_granted_to() {
    let db = support::Db::Sqlite;
    let server = Server::start(&db, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "private").await;
    let ws = api.workspace("acme", "dev", None).await;
    let (s, _) = api
        .patch(
            &format!("/agent-pools/{pool}"),
            json!({"data":{"type":"agent-pools","attributes":{"organization-scoped":false}}}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, err) = api
        .patch(&format!("/workspaces/{ws}"), json!({"data":{"type":"workspaces","attributes":{"execution-mode":"agent","agent-pool-id":pool}}}))
        .await;
    assert_eq!(s, 422, "{err}");
    assert!(
        err["errors"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not granted"),
        "{err}"
    );
    let doc = api.data(&format!("/workspaces/{ws}")).await;
    assert_eq!(
        doc["attributes"]["execution-mode"],
        json!("remote"),
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_working_directory_is_honoured_and_a_failed_apply_still_saves_its_state() {
    let tf = terraform();
    for db in databases() {
        let server = Server::start(&db, &["--engine-bin", &tf, "--concurrency", "1"]);
        let api = Api::new(&server);
        api.org("acme").await;
        let ws = api.workspace("acme", "infra", None).await;
        let (s, v) = api
            .patch(&format!("/workspaces/{ws}"), json!({"data":{"type":"workspaces","attributes":{"working-directory":"stacks/infra"}}}))
            .await;
        assert_eq!(s, 200, "{v}");
        // The root holds a decoy that would fail if terraform ran there.
        let files = [
            ("main.tf", "this is not terraform"),
            (
                "stacks/infra/main.tf",
                "resource \"null_resource\" \"first\" {}\n\
                 resource \"null_resource\" \"second\" {\n  depends_on = [null_resource.first]\n  provisioner \"local-exec\" {\n    command = \"exit 3\"\n  }\n}\n",
            ),
        ];
        let run = api.run(&ws, &files, false).await;
        api.wait_for(&run, "planned", RUN).await;
        api.apply(&run).await;
        let errored = api.wait_for(&run, "errored", RUN).await;
        assert!(
            errored["attributes"]["error-message"]
                .as_str()
                .unwrap_or_default()
                .contains("exited"),
            "{errored}"
        );
        // What the failed apply did create is in the workspace's state.
        let state = api.current_state(&ws).await;
        let names: Vec<&str> = state["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"first"), "{state}");
    }
}
