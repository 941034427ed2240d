//! The `otf-agent` command line: flags (each also read from `OTF_<FLAG>`;
//! the token also from `OTF_AGENT_TOKEN` or a file), logging, the work
//! directory, the sandbox, signals, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};

use crate::engine::EngineConfig;
use crate::hooks::Hooks;
use crate::runtime::{run, AgentError, RunnerConfig, DEFAULT_CONCURRENCY};
use crate::sandbox::{Sandbox, SandboxMode};
use crate::transport::http::HttpTransport;
use otf_core::duration::human_static;

/// otf-agent's exit codes, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// It failed (the log says why).
    Failure = 1,
    /// Bad flags or setup: nothing was attempted.
    Usage = 2,
    /// otfd refused the token (or revoked it).
    TokenRefused = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "otf-agent",
    version = otf_version::LONG,
    about = "otf pool agent: runs the jobs of its agent pool"
)]
struct Flags {
    /// The agent token of the pool to join. Prefer OTF_AGENT_TOKEN or
    /// --token-file: a command line is visible to every local user.
    #[arg(long, env = "OTF_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the agent token (e.g. a systemd credential).
    #[arg(long, env = "OTF_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// otfd's address: a URL, or host[:port].
    #[arg(
        long,
        visible_alias = "url",
        env = "OTF_ADDRESS",
        default_value = otf_client::DEFAULT_ADDRESS
    )]
    address: String,
    /// The agent's name (default: the host name).
    #[arg(long, env = "OTF_NAME")]
    name: Option<String>,
    /// Jobs run at once.
    #[arg(long, env = "OTF_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: u32,
    /// A terraform (or tofu) binary to use for every job.
    #[arg(long, env = "OTF_ENGINE_BIN")]
    engine_bin: Option<PathBuf>,
    /// Release mirror to download terraform versions from.
    #[arg(
        long,
        env = "OTF_ENGINE_MIRROR",
        default_value = crate::engine::DEFAULT_MIRROR
    )]
    engine_mirror: String,
    /// Where job directories (and the engine cache) live: a private
    /// directory (default: $STATE_DIRECTORY, else
    /// $XDG_STATE_HOME/otf-agent, else ~/.local/state/otf-agent).
    #[arg(long, env = "OTF_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Confine terraform: auto (when the kernel allows), required (refuse
    /// to start without), off.
    #[arg(long, env = "OTF_SANDBOX", default_value = "auto")]
    sandbox: SandboxMode,
    /// More paths terraform may read and execute inside the sandbox
    /// (repeatable; comma-separated in the variable), e.g. the real binary
    /// behind an --engine-bin wrapper, or a credentials directory.
    #[arg(long, env = "OTF_SANDBOX_READ", value_delimiter = ',')]
    sandbox_read: Vec<PathBuf>,
    /// This agent's own bound on a plan (seconds, or 30m, 2h, ...): past
    /// it the plan is interrupted, and killed 10 s later. otfd's
    /// --plan-timeout applies as well.
    #[arg(long, env = "OTF_PLAN_TIMEOUT", value_parser = otf_core::duration::parse)]
    plan_timeout: Option<std::time::Duration>,
    /// This agent's own bound on an apply; otfd's --apply-timeout applies
    /// as well.
    #[arg(long, env = "OTF_APPLY_TIMEOUT", value_parser = otf_core::duration::parse)]
    apply_timeout: Option<std::time::Duration>,
    /// The operator's hooks (terraform-pre-plan, terraform-post-plan,
    /// terraform-pre-apply, terraform-post-apply) (default: `hooks` in the
    /// work directory).
    #[arg(long, env = "OTF_HOOKS_DIR")]
    hooks_dir: Option<PathBuf>,
    /// How long one hook may run before it is killed and its phase fails.
    #[arg(long, env = "OTF_HOOK_TIMEOUT", default_value = human_static(Hooks::default().timeout), value_parser = otf_core::duration::parse)]
    hook_timeout: std::time::Duration,
    /// Longest wait for the engine mirror's connection.
    #[arg(long, env = "OTF_ENGINE_CONNECT_TIMEOUT", default_value = human_static(EngineConfig::default().connect_timeout), value_parser = otf_core::duration::parse)]
    engine_connect_timeout: std::time::Duration,
    /// Longest time one file of an engine download may take.
    #[arg(long, env = "OTF_ENGINE_DOWNLOAD_TIMEOUT", default_value = human_static(EngineConfig::default().download_timeout), value_parser = otf_core::duration::parse)]
    engine_download_timeout: std::time::Duration,
    /// Once drained (by an administrator) and idle, report `exited` and
    /// exit 0: for scale-down hooks.
    #[arg(long, env = "OTF_EXIT_WHEN_DRAINED")]
    exit_when_drained: bool,
    /// Single execution: handle one run (its plan, and its apply when the
    /// run is confirmed within --single-wait, which otfd keeps for this
    /// agent), then report `exited` and exit 0.
    #[arg(long, env = "OTF_SINGLE")]
    single: bool,
    /// How long a --single agent waits for its first job, and then for the
    /// run's apply.
    #[arg(long, env = "OTF_SINGLE_WAIT", default_value = "10m", value_parser = otf_core::duration::parse)]
    single_wait: std::time::Duration,
    /// A label to register with, KEY=VALUE (repeatable; comma-separated in
    /// the variable, e.g. OTF_LABELS=region=eu,gpu=true). Workspaces whose
    /// agent-selector pairs are all among an agent's labels run on it.
    #[arg(long = "label", value_name = "KEY=VALUE", env = "OTF_LABELS", value_delimiter = ',', value_parser = label_pair)]
    labels: Vec<(String, String)>,
    /// Plans' initialised work directories kept on this agent for their
    /// applies (warm applies; default: twice --concurrency); 0 keeps none.
    #[arg(long, env = "OTF_KEEP_PLANS")]
    keep_plans: Option<usize>,
    /// A PEM CA certificate to trust besides the system's.
    #[arg(long, env = "OTF_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Debug logging.
    #[arg(long, env = "OTF_DEBUG")]
    debug: bool,
}

