//! The fault suite: real otfd and otf-agent processes on loopback, a real
//! terraform, and faults put between them by an in-test proxy
//! ([`support::proxy`]): lost answers, dropped reports, a partition, a
//! hung terraform, otfd stopped (SIGTERM) or killed (SIGKILL) mid-plan and
//! mid-apply, PostgreSQL's connections cut. Each case asserts that nothing
//! was lost (the run ends as it would have, the state is there) and that
//! nothing stayed stuck (the workspace takes the next run).
//!
//! Protocol faults run on SQLite (the database plays no part in them); the
//! restarts run on both databases; the cut database connections on
//! PostgreSQL.

mod e2e;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{slow_engine, terraform, Agent, Api};
use nix::sys::signal::Signal;
use support::proxy::{Fault, FaultProxy};
use support::{databases, eventually, Db, Server};

const RUN: Duration = Duration::from_secs(90);

const NULL: &str = "resource \"null_resource\" \"a\" {}\n";

/// An apply that leaves a marker and waits for the test to release it.
const WAIT: &str = r#"
resource "null_resource" "survivor" {
  provisioner "local-exec" {
    command = "echo applying > marker.txt; while [ ! -f release ]; do sleep 0.1; done"
  }
}
"#;

fn address(server: &Server) -> SocketAddr {
    server
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("otfd's address")
}

struct Setup {
    api: Api,
    ws: String,
    pool: String,
    token: String,
}

