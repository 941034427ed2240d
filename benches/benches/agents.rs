//! 1,000 simulated agents long-polling one real `otfd` (SQLite) while runs
//! are created through the TFE API. Prints, from one run of the bench:
//!
//! * a bare loopback HTTP round trip to the same otfd (`GET /api/v2/ping`
//!   on a kept-alive connection): the baseline;
//! * p50/p99 of run creation (just before `POST /api/v2/runs`) to job start
//!   (the agent's `POST /api/agent/jobs/{id}/start` answered), and the p50
//!   as a multiple of the baseline;
//! * otfd's CPU (from `/proc/<pid>/stat` over a few seconds) and RSS (from
//!   `/proc/<pid>/status`) while the 1,000 agents are connected and idle.
//!
//! Run: `cargo bench -p otf-benches --bench agents`. The bench builds otfd
//! itself with `cargo build --release -p otf-http --bin otfd` into the same
//! target directory (a no-op when it is fresh), or uses the binary named by
//! `OTF_BENCH_OTFD`. `OTF_BENCH_AGENTS` changes the number of agents.
//!
//! Every agent is a tokio task with its own HTTP/1.1 client, so 1,000 agents
//! hold 1,000 loopback connections in this process and 1,000 in otfd; the
//! bench raises its RLIMIT_NOFILE soft limit to the hard limit first (otfd,
//! its child, inherits it). Only loopback addresses are used; every wait has
//! a deadline.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const WORKSPACES: usize = 20;
const ROUNDS: usize = 10;
const SITE_TOKEN: &str = "bench-site-token";
/// otfd's long-poll wait; agents ping between polls, well within the
/// ping timeout given to otfd below.
const LONG_POLL_SECS: u64 = 8;
const IDLE_WINDOW: Duration = Duration::from_secs(5);

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing to parse.
    let agents: usize = std::env::var("OTF_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    raise_nofile();
    let otfd = otfd_binary()?;
    let data = tempfile::tempdir()?;
    let mut server = Otfd::start(&otfd, data.path())?;
    let pid = server.child.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bench(&server.url, pid, agents));
    server.stop();
    let report = result?;
    println!("{report}");
    Ok(())
}

/// Raise the soft limit of open files to the hard limit: 1,000 agents need
/// 1,000 sockets here and 1,000 in otfd (which inherits the limit).
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// `OTF_BENCH_OTFD`, or a release otfd built into this bench's target dir.
fn otfd_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("OTF_BENCH_OTFD") {
        return Ok(PathBuf::from(p));
    }
    // The bench runs as <target>/release/deps/agents-<hash>.
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(|d| d.parent())
        .ok_or_else(|| anyhow!("cannot find the target directory from {}", exe.display()))?;
    let target = release
        .parent()
        .ok_or_else(|| anyhow!("cannot find the target directory from {}", exe.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building otfd (cargo build --release -p otf-http --bin otfd)");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "otf-http",
            "--bin",
            "otfd",
        ])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("run cargo to build otfd")?;
    if !status.success() {
        bail!("building otfd failed; build it yourself and set OTF_BENCH_OTFD");
    }
    Ok(release.join("otfd"))
}

/// The otfd child process.
struct Otfd {
    child: Child,
    url: String,
}

