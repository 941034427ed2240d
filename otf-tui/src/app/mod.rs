//! The TUI's state and its vocabulary: the stack of screens (each one a
//! module of [`crate::screens`]), modals, the [`Action`]s that change state,
//! the [`Effect`]s (requests to otfd) that `update` asks the runtime to
//! carry out, and the [`Loaded`] answers that come back. No I/O here:
//! `update` is a pure function of state and action.

pub(crate) mod update;

pub use crate::screens::{
    log_text, LogTail, OrganizationsScreen, QueueSample, RunView, Screen, Section, QUEUE_HISTORY_MS,
};
pub use update::{action_verb, update};

use crate::client::RunAction;
use crate::model::{
    Agent, ExecutionModeKind, Job, NewToken, Organization, Phase, Pool, PoolQueue, Run, Token,
    Workspace,
};

/// Why something asked of otfd did not happen: the message to show, and
/// the error behind it kept as the source (failures compare by message, so
/// answers stay comparable in tests).
#[derive(Debug, Clone)]
pub struct Failure {
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl Failure {
    /// A failure with no error behind it.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            source: None,
        }
    }

    /// An error, said as itself and kept whole.
    pub fn of(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Failure {
            message: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Failure {}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<crate::client::ClientError> for Failure {
    fn from(e: crate::client::ClientError) -> Self {
        Failure::of(e)
    }
}

impl From<otf_core::tarball::config_dir::PackDirError> for Failure {
    fn from(e: otf_core::tarball::config_dir::PackDirError) -> Self {
        Failure::of(e)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::new(message)
    }
}

/// An answer from otfd: the value, or why not.
pub type Res<T> = Result<T, Failure>;

/// The whole state of the TUI.
#[derive(Debug, Clone)]
pub struct App {
    /// Where otfd is (shown in the title).
    pub address: String,
    /// Navigation: the last screen is the one shown. Never empty.
    pub stack: Vec<Screen>,
    pub modal: Option<Modal>,
    /// A one-line message under the screen: the outcome of the last action,
    /// or why the last refresh failed.
    pub flash: Option<Flash>,
    /// Milliseconds since the epoch, advanced by ticks; "last seen" is
    /// relative to it.
    pub now: i64,
    pub quit: bool,
    /// Whether the TUI may read files where it runs (to start a run from a
    /// directory). Not in otfd's SSH sessions: there it runs inside otfd,
    /// whose files are not the user's to upload.
    pub local_files: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
}

/// A list with a cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub selected: usize,
}

impl Cursor {
    pub fn up(&mut self) {
        self.selected = self.selected.saturating_sub(1);
    }

    pub fn down(&mut self, len: usize) {
        if self.selected + 1 < len {
            self.selected += 1;
        }
    }

    /// Keep the cursor inside a list that may have shrunk.
    pub fn clamp(&mut self, len: usize) {
        self.selected = self.selected.min(len.saturating_sub(1));
    }
}

/// A pool with what its detail screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDetail {
    pub pool: Pool,
    pub agents: Vec<Agent>,
    /// Every workspace of the organization.
    pub workspaces: Vec<Workspace>,
    /// Its queue numbers; None until otfd has read them.
    pub queue: Option<PoolQueue>,
}

/// A run with its phases and the new bytes of their logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDetail {
    pub run: Run,
    pub plan: Option<Phase>,
    pub apply: Option<Phase>,
    pub plan_log: Vec<u8>,
    pub apply_log: Vec<u8>,
}

/// The organization's queue with the names to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueView {
    pub jobs: Vec<Job>,
    pub workspaces: Vec<Workspace>,
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modal {
    /// A one-line text input.
    Input {
        purpose: InputPurpose,
        value: String,
    },
    /// A yes/no question before something that cannot be undone.
    Confirm {
        question: String,
        on_yes: Confirmed,
    },
    /// A new token's secret, shown this once.
    Secret {
        description: String,
        secret: String,
    },
    /// A refusal or failure that needs acknowledging.
    Error {
        title: String,
        detail: String,
    },
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputPurpose {
    NewOrganization,
    NewWorkspace {
        org: String,
    },
    NewPool {
        org: String,
    },
    NewToken {
        pool: String,
    },
    RunDirectory {
        workspace: String,
    },
    /// A workspace's agent selector; empty clears it.
    AgentSelector {
        workspace: String,
    },
}

impl InputPurpose {
    pub fn title(&self) -> &'static str {
        match self {
            InputPurpose::NewOrganization => "New organization",
            InputPurpose::NewWorkspace { .. } => "New workspace",
            InputPurpose::NewPool { .. } => "New agent pool",
            InputPurpose::NewToken { .. } => "New agent token",
            InputPurpose::RunDirectory { .. } => "Start a run",
            InputPurpose::AgentSelector { .. } => "Agent selector",
        }
    }

    pub fn prompt(&self) -> &'static str {
        match self {
            InputPurpose::NewOrganization | InputPurpose::NewWorkspace { .. } => "Name",
            InputPurpose::NewPool { .. } => "Pool name",
            InputPurpose::NewToken { .. } => "Description (required)",
            InputPurpose::RunDirectory { .. } => "Configuration directory",
            InputPurpose::AgentSelector { .. } => {
                "Labels its agents must have: k=v,k2=v2 (empty: any)"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    DeletePool { id: String },
    RevokeToken { pool: String, id: String },
    RunAction { run: String, action: RunAction },
}

/// What a key means (keys.rs decides which key means what, where).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    /// Open the selected item.
    Enter,
    /// Back one screen; quits from the first.
    Back,
    Quit,
    Help,
    Refresh,
    /// Create something on the current screen.
    New,
    Delete,
    /// Edit grants (pool) or settings (workspace).
    Edit,
    /// A pool's tokens.
    Tokens,
    /// Drain (true) or undrain the selected agent of the pool on screen.
    DrainAgent(bool),
    /// Drain (true) or undrain the pool on screen.
    Drain(bool),
    /// Exclude (or include again) the selected workspace of the grants
    /// screen.
    Exclude,
    /// Edit the selected workspace's agent selector.
    Selector,
    /// Choose or toggle the selected row.
    Toggle,
    Save,
    /// Jump to a section of the organization.
    Open(Section),
    Run(RunAction),
    /// Text input.
    Char(char),
    Backspace,
    /// Enter in a modal.
    Submit,
    /// Esc / "n" in a modal.
    Dismiss,
    Yes,
    /// Time passes: refresh live views.
    Tick(i64),
    /// An answer from otfd (boxed: answers are much larger than keys).
    Loaded(Box<Loaded>),
}

/// Work for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Fetch(Request),
}

