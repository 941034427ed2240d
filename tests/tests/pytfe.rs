//! HashiCorp's Python SDK (pytfe 1.5.0), unchanged, drives the walkthrough
//! of `tests/pytfe/walkthrough.py` against a freshly started otfd on every
//! database: organizations, agent pools and their grants, agent-mode
//! workspaces, agent tokens and agents, configuration versions, runs through
//! plan and apply (the script plays the agent on the agent protocol), logs,
//! the JSON plan, variables, state versions, locks and deletes.
//!
//! The Python comes from `OTF_TEST_PYTHON` (set by `scripts/test`, which
//! installs pytfe into a virtual environment), else from that virtual
//! environment's default place. Without it the test fails and says how to
//! get it: it never skips silently.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL: &str = "pytfe is needed: run ./scripts/test, or install it by hand with \
     `python3 -m venv ~/.cache/otf/venv && ~/.cache/otf/venv/bin/pip install pytfe==1.5.0` \
     and set OTF_TEST_PYTHON=~/.cache/otf/venv/bin/python";

/// The Python interpreter that has pytfe.
fn python() -> PathBuf {
    let python = match std::env::var_os("OTF_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/otf/venv/bin/python")
        }
    };
    let probe = Command::new(&python)
        .args(["-c", "import pytfe, httpx"])
        .output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} cannot import pytfe ({}).\n{INSTALL}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run {}: {e}.\n{INSTALL}", python.display()),
    }
}

#[test]
fn pytfe_drives_the_walkthrough() {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pytfe/walkthrough.py");
    for db in support::databases() {
        let server = support::Server::start(&db, &[]);
        let out = Command::new(&python)
            .arg(&script)
            .env("OTF_URL", &server.url)
            .env("OTF_TOKEN", &server.site_token)
            .env("OTF_ORG", "acme")
            // The SDK must not pick up a developer's own TFE settings.
            .env_remove("TFE_ADDRESS")
            .env_remove("TFE_TOKEN")
            .env_remove("SSL_CERT_FILE")
            .output()
            .expect("run the walkthrough script");
        assert!(
            out.status.success(),
            "the pytfe walkthrough failed on {}:\n--- stdout\n{}\n--- stderr\n{}\n--- otfd log\n{}",
            db.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            server.log(),
        );
        eprintln!("pytfe walkthrough passed on {}", db.name());
    }
}
