//! Cancel, force-cancel, lost agents (kill -9 while allocated, planning or
//! applying), a zombie agent coming back, token revocation and graceful
//! shutdown, with real otfd, otf-agent and terraform processes.

mod e2e;
mod support;

use std::time::Duration;

use e2e::{slow_engine, terraform, Agent, Api, HELLO};
use nix::sys::signal::Signal;
use serde_json::json;
use support::{databases, eventually, Server};

const RUN: Duration = Duration::from_secs(90);

struct World {
    server: Server,
    api: Api,
    pool: String,
    ws: String,
    secret: String,
    token_id: String,
    engine: String,
    /// The real terraform behind `engine`.
    real: String,
    _dir: tempfile::TempDir,
}

async fn world(db: &support::Db) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = slow_engine(dir.path());
    let server = Server::start(db, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "pool").await;
    let ws = api.workspace("acme", "dev", Some(&pool)).await;
    let (token_id, secret) = api.token(&pool).await;
    World {
        server,
        api,
        pool,
        ws,
        secret,
        token_id,
        engine,
        real: terraform(),
        _dir: dir,
    }
}

impl World {
    fn agent(&self, name: &str, slow: &str, ignore_int: bool) -> Agent {
        let mut env = vec![("SLOW_TF_COMMAND", slow)];
        if ignore_int {
            env.push(("SLOW_TF_IGNORE_INT", "1"));
        }
        Agent::start(
            &self.server,
            &self.secret,
            name,
            &self.engine,
            &["--concurrency", "1", "--sandbox-read", &self.real],
            &env,
        )
    }
}

