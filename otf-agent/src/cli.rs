//! The `otf-agent` command line: flags (each also read from `OTF_<FLAG>`;
//! the token also from `OTF_AGENT_TOKEN`), logging, signals, exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::engine::EngineConfig;
use crate::runtime::{run, AgentError, RunnerConfig};
use crate::transport::http::HttpTransport;

#[derive(Debug, Parser)]
#[command(
    name = "otf-agent",
    version,
    about = "otf pool agent: runs the jobs of its agent pool"
)]
struct Flags {
    /// The agent token of the pool to join.
    #[arg(long, env = "OTF_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// otfd's address: a URL, or host[:port].
    #[arg(
        long,
        visible_alias = "url",
        env = "OTF_ADDRESS",
        default_value = "127.0.0.1:8080"
    )]
    address: String,
    /// The agent's name (default: the host name).
    #[arg(long, env = "OTF_NAME")]
    name: Option<String>,
    /// Jobs run at once.
    #[arg(long, env = "OTF_CONCURRENCY", default_value_t = 5)]
    concurrency: u32,
    /// A terraform (or tofu) binary to use for every job.
    #[arg(long, env = "OTF_ENGINE_BIN")]
    engine_bin: Option<PathBuf>,
    /// Release mirror to download terraform versions from.
    #[arg(
        long,
        env = "OTF_ENGINE_MIRROR",
        default_value = "https://releases.hashicorp.com"
    )]
    engine_mirror: String,
    /// Where job directories (and the engine cache) live.
    #[arg(long, env = "OTF_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// A PEM CA certificate to trust besides the system's.
    #[arg(long, env = "OTF_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Debug logging.
    #[arg(long, env = "OTF_DEBUG")]
    debug: bool,
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "otf-agent".into())
}

/// Run the agent with the process's arguments; returns the exit code.
pub fn main_impl() -> ExitCode {
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
            return ExitCode::from(1);
        }
    };
    runtime.block_on(agent(flags))
}

async fn agent(flags: Flags) -> ExitCode {
    let ca = match &flags.ca_cert {
        Some(p) => match std::fs::read(p) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!(
                    "otf-agent: cannot read the CA certificate {}: {e}",
                    p.display()
                );
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let transport = match HttpTransport::new(&flags.address, &flags.token, ca.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("otf-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let work_dir = flags
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("otf-agent"));
    let cfg = RunnerConfig {
        name: flags.name.clone().unwrap_or_else(hostname),
        concurrency: flags.concurrency.max(1),
        engine: EngineConfig {
            bin: flags.engine_bin.clone(),
            cache_dir: work_dir.join("engines"),
            mirror: flags.engine_mirror.clone(),
        },
        work_dir: work_dir.join("jobs"),
        server: false,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
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
    });
    match run(Arc::new(transport), cfg, rx).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e {
                AgentError::TokenRefused(_) | AgentError::Revoked => 3,
                _ => 1,
            };
            tracing::error!("{e}");
            eprintln!("otf-agent: {e}");
            ExitCode::from(code)
        }
    }
}
