//! `otf-http` adapts otf-core to HTTP: the TFE API v2 (JSON:API), the agent
//! protocol under `/api/agent/`, bearer-token authentication, capability
//! URLs, metrics, and the `otfd` process around them (database, leader loop,
//! TLS). Entry points: [`Otfd::prepare`] then [`Otfd::serve`] with a bound
//! listener and any shutdown future.
//!
//! Handlers decode, authenticate, call one core service and encode; no rule
//! lives here (`wire` is the one place where core types meet the wire).
//! With `--ssh-address` otfd also serves the administrator's TUI over SSH
//! (`otf-ssh`), whose sessions call these same handlers in process (`ssh`);
//! that is the only way the TUI's code enters otfd.

#![forbid(unsafe_code)]
// The workspace resource has more attributes than json! expands by default.
#![recursion_limit = "256"]

mod agent_api;
mod api;
mod app;
#[cfg(test)]
mod bad_input_properties;
pub mod cli;
mod conn_guard;
mod errors;
mod jsonapi;
mod leader;
mod metrics;
mod request;
mod response;
mod router;
mod routes;
mod server;
mod signing;
mod ssh;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use app::{App, Limits};
pub use errors::ApiError;
use otf_core::clock::SystemClock;
use otf_core::random::{OsRandom, Random};
use otf_core::secret::SecretHash;
use otf_core::{Core, CoreConfig};
use otf_store::{DbStore, Runtime};
pub use server::{serve, tls_acceptor};
pub use signing::Signer;
use tokio::net::TcpListener;

/// The version reported by otfd and its agents.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything otfd is configured with (its flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// External `host[:port]` used in URLs handed out; default from the
    /// listening address.
    pub hostname: Option<String>,
    /// `sqlite://PATH` or `postgres://...`; default `otf.db` in `data_dir`.
    pub database: Option<String>,
    pub data_dir: PathBuf,
    pub site_token: Option<String>,
    /// Key for signing capability URLs; shared by replicas. Default: a
    /// random key kept in `data_dir`.
    pub secret: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The core's rules: liveness, cancel cool-off, upload and log limits,
    /// job timers (the site token is set from `site_token`).
    pub rules: CoreConfig,
    /// Longest wait of the agent protocol's long-polls.
    pub long_poll: Duration,
    /// Period of the leader's work and of ping flushes.
    pub tick: Duration,
    pub limits: Limits,
    /// Jobs the built-in server runner runs at once (0: no server runner).
    pub concurrency: u32,
    /// Where the server runner finds terraform.
    pub engine: otf_agent::engine::EngineConfig,
    /// How the server runner confines terraform.
    pub sandbox: otf_agent::sandbox::SandboxMode,
    /// Extra read grants of the server runner's sandbox.
    pub sandbox_read: Vec<PathBuf>,
    /// The bearer token `/metrics` requires; open without.
    pub metrics_token: Option<String>,
    /// How long the server runner's jobs may go on after a shutdown signal
    /// before they are canceled.
    pub shutdown_grace: Duration,
    /// The server runner's hooks.
    pub hooks: otf_agent::hooks::Hooks,
    /// The administrator's TUI over SSH; off without.
    pub ssh: Option<SshSettings>,
}

/// Where and to whom otfd serves its TUI over SSH.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub address: SocketAddr,
    /// The host key; default `ssh_host_ed25519_key` in the data dir,
    /// generated on first start.
    pub host_key: Option<PathBuf>,
    /// Who may enter (OpenSSH `authorized_keys` format), read again when
    /// it changes.
    pub authorized_keys: PathBuf,
    /// How often the authorized keys file is looked at.
    pub keys_poll: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            hostname: None,
            database: None,
            data_dir: PathBuf::from("otf-data"),
            site_token: None,
            secret: None,
            cert_file: None,
            key_file: None,
            rules: CoreConfig::default(),
            long_poll: Duration::from_secs(30),
            tick: Duration::from_secs(1),
            limits: Limits::default(),
            concurrency: otf_agent::runtime::DEFAULT_CONCURRENCY,
            engine: otf_agent::engine::EngineConfig::default(),
            sandbox: otf_agent::sandbox::SandboxMode::Auto,
            sandbox_read: Vec::new(),
            metrics_token: None,
            shutdown_grace: Duration::from_secs(60),
            hooks: otf_agent::hooks::Hooks::default(),
            ssh: None,
        }
    }
}

