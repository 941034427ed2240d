//! Dispatch through one real `otfd` and simulated agents, on SQLite and (when
//! `OTF_TEST_DATABASE_URL` or `OTF_BENCH_DATABASE_URL` names a server; a
//! fresh database is created and dropped) PostgreSQL. Prints, from one run
//! of the bench, per database:
//!
//! * the floor of dispatching one run: the database's raw durable
//!   single-row commit p50 (`BEGIN; UPDATE; COMMIT` on a plain connection to
//!   the same database, measured here) x the 3 commits on the path (create
//!   the run, allocate its job, start it), plus a bare loopback HTTP round
//!   trip to the same otfd (`GET /api/v2/ping`, kept alive) x the 3 round
//!   trips on it (the run's POST, the long-poll's answer, the job start);
//! * single-run dispatch on an idle otfd with one agent: `POST /api/v2/runs`
//!   sent -> the agent's `POST /api/agent/jobs/{id}/start` answered, p50 and
//!   p99, and the p50 as a multiple of the floor (target <= 2x);
//! * a burst of 20 runs (one per workspace, created at once) over 1,000
//!   agents, 10 rounds: p50 and p99 (targets p50 <= 10 ms, p99 <= 30 ms);
//! * sustained dispatch for 10 s over 1,000 agents (each workspace's next
//!   run created as soon as its last one finished): runs created and
//!   started per second, beside the raw commit rate, and otfd's CPU per
//!   run started (what a burst waits on once commits are shared);
//! * otfd's CPU (from `/proc/<pid>/stat`) and RSS (`/proc/<pid>/status`)
//!   with 1,000 idle agents, and with 10,000 agents long-polling and pinging
//!   every 10 s (targets < 25 % of one core, < 300 MB).
//!
//! otfd runs with `--concurrency 0`, and on SQLite `--pin-cpu 0` (its
//! threads on one CPU; `OTF_BENCH_PIN_CPU` picks another, empty for none);
//! the bench's own agents and clients are not pinned.
//!
//! Run: `cargo bench -p otf-benches --bench agents`. The bench builds otfd
//! itself with `cargo build --release -p otf-http --bin otfd` into the same
//! target directory (a no-op when it is fresh), or uses the binary named by
//! `OTF_BENCH_OTFD`. `OTF_BENCH_AGENTS` changes the number of agents of the
//! burst (default 1,000), `OTF_BENCH_MANY_AGENTS` that of the ping load
//! (default 10,000; 0 skips it).
//!
//! Every agent is a tokio task with its own HTTP/1.1 client, so N agents
//! hold N loopback connections in this process and N in otfd; the bench
//! raises its RLIMIT_NOFILE soft limit to the hard limit first (otfd, its
//! child, inherits it). Only loopback addresses are used; every wait has a
//! deadline.

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
/// Runs dispatched one at a time to the single agent.
const SINGLE_RUNS: usize = 60;
const SUSTAINED: Duration = Duration::from_secs(10);
const SITE_TOKEN: &str = "bench-site-token";
/// otfd's long-poll wait; agents ping between polls, well within the
/// ping timeout given to otfd below.
const LONG_POLL_SECS: u64 = 8;
const IDLE_WINDOW: Duration = Duration::from_secs(5);
/// The ping load's window: two ping periods.
const PING_WINDOW: Duration = Duration::from_secs(20);
/// Commits and round trips on the path of one dispatch.
const PATH_COMMITS: u32 = 3;
const PATH_ROUND_TRIPS: u32 = 3;

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing to parse.
    let agents = count("OTF_BENCH_AGENTS", 1000).max(1);
    let many = count("OTF_BENCH_MANY_AGENTS", 10_000);
    raise_nofile();
    let otfd = otfd_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sqlite = runtime.block_on(on_sqlite(&otfd, agents, many))?;
    println!("{sqlite}");
    let url = std::env::var("OTF_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("OTF_TEST_DATABASE_URL"))
        .ok()
        .filter(|u| !u.is_empty());
    match url {
        Some(url) => println!(
            "{}",
            runtime.block_on(on_postgres(&otfd, &url, agents, many))?
        ),
        None => println!(
            "dispatch/postgres: not measured (set OTF_BENCH_DATABASE_URL or OTF_TEST_DATABASE_URL)"
        ),
    }
    Ok(())
}

