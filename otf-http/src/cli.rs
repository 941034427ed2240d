//! The `otfd` command line: parses flags (each also read from
//! `OTF_<FLAG>`), sets up logging, binds, and runs the server until
//! SIGINT/SIGTERM. The binary (and test wrappers) call [`main_impl`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::{Config, Limits, Otfd};
use clap::{CommandFactory, Parser};
use otf_agent::engine::EngineConfig;
use otf_agent::hooks::Hooks;
use otf_core::duration::human_static;
use otf_core::job::JobTimers;
use otf_core::CoreConfig;

/// otfd's exit codes, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// It failed (the log says why).
    Failure = 1,
    /// Bad flags or configuration: nothing was started.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "otfd",
    version = otf_version::LONG,
    about = "otf server: TFE-compatible API, agent pools and a built-in runner",
    // A flag given twice takes its last value (a wrapper's defaults, then
    // the operator's own).
    args_override_self = true
)]
struct Flags {
    /// Listening address.
    #[arg(long, env = "OTF_ADDRESS", default_value = otf_client::DEFAULT_ADDRESS)]
    address: SocketAddr,
    /// External host[:port] used in URLs handed out (default: the address).
    #[arg(long, env = "OTF_HOSTNAME")]
    hostname: Option<String>,
    /// Database URL: sqlite://PATH or postgres://... (default: otf.db in the
    /// data dir). A URL with a password belongs in OTF_DATABASE or
    /// --database-file, not on the command line.
    #[arg(long, env = "OTF_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// A file holding the database URL.
    #[arg(long, env = "OTF_DATABASE_FILE", conflicts_with = "database")]
    database_file: Option<PathBuf>,
    /// Directory for the embedded database and generated secrets.
    #[arg(long, env = "OTF_DATA_DIR", default_value = "otf-data")]
    data_dir: PathBuf,
    /// The site administrator token (generated and saved in the data dir
    /// when absent). Prefer OTF_SITE_TOKEN or --site-token-file.
    #[arg(long, env = "OTF_SITE_TOKEN", hide_env_values = true)]
    site_token: Option<String>,
    /// A file holding the site administrator token.
    #[arg(long, env = "OTF_SITE_TOKEN_FILE", conflicts_with = "site_token")]
    site_token_file: Option<PathBuf>,
    /// Key signing capability URLs; replicas must share it (default:
    /// generated in the data dir). Prefer OTF_SECRET or --secret-file.
    #[arg(long, env = "OTF_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// A bearer token /metrics requires (open to anyone without it).
    #[arg(long, env = "OTF_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// A file holding the metrics token.
    #[arg(long, env = "OTF_METRICS_TOKEN_FILE", conflicts_with = "metrics_token")]
    metrics_token_file: Option<PathBuf>,
    /// A file holding the URL-signing key.
    #[arg(long, env = "OTF_SECRET_FILE", conflicts_with = "secret")]
    secret_file: Option<PathBuf>,
    /// PEM certificate to serve HTTPS.
    #[arg(long, env = "OTF_CERT_FILE")]
    cert_file: Option<PathBuf>,
    /// PEM private key to serve HTTPS.
    #[arg(long, env = "OTF_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Jobs the built-in server runner runs at once (0 disables it).
    #[arg(long, env = "OTF_CONCURRENCY", default_value_t = Config::default().concurrency)]
    concurrency: u32,
    /// Run all of otfd's threads on this one CPU (numbered from 0).
    /// Requests hand work between otfd's threads (every SQLite commit goes
    /// to a blocking thread for its fdatasync); on one CPU that is a plain
    /// context switch, while waking a thread on an idle virtual CPU costs
    /// tens of microseconds (on a 2-vCPU VM single-run dispatch and bursts
    /// ~15 % faster). For SQLite (PostgreSQL's processes want the other
    /// CPUs). Only with `--concurrency 0`: terraform processes of the server
    /// runner would inherit the pinning.
    #[arg(long, env = "OTF_PIN_CPU", value_name = "CPU")]
    pin_cpu: Option<usize>,
    /// A terraform (or tofu) binary for every run of the server runner.
    #[arg(long, env = "OTF_ENGINE_BIN")]
    engine_bin: Option<PathBuf>,
    /// Release mirror to download terraform versions from.
    #[arg(
        long,
        env = "OTF_ENGINE_MIRROR",
        default_value = otf_agent::engine::DEFAULT_MIRROR
    )]
    engine_mirror: String,
    /// Confine the server runner's terraform: auto (when the kernel
    /// allows), required (refuse to start without), off.
    #[arg(long, env = "OTF_SANDBOX", default_value = "auto")]
    sandbox: otf_agent::sandbox::SandboxMode,
    /// More paths the server runner's terraform may read and execute
    /// inside the sandbox (repeatable; comma-separated in the variable).
    #[arg(long, env = "OTF_SANDBOX_READ", value_delimiter = ',')]
    sandbox_read: Vec<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "OTF_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// More logging (-v debug, -vv trace).
    #[arg(short, action = clap::ArgAction::Count)]
    v: u8,
    /// Seconds between agent pings.
    #[arg(long, env = "OTF_PING_INTERVAL", default_value_t = liveness_default().ping_interval.as_secs_f64(), hide = true)]
    ping_interval: f64,
    /// Seconds without a ping before an agent is unknown.
    #[arg(long, env = "OTF_PING_TIMEOUT", default_value_t = liveness_default().ping_timeout.as_secs_f64(), hide = true)]
    ping_timeout: f64,
    /// Seconds an agent stays unknown before it is errored.
    #[arg(long, env = "OTF_UNKNOWN_GRACE", default_value_t = liveness_default().unknown_grace.as_secs_f64(), hide = true)]
    unknown_grace: f64,
    /// Seconds final agents stay listed.
    #[arg(
        long,
        env = "OTF_AGENT_RETENTION",
        default_value_t = liveness_default().retention.as_secs_f64(),
        hide = true
    )]
    agent_retention: f64,
    /// Seconds after a cancel before force-cancel is available.
    #[arg(
        long,
        env = "OTF_FORCE_CANCEL_COOL_OFF",
        default_value_t = CoreConfig::default().force_cancel_cool_off.as_secs_f64(),
        hide = true
    )]
    force_cancel_cool_off: f64,
    /// Seconds an agent long-poll waits.
    #[arg(long, env = "OTF_LONG_POLL", default_value_t = Config::default().long_poll.as_secs_f64(), hide = true)]
    long_poll: f64,
    /// Seconds between the leader's periodic steps.
    #[arg(long, env = "OTF_TICK", default_value_t = Config::default().tick.as_secs_f64(), hide = true)]
    tick: f64,
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "OTF_MAX_JSON_BODY", default_value_t = Limits::default().max_json_body, hide = true)]
    max_json_body: usize,
    /// Largest upload (configuration tarball, state, plan files), in bytes.
    #[arg(long, env = "OTF_MAX_UPLOAD", default_value_t = CoreConfig::default().max_upload_bytes, hide = true)]
    max_upload: usize,
    /// Bytes a job's log may hold (default 50 MiB); past it the log ends
    /// with a line saying it was truncated and by how much, and the run
    /// goes on.
    #[arg(long, env = "OTF_MAX_LOG_BYTES", default_value_t = CoreConfig::default().max_log_bytes)]
    max_log_bytes: u64,
    /// Seconds a client has to send a request's headers (from the
    /// connection's start, or from the first byte of a request).
    #[arg(long, env = "OTF_HEADER_READ_TIMEOUT", default_value_t = Limits::default().header_read_timeout.as_secs_f64())]
    header_read_timeout: f64,
    /// Seconds a client has to finish the TLS handshake.
    #[arg(long, env = "OTF_TLS_HANDSHAKE_TIMEOUT", default_value_t = Limits::default().tls_handshake_timeout.as_secs_f64())]
    tls_handshake_timeout: f64,
    /// Seconds a client has to send a request's body once its headers came.
    #[arg(long, env = "OTF_BODY_READ_TIMEOUT", default_value_t = Limits::default().body_read_timeout.as_secs_f64())]
    body_read_timeout: f64,
    /// Seconds a keep-alive connection may stay idle (keep it above the
    /// agents' long-poll).
    #[arg(long, env = "OTF_IDLE_TIMEOUT", default_value_t = Limits::default().idle_timeout.as_secs_f64())]
    idle_timeout: f64,
    /// Connections served at once; beyond, new ones get a 503 (or are
    /// closed, over HTTPS) and open ones keep working. Keep it below the
    /// process's descriptor limit.
    #[arg(long, env = "OTF_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// How long a plan may run before it is canceled (then force-canceled
    /// if it does not stop): seconds, or 30m, 2h, ...
    #[arg(long, env = "OTF_PLAN_TIMEOUT", default_value = human_static(JobTimers::default().plan_timeout), value_parser = otf_core::duration::parse)]
    plan_timeout: Duration,
    /// How long an apply may run before it is canceled (then force-canceled
    /// if it does not stop).
    #[arg(long, env = "OTF_APPLY_TIMEOUT", default_value = human_static(JobTimers::default().apply_timeout), value_parser = otf_core::duration::parse)]
    apply_timeout: Duration,
    /// How long a job allocated to an agent may wait for the agent to start
    /// it before it is allocated again.
    #[arg(long, env = "OTF_ALLOCATION_LEASE", default_value = human_static(JobTimers::default().allocation_lease), value_parser = otf_core::duration::parse)]
    allocation_lease: Duration,
    /// On SIGTERM/SIGINT, how long the server runner's jobs may go on before
    /// they are canceled (then killed 10 s later); their state is still
    /// delivered.
    #[arg(long, env = "OTF_SHUTDOWN_GRACE", default_value = human_static(Config::default().shutdown_grace), value_parser = otf_core::duration::parse)]
    shutdown_grace: Duration,
    /// The server runner's hooks (terraform-pre-plan, terraform-post-plan,
    /// terraform-pre-apply, terraform-post-apply) (default: `hooks` in the
    /// data directory).
    #[arg(long, env = "OTF_HOOKS_DIR")]
    hooks_dir: Option<PathBuf>,
    /// How long one hook may run before it is killed and its phase fails.
    #[arg(long, env = "OTF_HOOK_TIMEOUT", default_value = human_static(Hooks::default().timeout), value_parser = otf_core::duration::parse)]
    hook_timeout: Duration,
    /// Longest wait for the engine mirror's connection (server runner).
    #[arg(long, env = "OTF_ENGINE_CONNECT_TIMEOUT", default_value = human_static(EngineConfig::default().connect_timeout), value_parser = otf_core::duration::parse)]
    engine_connect_timeout: Duration,
    /// Longest time one file of an engine download may take (server
    /// runner).
    #[arg(long, env = "OTF_ENGINE_DOWNLOAD_TIMEOUT", default_value = human_static(EngineConfig::default().download_timeout), value_parser = otf_core::duration::parse)]
    engine_download_timeout: Duration,
    /// Serve the administrator's TUI over SSH on this address
    /// (`ssh -p PORT HOST`); off unless given. Needs
    /// --ssh-authorized-keys.
    #[arg(long, env = "OTF_SSH_ADDRESS", requires = "ssh_authorized_keys")]
    ssh_address: Option<SocketAddr>,
    /// The SSH host key (OpenSSH private key, mode 0600) (default:
    /// `ssh_host_ed25519_key` in the data directory, generated on first
    /// start).
    #[arg(long, env = "OTF_SSH_HOST_KEY", requires = "ssh_address")]
    ssh_host_key: Option<PathBuf>,
    /// Who may log in over SSH, in OpenSSH's authorized_keys format: a key
    /// is a site administrator unless its line has the option
    /// otf-organization="NAME". Read again when it changes.
    #[arg(long, env = "OTF_SSH_AUTHORIZED_KEYS", requires = "ssh_address")]
    ssh_authorized_keys: Option<PathBuf>,
    /// Seconds between looks at the authorized keys file.
    #[arg(long, env = "OTF_SSH_KEYS_POLL", default_value_t = 1.0, hide = true)]
    ssh_keys_poll: f64,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(flags: &Flags) {
    let level = match flags.v {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,sqlx=warn,sea_orm=warn"))
    });
    // SQL statements carry their values (sensitive variables, state, token
    // hashes): they are never logged, whatever RUST_LOG asks for.
    for quiet in ["sea_orm=warn", "sqlx=warn"] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if flags.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The command line's definition (for man pages and completions).
