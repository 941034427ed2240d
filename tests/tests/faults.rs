//! Faults with real processes: otfd SIGKILLed mid-apply and started again
//! minutes-worth later from the agent's point of view (the apply finishes
//! while otfd is down): the agent keeps the new state in its spool and
//! retries until otfd takes it, the run ends `applied`, the workspace's
//! state holds the resource, and the spool is empty again. On SQLite and
//! PostgreSQL.

mod e2e;
mod support;

use std::time::Duration;

use e2e::{terraform, Agent, Api};
use support::{databases, eventually, Server};

const RUN: Duration = Duration::from_secs(90);

/// An apply that leaves a marker and waits for the test to release it.
const WAIT: &str = r#"
resource "null_resource" "survivor" {
  provisioner "local-exec" {
    command = "echo applying > marker.txt; while [ ! -f release ]; do sleep 0.1; done"
  }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_survives_otfd_being_killed_and_its_state_arrives() {
    let tf = terraform();
    for db in databases() {
        eprintln!("== {}", db.name());
        let mut server = Server::start(&db, &["--concurrency", "0"]);
        let api = Api::new(&server);
        api.org("acme").await;
        let pool = api.pool("acme", "pool").await;
        let ws = api.workspace("acme", "dev", Some(&pool)).await;
        let (_, token) = api.token(&pool).await;
        let agent = Agent::start(&server, &token, "steady", &tf, &[], &[]);
        let run = api.run(&ws, &[("main.tf", WAIT)], false).await;
        api.wait_for(&run, "planned", RUN).await;
        api.apply(&run).await;
        let job = e2e::job_dir_with(&agent.work_dir().join("jobs"), "marker.txt").await;
        // otfd crashes; the apply finishes meanwhile.
        server.kill();
        std::fs::write(job.join("release"), b"").expect("release the apply");
        eventually(RUN, "the agent to retry the state upload", || async {
            agent
                .log()
                .contains("uploading the state failed; retrying")
                .then_some(())
        })
        .await;
        let spool = agent.work_dir().join("spool");
        let spooled = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
        assert_eq!(
            spooled, 1,
            "the state waits in the spool while otfd is down"
        );
        server.restart();
        let api = Api::new(&server);
        api.wait_for(&run, "applied", RUN).await;
        let outputs = api
            .data(&format!("/workspaces/{ws}/current-state-version"))
            .await;
        let serial = outputs["attributes"]["serial"].as_i64().unwrap_or(0);
        assert!(serial >= 1, "{outputs}");
        let apply_log = api.log(&run, "apply").await;
        assert!(apply_log.contains("Apply complete!"), "{apply_log}");
        let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "the spooled state is released once otfd has it");
        // The workspace is free again: another run plans.
        let again = api.run(&ws, &[("main.tf", WAIT)], false).await;
        api.wait_for(&again, "planned_and_finished", RUN).await;
    }
}
