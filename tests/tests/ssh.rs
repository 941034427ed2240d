//! The administrator's TUI over SSH, end to end: a real otfd with
//! `--ssh-address`, OpenSSH's own `ssh` client (Debian's openssh-client)
//! inside tmux, real keys from `ssh-keygen`, a real otf-agent. The
//! walkthrough over SSH; an organization-limited key; refusals (an unknown
//! key, a command, port forwarding, a subsystem); a resize; a removed key
//! and a dropped connection ending their sessions.

mod e2e;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::{terraform, Agent};
use serde_json::json;
use support::api::Api;
use support::tmux::{line, secret, Tmux, STEP};
use support::{block_on, poll_until, Db, Server};

fn need(tool: &str) {
    if Command::new(tool).arg("-V").output().is_err() {
        panic!(
            "{tool} is needed for the SSH end-to-end tests: install it with \
             `apt-get install openssh-client` (./scripts/test does)"
        );
    }
}

/// A new ed25519 key pair; the private key's path.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    need("ssh");
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
    path
}

fn public(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub"))
        .expect("the public key")
        .trim()
        .to_string()
}

/// otfd with SSH on a port of its own choosing, and that port.
fn start(keys: &Path) -> (Server, u16) {
    let server = Server::start(
        &Db::Sqlite,
        &[
            "--concurrency",
            "0",
            "--ssh-address",
            "127.0.0.1:0",
            "--ssh-authorized-keys",
            &keys.display().to_string(),
            "--ssh-keys-poll",
            "0.1",
        ],
    );
    let log = server.log();
    let port = log
        .lines()
        .find(|l| l.contains("otfd serves SSH"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("address="))
        })
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("otfd did not say where it serves SSH; its log:\n{log}"));
    assert!(
        log.contains("fingerprint=SHA256:"),
        "the host key's fingerprint is logged:\n{log}"
    );
    (server, port)
}