pub fn command() -> clap::Command {
    Flags::command()
}

/// Run otfd with the process's arguments; returns the exit code.
pub fn main_impl() -> ExitCode {
    // The server runner re-executes this binary to confine terraform.
    otf_agent::sandbox::helper::run_if_requested();
    let flags = Flags::parse();
    if let Some(cpu) = flags.pin_cpu {
        // Before any other thread exists: every later one inherits it.
        if let Err(e) = pin_to_cpu(cpu, flags.concurrency) {
            eprintln!("otfd: {e}");
            return Exit::Usage.into();
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otfd: cannot start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    runtime.block_on(run(flags))
}

/// `--pin-cpu`: this thread (and so every thread it starts) runs on `cpu`
/// only.
fn pin_to_cpu(cpu: usize, concurrency: u32) -> Result<(), String> {
    use nix::sched::{sched_setaffinity, CpuSet};
    if concurrency != 0 {
        return Err(format!(
            "--pin-cpu {cpu} needs --concurrency 0: the server runner's terraform processes would run pinned to that CPU too"
        ));
    }
    let mut set = CpuSet::new();
    set.set(cpu)
        .map_err(|_| format!("--pin-cpu {cpu}: no such CPU number"))?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| format!("--pin-cpu {cpu}: cannot run on that CPU: {e}"))
}

/// otfd's configuration from its flags (secrets read from their files).
fn config_of(flags: &Flags) -> Result<Config, String> {
    let secret = |value: &Option<String>, file: &Option<PathBuf>, what: &str| {
        otf_agent::cli::secret_from(value.as_deref(), file.as_deref(), what)
    };
    let (database, site_token, signing_key, metrics_token) = match (
        secret(&flags.database, &flags.database_file, "database URL"),
        secret(&flags.site_token, &flags.site_token_file, "site token"),
        secret(&flags.secret, &flags.secret_file, "URL-signing key"),
        secret(
            &flags.metrics_token,
            &flags.metrics_token_file,
            "metrics token",
        ),
    ) {
        (Ok(d), Ok(t), Ok(s), Ok(m)) => (d, t, s, m),
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
            return Err(e)
        }
    };
    let config = Config {
        hostname: flags.hostname.clone(),
        database,
        data_dir: flags.data_dir.clone(),
        site_token,
        secret: signing_key,
        sandbox: flags.sandbox,
        sandbox_read: flags.sandbox_read.clone(),
        metrics_token,
        cert_file: flags.cert_file.clone(),
        key_file: flags.key_file.clone(),
        rules: CoreConfig {
            liveness: liveness(flags),
            force_cancel_cool_off: secs(flags.force_cancel_cool_off),
            max_upload_bytes: flags.max_upload,
            max_log_bytes: flags.max_log_bytes,
            job_timers: JobTimers {
                allocation_lease: flags.allocation_lease,
                plan_timeout: flags.plan_timeout,
                apply_timeout: flags.apply_timeout,
            },
            ..CoreConfig::default()
        },
        long_poll: secs(flags.long_poll),
        tick: secs(flags.tick),
        shutdown_grace: flags.shutdown_grace,
        hooks: otf_agent::hooks::Hooks {
            dir: Some(
                flags
                    .hooks_dir
                    .clone()
                    .unwrap_or_else(|| flags.data_dir.join("hooks")),
            ),
            timeout: flags.hook_timeout,
        },
        ssh: match (flags.ssh_address, &flags.ssh_authorized_keys) {
            (Some(address), Some(keys)) => Some(crate::SshSettings {
                address,
                host_key: flags.ssh_host_key.clone(),
                authorized_keys: keys.clone(),
                keys_poll: secs(flags.ssh_keys_poll).max(Duration::from_millis(10)),
            }),
            _ => None,
        },
        concurrency: flags.concurrency,
        engine: otf_agent::engine::EngineConfig {
            bin: flags.engine_bin.clone(),
            cache_dir: flags.data_dir.join("engines"),
            mirror: flags.engine_mirror.clone(),
            connect_timeout: flags.engine_connect_timeout,
            download_timeout: flags.engine_download_timeout,
        },
        ..Config::default()
    };
    Ok(Config {
        limits: limits(flags),
        ..config
    })
}