const SLOW_APPLY: &[(&str, &str)] = &[(
    "main.tf",
    "resource \"null_resource\" \"slow\" {\n  provisioner \"local-exec\" {\n    command = \"sleep 600\"\n  }\n}\n",
)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_interrupts_terraform_and_force_cancel_kills_it() {
    for db in databases() {
        let w = world(&db).await;
        let agent = w.agent("alpha", "none", false);
        // Cancel: a real local-exec sleep during apply is interrupted.
        let run = w.api.run(&w.ws, SLOW_APPLY, false).await;
        w.api.wait_for(&run, "planned", RUN).await;
        w.api.apply(&run).await;
        w.api.wait_for(&run, "applying", RUN).await;
        w.api.wait_log(&run, "apply", "local-exec", RUN).await;
        let (s, _) = w
            .api
            .post(&format!("/runs/{run}/actions/cancel"), json!({}))
            .await;
        assert_eq!(s, 202);
        w.api.wait_for(&run, "canceled", RUN).await;
        w.api.wait_agent(&w.pool, &agent.id, "idle", RUN).await;
        drop(agent);

        // Force-cancel: this terraform ignores the interrupt; it is killed.
        let stubborn = w.agent("beta", "apply", true);
        let run = w.api.run(&w.ws, HELLO, false).await;
        w.api.wait_for(&run, "planned", RUN).await;
        w.api.apply(&run).await;
        w.api.wait_for(&run, "applying", RUN).await;
        w.api
            .wait_log(&run, "apply", "slow apply is waiting", RUN)
            .await;
        let (s, _) = w
            .api
            .post(&format!("/runs/{run}/actions/cancel"), json!({}))
            .await;
        assert_eq!(s, 202);
        let run_doc = w.api.data(&format!("/runs/{run}")).await;
        assert_eq!(
            run_doc["attributes"]["status"],
            json!("applying"),
            "the interrupt is ignored"
        );
        let api = w.api.clone();
        eventually(
            Duration::from_secs(10),
            "force-cancel to be available",
            || {
                let (api, run) = (api.clone(), run.clone());
                async move {
                    let (s, body) = api
                        .post(&format!("/runs/{run}/actions/force-cancel"), json!({}))
                        .await;
                    assert!(
                        s == 202 || body.to_string().contains("only some time after"),
                        "{body}"
                    );
                    (s == 202).then_some(())
                }
            },
        )
        .await;
        let done = w.api.data(&format!("/runs/{run}")).await;
        assert_eq!(done["attributes"]["status"], json!("canceled"));
        assert!(
            done["attributes"]["status-timestamps"]["force-canceled-at"].is_string(),
            "{done}"
        );
        // The agent killed terraform and is free again.
        w.api.wait_agent(&w.pool, &stubborn.id, "idle", RUN).await;
        eventually(RUN, "the agent to report the kill", || async {
            stubborn.log().contains("job finished").then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_allocated_to_a_silent_agent_runs_on_another() {
    for db in databases() {
        let w = world(&db).await;
        let frozen = w.agent("frozen", "none", false);
        frozen.signal(Signal::SIGSTOP);
        let run = w.api.run(&w.ws, HELLO, false).await;
        // Allocated to the only agent, which never starts it.
        let healthy = w.agent("healthy", "none", false);
        let planned = w.api.wait_for(&run, "planned", RUN).await;
        assert_eq!(planned["attributes"]["status"], json!("planned"));
        assert!(w.api.log(&run, "plan").await.contains("on agent healthy"));
        frozen.signal(Signal::SIGKILL);
        drop(healthy);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_whose_agent_dies_runs_again_on_another_agent() {
    for db in databases() {
        let w = world(&db).await;
        let doomed = w.agent("doomed", "plan", false);
        let run = w.api.run(&w.ws, HELLO, false).await;
        w.api.wait_for(&run, "planning", RUN).await;
        doomed.signal(Signal::SIGKILL);
        let _rescuer = w.agent("rescuer", "none", false);
        w.api.wait_for(&run, "planned", RUN).await;
        let log = w.api.log(&run, "plan").await;
        assert!(log.contains("agent doomed"), "{log}");
        assert!(log.contains("planning again as attempt 2"), "{log}");
        assert!(log.contains("on agent rescuer (attempt 2)"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_whose_agent_dies_errors_the_run_and_the_workspace_moves_on() {
    for db in databases() {
        let w = world(&db).await;
        let doomed = w.agent("doomed", "apply", false);
        let run = w.api.run(&w.ws, HELLO, false).await;
        w.api.wait_for(&run, "planned", RUN).await;
        let next = w.api.run(&w.ws, HELLO, false).await;
        assert_eq!(w.api.status(&next).await, "pending");
        w.api.apply(&run).await;
        w.api.wait_for(&run, "applying", RUN).await;
        doomed.signal(Signal::SIGKILL);
        let errored = w.api.wait_for(&run, "errored", RUN).await;
        let message = errored["attributes"]["error-message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains("doomed") && message.contains(&doomed.id),
            "{message}"
        );
        let _rescuer = w.agent("rescuer", "none", false);
        w.api.wait_for(&next, "planned", RUN).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_agent_cannot_finish_its_old_job_and_registers_again() {
    for db in databases() {
        let w = world(&db).await;
        let zombie = w.agent("zombie", "plan", false);
        let run = w.api.run(&w.ws, HELLO, false).await;
        w.api.wait_for(&run, "planning", RUN).await;
        zombie.signal(Signal::SIGSTOP);
        let _rescuer = w.agent("rescuer", "none", false);
        w.api.wait_agent(&w.pool, &zombie.id, "errored", RUN).await;
        w.api.wait_for(&run, "planned", RUN).await;
        zombie.signal(Signal::SIGCONT);
        eventually(RUN, "the zombie to register again", || async {
            zombie.log().contains("registering again").then_some(())
        })
        .await;
        // Its old attempt changed nothing: the run is as the rescuer left it.
        let doc = w.api.data(&format!("/runs/{run}")).await;
        assert_eq!(doc["attributes"]["status"], json!("planned"));
        let log = w.api.log(&run, "plan").await;
        assert_eq!(log.matches("Plan: 1 to add").count(), 1, "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_token_shuts_the_agent_out_and_sigterm_exits_cleanly() {
    let db = support::Db::Sqlite;
    let w = world(&db).await;
    let mut revoked = w.agent("revoked", "none", false);
    let mut graceful = {
        let (_, other) = w.api.token(&w.pool).await;
        Agent::start(&w.server, &other, "graceful", &w.engine, &[], &[])
    };
    assert_eq!(
        w.api
            .delete(&format!("/authentication-tokens/{}", w.token_id))
            .await,
        204
    );
    let code = revoked.wait_exit(RUN).await;
    assert_eq!(code, Some(3), "{}", revoked.log());
    assert!(revoked.log().contains("revoked"), "{}", revoked.log());
    w.api.wait_agent(&w.pool, &revoked.id, "exited", RUN).await;
    // SIGTERM: the agent reports exited and exits 0.
    graceful.signal(Signal::SIGTERM);
    assert_eq!(graceful.wait_exit(RUN).await, Some(0), "{}", graceful.log());
    w.api.wait_agent(&w.pool, &graceful.id, "exited", RUN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_or_an_unreachable_server_at_start_is_a_one_line_error() {
    let server = Server::start(&support::Db::Sqlite, &["--concurrency", "0"]);
    let run = |address: &str, token: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_otf-agent-e2e"))
            .args(["--address", address, "--token", token])
            .env("RUST_LOG", "off")
            .output()
            .expect("otf-agent runs")
    };
    let bad = run(
        &server.url,
        &format!("at-0000000000000000.{}", "0".repeat(64)),
    );
    assert_eq!(bad.status.code(), Some(3));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("token was refused"), "{err}");
    let down = run("127.0.0.1:1", "whatever");
    assert_eq!(down.status.code(), Some(1));
    let err = String::from_utf8_lossy(&down.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach otfd"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_signal_lets_the_job_finish_and_a_second_cancels_it() {
    let db = support::Db::Sqlite;
    let w = world(&db).await;
    let mut agent = w.agent("draining", "plan", false);
    let run = w.api.run(&w.ws, HELLO, false).await;
    w.api.wait_for(&run, "planning", RUN).await;
    w.api
        .wait_log(&run, "plan", "slow plan is waiting", RUN)
        .await;
    // First signal: no new jobs, the running one goes on.
    agent.signal(Signal::SIGTERM);
    eventually(RUN, "the agent to start draining", || async {
        agent.log().contains("shutting down").then_some(())
    })
    .await;
    assert_eq!(w.api.status(&run).await, "planning");
    // Second signal: the running job is canceled, the agent exits cleanly.
    agent.signal(Signal::SIGTERM);
    w.api.wait_for(&run, "canceled", RUN).await;
    assert_eq!(agent.wait_exit(RUN).await, Some(0), "{}", agent.log());
    w.api.wait_agent(&w.pool, &agent.id, "exited", RUN).await;
}
