//! Runs are untrusted code. On the server runner and on a pool agent, both
//! with `--sandbox required`, a hostile configuration tries to read every
//! secret of its runner (its own environment, the runner's
//! `/proc/<pid>/environ` and `cmdline`, otfd's data dir, the agent's work
//! dir, another running job's directory), to signal the runner and to write
//! outside its job directory. Each attempt fails, no secret appears in any
//! log, output or state, and the run itself still plans and applies inside
//! the sandbox (also with a plugin cache). The other running job's provider
//! plugin socket is in that job's private temp dir, so its temp dir on disk
//! is empty, and terraform runs its plugins without TLS. SQLite only: the
//! database plays no part in confinement.

mod e2e;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::{terraform, Agent, Api};
use support::{eventually, Db, Server};

const RUN: Duration = Duration::from_secs(90);

/// What a hostile configuration goes after.
struct Targets {
    /// Files holding secrets (each read must fail).
    files: Vec<PathBuf>,
    /// Directories whose listing must fail.
    dirs: Vec<PathBuf>,
    /// The runner's process.
    pid: u32,
    /// Places outside the job directory to write to.
    writes: Vec<PathBuf>,
}

/// A configuration whose outputs each try to read one target ("DENIED"
/// when the read fails) and whose resource, at apply, prints its
/// environment, tries the same reads from a shell, signals the runner and
/// writes outside.
fn hostile(t: &Targets) -> String {
    let mut hcl = String::new();
    let mut reads: Vec<String> = t.files.iter().map(|p| p.display().to_string()).collect();
    reads.push("/proc/self/environ".into());
    reads.push(format!("/proc/{}/environ", t.pid));
    reads.push(format!("/proc/{}/cmdline", t.pid));
    for (i, path) in reads.iter().enumerate() {
        hcl.push_str(&format!(
            "output \"read{i}\" {{ value = try(filebase64(\"{path}\"), \"DENIED\") }}\n"
        ));
    }
    for (i, dir) in t.dirs.iter().enumerate() {
        hcl.push_str(&format!(
            "output \"list{i}\" {{ value = try(join(\",\", fileset(\"{}\", \"**\")), \"DENIED\") }}\n",
            dir.display()
        ));
    }
    // At apply a shell tries the same; every marker of success is spelled
    // in two pieces, so that terraform's echo of the command cannot match.
    let mut sh = String::from("env | sort\n");
    for path in &reads {
        sh.push_str(&format!("cat '{path}' && echo 'READ''-OK {path}'\n"));
    }
    for dir in &t.dirs {
        sh.push_str(&format!("ls -la '{}' && echo 'LIST''-OK'\n", dir.display()));
    }
    for w in &t.writes {
        sh.push_str(&format!(
            "echo pwned > '{}' && echo 'WRITE''-OK'\n",
            w.display()
        ));
    }
    sh.push_str(&format!("kill -0 {} && echo 'SIGNAL''-OK'\n", t.pid));
    sh.push_str("true\n");
    hcl.push_str(&format!(
        "resource \"null_resource\" \"probe\" {{\n  provisioner \"local-exec\" {{\n    command = <<EOT\n{sh}EOT\n  }}\n}}\n"
    ));
    hcl
}

/// A configuration that, at apply, leaves a marker in its job directory
/// and waits until the test releases it: "another running job".
const BLOCKER: &str = r#"
resource "null_resource" "wait" {
  provisioner "local-exec" {
    command = "echo other-jobs-secret > marker.txt; while [ ! -f release ]; do sleep 0.1; done"
  }
}
"#;

