//! Nothing secret in output: a whole run on a pool agent, with otfd at
//! `-vv` and the agent at `--debug` (both with `RUST_LOG=trace`, so that
//! every library's tracing is on too), with sensitive variables of
//! both kinds, and every log (otfd's, the agent's, the run's) is searched
//! for each token and sensitive value the test created. A database URL's
//! password never appears in otfd's start error either.

mod e2e;
mod support;

use std::time::Duration;

use e2e::{terraform, Agent, Api};
use serde_json::json;
use support::{Db, Server};

const RUN: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_sensitive_value_reaches_any_log() {
    let tf = terraform();
    let server = Server::start_with_env(
        &Db::Sqlite,
        &["--concurrency", "0", "-vv"],
        &[("RUST_LOG", "trace")],
    );
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "pool").await;
    let ws = api.workspace("acme", "dev", Some(&pool)).await;
    let (_, agent_token) = api.token(&pool).await;
    let (s, org_token) = api
        .post(
            "/organizations/acme/authentication-token",
            json!({"data":{"type":"authentication-token","attributes":{}}}),
        )
        .await;
    assert!(s == 201 || s == 200, "{org_token}");
    let org_token = org_token["data"]["attributes"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let tf_secret = "tf-sensitive-value-7f3a9c";
    let env_secret = "env-sensitive-value-1b2d4e";
    for (key, value, category) in [
        ("secret", tf_secret, "terraform"),
        ("SECRET_ENV", env_secret, "env"),
    ] {
        let (s, v) = api
            .post(
                &format!("/workspaces/{ws}/vars"),
                json!({"data":{"type":"vars","attributes":{"key":key,"value":value,"category":category,"sensitive":true}}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let agent = Agent::start(
        &server,
        &agent_token,
        "agent-one",
        &tf,
        &["--debug"],
        &[("RUST_LOG", "trace")],
    );
    let config = r#"
variable "secret" {
  type      = string
  sensitive = true
}
resource "null_resource" "a" {
  triggers = { secret = sha256(var.secret) }
  provisioner "local-exec" {
    command = "test -n \"$SECRET_ENV\" && echo env var present"
  }
}
"#;
    // The organization token drives this run.
    let mut as_org = api.clone();
    as_org.token = org_token.clone();
    let run = as_org.run(&ws, &[("main.tf", config)], false).await;
    as_org.wait_for(&run, "planned", RUN).await;
    as_org.apply(&run).await;
    as_org.wait_for(&run, "applied", RUN).await;
    let run_logs = api.log(&run, "plan").await + &api.log(&run, "apply").await;
    assert!(run_logs.contains("env var present"), "{run_logs}");
    let otfd_log = server.log();
    assert!(
        otfd_log.contains("TRACE") || otfd_log.contains("DEBUG"),
        "otfd logged at -vv"
    );
    assert!(
        agent.log().contains("TRACE") || agent.log().contains("DEBUG"),
        "the agent logged at trace level"
    );
    for (what, log) in [
        ("otfd's log", &otfd_log),
        ("the agent's log", &agent.log()),
        ("the run's logs", &run_logs),
    ] {
        for secret in [
            server.site_token.as_str(),
            agent_token.as_str(),
            org_token.as_str(),
            tf_secret,
            env_secret,
        ] {
            let leaks: Vec<String> = log
                .lines()
                .filter(|l| l.contains(secret))
                .take(3)
                .map(|l| l.replace(secret, "<SECRET>").chars().take(300).collect())
                .collect();
            assert!(
                leaks.is_empty(),
                "{what} holds a secret:\n{}",
                leaks.join("\n")
            );
        }
    }
}

#[test]
fn a_database_password_is_not_in_the_start_error() {
    let data = tempfile::tempdir().expect("a data dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otfd-e2e"))
        .args([
            "--address",
            "127.0.0.1:0",
            "--concurrency",
            "0",
            "--data-dir",
        ])
        .arg(data.path())
        .env(
            "OTF_DATABASE",
            "postgres://otf:pg-password-5e6f@127.0.0.1:1/otf",
        )
        .env("OTF_SITE_TOKEN", "site-token-for-this-test")
        .output()
        .expect("run otfd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot open the database"), "{err}");
    assert!(err.contains("otf:***@127.0.0.1"), "{err}");
    assert!(!err.contains("pg-password-5e6f"), "{err}");
}
