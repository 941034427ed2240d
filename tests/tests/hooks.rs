//! Hooks around plan and apply and HCP's run variables, with a real agent
//! and terraform: each hook point writes into the run's log between lines
//! naming it, `$TFC_AGENT_ENV` reaches terraform, `TFC_RUN_ID` and friends
//! are set, a failing hook errors the run naming it, a hung hook times out.

mod e2e;
mod support;

use std::time::Duration;

use e2e::{terraform, Agent, Api};
use support::{Db, Server};

const RUN: Duration = Duration::from_secs(90);

/// Reads the variable a hook set, and prints the run variables at apply.
const CONFIG: &str = r#"
variable "slug" {
  default = "unset"
}
resource "null_resource" "vars" {
  provisioner "local-exec" {
    command = "echo run=$TFC_RUN_ID ws=$TFC_WORKSPACE_NAME cv=$TFC_CONFIGURATION_VERSION_ID"
  }
}
output "slug" {
  value = var.slug
}
"#;

fn hook(dir: &std::path::Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write a hook");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_around_plan_and_apply_and_fail_their_phase() {
    let tf = terraform();
    let hooks = tempfile::tempdir().expect("a hooks directory");
    let dir = hooks.path().display().to_string();
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "pool").await;
    let ws = api.workspace("acme", "dev", Some(&pool)).await;
    let (_, token) = api.token(&pool).await;
    let _agent = Agent::start(
        &server,
        &token,
        "hooked",
        &tf,
        &["--hooks-dir", &dir, "--hook-timeout", "2s"],
        &[],
    );
    hook(
        hooks.path(),
        "terraform-pre-plan",
        "echo \"pre-plan sees $TFC_WORKSPACE_SLUG\"\necho \"TF_VAR_slug=$TFC_WORKSPACE_SLUG\" >> \"$TFC_AGENT_ENV\"",
    );
    hook(hooks.path(), "terraform-post-plan", "echo post-plan output");
    hook(hooks.path(), "terraform-pre-apply", "echo pre-apply output");
    hook(
        hooks.path(),
        "terraform-post-apply",
        "echo post-apply output",
    );
    let run = api.run(&ws, &[("main.tf", CONFIG)], false).await;
    api.wait_for(&run, "planned", RUN).await;
    let plan = api.log(&run, "plan").await;
    for line in [
        "[otf] running hook terraform-pre-plan",
        "pre-plan sees acme/dev",
        "[otf] hook terraform-pre-plan finished",
        "[otf] running hook terraform-post-plan",
        "post-plan output",
        "[otf] hook terraform-post-plan finished",
    ] {
        assert!(plan.contains(line), "{line:?} in:\n{plan}");
    }
    let pre = plan.find("pre-plan sees").unwrap_or(0);
    let planned = plan.find("Plan: 1 to add").unwrap_or(0);
    let post = plan.find("post-plan output").unwrap_or(0);
    assert!(
        pre < planned && planned < post,
        "hooks around the plan:\n{plan}"
    );
    api.apply(&run).await;
    api.wait_for(&run, "applied", RUN).await;
    let apply = api.log(&run, "apply").await;
    assert!(apply.contains("pre-apply output"), "{apply}");
    assert!(apply.contains("post-apply output"), "{apply}");
    let cv = api.data(&format!("/runs/{run}")).await["relationships"]["configuration-version"]
        ["data"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        cv.starts_with("cv-"),
        "the run's configuration version: {cv:?}"
    );
    let vars = format!("run={run} ws=dev cv={cv}\n");
    assert!(apply.contains(&vars), "{vars:?} in:\n{apply}");
    // What the pre-plan hook put in TFC_AGENT_ENV reached terraform.
    let state = api.current_state(&ws).await;
    assert_eq!(state["outputs"]["slug"]["value"], "acme/dev", "{state}");

    // A failing hook fails its phase, naming itself.
    hook(
        hooks.path(),
        "terraform-pre-plan",
        "echo broken >&2\nexit 3",
    );
    let failed = api.run(&ws, &[("main.tf", CONFIG)], false).await;
    let done = api.wait_for(&failed, "errored", RUN).await;
    let log = api.log(&failed, "plan").await;
    assert!(log.contains("broken"), "{log}");
    let error = done.to_string() + &log;
    assert!(
        error.contains(
            "hook terraform-pre-plan failed: terraform-pre-plan exited with exit status: 3"
        ),
        "{error}"
    );

    // A hung hook is killed at the hook timeout.
    hook(hooks.path(), "terraform-pre-plan", "sleep 60");
    let hung = api.run(&ws, &[("main.tf", CONFIG)], false).await;
    api.wait_for(&hung, "errored", RUN).await;
    let log = api.log(&hung, "plan").await;
    assert!(
        log.contains("hook terraform-pre-plan did not finish within 2s (--hook-timeout)"),
        "{log}"
    );
}