/// A request to otfd, by what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Organizations,
    CreateOrganization {
        name: String,
    },
    Pools {
        org: String,
    },
    CreatePool {
        org: String,
        name: String,
    },
    PoolDetail {
        org: String,
        id: String,
    },
    SetGrants {
        pool: String,
        organization_scoped: bool,
        allowed: Vec<String>,
        excluded: Vec<String>,
    },
    DeletePool {
        id: String,
    },
    DrainPool {
        id: String,
        drained: bool,
    },
    DrainAgent {
        id: String,
        drained: bool,
    },
    Tokens {
        pool: String,
    },
    CreateToken {
        pool: String,
        description: String,
    },
    RevokeToken {
        pool: String,
        id: String,
    },
    Workspaces {
        org: String,
    },
    CreateWorkspace {
        org: String,
        name: String,
    },
    SetMode {
        workspace: String,
        mode: ExecutionModeKind,
        pool: Option<String>,
    },
    /// `selector` is already checked: `k=v,k2=v2`, or empty.
    SetSelector {
        workspace: String,
        selector: String,
    },
    Runs {
        workspace: String,
    },
    /// Pack `dir` as a configuration version and start a run of it.
    StartRun {
        workspace: String,
        dir: String,
    },
    RunDetail {
        run: String,
        plan_offset: Option<usize>,
        apply_offset: Option<usize>,
    },
    RunAction {
        run: String,
        action: RunAction,
    },
    Jobs {
        org: String,
    },
}

impl Request {
    /// Reads that refresh a view share a slot: a newer one replaces an older
    /// one still in flight (the newest request wins). Writes have none and
    /// always run to the end.
    pub fn slot(&self) -> Option<&'static str> {
        match self {
            Request::Organizations => Some("organizations"),
            Request::Pools { .. } => Some("pools"),
            Request::PoolDetail { .. } => Some("pool"),
            Request::Tokens { .. } => Some("tokens"),
            Request::Workspaces { .. } => Some("workspaces"),
            Request::Runs { .. } => Some("runs"),
            Request::RunDetail { .. } => Some("run"),
            Request::Jobs { .. } => Some("jobs"),
            _ => None,
        }
    }
}

/// An answer, tagged with what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Organizations(Res<Vec<Organization>>),
    OrganizationCreated(Res<Organization>),
    Pools {
        org: String,
        result: Res<Vec<Pool>>,
    },
    PoolCreated {
        org: String,
        result: Res<Pool>,
    },
    PoolDetail {
        id: String,
        result: Res<PoolDetail>,
    },
    GrantsSaved {
        pool: String,
        result: Res<Pool>,
    },
    PoolDeleted {
        id: String,
        result: Res<()>,
    },
    PoolDrained {
        drained: bool,
        result: Res<Pool>,
    },
    AgentDrained {
        drained: bool,
        result: Res<Agent>,
    },
    Tokens {
        pool: String,
        result: Res<Vec<Token>>,
    },
    TokenCreated {
        pool: String,
        result: Res<NewToken>,
    },
    TokenRevoked {
        pool: String,
        result: Res<()>,
    },
    Workspaces {
        org: String,
        result: Res<(Vec<Workspace>, Vec<Pool>)>,
    },
    WorkspaceCreated {
        org: String,
        result: Res<Workspace>,
    },
    ModeSet {
        workspace: String,
        result: Res<Workspace>,
    },
    SelectorSet {
        workspace: String,
        result: Res<Workspace>,
    },
    Runs {
        workspace: String,
        result: Res<Vec<Run>>,
    },
    RunStarted {
        workspace: String,
        result: Res<Run>,
    },
    RunDetail {
        run: String,
        /// The offsets the log bytes were read from.
        plan_offset: Option<usize>,
        apply_offset: Option<usize>,
        result: Res<RunDetail>,
    },
    RunActionDone {
        run: String,
        action: RunAction,
        result: Res<()>,
    },
    Jobs {
        org: String,
        result: Res<QueueView>,
    },
}

impl App {
    /// The first screen: the organizations, being loaded.
    pub fn new(address: &str, now: i64) -> App {
        App {
            address: address.to_string(),
            stack: vec![Screen::Organizations(OrganizationsScreen::default())],
            modal: None,
            flash: None,
            now,
            quit: false,
            local_files: true,
        }
    }

    /// The screen shown.
    pub fn screen(&self) -> &Screen {
        // The stack is never empty: `Back` on the last screen quits instead.
        &self.stack[self.stack.len() - 1]
    }

    pub fn screen_mut(&mut self) -> &mut Screen {
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }
}
