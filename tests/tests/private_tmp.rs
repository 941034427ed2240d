//! Each sandboxed command gets a temp dir of its own (a tmpfs in a user and
//! mount namespace of its own, when the kernel allows unprivileged user
//! namespaces), and with it terraform's plugin channel goes without TLS.
//! Landlock alone does not stop one job from connecting to a UNIX socket in
//! another job's directory once it knows the path: the second test shows
//! that it can without the private temp dir, and cannot with it. Real
//! launcher (the agent's binary), real processes, real sockets.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_otf-agent-e2e");
const PYTHON: &str = "/usr/bin/python3";

/// A job directory (0700) with its temp dir, as a runner makes them.
fn job_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a job directory");
    std::fs::create_dir(dir.path().join("tmp")).expect("the job's temp dir");
    dir
}

/// Start `program` through the launcher, confined to `job` (and with a
/// private temp dir when `private`), with the job's environment and
/// `extra_env` (NUL-terminated `KEY=VALUE` records).
fn launch_program(job: &Path, private: bool, program: &[&str], extra_env: &str) -> Child {
    let tmp = job.join("tmp");
    let mut cmd = Command::new(LAUNCHER);
    cmd.args(["__otf-sandbox", "exec"]);
    for p in ["/usr", "/bin", "/lib", "/lib64", "/etc"] {
        cmd.arg("--read").arg(p);
    }
    // The launcher gives the command /dev/null as its standard input.
    cmd.args(["--write", "/dev/null", "--write"]).arg(job);
    if private {
        cmd.arg("--private-tmp").arg(&tmp);
    }
    cmd.args(["--required", "--"])
        .args(program)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the launcher starts");
    let env = format!("PATH=/usr/bin:/bin\0TMPDIR={}\0{extra_env}", tmp.display());
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(env.as_bytes()).expect("the environment");
    drop(stdin);
    child
}

/// Start `script` (Python) through the launcher, as [`launch_program`].
fn launch(job: &Path, private: bool, script: &str, args: &[&str]) -> Child {
    let program: Vec<&str> = [PYTHON, "-c", script]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    launch_program(job, private, &program, "")
}

/// Listens on a UNIX socket in its temp dir (where terraform's provider
/// plugins put theirs), prints TF_DISABLE_PLUGIN_TLS and the socket's path,
/// and waits until the FIFO it is given is written.
const LISTENER: &str = r#"
import os, socket, sys
path = os.path.join(os.environ["TMPDIR"], "plugin3141592")
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(1)
print(os.environ.get("TF_DISABLE_PLUGIN_TLS", "unset"), path, flush=True)
open(sys.argv[1]).read()
"#;

/// Tries to connect to the socket at its argument.
const CONNECTOR: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print("connected")
except OSError as e:
    print("refused", type(e).__name__)
"#;

struct Listener {
    child: Child,
    fifo: PathBuf,
    tls: String,
    socket: PathBuf,
}

fn listen(job: &Path, private: bool) -> Listener {
    let fifo = job.join("release");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo");
    let mut child = launch(job, private, LISTENER, &[fifo.to_str().unwrap()]);
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("the listener's line");
    let mut words = line.split_whitespace();
    let (Some(tls), Some(socket)) = (words.next(), words.next()) else {
        let out = child.wait_with_output().expect("the listener ends");
        panic!(
            "the listener printed {line:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    Listener {
        tls: tls.to_string(),
        socket: PathBuf::from(socket),
        child,
        fifo,
    }
}

impl Listener {
    fn release(mut self) {
        drop(std::fs::OpenOptions::new().write(true).open(&self.fifo));
        let status = self.child.wait().expect("the listener ends");
        assert!(status.success(), "the listener exits cleanly");
    }
}

/// What another job's confined command gets when it connects to `socket`.
fn connect_from_another_job(socket: &Path) -> String {
    let other = job_dir();
    let out = launch(other.path(), true, CONNECTOR, &[socket.to_str().unwrap()])
        .wait_with_output()
        .expect("the connector ends");
    assert!(
        out.status.success(),
        "connector: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_launcher_can_make_private_temp_dirs_here() {
    let out = Command::new(LAUNCHER)
        .args(["__otf-sandbox", "probe"])
        .env_clear()
        .output()
        .expect("the probe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("status=enforced") && text.contains("private_tmp=true"),
        "this machine allows Landlock and unprivileged user namespaces; the probe said {text:?}, {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn another_job_reaches_a_plugin_socket_only_without_a_private_temp_dir() {
    assert!(Path::new(PYTHON).exists(), "the test needs {PYTHON}");

    // Without: the socket is in the job's directory on disk, Landlock lets a
    // command of another job connect to it, and terraform keeps its TLS.
    let job = job_dir();
    let shared = listen(job.path(), false);
    assert_eq!(shared.tls, "unset");
    assert!(shared.socket.starts_with(job.path().join("tmp")));
    assert!(shared.socket.exists(), "visible outside the command");
    assert_eq!(connect_from_another_job(&shared.socket), "connected");
    shared.release();

    // With: the same path, in a tmpfs only the command's own namespace has.
    let job = job_dir();
    let private = listen(job.path(), true);
    assert_eq!(private.tls, "1", "no TLS needed on a private channel");
    assert!(private.socket.starts_with(job.path().join("tmp")));
    assert!(
        !private.socket.exists(),
        "the runner does not see the command's temp dir"
    );
    let seen = std::fs::read_dir(job.path().join("tmp"))
        .expect("the job's temp dir")
        .count();
    assert_eq!(seen, 0, "nothing lands in the job's temp dir on disk");
    assert_eq!(
        connect_from_another_job(&private.socket),
        "refused FileNotFoundError"
    );
    private.release();
}

#[test]
fn the_environment_can_keep_plugin_tls_on() {
    let job = job_dir();
    let child = launch_program(
        job.path(),
        true,
        &["/usr/bin/env"],
        "TF_DISABLE_PLUGIN_TLS=\0",
    );
    let out = child.wait_with_output().expect("env ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(
        env.lines().any(|l| l == "TF_DISABLE_PLUGIN_TLS="),
        "an operator's empty value (TLS on) is kept: {env}"
    );
}
