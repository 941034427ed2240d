//! The Terraform CLI's `remote` backend (1.0.3) against otfd over HTTPS with
//! a self-signed certificate: init, plan, apply (confirmed and
//! auto-approved), state and outputs, destroy, Ctrl-C, local execution,
//! workspace prefixes and version checks, on SQLite and PostgreSQL.

mod e2e;
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2e::{terraform, Agent, Api};
use serde_json::json;
use support::{databases, eventually, Db, Server};

const RUN: Duration = Duration::from_secs(120);

/// An otfd on HTTPS, and a CLI set up to use it as `localhost:PORT`.
struct Cli {
    server: Server,
    api: Api,
    host: String,
    dir: tempfile::TempDir,
    cert: PathBuf,
    config: PathBuf,
}

fn cli(db: &Db, extra: &[&str]) -> Cli {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("a certificate");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    let mut args = vec![
        "--cert-file",
        cert_path.to_str().unwrap_or(""),
        "--key-file",
        key_path.to_str().unwrap_or(""),
    ];
    args.extend_from_slice(extra);
    let server = Server::start(db, &args);
    let port = server.url.rsplit(':').next().unwrap_or("").to_string();
    let host = format!("localhost:{port}");
    // Credentials for the host, plus the provider mirror the test command set up.
    let mirror = std::env::var("TF_CLI_CONFIG_FILE")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .expect("TF_CLI_CONFIG_FILE (set by ./scripts/test) names the provider mirror config");
    let config = dir.path().join("terraformrc");
    std::fs::write(
        &config,
        format!(
            "credentials \"{host}\" {{\n  token = \"{}\"\n}}\n{mirror}",
            server.site_token
        ),
    )
    .expect("write cli config");
    let mut api = Api::new(&server);
    api.insecure_ca(&cert_path);
    Cli {
        api,
        host,
        cert: cert_path,
        config,
        dir,
        server,
    }
}