/// The bench on an otfd with its embedded SQLite; the floor's commits go
/// to another file in the same directory (the same disk).
async fn on_sqlite(otfd: &std::path::Path, agents: usize, many: usize) -> Result<String> {
    use sqlx::ConnectOptions;
    let data = tempfile::tempdir()?;
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data.path().join("floor.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .connect()
        .await?;
    let commit = commit_p50(&mut conn).await?;
    let mut server = Otfd::start(otfd, data.path(), None)?;
    let result = bench(
        "sqlite",
        &server.url,
        server.child.id(),
        commit,
        agents,
        many,
    )
    .await;
    server.stop();
    result
}

/// The bench on an otfd using a fresh PostgreSQL database (dropped after).
async fn on_postgres(
    otfd: &std::path::Path,
    url: &str,
    agents: usize,
    many: usize,
) -> Result<String> {
    use sqlx::{ConnectOptions, Executor};
    use std::str::FromStr;
    let admin = sqlx::postgres::PgConnectOptions::from_str(url)?;
    let name = format!("otf_dispatch_{}", std::process::id());
    let mut conn = admin.connect().await?;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    // The same server and options (sslmode, say), another database.
    let (base, options) = url.split_once('?').unwrap_or((url, ""));
    let mut db_url = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => format!("{}/{name}", &base[..i]),
        _ => format!("{base}/{name}"),
    };
    if !options.is_empty() {
        db_url = format!("{db_url}?{options}");
    }
    let result = async {
        let mut floor = admin.clone().database(&name).connect().await?;
        let commit = commit_p50(&mut floor).await?;
        let data = tempfile::tempdir()?;
        let mut server = Otfd::start(otfd, data.path(), Some(&db_url))?;
        let r = bench(
            "postgres",
            &server.url,
            server.child.id(),
            commit,
            agents,
            many,
        )
        .await;
        server.stop();
        r
    }
    .await;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    result
}

/// p50 of raw durable single-row commits (`BEGIN; UPDATE; COMMIT`) on a
/// plain connection.
async fn commit_p50<C>(conn: &mut C) -> Result<Duration>
where
    for<'c> &'c mut C: sqlx::Executor<'c>,
{
    use sqlx::Executor;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS bench_floor (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
    )
    .await?;
    conn.execute("INSERT INTO bench_floor (id, n) VALUES (1, 0)")
        .await?;
    let mut took = Vec::with_capacity(300);
    for i in 0..330 {
        let t = Instant::now();
        conn.execute("BEGIN").await?;
        conn.execute("UPDATE bench_floor SET n = n + 1 WHERE id = 1")
            .await?;
        conn.execute("COMMIT").await?;
        if i >= 30 {
            took.push(t.elapsed());
        }
    }
    took.sort();
    Ok(percentile(&took, 0.5))
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

/// The CPU otfd is pinned to (`--pin-cpu`): `OTF_BENCH_PIN_CPU`, default 0;
/// set empty for none.
fn pin_cpu() -> Option<String> {
    match std::env::var("OTF_BENCH_PIN_CPU") {
        Ok(v) if v.is_empty() => None,
        Ok(v) => Some(v),
        Err(_) => Some("0".into()),
    }
}

/// The otfd child process.
struct Otfd {
    child: Child,
    url: String,
}

impl Otfd {
    /// otfd on `data`, with its embedded SQLite or the `database` URL.
    fn start(
        bin: &std::path::Path,
        data: &std::path::Path,
        database: Option<&str>,
    ) -> Result<Otfd> {
        let mut cmd = Command::new(bin);
        cmd.args(["--address", "127.0.0.1:0", "--site-token", SITE_TOKEN])
            .arg("--data-dir")
            .arg(data)
            .args(["--concurrency", "0"])
            // SQLite: otfd's threads on one CPU, so statements hand off
            // between the async workers and SQLite's thread without waking
            // an idle (virtual) CPU. Not on PostgreSQL, whose server
            // processes need the other CPUs (pinned, it was slower).
            .args(
                pin_cpu()
                    .filter(|_| database.is_none())
                    .map(|c| ["--pin-cpu".to_string(), c])
                    .into_iter()
                    .flatten(),
            )
            .args(["--long-poll", &LONG_POLL_SECS.to_string()])
            .args(["--ping-interval", "10", "--ping-timeout", "60"])
            // 10,000 agents and the bench's own clients.
            .args(["--max-connections", "16000"])
            .env("RUST_LOG", "info")
            .env_remove("OTF_DATABASE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = database {
            cmd.env("OTF_DATABASE", url);
        }
        let mut child = cmd
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
    ping_every: Duration,
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
        if last_ping.elapsed() > ping_every {
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

/// Clock ticks per second (the unit of [`cpu_ticks`]).
fn ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
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

/// The agents of one phase: their tasks, and the notes they send.
struct Fleet {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    notes: mpsc::UnboundedReceiver<Note>,
    failures: Arc<AtomicUsize>,
}

impl Fleet {
    /// Start `n` agents and wait until all registered.
    async fn start(
        base: &str,
        token: &str,
        n: usize,
        ping_every: Duration,
    ) -> Result<(Fleet, Duration)> {
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        let failures = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let (base, token, tx, gate, failures) = (
                base.to_string(),
                token.to_string(),
                notes_tx.clone(),
                gate.clone(),
                failures.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let name = format!("agent-{i}");
                if let Err(e) = agent(base, token, name, gate, tx, ping_every).await {
                    if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("agent-{i} failed: {e:#}");
                    }
                }
            }));
        }
        drop(notes_tx);
        let mut fleet = Fleet {
            tasks,
            notes,
            failures,
        };
        let t = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut registered = 0;
        while registered < n {
            match tokio::time::timeout_at(deadline.into(), fleet.notes.recv()).await {
                Ok(Some(Note::Registered)) => registered += 1,
                Ok(Some(_)) => {}
                _ => {
                    let failed = fleet.stop().await;
                    bail!("only {registered} of {n} agents registered ({failed} failed)")
                }
            }
        }
        Ok((fleet, t.elapsed()))
    }

    async fn stop(self) -> usize {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.failures.load(Ordering::Relaxed)
    }
}