/// Why otfd cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("the data directory is not private: {0}")]
    Private(#[from] otf_agent::workdir::PrivateError),
    #[error("{0}")]
    Sandbox(#[from] otf_agent::sandbox::SandboxError),
    #[error("cannot open the database {url}: {source}")]
    Database {
        url: String,
        source: otf_core::store::StoreError,
    },
    #[error("cannot set up HTTPS: {0}")]
    Tls(String),
    #[error("give both --cert-file and --key-file to serve HTTPS, or neither")]
    TlsPair,
    #[error("{0}")]
    SshHostKey(#[from] otf_ssh::host_key::HostKeyError),
    #[error("{0} (--ssh-authorized-keys)")]
    SshKeys(#[from] otf_ssh::authorized_keys::ReadError),
    #[error("cannot listen for SSH on {address}: {source}")]
    SshListen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The SSH server, ready to serve.
struct SshReady {
    listener: TcpListener,
    host_key: otf_ssh::HostKey,
    keys: tokio::sync::watch::Receiver<Arc<otf_ssh::AuthorizedKeys>>,
    /// Stops the authorized keys watcher.
    stop_watch: tokio::sync::watch::Sender<bool>,
}

impl SshReady {
    async fn prepare(settings: &SshSettings, data_dir: &Path) -> Result<SshReady, StartError> {
        let host_key = match &settings.host_key {
            Some(path) => otf_ssh::host_key::load(path)?,
            None => otf_ssh::host_key::load_or_create(&data_dir.join("ssh_host_ed25519_key"))?,
        };
        let (stop_watch, stopped) = tokio::sync::watch::channel(false);
        let keys = otf_ssh::authorized_keys::watch(
            settings.authorized_keys.clone(),
            settings.keys_poll,
            stopped,
        )?;
        if keys.borrow().is_empty() {
            tracing::warn!(file = %settings.authorized_keys.display(), "ssh: no key is authorized yet; no one can log in until one is added");
        }
        let listener = TcpListener::bind(settings.address)
            .await
            .map_err(|source| StartError::SshListen {
                address: settings.address,
                source,
            })?;
        Ok(SshReady {
            listener,
            host_key,
            keys,
            stop_watch,
        })
    }
}

/// A prepared server: database open and migrated, tokens settled.
pub struct Otfd {
    config: Config,
    runtime: Runtime,
    site_token: String,
    /// Set when the site token was generated by this start (print it once).
    pub generated_site_token: Option<String>,
    secret: Vec<u8>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The server runner's sandbox and the environment its jobs inherit.
    sandbox: otf_agent::sandbox::Sandbox,
    runner_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    ssh: Option<SshReady>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRandom.fill(&mut buf);
    hex_encode(&buf)
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Read a secret kept in the data dir, or create it (mode 0600).
fn kept_secret(dir: &Path, name: &str) -> Result<(String, bool), StartError> {
    let path = dir.join(name);
    let io = |source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => {
            otf_agent::workdir::narrow_file(&path)?;
            Ok((s.trim().to_string(), false))
        }
        _ => {
            let value = random_hex(32);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&path).map_err(io)?;
            std::io::Write::write_all(&mut f, format!("{value}\n").as_bytes()).map_err(io)?;
            Ok((value, true))
        }
    }
}

/// The password of a database URL (`scheme://user:password@host/...`).
fn url_password(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let userinfo = rest.split(['/', '?']).next()?.rsplit_once('@')?.0;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

/// A database URL fit for a log or an error: its password replaced.
pub fn redact_password(url: &str) -> String {
    match url_password(url) {
        Some(p) => url.replacen(&format!(":{p}@"), ":***@", 1),
        None => url.to_string(),
    }
}

/// An SQLite database file (and its journals) readable by this user only:
/// created empty with mode 0600 when absent (SQLite gives its WAL and
/// shared-memory files the database file's mode), narrowed when present.
fn private_sqlite(url: &str) -> Result<(), StartError> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(());
    };
    let path = Path::new(rest.split('?').next().unwrap_or(rest));
    if path.as_os_str().is_empty() || rest.starts_with(":memory:") {
        return Ok(());
    }
    if !path.exists() {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        if let Err(source) = opts.open(path) {
            if source.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(StartError::DataDir {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        otf_agent::workdir::narrow_file(Path::new(&p))?;
    }
    Ok(())
}

impl Otfd {
    /// Open the database (running migrations) and settle the site token and
    /// the URL-signing key.
    pub async fn prepare(config: Config) -> Result<Otfd, StartError> {
        otf_agent::workdir::prepare(&config.data_dir)?;
        let tls = match (&config.cert_file, &config.key_file) {
            (Some(c), Some(k)) => Some(tls_acceptor(c, k).map_err(StartError::Tls)?),
            (None, None) => None,
            _ => return Err(StartError::TlsPair),
        };
        let (site_token, generated) = match &config.site_token {
            Some(t) => (t.clone(), None),
            None => {
                let (t, new) = kept_secret(&config.data_dir, "site-token")?;
                (t.clone(), new.then_some(t))
            }
        };
        let secret = match &config.secret {
            Some(s) => s.clone(),
            None => kept_secret(&config.data_dir, "secret")?.0,
        };
        let url = config
            .database
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("otf.db").display()));
        private_sqlite(&url)?;
        let runtime = Runtime::connect(&url)
            .await
            .map_err(|source| StartError::Database {
                url: redact_password(&url),
                source,
            })?;
        // The server runner's jobs inherit otfd's environment minus its
        // configuration and every secret it holds.
        let mut secrets = vec![site_token.clone(), secret.clone(), url.clone()];
        secrets.extend(config.metrics_token.clone());
        secrets.extend(url_password(&url));
        let runner_env = otf_agent::job_env::inherited(std::env::vars_os(), &secrets);
        let sandbox = if config.concurrency > 0 {
            otf_agent::workdir::prepare(&config.data_dir.join("work"))?;
            otf_agent::sandbox::Sandbox::setup(config.sandbox, &runner_env, &config.sandbox_read)
                .await?
        } else {
            otf_agent::sandbox::Sandbox::off()
        };
        let ssh = match &config.ssh {
            Some(settings) => Some(SshReady::prepare(settings, &config.data_dir).await?),
            None => None,
        };
        Ok(Otfd {
            config,
            ssh,
            runtime,
            site_token,
            generated_site_token: generated,
            secret: secret.into_bytes(),
            tls,
            sandbox,
            runner_env,
        })
    }

    pub fn site_token(&self) -> &str {
        &self.site_token
    }

    pub fn store(&self) -> &DbStore {
        &self.runtime.store
    }

    /// Serve on `listener` until `shutdown` resolves.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let addr: SocketAddr = listener.local_addr()?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let host = self
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| addr.to_string());
        let base_url = format!("{scheme}://{host}");
        let core = self.core();
        let metrics = Arc::new(metrics::Metrics::default());
        let app = Arc::new(App {
            core: core.clone(),
            base_url: base_url.clone(),
            signer: Signer::new(&self.secret),
            limits: self.config.limits,
            long_poll: self.config.long_poll,
            url_ttl: Duration::from_secs(24 * 3600),
            metrics: metrics.clone(),
            metrics_token: self.config.metrics_token.as_deref().map(SecretHash::of),
            routes: routes::table(),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let background = self.spawn_background(&core, metrics, stopped).await;
        let (runner_stop, runner_signals) = tokio::sync::mpsc::channel(2);
        let runner = self.spawn_server_runner(&core, runner_signals);
        let (ssh_stop, ssh_stopped) = tokio::sync::watch::channel(false);
        let ssh = self
            .ssh
            .take()
            .map(|ready| spawn_ssh(ready, &app, &base_url, ssh_stopped));
        tracing::info!(address = %addr, url = %base_url, "otfd listening");
        serve(
            listener,
            app,
            self.tls.take(),
            shutdown,
            Duration::from_secs(5),
        )
        .await;
        tracing::info!("shutting down");
        // SSH sessions end first: they are administrators' screens, and
        // they would otherwise hold the app.
        let _ = ssh_stop.send(true);
        if let Some((server, stop_watch)) = ssh {
            let _ = server.await;
            let _ = stop_watch.send(true);
        }
        if let Some(runner) = runner {
            stop_server_runner(runner, &runner_stop, self.config.shutdown_grace).await;
        }
        let _ = stop.send(true);
        for task in background {
            let _ = task.await;
        }
        Ok(())
    }

    fn core(&self) -> Core<DbStore> {
        Core::new(
            self.runtime.store.clone(),
            self.runtime.bus.clone(),
            Arc::new(SystemClock),
            Arc::new(OsRandom),
            CoreConfig {
                site_token: Some(SecretHash::of(&self.site_token)),
                ..self.config.rules.clone()
            },
        )
    }

    /// The tasks every replica runs until `stopped`: the leader loop, the
    /// ping flusher, the gauges of /metrics (following the bus from a first
    /// reading) and the long-polls' wake-ups (one bus subscription for all).
    async fn spawn_background(
        &self,
        core: &Core<DbStore>,
        metrics: Arc<metrics::Metrics>,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let leader = tokio::spawn(leader::lead(
            core.clone(),
            self.runtime.bus.clone(),
            self.runtime.leader.clone(),
            metrics.clone(),
            self.config.tick,
            stopped.clone(),
        ));
        let flusher = tokio::spawn(leader::flush_pings(
            core.clone(),
            self.config.tick,
            stopped.clone(),
        ));
        let gauges = {
            let (core, mut stopped) = (core.clone(), stopped.clone());
            let sub = core.bus().subscribe();
            metrics::prime(&core, &metrics).await;
            tokio::spawn(async move {
                metrics::follow(core, metrics, sub, async move {
                    let _ = stopped.changed().await;
                })
                .await
            })
        };
        let wakeups = {
            let (core, mut stopped) = (core.clone(), stopped);
            tokio::spawn(async move {
                core.route_wakeups(async move {
                    let _ = stopped.changed().await;
                })
                .await
            })
        };
        vec![leader, flusher, gauges, wakeups]
    }

    /// The server runner: the same runner as otf-agent, calling the core
    /// directly, for workspaces in remote execution mode (none with
    /// `--concurrency 0`).
    fn spawn_server_runner(
        &self,
        core: &Core<DbStore>,
        signals: tokio::sync::mpsc::Receiver<()>,
    ) -> Option<tokio::task::JoinHandle<Result<(), otf_agent::AgentError>>> {
        if self.config.concurrency == 0 {
            return None;
        }
        let data = &self.config.data_dir;
        let transport = Arc::new(
            otf_agent::transport::in_process::InProcess::new(core.clone(), self.config.long_poll)
                .with_recovery(otf_agent::recovery::Recovery {
                    identity_file: data.join("server-runner-agent"),
                    spool_dir: data.join("spool"),
                    work_dir: data.join("work"),
                }),
        );
        let mut engine = self.config.engine.clone();
        if engine.bin.is_none() {
            engine.cache_dir = data.join("engines");
        }
        let plugins = otf_agent::plugin_cache::PluginCache::for_runner(
            &self.runner_env,
            data.join("plugins"),
        );
        let sandbox = match &plugins {
            Some(p) => self.sandbox.clone().with_read(p.shared().to_path_buf()),
            None => self.sandbox.clone(),
        };
        let cfg = otf_agent::RunnerConfig {
            labels: Default::default(),
            plugins,
            name: "server".into(),
            concurrency: self.config.concurrency,
            engine,
            work_dir: data.join("work"),
            server: true,
            sandbox,
            env: self.runner_env.clone(),
            spool_dir: data.join("spool"),
            patience: otf_agent::acked::Patience::default(),
            // otfd's own --plan-timeout and --apply-timeout bound its server
            // runner's jobs.
            timeouts: otf_agent::PhaseTimeouts::default(),
            hooks: self.config.hooks.clone(),
            exit_when_drained: false,
            single: None,
            warm: Arc::new(otf_agent::warm::WarmPlans::new(
                data.join("warm"),
                2 * self.config.concurrency as usize,
            )),
        };
        Some(tokio::spawn(otf_agent::run(transport, cfg, signals)))
    }
}

/// otfd's SSH server, until `stopped`; the server task and the authorized
/// keys watcher's stop.
fn spawn_ssh(
    ready: SshReady,
    app: &Arc<App<DbStore>>,
    base_url: &str,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let stats = Arc::new(otf_ssh::Stats::default());
    app.metrics.set_ssh(stats.clone());
    let address = ready.listener.local_addr().ok();
    tracing::info!(
        address = %address.map_or_else(|| "?".into(), |a| a.to_string()),
        fingerprint = %ready.host_key.fingerprint,
        "otfd serves SSH"
    );
    let config = otf_ssh::SshConfig {
        host_key: ready.host_key,
        keys: ready.keys,
        title: base_url.to_string(),
        login_timeout: Duration::from_secs(30),
        max_connections: 256,
    };
    let apis = Arc::new(ssh::Sessions { app: app.clone() });
    let server = tokio::spawn(otf_ssh::serve(
        ready.listener,
        config,
        apis,
        stats,
        async move {
            let _ = stopped.changed().await;
        },
    ));
    (server, ready.stop_watch)
}

/// Let the server runner's jobs finish for the grace, then interrupt them,
/// then kill them; what they produced (an apply's state) is still
/// delivered, straight to the core.
async fn stop_server_runner(
    mut runner: tokio::task::JoinHandle<Result<(), otf_agent::AgentError>>,
    signals: &tokio::sync::mpsc::Sender<()>,
    grace: Duration,
) {
    let _ = signals.send(()).await;
    if tokio::time::timeout(grace, &mut runner).await.is_ok() {
        return;
    }
    tracing::warn!(grace = %otf_core::duration::human(grace), "the server runner's jobs outlived the shutdown grace; canceling them");
    let _ = signals.send(()).await;
    if tokio::time::timeout(otf_agent::runtime::KILL_AFTER, &mut runner)
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!("the server runner's jobs did not stop; killing them");
    let _ = signals.send(()).await;
    // Their reports go straight to the core; bound the wait anyway.
    let abort = runner.abort_handle();
    if tokio::time::timeout(Duration::from_secs(60), runner)
        .await
        .is_err()
    {
        abort.abort();
    }
}