/// The whole story on one runner: `blocker` and `probe` are workspaces that
/// run there; `jobs` is where the runner makes job directories.
async fn attack(
    api: &Api,
    blocker: &str,
    probe: &str,
    jobs: &Path,
    mut targets: Targets,
    secrets: &[String],
) {
    let held = api.run(blocker, &[("main.tf", BLOCKER)], false).await;
    api.wait_for(&held, "planned", RUN).await;
    api.apply(&held).await;
    let other = e2e::job_dir_with(jobs, "marker.txt").await;
    // The other job's terraform is applying, its provider plugin running
    // with its socket in the job's temp dir: a private one, so the job's
    // temp dir on disk holds nothing anyone could connect to.
    let tmp = other
        .parent()
        .expect("the job directory holds the configuration")
        .join("tmp");
    let on_disk: Vec<_> = std::fs::read_dir(&tmp)
        .expect("the running job's temp dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(
        on_disk.is_empty(),
        "a running job's temp dir shows {on_disk:?} on disk"
    );
    targets.files.push(other.join("marker.txt"));
    targets.dirs.push(jobs.to_path_buf());
    targets.dirs.push(other.clone());
    targets.writes.push(other.join("pwned"));
    targets.writes.push(jobs.join("pwned"));
    let config = hostile(&targets);
    let run = api.run(probe, &[("main.tf", config.as_str())], false).await;
    api.wait_for(&run, "planned", RUN).await;
    api.apply(&run).await;
    api.wait_for(&run, "applied", RUN).await;
    // Every read failed.
    let outputs = api
        .data(&format!(
            "/workspaces/{probe}/current-state-version-outputs"
        ))
        .await;
    let outputs = outputs.as_array().cloned().unwrap_or_default();
    assert!(outputs.len() >= targets.files.len() + 3, "{outputs:?}");
    for o in &outputs {
        let (name, value) = (&o["attributes"]["name"], &o["attributes"]["value"]);
        let denied = value == "DENIED"
            || (name.as_str().is_some_and(|n| n.starts_with("list")) && value == "");
        assert!(denied, "output {name} read something: {value}");
    }
    // The shell got nowhere either.
    let logs = api.log(&run, "plan").await + &api.log(&run, "apply").await;
    assert!(logs.contains("Apply complete!"), "{logs}");
    for marker in ["READ-OK", "LIST-OK", "WRITE-OK", "SIGNAL-OK"] {
        assert!(!logs.contains(marker), "{marker} in the logs:\n{logs}");
    }
    assert!(
        logs.contains("PATH="),
        "the environment was printed:\n{logs}"
    );
    assert!(
        logs.contains("TF_DISABLE_PLUGIN_TLS=1"),
        "a command with a private temp dir talks to its plugins without TLS:\n{logs}"
    );
    assert!(
        !logs.contains("OTF_"),
        "an OTF_ variable reached terraform:\n{logs}"
    );
    for w in &targets.writes {
        assert!(!w.exists(), "{} was written", w.display());
    }
    // No secret anywhere: logs, outputs, state.
    let state = api.current_state(probe).await.to_string();
    assert!(state.contains("null_resource"), "{state}");
    let outputs = serde_json::to_string(&outputs).unwrap_or_default();
    for secret in secrets {
        for (what, text) in [
            ("a log", &logs),
            ("an output", &outputs),
            ("the state", &state),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into {what}"
            );
        }
    }
    std::fs::write(other.join("release"), b"").expect("release the blocking job");
    api.wait_for(&held, "applied", RUN).await;
}