/// Create a run of `ws`; its id and when its POST was sent.
async fn create_run(http: &reqwest::Client, base: &str, ws: &str) -> Result<(String, Instant)> {
    let t = Instant::now();
    let doc = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v2/runs"),
        Some(json!({"data": {"type": "runs", "attributes": {},
        "relationships": {"workspace": {"data": {"type": "workspaces", "id": ws}}}}})),
    )
    .await?;
    Ok((id_of(&doc)?, t))
}

/// otfd's CPU (% of one core) over `window` and its RSS (MiB) after it.
async fn load(pid: u32, window: Duration) -> Result<(f64, f64)> {
    let (c0, t0) = (cpu_ticks(pid)?, Instant::now());
    tokio::time::sleep(window).await;
    let (c1, took) = (cpu_ticks(pid)?, t0.elapsed());
    let cpu = (c1.saturating_sub(c0)) as f64 / ticks_per_sec() / took.as_secs_f64() * 100.0;
    Ok((cpu, rss_kib(pid)? as f64 / 1024.0))
}

/// Set up: an organization, a pool, its token, workspaces assigned to it,
/// each with an uploaded configuration. The token and the workspaces.
async fn set_up(http: &reqwest::Client, base: &str) -> Result<(String, String, Vec<String>)> {
    use reqwest::Method;
    let api = |p: &str| format!("{base}/api/v2{p}");
    call(http, Method::POST, api("/organizations"),
         Some(json!({"data": {"type": "organizations", "attributes": {"name": "bench", "email": "b@example.test"}}}))).await?;
    let pool = id_of(
        &call(
            http,
            Method::POST,
            api("/organizations/bench/agent-pools"),
            Some(json!({"data": {"type": "agent-pools", "attributes": {"name": "pool"}}})),
        )
        .await?,
    )?;
    let token = call(http, Method::POST, api(&format!("/agent-pools/{pool}/authentication-tokens")),
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
                http,
                Method::POST,
                api("/organizations/bench/workspaces"),
                Some(json!({"data": {"type": "workspaces", "attributes": {
                "name": format!("ws-{i}"), "execution-mode": "agent", "agent-pool-id": pool}}})),
            )
            .await?,
        )?;
        let cv = call(http, Method::POST, api(&format!("/workspaces/{ws}/configuration-versions")),
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
    Ok((pool, token, workspaces))
}

/// p50 and p99 of bare loopback round trips to otfd.
async fn round_trips(base: &str) -> Result<Vec<Duration>> {
    let ping = reqwest::Client::builder().build()?;
    let url = format!("{base}/api/v2/ping");
    for _ in 0..200 {
        ping.get(&url).send().await?.error_for_status()?;
    }
    let mut rtt = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = Instant::now();
        ping.get(&url).send().await?.error_for_status()?;
        rtt.push(t.elapsed());
    }
    rtt.sort();
    Ok(rtt)
}