/// `ssh` with `key` to otfd, ignoring any user configuration and agent.
fn ssh_args(port: u16, key: &Path) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-p",
        &port.to_string(),
        "-i",
        &key.display().to_string(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "BatchMode=yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `ssh` run to its end with `extra` arguments.
fn ssh(port: u16, key: &Path, extra: &[&str]) -> Output {
    Command::new("ssh")
        .args(ssh_args(port, key))
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh")
}

/// The TUI over SSH in a tmux pane.
fn tui(name: &str, port: u16, key: &Path) -> Tmux {
    let mut cmd: Vec<String> = vec!["ssh".into()];
    cmd.extend(ssh_args(port, key));
    cmd.extend(["-t".into(), "admin@127.0.0.1".into()]);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    Tmux::start(name, 80, 24, "ssh", &cmd)
}

/// A metric of otfd's `/metrics`.
fn metric(server: &Server, name: &str) -> Option<u64> {
    let url = format!("{}/metrics", server.url);
    let text = block_on(async move {
        let resp = reqwest::get(url).await.ok()?;
        resp.text().await.ok()
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

fn wait_metric(server: &Server, name: &str, want: u64) {
    poll_until(STEP, &format!("{name} {want}"), || {
        match metric(server, name) {
            Some(got) if got == want => Ok(()),
            got => Err(format!("{name} is {got:?}; otfd's log:\n{}", server.log())),
        }
    })
}

#[test]
fn walkthrough_over_ssh() {
    let tf = terraform();
    let dir = tempfile::tempdir().expect("a dir");
    let admin = keygen(dir.path(), "admin");
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, format!("{}\n", public(&admin))).expect("write the keys");
    let (server, port) = start(&keys);
    let tui = tui("otf-ssh-e2e", port, &admin);

    // An organization and a workspace.
    tui.wait_for("No organizations yet");
    tui.keys(&["n"]);
    tui.text("acme");
    tui.keys(&["Enter"]);
    tui.wait_for("created organization acme");
    tui.keys(&["Enter"]);
    tui.wait_for("Organization acme");
    tui.keys(&["w"]);
    tui.wait_for("No workspaces yet");
    tui.keys(&["n"]);
    tui.text("dev");
    tui.keys(&["Enter"]);
    tui.wait_for("created workspace dev");

    // A pool, granted to dev only.
    tui.keys(&["q", "p"]);
    tui.wait_for("No agent pools yet");
    tui.keys(&["n"]);
    tui.text("pool1");
    tui.keys(&["Enter"]);
    tui.wait_for("(organization-scoped)");
    tui.keys(&["e"]);
    tui.wait_for("Grant access to specific workspaces");
    tui.keys(&["Down", "Down", "Space"]);
    tui.wait_for("[x] dev");
    tui.keys(&["s"]);
    tui.wait_for("saved the grants of pool1");

    // dev assigned to it.
    tui.keys(&["q", "q", "w"]);
    tui.wait("the workspaces, dev selected", STEP, |p| {
        line(p, "dev").is_some_and(|l| l.starts_with('>'))
    });
    tui.keys(&["e"]);
    tui.wait_for("Execution mode of dev");
    tui.keys(&["Down", "Down", "Down", "Space", "s"]);
    tui.wait_for("dev: execution mode agent");

    // A token, and a real agent with it listed idle.
    tui.keys(&["q", "p"]);
    tui.wait("pool1 in the list", STEP, |p| {
        line(p, "pool1").is_some_and(|l| l.starts_with('>'))
    });
    tui.keys(&["Enter"]);
    tui.wait("dev granted and assigned", STEP, |p| {
        line(p, "dev").is_some_and(|l| l.contains("granted") && l.contains("assigned"))
    });
    tui.keys(&["t"]);
    tui.wait_for("Agent tokens of pool1");
    tui.keys(&["n"]);
    tui.text("ssh agents");
    tui.keys(&["Enter"]);
    let token = secret(&tui.wait_for("Copy it now"));
    let agent = Agent::start(&server, &token, "ssh-agent", &tf, &[], &[]);
    tui.keys(&["Escape"]);
    tui.wait_for("ssh agents");
    tui.keys(&["q"]);
    tui.wait("the agent idle in the pool", STEP, |p| {
        line(p, "ssh-agent").is_some_and(|l| l.contains("idle"))
    });
    wait_metric(&server, "otf_ssh_sessions", 1);

    // The window grows: the screen is drawn again to the new width.
    tui.resize(120, 30);
    tui.wait("the pool screen 120 wide", STEP, |p| {
        p.lines().any(|l| l.chars().count() > 100) && p.contains("ssh-agent")
    });
    tui.resize(60, 20);
    tui.wait("the pool screen 60 wide", STEP, |p| {
        p.contains("Agent pool pool1") && p.lines().all(|l| l.chars().count() <= 60)
    });

    // Runs start where the configuration is, not from otfd's files.
    tui.keys(&["q", "q", "w"]);
    // The title shows before the list has loaded; Enter needs the row.
    tui.wait("the workspaces, dev selected", STEP, |p| {
        p.contains("Workspaces of acme") && line(p, "dev").is_some_and(|l| l.starts_with('>'))
    });
    tui.keys(&["Enter"]);
    tui.wait_for("No runs yet");
    tui.keys(&["n"]);
    tui.wait_for("does not read its own");

    // q all the way out: the session ends with status 0 and is freed.
    for _ in 0..6 {
        tui.keys(&["q"]);
    }
    tui.wait_for("ssh exited with 0");
    wait_metric(&server, "otf_ssh_sessions", 0);
    drop(agent);
}

#[test]
fn keys_are_held_to_what_the_file_says() {
    let dir = tempfile::tempdir().expect("a dir");
    let admin = keygen(dir.path(), "admin");
    let beta = keygen(dir.path(), "beta");
    let stranger = keygen(dir.path(), "stranger");
    let keys = dir.path().join("authorized_keys");
    let both = format!(
        "# otfd's administrators\n{}\notf-organization=\"beta\",no-agent-forwarding {}\n",
        public(&admin),
        public(&beta)
    );
    std::fs::write(&keys, &both).expect("write the keys");
    let (server, port) = start(&keys);
    for org in ["acme", "beta"] {
        let (url, token) = (server.url.clone(), server.site_token.clone());
        let body =
            json!({"data": {"type": "organizations", "attributes": {"name": org, "email": ""}}});
        block_on(async move {
            Api::new(&url)
                .post(&token, "/api/v2/organizations", body)
                .await
        })
        .expect(201, "create an organization");
    }

    // The limited key sees its organization only, as its token would.
    let limited = tui("otf-ssh-beta", port, &beta);
    let pane = limited.wait_for("beta");
    assert!(!pane.contains("acme"), "{pane}");
    let full = tui("otf-ssh-admin", port, &admin);
    full.wait("both organizations", STEP, |p| {
        p.contains("acme") && p.contains("beta")
    });
    wait_metric(&server, "otf_ssh_sessions", 2);

    // An unknown key is refused, and counted.
    let out = ssh(port, &stranger, &["admin@127.0.0.1", "true"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied (publickey)"),
        "{out:?}"
    );
    assert!(metric(&server, "otf_ssh_refused_keys_total").unwrap_or(0) >= 1);

    // A command is not run.
    let out = ssh(port, &admin, &["admin@127.0.0.1", "id"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!stdout.contains("uid="), "{stdout}");
    assert!(stderr.contains("runs no commands over SSH"), "{stderr}");

    // No terminal, no TUI (and a message saying so).
    let out = ssh(port, &admin, &["-T", "admin@127.0.0.1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ssh -t"),
        "{out:?}"
    );

    // Port forwarding, either way, and subsystems are refused.
    let target = server.url.trim_start_matches("http://").to_string();
    let out = ssh(port, &admin, &["-W", &target, "admin@127.0.0.1"]);
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forwarding failed"),
        "{out:?}"
    );
    let remote = format!("0:{target}");
    let out = ssh(
        port,
        &admin,
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            &remote,
            "admin@127.0.0.1",
        ],
    );
    assert_eq!(out.status.code(), Some(255), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("remote port forwarding failed"),
        "{out:?}"
    );
    let out = ssh(port, &admin, &["-s", "admin@127.0.0.1", "sftp"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("subsystem request failed"),
        "{out:?}"
    );

    // The limited key's line goes: its session is closed, the other stays.
    std::fs::write(&keys, format!("{}\n", public(&admin))).expect("rewrite the keys");
    limited.wait_for("removed from otfd's authorized keys");
    limited.wait_for("ssh exited with 1");
    wait_metric(&server, "otf_ssh_sessions", 1);
    let out = ssh(port, &beta, &["-t", "admin@127.0.0.1"]);
    assert_eq!(
        out.status.code(),
        Some(255),
        "the removed key cannot log in: {out:?}"
    );

    // A dropped connection frees its session.
    full.keys(&["Down"]);
    full.kill();
    wait_metric(&server, "otf_ssh_sessions", 0);
    wait_metric(&server, "otf_ssh_connections", 0);
}