fn outside_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_configurations_on_the_server_runner_reach_nothing() {
    let tf = terraform();
    let signing_key = "e2e-signing-key-that-must-stay-secret";
    let server = Server::start_with_env(
        &Db::Sqlite,
        &[
            "--concurrency",
            "2",
            "--engine-bin",
            &tf,
            "--sandbox",
            "required",
        ],
        &[
            ("OTF_SECRET", signing_key),
            ("COPY_OF_THE_SITE_TOKEN", "e2e-site-token"),
        ],
    );
    eventually(
        Duration::from_secs(10),
        "the server runner's sandbox line",
        || async { server.log().contains("confined by Landlock").then_some(()) },
    )
    .await;
    let api = Api::new(&server);
    api.org("acme").await;
    let blocker = api.workspace("acme", "blocker", None).await;
    let probe = api.workspace("acme", "probe", None).await;
    let data = server.data_dir.path().to_path_buf();
    let outside = outside_dir();
    let targets = Targets {
        files: vec![
            data.join("site-token"),
            data.join("otf.db"),
            data.join("secret"),
        ],
        // Other runs' kept plan directories hold their variables and state.
        dirs: vec![data.clone(), data.join("warm")],
        pid: server.pid(),
        // The runner's shared plugin cache is read-only to jobs.
        writes: vec![
            data.join("pwned"),
            outside.path().join("pwned"),
            data.join("plugins").join("pwned"),
            data.join("plugins/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/pwned"),
        ],
    };
    attack(
        &api,
        &blocker,
        &probe,
        &data.join("work"),
        targets,
        &[server.site_token.clone(), signing_key.to_string()],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_configurations_on_a_pool_agent_reach_nothing() {
    let tf = terraform();
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0"]);
    let api = Api::new(&server);
    api.org("acme").await;
    let pool = api.pool("acme", "private").await;
    let blocker = api.workspace("acme", "blocker", Some(&pool)).await;
    let probe = api.workspace("acme", "probe", Some(&pool)).await;
    let (_, token) = api.token(&pool).await;
    let cache = tempfile::tempdir().expect("a plugin cache");
    let cache_dir = cache.path().display().to_string();
    // The token on the command line too: /proc/<pid>/cmdline shows it to
    // anything that can read /proc.
    let agent = Agent::start(
        &server,
        &token,
        "agent-one",
        &tf,
        &[
            "--concurrency",
            "2",
            "--sandbox",
            "required",
            "--token",
            &token,
        ],
        &[("TF_PLUGIN_CACHE_DIR", &cache_dir)],
    );
    assert!(
        agent.log().contains("confined by Landlock"),
        "{}",
        agent.log()
    );
    let work = agent.work_dir().to_path_buf();
    let outside = outside_dir();
    let secret_file = work.join("agent-token");
    std::fs::write(&secret_file, &token).expect("a token file next to the jobs");
    let targets = Targets {
        files: vec![secret_file, server.data_dir.path().join("site-token")],
        dirs: vec![work.clone()],
        pid: agent.pid() as u32,
        writes: vec![work.join("pwned"), outside.path().join("pwned")],
    };
    attack(
        &api,
        &blocker,
        &probe,
        &work.join("jobs"),
        targets,
        std::slice::from_ref(&token),
    )
    .await;
    // The plugin cache named by TF_PLUGIN_CACHE_DIR was usable inside the
    // sandbox: terraform filled it.
    let cached = walk(cache.path());
    assert!(
        cached
            .iter()
            .any(|p| p.to_string_lossy().contains("terraform-provider-null")),
        "{cached:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| m.mode() & 0o777).unwrap_or(0)
}

#[test]
fn otfds_data_dir_and_its_files_are_private_even_when_they_existed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let secret = data.join("secret");
    std::fs::write(&secret, "an-old-signing-key-0123456789\n").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_otfd-e2e"))
        .args([
            "--address",
            "127.0.0.1:0",
            "--concurrency",
            "0",
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("OTF_SITE_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start otfd");
    let stdout = child.stdout.take().expect("stdout");
    // The generated site token is printed once, when everything is set up.
    let line = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find(|l| l.contains("site admin token"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.is_some(), "otfd printed no site token");
    assert_eq!(mode(&data), 0o700, "the data dir");
    for f in ["secret", "site-token", "otf.db"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
}

#[test]
fn an_agent_refuses_a_work_dir_it_does_not_own() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    let me = std::fs::metadata(dir.path()).map(|m| m.uid()).unwrap_or(0);
    if me != 0 {
        eprintln!("note: not root; the foreign-owner case needs chown and was not tested");
        return;
    }
    nix::unistd::chown(&work, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otf-agent-e2e"))
        .args(["--address", "127.0.0.1:1", "--work-dir"])
        .arg(&work)
        .env("OTF_AGENT_TOKEN", "at-x.y")
        .output()
        .expect("run otf-agent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("belongs to uid 65534"), "{err}");
}

#[tokio::test]
async fn a_pinned_otfd_runs_every_thread_on_its_cpu_and_refuses_a_server_runner() {
    // A server runner's terraform would inherit the pinning: refused, with
    // a reason, before anything starts.
    let data = tempfile::tempdir().expect("a temporary directory");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_otfd-e2e"))
        .args(["--address", "127.0.0.1:0", "--pin-cpu", "0", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run otfd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs --concurrency 0"), "{err}");
    assert!(
        std::fs::read_dir(data.path())
            .expect("data dir")
            .next()
            .is_none(),
        "nothing was created"
    );

    // Without one: every thread (async workers, SQLite's, the blocking
    // pool's) may run on CPU 0 only, and otfd answers.
    let server = Server::start(&Db::Sqlite, &["--concurrency", "0", "--pin-cpu", "0"]);
    let api = Api::new(&server);
    let (status, _) = api.get("/ping").await;
    assert_eq!(status, 204);
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid())).expect("its threads");
    let mut threads = 0;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        assert_eq!(allowed, "0", "{}: {status}", task.path().display());
        threads += 1;
    }
    assert!(threads > 2, "only {threads} threads seen");
}
