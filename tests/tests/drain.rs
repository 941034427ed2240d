//! Draining agents and pools with real processes: a drained agent finishes
//! the plan it runs and takes no new job (the queue says why), undraining
//! lets the queued run go; an agent joining a drained pool starts drained,
//! and with `--exit-when-drained` it reports `exited` and exits 0.

mod e2e;
mod support;

use std::time::Duration;

use e2e::{slow_engine, terraform, Agent, Api};
use serde_json::json;
use support::{eventually, Db, Server};

const RUN: Duration = Duration::from_secs(90);
const NULL: &str = "resource \"null_resource\" \"a\" {}\n";

/// otfd (no server runner) with organization `acme`, a pool and a token
/// of it.
async fn fleet() -> (Server, Api, String, String) {
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "pool").await;
    let (_, token) = api.token(&pool).await;
    (server, api, pool, token)
}

async fn agent_attrs(api: &Api, id: &str) -> serde_json::Value {
    api.data(&format!("/agents/{id}")).await["attributes"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_agent_finishes_its_plan_and_takes_nothing_new_until_undrained() {
    let dir = tempfile::tempdir().expect("a directory");
    let engine = slow_engine(dir.path());
    let real = terraform();
    let release = dir.path().join("release-plan");
    let (server, api, pool, token) = fleet().await;
    let first_ws = api.workspace("acme", "first", Some(&pool)).await;
    let second_ws = api.workspace("acme", "second", Some(&pool)).await;
    let dir_text = dir.path().display().to_string();
    let release_text = release.display().to_string();
    let agent = Agent::start(
        &server,
        &token,
        "worker",
        &engine,
        &[
            "--concurrency",
            "1",
            "--sandbox-read",
            &real,
            "--sandbox-read",
            &dir_text,
        ],
        &[
            ("SLOW_TF_COMMAND", "plan"),
            ("SLOW_TF_RELEASE", &release_text),
        ],
    );
    let first = api.run(&first_ws, &[("main.tf", NULL)], false).await;
    api.wait_log(&first, "plan", "slow plan is waiting", RUN)
        .await;

    // Drain the agent while it plans.
    let (status, body) = api
        .post(&format!("/agents/{}/actions/drain", agent.id), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let attrs = &body["data"]["attributes"];
    assert_eq!(
        (attrs["drained"].clone(), attrs["current-jobs"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(attrs["status"], "busy", "the status stays TFE's");
    let second = api.run(&second_ws, &[("main.tf", NULL)], false).await;
    std::fs::write(&release, b"").expect("release the plan");
    api.wait_for(&first, "planned", RUN).await;
    // Drained and empty, in one read.
    eventually(RUN, "the drained agent to be empty", || async {
        let a = agent_attrs(&api, &agent.id).await;
        (a["drained"] == json!(true) && a["current-jobs"] == json!(0) && a["status"] == "idle")
            .then_some(())
    })
    .await;
    // The second run waits, and the queue says why.
    let jobs = api.data("/organizations/acme/jobs").await;
    let waiting = jobs
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j["relationships"]["run"]["data"]["id"] == json!(second))
        .cloned()
        .unwrap_or_default();
    assert_eq!(waiting["attributes"]["wait-reason"], "drained", "{jobs}");
    assert_eq!(api.status(&second).await, "plan_queued");

    // Undrain: the queued run goes.
    let (status, body) = api
        .post(&format!("/agents/{}/actions/undrain", agent.id), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_for(&second, "planned", RUN).await;
    let bad = api
        .post(&format!("/agents/{}/actions/explode", agent.id), json!({}))
        .await;
    assert_eq!(bad.0, 404, "{}", bad.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_joining_a_drained_pool_starts_drained_and_exits_when_told() {
    let tf = terraform();
    let (server, api, pool, token) = fleet().await;
    let steady = Agent::start(&server, &token, "steady", &tf, &[], &[]);
    let (status, body) = api
        .post(&format!("/agent-pools/{pool}/actions/drain"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["drained"], true, "{body}");
    assert_eq!(agent_attrs(&api, &steady.id).await["drained"], true);
    // A new agent with --exit-when-drained registers drained, and leaves.
    let mut leaving = Agent::start(
        &server,
        &token,
        "leaving",
        &tf,
        &["--exit-when-drained"],
        &[],
    );
    assert_eq!(leaving.wait_exit(RUN).await, Some(0), "{}", leaving.log());
    assert!(
        leaving.log().contains("drained and idle: exiting"),
        "{}",
        leaving.log()
    );
    assert_eq!(agent_attrs(&api, &leaving.id).await["status"], "exited");
    // The other keeps pinging, drained, until the pool is undrained.
    api.wait_agent(&pool, &steady.id, "idle", RUN).await;
    let (status, _) = api
        .post(&format!("/agent-pools/{pool}/actions/undrain"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(agent_attrs(&api, &steady.id).await["drained"], false);
}

/// `otf_pool_*` of `/metrics` for `pool`, by family.
async fn pool_gauges(server: &Server, pool: &str) -> std::collections::BTreeMap<String, u64> {
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    let label = format!("{{pool=\"{pool}\"}} ");
    text.lines()
        .filter(|l| l.starts_with("otf_pool_"))
        .filter_map(|l| {
            let (name, value) = l.split_once(&label)?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscalers_read_the_pools_queue_from_metrics_and_with_an_agent_token() {
    let tf = terraform();
    let (server, api, pool, token) = fleet().await;
    let ws = api.workspace("acme", "dev", Some(&pool)).await;
    let queue = || async {
        let r = reqwest::Client::new()
            .get(format!("{}/api/agent/queue", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("the queue");
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.expect("json")
    };
    // A run and no agent: one queued job, no capacity.
    let run = api.run(&ws, &[("main.tf", NULL)], false).await;
    eventually(RUN, "the queued job in the gauges", || async {
        let g = pool_gauges(&server, &pool).await;
        (g.get("otf_pool_jobs_queued") == Some(&1)).then_some(())
    })
    .await;
    let g = pool_gauges(&server, &pool).await;
    assert_eq!(g.get("otf_pool_capacity"), Some(&0), "{g:?}");
    assert_eq!(g.get("otf_pool_jobs_running"), Some(&0), "{g:?}");
    assert!(g.contains_key("otf_pool_oldest_queued_seconds"), "{g:?}");
    let q = queue().await;
    assert_eq!(
        (
            q["pool"].clone(),
            q["queued"].clone(),
            q["capacity"].clone()
        ),
        (json!(pool), json!(1), json!(0)),
        "{q}"
    );
    // An agent with two slots arrives and plans it.
    let agent = Agent::start(&server, &token, "scaled", &tf, &["--concurrency", "2"], &[]);
    api.wait_for(&run, "planned", RUN).await;
    eventually(RUN, "an idle agent with two free slots", || async {
        let q = queue().await;
        (q["queued"] == json!(0) && q["capacity"] == json!(2) && q["agents"]["idle"] == json!(1))
            .then_some(())
    })
    .await;
    // Drained, it offers no capacity.
    api.post(&format!("/agent-pools/{pool}/actions/drain"), json!({}))
        .await;
    eventually(RUN, "no capacity once drained", || async {
        (pool_gauges(&server, &pool).await.get("otf_pool_capacity") == Some(&0)).then_some(())
    })
    .await;
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_execution_agents_run_one_run_each_and_keep_its_apply() {
    let tf = terraform();
    let (server, api, pool, token) = fleet().await;
    let ws = api.workspace("acme", "dev", Some(&pool)).await;
    let flags = ["--single", "--single-wait", "8s"];
    let mut one = Agent::start(&server, &token, "one", &tf, &flags, &[]);
    let mut two = Agent::start(&server, &token, "two", &tf, &flags, &[]);
    let run = api.run(&ws, &[("main.tf", NULL)], false).await;
    api.wait_for(&run, "planned", RUN).await;
    let plan = api.log(&run, "plan").await;
    let planner = if plan.contains("on agent one") {
        "one"
    } else {
        "two"
    };
    assert!(plan.contains(&format!("on agent {planner} ")), "{plan}");
    // The planner is drained now: nothing else reaches it.
    let planner_id = if planner == "one" {
        one.id.clone()
    } else {
        two.id.clone()
    };
    assert_eq!(agent_attrs(&api, &planner_id).await["drained"], true);
    api.apply(&run).await;
    api.wait_for(&run, "applied", RUN).await;
    let apply = api.log(&run, "apply").await;
    assert!(
        apply.contains(&format!("on agent {planner} ")),
        "the apply runs on the agent that planned: {apply}"
    );
    // Both exit 0: the planner after the apply, the other after waiting.
    assert_eq!(one.wait_exit(RUN).await, Some(0), "{}", one.log());
    assert_eq!(two.wait_exit(RUN).await, Some(0), "{}", two.log());
    for a in [&one, &two] {
        assert_eq!(agent_attrs(&api, &a.id).await["status"], "exited");
    }
}