/// Wait for the notes of the runs in `created` until all finished; the
/// latency of each from creation to job start.
async fn until_finished(
    fleet: &mut Fleet,
    created: &HashMap<String, Instant>,
    what: &str,
) -> Result<Vec<Duration>> {
    let mut started: HashMap<String, Instant> = HashMap::new();
    let mut finished = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while finished < created.len() {
        match tokio::time::timeout_at(deadline.into(), fleet.notes.recv()).await {
            Ok(Some(Note::Started { run, at })) => {
                started.insert(run, at);
            }
            Ok(Some(Note::Finished { run })) if created.contains_key(&run) => finished += 1,
            Ok(Some(_)) => {}
            _ => bail!(
                "{what}: {finished} of {} runs finished in time",
                created.len()
            ),
        }
    }
    started
        .into_iter()
        .filter_map(|(run, at)| created.get(&run).map(|t| at.saturating_duration_since(*t)))
        .map(Ok)
        .collect()
}

/// Runs created and started per second over [`SUSTAINED`]: each workspace's
/// next run is created as soon as its last one finished.
/// Runs started per second, and otfd's CPU per run started (ms), over
/// [`SUSTAINED`].
async fn sustained(
    http: &reqwest::Client,
    base: &str,
    pid: u32,
    fleet: &mut Fleet,
    workspaces: &[String],
) -> Result<(f64, f64)> {
    let (made_tx, mut made) = mpsc::unbounded_channel::<Result<(String, String)>>();
    let spawn = |ws: String| {
        let (http, base, tx) = (http.clone(), base.to_string(), made_tx.clone());
        tokio::spawn(async move {
            let r = create_run(&http, &base, &ws)
                .await
                .map(|(run, _)| (run, ws));
            let _ = tx.send(r);
        });
    };
    let mut run_ws: HashMap<String, String> = HashMap::new();
    let mut pending_finish: HashMap<String, ()> = HashMap::new();
    for ws in workspaces {
        spawn(ws.clone());
    }
    let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
    let end = t0 + SUSTAINED;
    let mut started = 0usize;
    while Instant::now() < end {
        tokio::select! {
            m = made.recv() => {
                let (run, ws) = m.ok_or_else(|| anyhow!("creations stopped"))??;
                if pending_finish.remove(&run).is_some() {
                    spawn(ws);
                } else {
                    run_ws.insert(run, ws);
                }
            }
            n = fleet.notes.recv() => match n {
                Some(Note::Started { .. }) => started += 1,
                Some(Note::Finished { run }) => match run_ws.remove(&run) {
                    Some(ws) => spawn(ws),
                    // Finished before its creation's answer came back.
                    None => { pending_finish.insert(run, ()); }
                },
                Some(Note::Registered) => {}
                None => bail!("the agents stopped"),
            },
            _ = tokio::time::sleep_until(end.into()) => {}
        }
    }
    let rate = started as f64 / t0.elapsed().as_secs_f64();
    let cpu_s = cpu_ticks(pid)?.saturating_sub(c0) as f64 / ticks_per_sec();
    let cpu_per_run = cpu_s * 1000.0 / started.max(1) as f64;
    // Let what is in flight finish, so the next phase starts idle.
    let settle = Instant::now() + Duration::from_secs(30);
    while (!run_ws.is_empty() || !made.is_empty()) && Instant::now() < settle {
        tokio::select! {
            m = made.recv() => if let Some(Ok((run, ws))) = m {
                if pending_finish.remove(&run).is_none() { run_ws.insert(run, ws); }
            },
            n = fleet.notes.recv() => if let Some(Note::Finished { run }) = n { run_ws.remove(&run); },
            _ = tokio::time::sleep_until(settle.into()) => {}
        }
    }
    Ok((rate, cpu_per_run))
}

