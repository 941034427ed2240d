//! Warm applies and the shared plugin cache: the apply of a run that lands
//! on the agent that ran its plan reuses the plan's initialised work
//! directory (no configuration download, no `terraform init`) when nothing
//! it depends on changed, and takes the full path otherwise: after a
//! variable changed, and on a restarted agent (which forgets what it kept
//! and removes it). The full path's `init` links the provider from the
//! runner's shared plugin cache, which the plan's `init` filled.

mod e2e;
mod support;

use std::time::Duration;

use e2e::{terraform, Agent, Api, HELLO};
use serde_json::json;
use support::{Db, Server};

const RUN: Duration = Duration::from_secs(90);
const REUSED: &str = "its initialised work directory is reused (no init)";
const NULL: &str = "registry.terraform.io/hashicorp/null";

/// A packed provider mirror (`terraform-provider-null_2.1.2_linux_amd64.zip`,
/// as a registry serves it: terraform extracts it, so the package it
/// installs is a directory of its own, not a link into an unpacked mirror)
/// made from the test setup's unpacked mirror, and a CLI configuration
/// using it.
fn packed_mirror() -> (tempfile::TempDir, String) {
    let rc =
        std::env::var("TF_CLI_CONFIG_FILE").expect("TF_CLI_CONFIG_FILE (./scripts/test sets it)");
    let text = std::fs::read_to_string(&rc).expect("the CLI configuration");
    let unpacked = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("path"))
        .and_then(|v| v.split('"').nth(1))
        .expect("a filesystem mirror path in the CLI configuration")
        .to_string();
    let binary_dir = std::path::Path::new(&unpacked)
        .join(NULL)
        .join("2.1.2/linux_amd64");
    let dir = tempfile::tempdir().expect("a mirror dir");
    let packed = dir.path().join("mirror").join(NULL);
    std::fs::create_dir_all(&packed).expect("the mirror's layout");
    let zip = packed.join("terraform-provider-null_2.1.2_linux_amd64.zip");
    let python = std::env::var("OTF_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = std::process::Command::new(python)
        .args(["-m", "zipfile", "-c"])
        .arg(&zip)
        .arg("terraform-provider-null_v2.1.2_x4")
        .current_dir(&binary_dir)
        .status()
        .expect("python zips the provider");
    assert!(status.success(), "zipping the provider failed");
    let cli = dir.path().join("terraformrc");
    std::fs::write(
        &cli,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path = \"{}\"\n    include = [\"{NULL}\"]\n  }}\n  direct {{\n    exclude = [\"{NULL}\"]\n  }}\n}}\n",
            dir.path().join("mirror").display()
        ),
    )
    .expect("a CLI configuration");
    let cli = cli.display().to_string();
    (dir, cli)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_reuses_its_plans_directory_only_when_nothing_changed() {
    let tf = terraform();
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "pool1").await;
    let ws = api.workspace("acme", "dev", Some(&pool)).await;
    let (_, secret) = api.token(&pool).await;
    let (_mirror, cli) = packed_mirror();
    let env = [("TF_CLI_CONFIG_FILE", cli.as_str())];
    let agent = Agent::start(
        &server,
        &secret,
        "agent-one",
        &tf,
        &["--concurrency", "1"],
        &env,
    );

    // The same agent, nothing changed: the plan's directory is kept, then
    // reused by the apply and removed after it.
    let run = api.run(&ws, HELLO, false).await;
    api.wait_for(&run, "planned", RUN).await;
    let kept = agent.work_dir().join("warm").join(&run);
    assert!(
        kept.join("config/.terraform").is_dir(),
        "the plan's directory is kept"
    );
    let shared = agent
        .work_dir()
        .join("plugins")
        .join(NULL)
        .join("2.1.2/linux_amd64");
    assert!(
        shared.join("terraform-provider-null_v2.1.2_x4").is_file(),
        "the plan's init filled the shared plugin cache"
    );
    api.apply(&run).await;
    api.wait_for(&run, "applied", RUN).await;
    let log = api.log(&run, "apply").await;
    assert!(log.contains(REUSED), "{log}");
    assert!(!log.contains("Initializing"), "no init: {log}");
    assert!(
        log.contains("Apply complete! Resources: 1 added, 0 changed, 0 destroyed."),
        "{log}"
    );
    assert!(!kept.exists(), "the kept directory went with the apply");
    let outputs = api
        .data(&format!("/workspaces/{ws}/current-state-version-outputs"))
        .await;
    assert_eq!(outputs[0]["attributes"]["value"], json!("hello"));

    // A variable set between the plan and the apply: the full path.
    let destroy = api.run(&ws, HELLO, true).await;
    api.wait_for(&destroy, "planned", RUN).await;
    let (status, body) = api
        .post(
            &format!("/workspaces/{ws}/vars"),
            json!({"data": {"type": "vars", "attributes": {"key": "UNUSED", "value": "1", "category": "env"}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    api.apply(&destroy).await;
    api.wait_for(&destroy, "applied", RUN).await;
    let log = api.log(&destroy, "apply").await;
    assert!(!log.contains(REUSED), "{log}");
    assert!(log.contains("the variables changed"), "{log}");
    assert!(
        log.contains("from the shared cache directory"),
        "the full path's init links from the shared cache: {log}"
    );
    assert!(
        log.contains("Resources: 0 added, 0 changed, 1 destroyed."),
        "{log}"
    );
    assert!(!agent.work_dir().join("warm").join(&destroy).exists());

    // A restarted agent forgets what it kept, and removes it.
    let run = api.run(&ws, HELLO, false).await;
    api.wait_for(&run, "planned", RUN).await;
    assert!(agent.work_dir().join("warm").join(&run).is_dir());
    let first = agent.id.clone();
    let work = agent.into_work_dir();
    api.wait_agent(&pool, &first, "unknown", Duration::from_secs(60))
        .await;
    let again = Agent::start_in(
        work,
        &server.url,
        &secret,
        "agent-two",
        &tf,
        &["--concurrency", "1"],
        &env,
    );
    assert!(
        !again.work_dir().join("warm").exists(),
        "a new agent starts without kept directories"
    );
    api.apply(&run).await;
    api.wait_for(&run, "applied", RUN).await;
    let log = api.log(&run, "apply").await;
    assert!(log.contains("on agent agent-two"), "{log}");
    assert!(!log.contains(REUSED), "{log}");
    assert!(log.contains("Apply complete! Resources: 1 added"), "{log}");
}