impl Cli {
    /// A directory with a configuration using the remote backend.
    fn project(&self, name: &str, workspaces: &str, body: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("project dir");
        let main = format!(
            "terraform {{\n  backend \"remote\" {{\n    hostname     = \"{}\"\n    organization = \"acme\"\n    workspaces {{ {workspaces} }}\n  }}\n}}\n{body}",
            self.host
        );
        std::fs::write(p.join("main.tf"), main).expect("main.tf");
        p
    }

    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(terraform());
        c.args(args)
            .current_dir(dir)
            .env("SSL_CERT_FILE", &self.cert)
            .env("TF_CLI_CONFIG_FILE", &self.config)
            .env("CHECKPOINT_DISABLE", "1")
            .env_remove("TF_IN_AUTOMATION");
        c
    }

    /// Run terraform, feeding `input` on stdin.
    fn tf(&self, dir: &Path, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(dir, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run terraform");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        child.wait_with_output().expect("terraform finishes")
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const BODY: &str =
    "resource \"null_resource\" \"a\" {}\noutput \"greeting\" { value = \"hello\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_outputs_and_destroy_run_on_an_agent() {
    let tf = terraform();
    for db in databases() {
        let c = cli(&db, &["--concurrency", "0"]);
        c.api.org("acme").await;
        let project = c.project("dev", "name = \"dev\"", BODY);
        // init creates the workspace, as TFE does.
        let out = c.tf(&project, &["init", "-input=false", "-no-color"], "");
        assert!(out.status.success(), "{}", text(&out));
        let ws = c.api.data("/organizations/acme/workspaces/dev").await;
        let ws_id = ws["id"].as_str().unwrap_or_default().to_string();
        // Assign it to a pool with an agent.
        let pool = c.api.pool("acme", "pool").await;
        let (s, v) = c
            .api
            .patch(&format!("/workspaces/{ws_id}"), json!({"data":{"type":"workspaces","attributes":{"execution-mode":"agent","agent-pool-id":pool}}}))
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["data"]["attributes"]["operations"],
            json!(true),
            "agent workspaces run remotely"
        );
        let (_, secret) = c.api.token(&pool).await;
        // The agent trusts the self-signed certificate through SSL_CERT_FILE.
        let cert = c.cert.display().to_string();
        let agent = Agent::start(
            &c.server,
            &secret,
            "cli-agent",
            &tf,
            &[],
            &[("SSL_CERT_FILE", &cert)],
        );

        let out = c.tf(&project, &["plan", "-no-color"], "");
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(
            t.contains("Plan: 1 to add, 0 to change, 0 to destroy."),
            "{t}"
        );
        assert!(
            t.contains("on agent cli-agent"),
            "the plan ran on the agent: {t}"
        );

        let out = c.tf(&project, &["apply", "-no-color"], "yes\n");
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("Do you want to perform these actions"), "{t}");
        assert!(
            t.contains("Apply complete! Resources: 1 added, 0 changed, 0 destroyed."),
            "{t}"
        );

        let out = c.tf(&project, &["state", "list"], "");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "null_resource.a",
            "{}",
            text(&out)
        );
        let out = c.tf(&project, &["output", "-no-color"], "");
        assert!(
            text(&out).contains("greeting = \"hello\""),
            "{}",
            text(&out)
        );

        // Answering anything but yes discards the run.
        let out = c.tf(&project, &["apply", "-no-color", "-destroy"], "no\n");
        assert!(!out.status.success());
        assert!(text(&out).contains("Destroy discarded"), "{}", text(&out));

        let out = c.tf(
            &project,
            &["apply", "-destroy", "-auto-approve", "-no-color"],
            "",
        );
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("1 destroyed"), "{t}");
        let out = c.tf(&project, &["state", "list"], "");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "{}",
            text(&out)
        );
        drop(agent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_execution_keeps_state_in_otfd_under_a_lock() {
    for db in databases() {
        let c = cli(&db, &["--concurrency", "0"]);
        c.api.org("acme").await;
        let (s, v) = c
            .api
            .post("/organizations/acme/workspaces", json!({"data":{"type":"workspaces","attributes":{"name":"laptop","execution-mode":"local"}}}))
            .await;
        assert_eq!(s, 201, "{v}");
        let ws_id = v["data"]["id"].as_str().unwrap_or_default().to_string();
        let project = c.project("laptop", "name = \"laptop\"", BODY);
        let out = c.tf(&project, &["init", "-input=false", "-no-color"], "");
        assert!(out.status.success(), "{}", text(&out));
        let out = c.tf(&project, &["apply", "-auto-approve", "-no-color"], "");
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("Apply complete! Resources: 1 added"), "{t}");
        // The state is in otfd, the workspace unlocked again.
        let outputs = c
            .api
            .data(&format!(
                "/workspaces/{ws_id}/current-state-version-outputs"
            ))
            .await;
        assert_eq!(outputs[0]["attributes"]["value"], json!("hello"));
        assert_eq!(
            c.api.data(&format!("/workspaces/{ws_id}")).await["attributes"]["locked"],
            json!(false)
        );
        // A second operation while someone holds the lock gets a clear error.
        let (s, _) = c
            .api
            .post(
                &format!("/workspaces/{ws_id}/actions/lock"),
                json!({"reason":"maintenance"}),
            )
            .await;
        assert_eq!(s, 200);
        let out = c.tf(&project, &["apply", "-auto-approve", "-no-color"], "");
        assert!(!out.status.success());
        assert!(
            text(&out).contains("Error acquiring the state lock"),
            "{}",
            text(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_prefixes_list_and_select_workspaces() {
    for db in databases() {
        let c = cli(&db, &["--concurrency", "0"]);
        c.api.org("acme").await;
        for name in ["app-one", "app-two", "other"] {
            c.api.workspace("acme", name, None).await;
        }
        let project = c.project("apps", "prefix = \"app-\"", BODY);
        let mut init = c.command(&project, &["init", "-input=false", "-no-color"]);
        init.env("TF_WORKSPACE", "one");
        let out = init.output().expect("init");
        assert!(out.status.success(), "{}", text(&out));
        let mut list = c.command(&project, &["workspace", "list"]);
        list.env("TF_WORKSPACE", "one");
        let out = list.output().expect("workspace list");
        let t = text(&out);
        assert!(
            t.contains("one") && t.contains("two") && !t.contains("other"),
            "{t}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_mismatch_gives_the_clis_message() {
    let tf = terraform();
    for db in databases() {
        let c = cli(&db, &["--engine-bin", &tf, "--concurrency", "1"]);
        c.api.org("acme").await;
        let project = c.project("old", "name = \"old\"", BODY);
        let out = c.tf(&project, &["init", "-input=false", "-no-color"], "");
        assert!(out.status.success(), "{}", text(&out));
        let out = c.tf(&project, &["apply", "-auto-approve", "-no-color"], "");
        assert!(out.status.success(), "{}", text(&out));
        let ws = c.api.data("/organizations/acme/workspaces/old").await;
        let id = ws["id"].as_str().unwrap_or_default();
        let (s, v) = c
            .api
            .patch(
                &format!("/workspaces/{id}"),
                json!({"data":{"type":"workspaces","attributes":{"terraform-version":"0.13.5"}}}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let out = c.tf(&project, &["state", "rm", "null_resource.a"], "");
        assert!(!out.status.success());
        assert!(
            text(&out).contains("Terraform version mismatch"),
            "{}",
            text(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_remote_plan_cancels_the_run_on_the_agent() {
    for db in databases() {
        let c = cli(&db, &["--concurrency", "0"]);
        c.api.org("acme").await;
        let pool = c.api.pool("acme", "pool").await;
        let ws = c.api.workspace("acme", "slow", Some(&pool)).await;
        let (_, secret) = c.api.token(&pool).await;
        // An agent whose terraform plan takes long.
        let engine = c.dir.path().join("slow-terraform");
        std::fs::write(&engine, format!("#!/bin/sh\nif [ \"$1\" = plan ]; then trap 'exit 130' INT; echo 'slow plan is waiting'; sleep 600; fi\nexec {} \"$@\"\n", terraform())).expect("engine");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let cert = c.cert.display().to_string();
        let real = terraform();
        let agent = Agent::start(
            &c.server,
            &secret,
            "slow",
            engine.to_str().unwrap_or(""),
            // The wrapper runs the real terraform, which the sandbox must let it.
            &["--sandbox-read", &real],
            &[("SSL_CERT_FILE", &cert)],
        );
        let project = c.project("slow", "name = \"slow\"", BODY);
        let out = c.tf(&project, &["init", "-input=false", "-no-color"], "");
        assert!(out.status.success(), "{}", text(&out));
        // Its own process group, like a terminal's foreground job: Ctrl-C
        // reaches terraform and the child it re-executes itself as.
        let mut cmd = c.command(&project, &["plan", "-no-color"]);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut plan = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("terraform plan");
        let api = c.api.clone();
        let run = eventually(RUN, "the plan to be running on the agent", || {
            let api = api.clone();
            let ws = ws.clone();
            async move {
                let runs = api.data(&format!("/workspaces/{ws}/runs")).await;
                let run = runs.as_array()?.first()?.clone();
                let id = run["id"].as_str()?.to_string();
                (api.log(&id, "plan").await.contains("slow plan is waiting")).then_some(id)
            }
        })
        .await;
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(plan.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        if let Some(mut stdin) = plan.stdin.take() {
            let _ = stdin.write_all(b"yes\n");
        }
        let out = tokio::task::spawn_blocking(move || plan.wait_with_output())
            .await
            .expect("join")
            .expect("plan output");
        let status = c.api.status(&run).await;
        assert!(
            matches!(status.as_str(), "canceled" | "planning"),
            "{status}: {}",
            text(&out)
        );
        assert!(text(&out).contains("cancel"), "{}", text(&out));
        c.api.wait_for(&run, "canceled", RUN).await;
        c.api.wait_agent(&pool, &agent.id, "idle", RUN).await;
    }
}