/// `many` agents long-polling, each pinging after every long-poll (every
/// 8 s, more often than the 10 s asked): otfd's CPU and RSS.
async fn ping_load(base: &str, token: &str, pid: u32, many: usize) -> Result<String> {
    let (fleet, took) = Fleet::start(base, token, many, Duration::ZERO).await?;
    tokio::time::sleep(Duration::from_secs(LONG_POLL_SECS + 2)).await;
    let (cpu, rss) = load(pid, PING_WINDOW).await?;
    let lost = fleet.stop().await;
    Ok(format!(
        "{many} agents long-polling and pinging every {LONG_POLL_SECS} s (registered in {took:.1?}, {lost} failures): otfd CPU {cpu:.1}% of one core over {PING_WINDOW:?} (target < 25%), RSS {rss:.1} MiB (target < 300 MB)"
    ))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn bench(
    db: &str,
    base: &str,
    pid: u32,
    commit: Duration,
    agents: usize,
    many: usize,
) -> Result<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let (pool, token, workspaces) = set_up(&http, base).await?;
    let rtt = round_trips(base).await?;
    let (r50, r99) = (percentile(&rtt, 0.5), percentile(&rtt, 0.99));
    let floor = commit * PATH_COMMITS + r50 * PATH_ROUND_TRIPS;

    // Single-run dispatch: one agent, one run at a time.
    let (mut fleet, _) = Fleet::start(base, &token, 1, Duration::from_secs(5)).await?;
    let mut single = Vec::with_capacity(SINGLE_RUNS);
    for i in 0..SINGLE_RUNS + 5 {
        let (run, t) = create_run(&http, base, &workspaces[i % WORKSPACES]).await?;
        let took = until_finished(&mut fleet, &HashMap::from([(run, t)]), "single run").await?;
        if i >= 5 {
            single.extend(took);
        }
    }
    single.sort();
    let failed_single = fleet.stop().await;
    let (s50, s99) = (percentile(&single, 0.5), percentile(&single, 0.99));

    // The burst: `agents` agents, idle first.
    let (mut fleet, registration) =
        Fleet::start(base, &token, agents, Duration::from_secs(5)).await?;
    let pool_doc = call(
        &http,
        reqwest::Method::GET,
        format!("{base}/api/v2/agent-pools/{pool}"),
        None,
    )
    .await?;
    let connected = pool_doc["data"]["attributes"]["agent-count"]
        .as_u64()
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_cpu, idle_rss) = load(pid, IDLE_WINDOW).await?;
    let mut burst = Vec::with_capacity(WORKSPACES * ROUNDS);
    for round in 0..ROUNDS {
        let mut creations = Vec::new();
        for ws in &workspaces {
            let (http, base, ws) = (http.clone(), base.to_string(), ws.clone());
            creations.push(tokio::spawn(
                async move { create_run(&http, &base, &ws).await },
            ));
        }
        let mut created = HashMap::new();
        for c in creations {
            let (run, t) = c.await??;
            created.insert(run, t);
        }
        burst.extend(until_finished(&mut fleet, &created, &format!("burst round {round}")).await?);
    }
    burst.sort();
    let (b50, b99) = (percentile(&burst, 0.5), percentile(&burst, 0.99));
    let (rate, cpu_per_run) = sustained(&http, base, pid, &mut fleet, &workspaces).await?;
    let failed = failed_single + fleet.stop().await;

    // The ping load: `many` agents long-polling, each pinging after every
    // long-poll (every 8 s, more often than the 10 s asked).
    let many_line = if many > 0 {
        match ping_load(base, &token, pid, many).await {
            Ok(line) => line,
            Err(e) => format!("{many} agents: not measured: {e:#}"),
        }
    } else {
        "ping load: not measured (OTF_BENCH_MANY_AGENTS=0)".into()
    };

    let pinned = match pin_cpu().filter(|_| db == "sqlite") {
        Some(c) => format!("--pin-cpu {c}"),
        None => "not pinned".into(),
    };
    Ok(format!(
        "dispatch/{db}: raw durable single-row commit p50 {:.3} ms ({:.0}/s); bare loopback round trip (GET /api/v2/ping, n={}) p50 {:.3} ms, p99 {:.3} ms\n\
         dispatch/{db}: floor = {PATH_COMMITS} commits + {PATH_ROUND_TRIPS} round trips = {:.2} ms\n\
         dispatch/{db}: single run, idle otfd ({pinned}), one agent (n={}): p50 {:.2} ms, p99 {:.2} ms; p50 = {:.1}x the floor (target <= 2x)\n\
         dispatch/{db}: burst of {WORKSPACES} runs over {agents} agents ({connected} counted by the pool, registered in {registration:.1?}), {ROUNDS} rounds (n={}): p50 {:.2} ms (target <= 10), p99 {:.2} ms (target <= 30)\n\
         dispatch/{db}: sustained over {agents} agents: {rate:.0} runs created and started per second for {SUSTAINED:?} ({:.1}% of the raw commit rate; a run is {PATH_COMMITS}+ commits); otfd's CPU {cpu_per_run:.2} ms per run\n\
         dispatch/{db}: idle otfd with {connected} agents: CPU {idle_cpu:.1}% of one core over {IDLE_WINDOW:?}, RSS {idle_rss:.1} MiB; {failed} agent failures\n\
         dispatch/{db}: {many_line}",
        ms(commit),
        1.0 / commit.as_secs_f64().max(1e-9),
        rtt.len(),
        ms(r50),
        ms(r99),
        ms(floor),
        single.len(),
        ms(s50),
        ms(s99),
        s50.as_secs_f64() / floor.as_secs_f64().max(1e-9),
        burst.len(),
        ms(b50),
        ms(b99),
        rate * commit.as_secs_f64() * 100.0,
    ))
}