fn liveness(flags: &Flags) -> otf_core::agent::LivenessConfig {
    otf_core::agent::LivenessConfig {
        ping_interval: secs(flags.ping_interval),
        ping_timeout: secs(flags.ping_timeout),
        unknown_grace: secs(flags.unknown_grace),
        retention: secs(flags.agent_retention),
    }
}

fn liveness_default() -> otf_core::agent::LivenessConfig {
    otf_core::agent::LivenessConfig::default()
}

fn limits(flags: &Flags) -> Limits {
    Limits {
        max_json_body: flags.max_json_body,
        header_read_timeout: secs(flags.header_read_timeout),
        tls_handshake_timeout: secs(flags.tls_handshake_timeout),
        body_read_timeout: secs(flags.body_read_timeout),
        idle_timeout: secs(flags.idle_timeout),
        max_connections: flags.max_connections,
    }
}

async fn run(flags: Flags) -> ExitCode {
    init_logging(&flags);
    let config = match config_of(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otfd: {e}");
            return Exit::Usage.into();
        }
    };
    let otfd = match Otfd::prepare(config).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("otfd: {e}");
            return Exit::Failure.into();
        }
    };
    if let Some(token) = &otfd.generated_site_token {
        println!(
            "site admin token (saved in {}/site-token; shown only now): {token}",
            flags.data_dir.display()
        );
    }
    let listener = match tokio::net::TcpListener::bind(flags.address).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("otfd: cannot listen on {}: {e}", flags.address);
            return Exit::Failure.into();
        }
    };
    match otfd.serve(listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otfd: {e}");
            Exit::Failure.into()
        }
    }
}