async fn setup(server: &Server) -> Setup {
    let api = Api::new(server);
    api.org("acme").await;
    let pool = api.pool("acme", "pool").await;
    let ws = api.workspace("acme", "dev", Some(&pool)).await;
    let (_, token) = api.token(&pool).await;
    Setup {
        api,
        ws,
        pool,
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_start_answer_plans_again_and_lost_finish_reports_change_nothing() {
    let tf = terraform();
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let s = setup(&server).await;
    let proxy = FaultProxy::http(address(&server)).await;
    // The first start reaches otfd but its answer (with the job token) is
    // lost: the agent drops the job, otfd finds it no longer reported.
    proxy.fail("POST", "/start", Fault::LoseAnswer, 1);
    // The plan's end report is dropped twice, then its answer is lost once.
    proxy.fail("POST", "/api/agent/job/finish", Fault::DropRequest, 2);
    proxy.fail("POST", "/api/agent/job/finish", Fault::LoseAnswer, 1);
    let agent = Agent::start_at(&proxy.url(), &s.token, "flaky", &tf, &[], &[]);
    let run = s.api.run(&s.ws, &[("main.tf", NULL)], false).await;
    let planned = s.api.wait_for(&run, "planned", RUN).await;
    assert_eq!(proxy.count("/start", Some(Fault::LoseAnswer)), 1);
    assert_eq!(proxy.count("/job/finish", Some(Fault::DropRequest)), 2);
    assert_eq!(proxy.count("/job/finish", Some(Fault::LoseAnswer)), 1);
    let log = s.api.log(&run, "plan").await;
    assert!(log.contains("no longer runs this plan"), "{log}");
    assert!(log.contains("planning again as attempt 2 of 3"), "{log}");
    assert!(log.contains("Plan: 1 to add"), "{log}");
    assert!(
        agent.log().contains("could not start the job"),
        "{}",
        agent.log()
    );
    assert_eq!(planned["attributes"]["status"], "planned");
    // The apply goes through untouched; the workspace is free afterwards.
    s.api.apply(&run).await;
    s.api.wait_for(&run, "applied", RUN).await;
    let state = s.api.current_state(&s.ws).await;
    assert!(state["serial"].as_i64().unwrap_or(0) >= 1, "{state}");
    s.api.wait_agent(&s.pool, &agent.id, "idle", RUN).await;
}

/// An apply on an agent that reaches otfd through a fault proxy, held by
/// the test until the proxy blackholes: what the partition cases share.
async fn partitioned_apply(
    server: &Server,
    tf: &str,
) -> (Setup, FaultProxy, Agent, String, std::path::PathBuf) {
    let s = setup(server).await;
    let proxy = FaultProxy::http(address(server)).await;
    let agent = Agent::start_at(&proxy.url(), &s.token, "far", tf, &[], &[]);
    let run = s.api.run(&s.ws, &[("main.tf", WAIT)], false).await;
    s.api.wait_for(&run, "planned", RUN).await;
    s.api.apply(&run).await;
    let job = e2e::job_dir_with(&agent.work_dir().join("jobs"), "marker.txt").await;
    proxy.blackhole();
    (s, proxy, agent, run, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_survives_a_partition_between_agent_and_otfd() {
    let tf = terraform();
    // Long enough a grace that the partitioned agent is unknown, not lost.
    let server = Server::start(
        &Db::Sqlite,
        &["--concurrency", "0", "--unknown-grace", "120"],
    );
    let (s, proxy, agent, run, job) = partitioned_apply(&server, &tf).await;
    // The apply ends while nothing passes; otfd stops hearing the agent.
    std::fs::write(job.join("release"), b"").expect("release the apply");
    s.api.wait_agent(&s.pool, &agent.id, "unknown", RUN).await;
    assert_eq!(s.api.status(&run).await, "applying", "unknown is not lost");
    proxy.heal();
    s.api.wait_for(&run, "applied", RUN).await;
    let state = s.api.current_state(&s.ws).await;
    assert!(state["serial"].as_i64().unwrap_or(0) >= 1, "{state}");
    s.api.wait_agent(&s.pool, &agent.id, "idle", RUN).await;
    let spool = agent.work_dir().join("spool");
    assert_eq!(std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_up_apply_still_delivers_its_state_after_a_long_partition() {
    let tf = terraform();
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let (s, proxy, agent, run, job) = partitioned_apply(&server, &tf).await;
    std::fs::write(job.join("release"), b"").expect("release the apply");
    // Silent past the grace: otfd gives the apply up, and says why.
    let done = s.api.wait_for(&run, "errored", RUN).await;
    let error = done["attributes"]["error-message"].to_string() + &s.api.log(&run, "apply").await;
    assert!(error.contains("agent far"), "{error}");
    let path = format!("/workspaces/{}/current-state-version", s.ws);
    assert_eq!(s.api.get(&path).await.0, 404, "no state yet");
    proxy.heal();
    // The agent's state still arrives, late, as the workspace's newest.
    eventually(RUN, "the late state", || async {
        (s.api.get(&path).await.0 == 200).then_some(())
    })
    .await;
    let state = s.api.current_state(&s.ws).await;
    assert!(state.to_string().contains("survivor"), "{state}");
    let spool = agent.work_dir().join("spool");
    eventually(RUN, "the spool to be empty", || async {
        (std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0) == 0).then_some(())
    })
    .await;
    assert_eq!(s.api.status(&run).await, "errored", "the run stays errored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_plan_is_canceled_at_its_timeout_then_force_canceled() {
    let dir = tempfile::tempdir().expect("a directory");
    let engine = slow_engine(dir.path());
    let real = terraform();
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0", "--plan-timeout", "3s"]);
    let s = setup(&server).await;
    // terraform plan hangs and ignores SIGINT.
    let _agent = Agent::start(
        &server,
        &s.token,
        "stuck",
        &engine,
        &["--sandbox-read", &real],
        &[("SLOW_TF_COMMAND", "plan"), ("SLOW_TF_IGNORE_INT", "1")],
    );
    let run = s.api.run(&s.ws, &[("main.tf", NULL)], false).await;
    s.api
        .wait_log(&run, "plan", "slow plan is waiting", RUN)
        .await;
    // TFE shows a force-canceled run as canceled, with its timestamp.
    let done = s.api.wait_for(&run, "canceled", RUN).await;
    assert!(
        done["attributes"]["status-timestamps"]["force-canceled-at"].is_string(),
        "{done}"
    );
    let log = s.api.log(&run, "plan").await;
    assert!(
        log.contains("ran longer than its timeout of 3s (otfd --plan-timeout); canceling it"),
        "{log}"
    );
    assert!(log.contains("force-canceling it"), "{log}");
    let ws = s.api.data(&format!("/workspaces/{}", s.ws)).await;
    assert_eq!(ws["attributes"]["locked"], false, "{ws}");
}

/// otfd is stopped (SIGTERM, or SIGKILL) while the agent runs a plan or an
/// apply that waits for the test, and started again after the phase ended:
/// the run completes as if nothing happened.
async fn otfd_restarts_mid_phase(db: &Db, signal: Signal, mid_apply: bool) {
    eprintln!(
        "== {} {signal} mid-{}",
        db.name(),
        if mid_apply { "apply" } else { "plan" }
    );
    let dir = tempfile::tempdir().expect("a directory");
    let release = dir.path().join("release-plan");
    let engine = slow_engine(dir.path());
    let real = terraform();
    let mut server = Server::start(db, &["--concurrency", "0"]);
    let s = setup(&server).await;
    let dir_text = dir.path().display().to_string();
    let release_text = release.display().to_string();
    let slow = if mid_apply { "none" } else { "plan" };
    let agent = Agent::start(
        &server,
        &s.token,
        "steady",
        &engine,
        &["--sandbox-read", &real, "--sandbox-read", &dir_text],
        &[
            ("SLOW_TF_COMMAND", slow),
            ("SLOW_TF_RELEASE", &release_text),
        ],
    );
    let run = s.api.run(&s.ws, &[("main.tf", WAIT)], false).await;
    let held = if mid_apply {
        s.api.wait_for(&run, "planned", RUN).await;
        s.api.apply(&run).await;
        Some(e2e::job_dir_with(&agent.work_dir().join("jobs"), "marker.txt").await)
    } else {
        s.api
            .wait_log(&run, "plan", "slow plan is waiting", RUN)
            .await;
        None
    };
    server.stop(signal);
    match &held {
        Some(job) => std::fs::write(job.join("release"), b"").expect("release the apply"),
        None => std::fs::write(&release, b"").expect("release the plan"),
    }
    // The phase ends while otfd is down; the agent retries its reports.
    eventually(RUN, "the agent to retry", || async {
        let log = agent.log();
        (log.contains("failed; retrying") || log.contains("cannot reach otfd")).then_some(())
    })
    .await;
    server.restart();
    let api = Api::new(&server);
    if mid_apply {
        api.wait_for(&run, "applied", RUN).await;
        let state = api.current_state(&s.ws).await;
        assert!(state["serial"].as_i64().unwrap_or(0) >= 1, "{state}");
    } else {
        api.wait_for(&run, "planned", RUN).await;
        let log = api.log(&run, "plan").await;
        assert!(log.contains("Plan: 1 to add"), "{log}");
        assert!(
            !log.contains("planning again"),
            "the same attempt finished: {log}"
        );
    }
    api.wait_agent(&s.pool, &agent.id, "idle", RUN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_complete_across_otfd_stopped_or_killed_mid_plan_and_mid_apply() {
    // (SIGKILL mid-apply is faults.rs's case, on both databases too.)
    for db in databases() {
        otfd_restarts_mid_phase(&db, Signal::SIGTERM, false).await;
        otfd_restarts_mid_phase(&db, Signal::SIGKILL, false).await;
        otfd_restarts_mid_phase(&db, Signal::SIGTERM, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_cut_mid_run_lose_nothing() {
    let Some(Db::Postgres(admin)) = databases()
        .into_iter()
        .find(|d| matches!(d, Db::Postgres(_)))
    else {
        eprintln!("note: OTF_TEST_DATABASE_URL is not set; the PostgreSQL fault case was not run");
        return;
    };
    let tf = terraform();
    // otfd reaches PostgreSQL through the proxy.
    let pg: SocketAddr = admin
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .parse()
        .expect("PostgreSQL's address");
    let proxy = FaultProxy::tcp(pg).await;
    let via = proxy.addr.to_string();
    let server = Server::start_rewriting_database(
        &Db::Postgres(admin.clone()),
        &["--concurrency", "0"],
        &|url: &str| url.replace(&pg.to_string(), &via),
    );
    let s = setup(&server).await;
    let agent = Agent::start(&server, &s.token, "steady", &tf, &[], &[]);
    let run = s.api.run(&s.ws, &[("main.tf", WAIT)], false).await;
    s.api.wait_for(&run, "planned", RUN).await;
    s.api.apply(&run).await;
    let job = e2e::job_dir_with(&agent.work_dir().join("jobs"), "marker.txt").await;
    // A database restart as otfd sees it: every connection dies, and for a
    // while none can be made.
    proxy.blackhole();
    proxy.cut();
    std::fs::write(job.join("release"), b"").expect("release the apply");
    eventually(RUN, "the agent to retry", || async {
        agent.log().contains("failed; retrying").then_some(())
    })
    .await;
    proxy.heal();
    s.api.wait_for(&run, "applied", RUN).await;
    let state = s.api.current_state(&s.ws).await;
    assert!(state["serial"].as_i64().unwrap_or(0) >= 1, "{state}");
    // Clients are served again at once, and the next run goes through.
    let again = s.api.run(&s.ws, &[("main.tf", WAIT)], false).await;
    s.api.wait_for(&again, "planned_and_finished", RUN).await;
}

/// otfd with its server runner on a terraform that blocks in `command`
/// until `release` exists.
fn server_runner(
    dir: &std::path::Path,
    command: &str,
    extra: &[&str],
) -> (Server, std::path::PathBuf) {
    let release = dir.join("release-phase");
    let engine = slow_engine(dir);
    let real = terraform();
    let dir_text = dir.display().to_string();
    let mut flags = vec![
        "--concurrency",
        "1",
        "--engine-bin",
        &engine,
        "--sandbox-read",
        &real,
        "--sandbox-read",
        &dir_text,
    ];
    flags.extend_from_slice(extra);
    let release_text = release.display().to_string();
    let server = Server::start_with_env(
        &Db::Sqlite,
        &flags,
        &[
            ("SLOW_TF_COMMAND", command),
            ("SLOW_TF_RELEASE", &release_text),
        ],
    );
    (server, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_server_runners_plan_runs_again_and_its_apply_is_given_up_at_once() {
    // A grace far longer than the test: only the restart's recovery moves
    // the jobs of the crashed server runner.
    let slow_liveness = ["--unknown-grace", "600", "--ping-timeout", "600"];
    for phase in ["plan", "apply"] {
        eprintln!("== server runner killed mid-{phase}");
        let dir = tempfile::tempdir().expect("a directory");
        let (mut server, release) = server_runner(dir.path(), phase, &slow_liveness);
        let api = Api::new(&server);
        api.org("acme").await;
        let ws = api.workspace("acme", "remote", None).await;
        let run = api.run(&ws, &[("main.tf", NULL)], false).await;
        if phase == "apply" {
            std::fs::write(&release, b"").expect("let the plan through");
            api.wait_for(&run, "planned", RUN).await;
            std::fs::remove_file(&release).expect("hold the apply");
            api.apply(&run).await;
        }
        api.wait_log(&run, phase, &format!("slow {phase} is waiting"), RUN)
            .await;
        server.stop(Signal::SIGKILL);
        std::fs::write(&release, b"").expect("release the phase");
        server.restart();
        let api = Api::new(&server);
        if phase == "plan" {
            api.wait_for(&run, "planned", RUN).await;
            let log = api.log(&run, "plan").await;
            assert!(log.contains("planning again as attempt 2 of 3"), "{log}");
        } else {
            let done = api.wait_for(&run, "errored", RUN).await;
            let error = done["attributes"]["error-message"].to_string();
            assert!(error.contains("was lost while applying"), "{done}");
            let ws = api.data(&format!("/workspaces/{ws}")).await;
            assert_eq!(ws["attributes"]["locked"], false, "{ws}");
        }
        assert!(
            server
                .log()
                .contains("retired the server runner's previous incarnation"),
            "{}",
            server.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_cancels_the_server_runners_apply_after_the_grace_and_keeps_its_state() {
    let dir = tempfile::tempdir().expect("a directory");
    let (mut server, release) = server_runner(dir.path(), "none", &["--shutdown-grace", "1s"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let ws = api.workspace("acme", "remote", None).await;
    let _ = release;
    let run = api.run(&ws, &[("main.tf", WAIT)], false).await;
    api.wait_for(&run, "planned", RUN).await;
    api.apply(&run).await;
    e2e::job_dir_with(&server.data_dir.path().join("work"), "marker.txt").await;
    // The apply never ends by itself: SIGTERM, the grace, then SIGINT.
    server.stop(Signal::SIGTERM);
    let log = server.log();
    assert!(
        log.contains("outlived the shutdown grace; canceling them"),
        "{log}"
    );
    server.restart();
    let api = Api::new(&server);
    let done = api.data(&format!("/runs/{run}")).await;
    let status = done["attributes"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(status == "canceled" || status == "errored", "{done}");
    // terraform wrote its state when interrupted, and otfd has it.
    let (code, _) = api
        .get(&format!("/workspaces/{ws}/current-state-version"))
        .await;
    assert_eq!(code, 200, "the interrupted apply's state was delivered");
    assert_eq!(
        std::fs::read_dir(server.data_dir.path().join("spool"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}
