//! otf-tui end to end: the real otfd, a real otf-agent and real terraform,
//! with the TUI running inside tmux (80×24) and driven by `send-keys` through
//! the README's walkthrough, asserting on `capture-pane`.

mod e2e;
mod support;

use std::process::Command;
use std::time::Duration;

use e2e::{terraform, Agent, HELLO};
use support::tmux::{line, secret, Tmux, STEP};
use support::{Db, Server};

const RUN: Duration = Duration::from_secs(120);

#[test]
fn walkthrough_in_the_tui() {
    let tf = terraform();
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let config = tempfile::tempdir().expect("a configuration dir");
    for (name, body) in HELLO {
        std::fs::write(config.path().join(name), body).expect("write the configuration");
    }
    let tui = Tmux::start(
        "otf-tui-e2e",
        80,
        24,
        "otf-tui",
        &[
            "env",
            &format!("OTF_ADDRESS={}", server.url),
            &format!("OTF_TOKEN={}", server.site_token),
            env!("CARGO_BIN_EXE_otf-tui-e2e"),
        ],
    );

    // An organization and two workspaces.
    tui.wait_for("No organizations yet");
    tui.keys(&["n"]);
    tui.text("acme");
    tui.keys(&["Enter"]);
    tui.wait_for("created organization acme");
    tui.keys(&["Enter"]);
    tui.wait_for("Organization acme");
    tui.keys(&["w"]);
    tui.wait_for("No workspaces yet");
    for name in ["dev", "prod"] {
        tui.keys(&["n"]);
        tui.text(name);
        tui.keys(&["Enter"]);
        tui.wait_for(&format!("created workspace {name}"));
    }

    // 1. A pool, organization-scoped at first.
    tui.keys(&["q"]);
    tui.wait_for("Jobs and queue");
    tui.keys(&["p"]);
    tui.wait_for("No agent pools yet");
    tui.keys(&["n"]);
    tui.text("pool1");
    tui.keys(&["Enter"]);
    tui.wait_for("(organization-scoped)");

    // 2. Restricted to dev: "grant access to specific workspaces", saved.
    tui.keys(&["e"]);
    tui.wait_for("Grant access to specific workspaces");
    tui.keys(&["Down", "Down", "Space"]);
    tui.wait_for("[x] dev");
    tui.keys(&["s"]);
    tui.wait_for("saved the grants of pool1");
    tui.wait_for("Access: granted workspaces only");

    // 3. prod may not use the pool (the server's refusal is shown); dev may.
    tui.keys(&["q", "q"]);
    tui.wait_for("Jobs and queue");
    tui.keys(&["w"]);
    tui.wait("the workspaces, dev selected", STEP, |p| {
        line(p, "dev").is_some_and(|l| l.starts_with('>'))
    });
    tui.keys(&["Down", "e"]);
    tui.wait_for("Execution mode of prod");
    tui.keys(&["Down", "Down", "Down", "Space", "s"]);
    tui.wait_for("The execution mode was not changed");
    tui.wait_for("not granted");
    tui.keys(&["Escape", "Escape"]);
    tui.wait_for("Workspaces of acme");
    tui.keys(&["Up", "e"]);
    tui.wait_for("Execution mode of dev");
    tui.keys(&["Down", "Down", "Down", "Space", "s"]);
    tui.wait_for("dev: execution mode agent");
    // The list is fetched again after the change: wait for the new row
    // (a pane captured before the refresh still shows the old one).
    let pane = tui.wait("dev listed on pool1", STEP, |p| {
        p.contains("Workspaces of acme")
            && line(p, "dev").is_some_and(|d| d.contains("agent") && d.contains("pool1"))
    });
    let dev = line(&pane, "dev").expect("dev is listed");
    assert!(dev.contains("agent") && dev.contains("pool1"), "{pane}");

    // The pool shows dev as granted and assigned.
    tui.keys(&["q", "p"]);
    tui.wait("pool1 in the list", STEP, |p| {
        line(p, "pool1").is_some_and(|l| l.starts_with('>'))
    });
    tui.keys(&["Enter"]);
    tui.wait("dev granted and assigned", STEP, |p| {
        line(p, "dev").is_some_and(|l| l.contains("granted") && l.contains("assigned"))
    });

    // 4. A token; its secret is shown once.
    tui.keys(&["t"]);
    tui.wait_for("Agent tokens of pool1");
    tui.keys(&["n"]);
    tui.text("tui agents");
    tui.keys(&["Enter"]);
    let pane = tui.wait_for("Copy it now");
    let token = secret(&pane);

    // 5-6. An agent with that token shows as idle in the pool.
    let agent = Agent::start(
        &server,
        &token,
        "tui-agent",
        &tf,
        &["--concurrency", "1"],
        &[],
    );
    tui.keys(&["Escape"]);
    let pane = tui.wait_for("tui agents");
    assert!(
        !pane.contains(&token),
        "the secret is shown once only:\n{pane}"
    );
    tui.keys(&["q"]);
    let pane = tui.wait("the agent idle in the pool", STEP, |p| {
        line(p, "tui-agent").is_some_and(|l| l.contains("idle"))
    });
    let row = line(&pane, "tui-agent").expect("the agent's row");
    assert!(row.contains("127.0.0.1") && row.contains("0/1"), "{pane}");

    // 7. A run from the configuration directory, on the agent, applied.
    tui.keys(&["q", "q"]);
    tui.wait_for("Jobs and queue");
    tui.keys(&["w"]);
    tui.wait("the workspaces, dev selected", STEP, |p| {
        line(p, "dev").is_some_and(|l| l.starts_with('>'))
    });
    tui.keys(&["Enter"]);
    tui.wait_for("No runs yet");
    tui.keys(&["n"]);
    tui.text(&config.path().display().to_string());
    tui.keys(&["Enter"]);
    tui.wait("the plan", RUN, |p| p.contains("of dev: planned"));
    tui.wait_for("Plan: 1 to add");
    tui.keys(&["a"]);
    tui.wait_for("Confirm and apply");
    tui.keys(&["y"]);
    let pane = tui.wait("the run applied", RUN, |p| p.contains("of dev: applied"));
    assert!(
        line(&pane, "apply").is_some_and(|l| l.contains("finished") && l.contains("+1 ~0 -0")),
        "{pane}"
    );
    tui.wait_for("Apply complete!");

    // q all the way out: the TUI exits 0 and leaves the terminal usable.
    for _ in 0..6 {
        tui.keys(&["q"]);
    }
    tui.wait_for("otf-tui exited with 0");
    drop(agent);
}

#[test]
fn refused_token_and_unreachable_server_are_exit_codes() {
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let tui = env!("CARGO_BIN_EXE_otf-tui-e2e");
    let out = Command::new(tui)
        .args(["--address", &server.url, "--token", "wrong"])
        .output()
        .expect("run otf-tui");
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the token"), "{err}");
    drop(server);
    let out = Command::new(tui)
        .args(["--address", "127.0.0.1:9", "--token", "x"])
        .output()
        .expect("run otf-tui");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach otfd"), "{err}");
}