impl Otfd {
    fn start(bin: &std::path::Path, data: &std::path::Path) -> Result<Otfd> {
        let mut child = Command::new(bin)
            .args(["--address", "127.0.0.1:0", "--site-token", SITE_TOKEN])
            .arg("--data-dir")
            .arg(data)
            .args(["--concurrency", "0"])
            .args(["--long-poll", &LONG_POLL_SECS.to_string()])
            .args(["--ping-interval", "10", "--ping-timeout", "60"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Read the address, then keep draining otfd's log so it never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("otfd listening").nth(1) {
                    let url = rest
                        .split_whitespace()
                        .find_map(|kv| kv.strip_prefix("url="))
                        .map(str::to_string);
                    let _ = tx.send(url);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(url)) => Ok(Otfd { child, url }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("otfd did not start")
            }
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON call with the site token.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http.request(method, &url).bearer_auth(SITE_TOKEN);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/vnd.api+json")
            .body(b.to_string());
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn id_of(v: &Value) -> Result<String> {
    v["data"]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no id in {v}"))
}

fn tarball() -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "main.tf", &b"\n"[..])?;
    Ok(b.into_inner()?.finish()?)
}

/// What agents tell the bench.
enum Note {
    Registered,
    Started { run: String, at: Instant },
    Finished { run: String },
}

/// One simulated agent: register, then long-poll; start and finish each
/// job it is given at once; ping between polls.
async fn agent(
    base: String,
    token: String,
    name: String,
    gate: Arc<tokio::sync::Semaphore>,
    notes: mpsc::UnboundedSender<Note>,
) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(LONG_POLL_SECS + 30))
        .pool_max_idle_per_host(1)
        .build()?;
    let post = |path: String, auth: String, agent: Option<String>, body: Value| {
        let mut r = http
            .post(format!("{base}{path}"))
            .bearer_auth(auth)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(a) = agent {
            r = r.header("otf-agent-id", a);
        }
        r.send()
    };
    // Registrations go a bounded number at a time.
    let permit = gate.acquire_owned().await?;
    let reg: Value = post(
        "/api/agent/register".into(),
        token.clone(),
        None,
        json!({"name": name, "version": "bench", "concurrency": 1}),
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let id = reg["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no agent id"))?
        .to_string();
    drop(permit);
    let _ = notes.send(Note::Registered);
    let mut last_ping = Instant::now();
    // Bounded: the bench aborts agents when it is done; this is a backstop.
    for _ in 0..100_000 {
        let jobs: Value = http
            .get(format!("{base}/api/agent/jobs"))
            .bearer_auth(&token)
            .header("otf-agent-id", &id)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for job in jobs["jobs"].as_array().into_iter().flatten() {
            let (Some(job_id), Some(run)) = (job["id"].as_str(), job["run_id"].as_str()) else {
                continue;
            };
            let started: Value = post(
                format!("/api/agent/jobs/{job_id}/start"),
                token.clone(),
                Some(id.clone()),
                json!({}),
            )
            .await?
            .error_for_status()?
            .json()
            .await?;
            let _ = notes.send(Note::Started {
                run: run.to_string(),
                at: Instant::now(),
            });
            let job_token = started["token"].as_str().unwrap_or_default().to_string();
            post(
                "/api/agent/job/finish".into(),
                job_token,
                None,
                json!({"outcome": "finished", "has_changes": false}),
            )
            .await?
            .error_for_status()?;
            let _ = notes.send(Note::Finished {
                run: run.to_string(),
            });
        }
        if last_ping.elapsed() > Duration::from_secs(5) {
            post(
                "/api/agent/status".into(),
                token.clone(),
                Some(id.clone()),
                json!({"status": "idle"}),
            )
            .await?
            .error_for_status()?;
            last_ping = Instant::now();
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // state is field 3 overall, fields[0] here; utime 14 and stime 15.
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(utime + stime)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

async fn bench(base: &str, pid: u32, agents: usize) -> Result<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let api = |p: &str| format!("{base}/api/v2{p}");
    use reqwest::Method;

    // Set up: an organization, a pool, its token, workspaces assigned to it,
    // each with an uploaded configuration.
    call(&http, Method::POST, api("/organizations"),
         Some(json!({"data": {"type": "organizations", "attributes": {"name": "bench", "email": "b@example.test"}}}))).await?;
    let pool = id_of(
        &call(
            &http,
            Method::POST,
            api("/organizations/bench/agent-pools"),
            Some(json!({"data": {"type": "agent-pools", "attributes": {"name": "pool"}}})),
        )
        .await?,
    )?;
    let token = call(&http, Method::POST, api(&format!("/agent-pools/{pool}/authentication-tokens")),
         Some(json!({"data": {"type": "authentication-tokens", "attributes": {"description": "bench"}}}))).await?;
    let token = token["data"]["attributes"]["token"]
        .as_str()
        .ok_or_else(|| anyhow!("no token"))?
        .to_string();
    let tar = tarball()?;
    let mut workspaces = Vec::new();
    for i in 0..WORKSPACES {
        let ws = id_of(
            &call(
                &http,
                Method::POST,
                api("/organizations/bench/workspaces"),
                Some(json!({"data": {"type": "workspaces", "attributes": {
                "name": format!("ws-{i}"), "execution-mode": "agent", "agent-pool-id": pool}}})),
            )
            .await?,
        )?;
        let cv = call(&http, Method::POST, api(&format!("/workspaces/{ws}/configuration-versions")),
            Some(json!({"data": {"type": "configuration-versions", "attributes": {"auto-queue-runs": false}}}))).await?;
        let url = cv["data"]["attributes"]["upload-url"]
            .as_str()
            .ok_or_else(|| anyhow!("no upload-url"))?;
        http.put(url)
            .body(tar.clone())
            .send()
            .await?
            .error_for_status()?;
        workspaces.push(ws);
    }

    // The baseline: a bare loopback round trip to the same server.
    let ping = reqwest::Client::builder().build()?;
    for _ in 0..200 {
        ping.get(api("/ping")).send().await?.error_for_status()?;
    }
    let mut rtt = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        ping.get(api("/ping")).send().await?.error_for_status()?;
        rtt.push(t.elapsed());
    }
    rtt.sort();

    // The agents: register (a bounded number at a time), then long-poll.
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(agents);
    for i in 0..agents {
        let (base, token, tx, gate, failures) = (
            base.to_string(),
            token.clone(),
            notes_tx.clone(),
            gate.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = agent(base, token, format!("agent-{i}"), gate, tx).await {
                if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                    eprintln!("agent-{i} failed: {e:#}");
                }
            }
        }));
    }
    drop(notes_tx);
    let registration = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut registered = 0;
    while registered < agents {
        match tokio::time::timeout_at(deadline.into(), notes.recv()).await {
            Ok(Some(Note::Registered)) => registered += 1,
            Ok(Some(_)) => {}
            _ => bail!("only {registered} of {agents} agents registered"),
        }
    }
    let registration = registration.elapsed();
    let pool_doc = call(
        &http,
        Method::GET,
        api(&format!("/agent-pools/{pool}")),
        None,
    )
    .await?;
    let connected = pool_doc["data"]["attributes"]["agent-count"]
        .as_u64()
        .unwrap_or(0);

    // Idle: every agent connected and long-polling, no runs. Let the
    // registrations' last polls arrive, then measure a window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks_per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let (c0, t0) = (cpu_ticks(pid)?, Instant::now());
    tokio::time::sleep(IDLE_WINDOW).await;
    let (c1, window) = (cpu_ticks(pid)?, t0.elapsed());
    let idle_cpu = (c1.saturating_sub(c0)) as f64 / ticks_per_sec / window.as_secs_f64() * 100.0;
    let idle_rss = rss_kib(pid)?;

    // Runs: each round creates one run per workspace at once, then waits
    // until the agents started and finished them all.
    let mut latencies = Vec::with_capacity(WORKSPACES * ROUNDS);
    for round in 0..ROUNDS {
        let mut created: HashMap<String, Instant> = HashMap::new();
        let mut creations = Vec::new();
        for ws in &workspaces {
            let (http, url, ws) = (http.clone(), api("/runs"), ws.clone());
            creations.push(tokio::spawn(async move {
                let t = Instant::now();
                let doc = call(
                    &http,
                    Method::POST,
                    url,
                    Some(json!({"data": {"type": "runs", "attributes": {},
                    "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}}}})),
                )
                .await?;
                Ok::<_, anyhow::Error>((id_of(&doc)?, t))
            }));
        }
        let mut started: HashMap<String, Instant> = HashMap::new();
        let mut finished = 0;
        for c in creations {
            let (run, t) = c.await??;
            created.insert(run, t);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while finished < WORKSPACES {
            match tokio::time::timeout_at(deadline.into(), notes.recv()).await {
                Ok(Some(Note::Started { run, at })) => {
                    started.insert(run, at);
                }
                Ok(Some(Note::Finished { run })) if created.contains_key(&run) => finished += 1,
                Ok(Some(Note::Finished { .. })) => {}
                Ok(Some(Note::Registered)) => {}
                _ => bail!("round {round}: {finished} of {WORKSPACES} runs finished in time"),
            }
        }
        for (run, at) in started {
            let t = created
                .get(&run)
                .ok_or_else(|| anyhow!("an unknown run {run} started"))?;
            latencies.push(at.saturating_duration_since(*t));
        }
    }
    latencies.sort();
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let failed = failures.load(Ordering::Relaxed);

    let (r50, r99) = (percentile(&rtt, 0.5), percentile(&rtt, 0.99));
    let (l50, l99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let ratio = l50.as_secs_f64() / r50.as_secs_f64().max(1e-9);
    Ok(format!(
        "agents bench: {agents} simulated agents long-polling one otfd (SQLite), {connected} counted by the pool, {failed} agent failures\n\
         registration of {agents} agents: {registration:.2?}\n\
         bare loopback HTTP round trip (GET /api/v2/ping, keep-alive, n={}): p50 {r50:.1?}, p99 {r99:.1?}\n\
         run creation -> job start (n={}): p50 {l50:.2?}, p99 {l99:.2?}; p50 = {ratio:.1}x the bare round trip\n\
         idle otfd with {connected} agents connected: CPU {idle_cpu:.1}% of one core over {window:.1?}, RSS {:.1} MiB",
        rtt.len(),
        latencies.len(),
        idle_rss as f64 / 1024.0,
    ))
}
