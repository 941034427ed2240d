//! The harness of the end-to-end tests: it starts the real `otfd` binary on
//! loopback (port 0; the address is read from its log), on a fresh SQLite
//! file or a fresh PostgreSQL database, with short timers, and stops it on
//! drop.

#![allow(dead_code)]

pub mod api;
pub mod proxy;
pub mod tmux;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a test server keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    /// A PostgreSQL server URL; each server gets its own fresh database.
    Postgres(String),
}

impl Db {
    pub fn name(&self) -> &'static str {
        match self {
            Db::Sqlite => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

/// The databases to run end-to-end tests on: SQLite always, PostgreSQL when
/// `OTF_TEST_DATABASE_URL` is set (it is under CI; without it a note says
/// that PostgreSQL was not tested).
pub fn databases() -> Vec<Db> {
    let mut dbs = vec![Db::Sqlite];
    match std::env::var("OTF_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => dbs.push(Db::Postgres(url)),
        _ => eprintln!("note: OTF_TEST_DATABASE_URL is not set; PostgreSQL was not tested"),
    }
    dbs
}

/// A fresh PostgreSQL database, dropped on drop.
struct PgDatabase {
    admin_url: String,
    name: String,
}

/// Run a future to completion on a thread of its own (callers may be inside
/// an async runtime already).
pub fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(f)
    })
    .join()
    .expect("the database helper thread")
}

impl PgDatabase {
    fn create(admin_url: &str) -> (PgDatabase, String) {
        use sqlx::Connection;
        let mut suffix = [0u8; 8];
        let name = {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            suffix
                .copy_from_slice(&(t.as_nanos() as u64 ^ std::process::id() as u64).to_le_bytes());
            format!(
                "otf_e2e_{}",
                suffix
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )
        };
        let (admin, db) = (admin_url.to_string(), name.clone());
        block_on(async move {
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&mut conn)
                .await
                .expect("create database");
        });
        let (base, _) = admin_url.rsplit_once('/').unwrap_or((admin_url, ""));
        let url = format!("{base}/{name}");
        (
            PgDatabase {
                admin_url: admin_url.to_string(),
                name,
            },
            url,
        )
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use sqlx::Connection;
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        block_on(async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        });
    }
}

/// A running otfd.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub site_token: String,
    child: Child,
    log: Arc<Mutex<String>>,
    pub data_dir: tempfile::TempDir,
    _db: Option<PgDatabase>,
    /// What it was started with, to start it again.
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// Start the otfd binary on `address`; returns once it listens, with its
/// URL. Its log goes to `log`.
fn spawn(
    address: &str,
    args: &[String],
    env: &[(String, String)],
    log: &Arc<Mutex<String>>,
) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otfd-e2e"));
    cmd.arg("--address")
        .arg(address)
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start otfd");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("otfd listening").nth(1) {
                let url = rest
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("url="))
                    .map(str::to_string);
                let _ = tx.send(url);
            }
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&(line + "\n"));
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(url)) => (child, url),
        _ => {
            let _ = child.kill();
            panic!(
                "otfd did not start; its log:\n{}",
                log.lock().unwrap_or_else(|p| p.into_inner())
            );
        }
    }
}