/// One `--label`, checked as otfd will.
fn label_pair(s: &str) -> Result<(String, String), String> {
    let labels = otf_core::labels::Labels::parse_items([s]).map_err(|e| e.to_string())?;
    let pair = labels
        .iter()
        .next()
        .map(|(k, v)| (k.to_string(), v.to_string()));
    pair.ok_or_else(|| format!("{s:?} is not a label: write key=value"))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "otf-agent".into())
}

/// The command line's definition (for man pages and completions).
pub fn command() -> clap::Command {
    Flags::command()
}

/// Run the agent with the process's arguments; returns the exit code.
pub fn main_impl() -> ExitCode {
    crate::sandbox::helper::run_if_requested();
    let flags = Flags::parse();
    let level = if flags.debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,reqwest=warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otf-agent: cannot start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    runtime.block_on(agent(flags))
}

/// A secret from a flag (or its variable) or from a file.
pub fn secret_from(
    value: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> Result<Option<String>, String> {
    if let Some(v) = value {
        return Ok(Some(v.trim().to_string()));
    }
    let Some(file) = file else { return Ok(None) };
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the {what} from {}: {e}", file.display()))?;
    match text.trim() {
        "" => Err(format!("the {what} file {} is empty", file.display())),
        t => Ok(Some(t.to_string())),
    }
}

async fn agent(flags: Flags) -> ExitCode {
    let (transport, cfg) = match setup(&flags).await {
        Ok(set) => set,
        Err(e) => {
            eprintln!("otf-agent: {e}");
            return Exit::Usage.into();
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(forward_signals(tx));
    match run(Arc::new(transport), cfg, rx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e {
                AgentError::TokenRefused(_) | AgentError::Revoked => Exit::TokenRefused,
                _ => Exit::Failure,
            };
            tracing::error!("{e}");
            eprintln!("otf-agent: {e}");
            code.into()
        }
    }
}

/// The transport and the runner's configuration from the flags; a usage
/// error says what is wrong.
async fn setup(flags: &Flags) -> Result<(HttpTransport, RunnerConfig), String> {
    let token = secret_from(
        flags.token.as_deref(),
        flags.token_file.as_deref(),
        "agent token",
    )?
    .ok_or("give the pool's agent token with OTF_AGENT_TOKEN or --token-file (or --token)")?;
    let ca = match &flags.ca_cert {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| format!("cannot read the CA certificate {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let labels = otf_core::labels::Labels::from_pairs(flags.labels.clone())
        .map_err(|e| format!("--label: {e}"))?;
    let transport =
        HttpTransport::new(&flags.address, &token, ca.as_deref()).map_err(|e| e.to_string())?;
    let work_dir = flags
        .work_dir
        .clone()
        .or_else(crate::workdir::default_work_dir)
        .ok_or("no work directory: give --work-dir (neither STATE_DIRECTORY, XDG_STATE_HOME nor HOME is set)")?;
    for dir in [
        work_dir.clone(),
        work_dir.join("jobs"),
        work_dir.join("engines"),
    ] {
        crate::workdir::prepare(&dir).map_err(|e| format!("work directory: {e}"))?;
    }
    let env = crate::job_env::inherited(std::env::vars_os(), std::slice::from_ref(&token));
    let sandbox = Sandbox::setup(flags.sandbox, &env, &flags.sandbox_read)
        .await
        .map_err(|e| e.to_string())?;
    let plugins = crate::plugin_cache::PluginCache::for_runner(&env, work_dir.join("plugins"));
    let sandbox = match &plugins {
        Some(p) => sandbox.with_read(p.shared().to_path_buf()),
        None => sandbox,
    };
    let cfg = RunnerConfig {
        name: flags.name.clone().unwrap_or_else(hostname),
        // A single-execution agent runs one job at a time.
        concurrency: if flags.single {
            1
        } else {
            flags.concurrency.max(1)
        },
        engine: EngineConfig {
            bin: flags.engine_bin.clone(),
            cache_dir: work_dir.join("engines"),
            mirror: flags.engine_mirror.clone(),
            connect_timeout: flags.engine_connect_timeout,
            download_timeout: flags.engine_download_timeout,
        },
        work_dir: work_dir.join("jobs"),
        server: false,
        sandbox,
        env,
        spool_dir: work_dir.join("spool"),
        patience: crate::acked::Patience::default(),
        timeouts: crate::runtime::PhaseTimeouts {
            plan: flags.plan_timeout,
            apply: flags.apply_timeout,
        },
        exit_when_drained: flags.exit_when_drained,
        single: flags.single.then_some(flags.single_wait),
        labels,
        plugins,
        warm: Arc::new(crate::warm::WarmPlans::new(
            work_dir.join("warm"),
            flags
                .keep_plans
                .unwrap_or(2 * flags.concurrency.max(1) as usize),
        )),
        hooks: crate::hooks::Hooks {
            dir: Some(
                flags
                    .hooks_dir
                    .clone()
                    .unwrap_or_else(|| work_dir.join("hooks")),
            ),
            timeout: flags.hook_timeout,
        },
    };
    Ok((transport, cfg))
}

/// SIGINT and SIGTERM, each one message to the runner, until it is gone.
async fn forward_signals(tx: tokio::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if tx.send(()).await.is_err() {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    while tokio::signal::ctrl_c().await.is_ok() {
        if tx.send(()).await.is_err() {
            return;
        }
    }
}
