//! The `otf-tui` command line: flags (also from `OTF_ADDRESS`, `OTF_TOKEN`,
//! `OTF_CA_CERT`), the first contact with otfd, and the one mapping from
//! failures to exit codes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};

use crate::app::{update, Action, App, Loaded};
use crate::client::{Api, Client, ClientError};
use crate::theme::Theme;

/// otf-tui's exit codes, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// It failed (the message says why).
    Failure = 1,
    /// Bad flags.
    Usage = 2,
    /// otfd is unreachable.
    Unreachable = 3,
    /// otfd refused the token.
    TokenRefused = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "otf-tui",
    version = otf_version::LONG,
    about = "The administrator's terminal UI for otfd",
    after_help = "Exit codes: 0 done, 1 failure, 2 bad usage, 3 otfd unreachable, 4 token refused.\n\
                  Set NO_COLOR to draw without colours."
)]
struct Flags {
    /// otfd's address: a URL, or host[:port] (HTTPS, except plain HTTP on
    /// loopback hosts).
    #[arg(long, env = "OTF_ADDRESS", default_value = otf_client::DEFAULT_ADDRESS)]
    address: String,
    /// A site administrator or organization token.
    #[arg(long, env = "OTF_TOKEN", hide_env_values = true)]
    token: String,
    /// A PEM CA certificate to trust besides the system's.
    #[arg(long, env = "OTF_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

/// Why otf-tui stopped.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("{0}")]
    Unreachable(ClientError),
    #[error("{0} (--token, OTF_TOKEN)")]
    Unauthorized(ClientError),
    #[error("{0}")]
    Client(ClientError),
    #[error("cannot read the CA certificate {path}: {source}")]
    CaCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("otf-tui needs a terminal (stdin and stdout must be a TTY)")]
    NotATerminal,
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

impl TuiError {
    /// The one mapping from failures to exit codes.
    fn exit_code(&self) -> Exit {
        match self {
            TuiError::Unreachable(_) => Exit::Unreachable,
            TuiError::Unauthorized(_) => Exit::TokenRefused,
            _ => Exit::Failure,
        }
    }
}

impl From<ClientError> for TuiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { .. } => TuiError::Unreachable(e),
            ClientError::Unauthorized(_) => TuiError::Unauthorized(e),
            e => TuiError::Client(e),
        }
    }
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn run(flags: Flags) -> Result<(), TuiError> {
    let ca = match &flags.ca_cert {
        Some(path) => Some(std::fs::read(path).map_err(|source| TuiError::CaCert {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let api = Client::http(&flags.address, &flags.token, ca.as_deref())?;
    // First contact before touching the terminal: an unreachable server or
    // a refused token is a plain message and an exit code.
    let orgs = api.organizations().await?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(TuiError::NotATerminal);
    }
    let mut app = App::new(api.base(), now_millis());
    let first = update(
        &mut app,
        Action::Loaded(Box::new(Loaded::Organizations(Ok(orgs)))),
    );
    let (mut terminal, guard) = crate::terminal::enter()?;
    let api: Arc<dyn Api> = Arc::new(api);
    let result = crate::runtime::run(
        &mut terminal,
        crossterm::event::EventStream::new(),
        app,
        api,
        Theme::from_env(),
        now_millis,
        first,
    )
    .await;
    drop(guard);
    Ok(result?)
}

/// The command line's definition (for man pages and completions).
pub fn command() -> clap::Command {
    Flags::command()
}

/// Run the TUI with the process's arguments; returns the exit code.
pub fn main_impl() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("otf-tui: cannot start: {e}");
            return Exit::Failure.into();
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otf-tui: {e}");
            e.exit_code().into()
        }
    }
}