/// Flags giving a server short timers, for tests.
pub fn fast_timers() -> Vec<String> {
    [
        "--ping-interval",
        "0.5",
        "--ping-timeout",
        "3",
        "--unknown-grace",
        "3",
        "--agent-retention",
        "60",
        "--force-cancel-cool-off",
        "1",
        "--long-poll",
        "2",
        "--tick",
        "0.2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Server {
    /// Start otfd on `db` with `extra` flags (on top of fast timers).
    pub fn start(db: &Db, extra: &[&str]) -> Server {
        Server::start_with_env(db, extra, &[])
    }

    /// Start otfd with `extra` flags and `env` variables besides its own.
    pub fn start_with_env(db: &Db, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_full(db, extra, env, &|url| url.to_string())
    }

    /// Start otfd on a fresh PostgreSQL database whose URL `rewrite`
    /// changes first (say, to reach it through a fault proxy).
    pub fn start_rewriting_database(
        db: &Db,
        extra: &[&str],
        rewrite: &dyn Fn(&str) -> String,
    ) -> Server {
        Server::start_full(db, extra, &[], rewrite)
    }

    fn start_full(
        db: &Db,
        extra: &[&str],
        env: &[(&str, &str)],
        rewrite: &dyn Fn(&str) -> String,
    ) -> Server {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let site_token = "e2e-site-token".to_string();
        let (pg, url) = match db {
            Db::Sqlite => (None, None),
            Db::Postgres(admin) => {
                let (pg, url) = PgDatabase::create(admin);
                (Some(pg), Some(rewrite(&url)))
            }
        };
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            data_dir.path().display().to_string(),
            "--site-token".into(),
            site_token.clone(),
        ];
        args.extend(fast_timers());
        args.extend(extra.iter().map(|s| s.to_string()));
        if let Some(url) = &url {
            args.extend(["--database".to_string(), url.clone()]);
        }
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log = Arc::new(Mutex::new(String::new()));
        let (child, url) = spawn("127.0.0.1:0", &args, &env, &log);
        Server {
            url,
            site_token,
            child,
            log,
            data_dir,
            _db: pg,
            args,
            env,
        }
    }

    /// Another replica on the same database (PostgreSQL), with a data dir
    /// of its own and `extra` flags.
    pub fn replica(&self, extra: &[&str]) -> Server {
        let data_dir = tempfile::tempdir().expect("a temporary directory");
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            data_dir.path().display().to_string(),
            "--site-token".into(),
            self.site_token.clone(),
        ];
        args.extend(fast_timers());
        args.extend(extra.iter().map(|s| s.to_string()));
        if let Some(i) = self.args.iter().position(|a| a == "--database") {
            args.extend(self.args[i..].iter().take(2).cloned());
        }
        let log = Arc::new(Mutex::new(String::new()));
        let (child, url) = spawn("127.0.0.1:0", &args, &self.env, &log);
        Server {
            url,
            site_token: self.site_token.clone(),
            child,
            log,
            data_dir,
            _db: None,
            args,
            env: self.env.clone(),
        }
    }

    /// The `--database` URL it was given, if any.
    pub fn database_url(&self) -> Option<String> {
        let i = self.args.iter().position(|a| a == "--database")?;
        self.args.get(i + 1).cloned()
    }

    /// SIGKILL otfd (a crash); [`Server::restart`] brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stop otfd with `signal` (SIGTERM: a graceful stop; SIGKILL: a crash)
    /// and wait until it is gone.
    pub fn stop(&mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        // A watchdog kills otfd if it has not exited 30 s on; the wait
        // itself blocks on the process, not on a timer.
        let (exited, watched) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let late = watched.recv_timeout(Duration::from_secs(30)).is_err();
            if late {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            late
        });
        let _ = self.child.wait();
        let _ = exited.send(());
        if watchdog.join().unwrap_or(true) {
            panic!(
                "otfd did not stop within 30 s of {signal}; its log:\n{}",
                self.log()
            );
        }
    }

    /// Start otfd again on the same address, data dir and database.
    pub fn restart(&mut self) {
        self.kill();
        let address = self.url.rsplit("//").next().unwrap_or_default().to_string();
        let (child, url) = spawn(&address, &self.args, &self.env, &self.log);
        self.child = child;
        self.url = url;
    }

    /// Everything otfd logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Call `check` until it returns `Some` or `deadline` passes, pausing a
/// little longer each time (10 ms up to 200 ms); on the deadline, panic
/// with `what` and the last `Err` it gave. The blocking twin of
/// [`eventually`], for tests that poll processes (tmux panes, `/metrics`).
pub fn poll_until<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let until = Instant::now() + deadline;
    let mut wait = Duration::from_millis(10);
    loop {
        let last = match check() {
            Ok(v) => return v,
            Err(last) => last,
        };
        if Instant::now() > until {
            panic!("timed out after {deadline:?} waiting for {what}; last seen:\n{last}");
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(200));
    }
}

/// Poll `check` until it returns `Some` or `deadline` passes.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    let mut wait = Duration::from_millis(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > until {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
}
