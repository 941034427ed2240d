//! One module per screen, each owning its state, the request that
//! refreshes it, its keys and what they do, the answers that land on it,
//! and its drawing. [`Screen`] is the stack's element; its methods only
//! pass each call on to the screen shown.

mod grants;
mod jobs;
mod organization;
mod organizations;
mod pool;
mod pools;
mod run;
mod runs;
mod settings;
mod tokens;
mod widgets;
mod workspaces;

use ratatui::layout::Rect;
use ratatui::Frame;

pub use grants::GrantsScreen;
pub use jobs::JobsScreen;
pub use organization::{OrganizationScreen, Section};
pub use organizations::OrganizationsScreen;
pub use pool::{PoolScreen, QueueSample, QUEUE_HISTORY_MS};
pub use pools::PoolsScreen;
pub use run::{log_text, LogTail, RunScreen, RunView};
pub use runs::RunsScreen;
pub use settings::SettingsScreen;
pub use tokens::TokensScreen;
pub use workspaces::WorkspacesScreen;

use crate::app::{Action, App, Confirmed, Effect, InputPurpose, Loaded, Request};
use crate::theme::Theme;

/// What a screen needs to know of the rest of the TUI.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    /// Milliseconds since the epoch ("last seen" is relative to it).
    pub now: i64,
    /// Whether the TUI may read files where it runs.
    pub local_files: bool,
}

/// What an action on a screen asks of the TUI besides changing the
/// screen's own state.
#[derive(Debug)]
pub enum Step {
    Nothing,
    /// Open another screen on top (boxed: screens are large).
    Push(Box<Screen>),
    /// Ask for a line of text (starting with `value`).
    Input {
        purpose: InputPurpose,
        value: String,
    },
    /// Ask before something that cannot be undone.
    Confirm {
        question: String,
        on_yes: Confirmed,
    },
    /// Send a request.
    Fetch(Request),
    /// Send a write, saying "saving…" meanwhile.
    Save(Request),
    /// Say why the action does nothing.
    Error(String),
}

/// The behaviour every screen has.
pub trait View {
    /// A short name for the title's breadcrumb.
    fn crumb(&self) -> String;
    /// The request that loads (or refreshes) the screen; None when its data
    /// came with it.
    fn refresh(&self) -> Option<Request>;
    /// The action of a letter key here, if any.
    fn key(&self, c: char) -> Option<Action>;
    /// The keys of this screen, most useful first, for the footer and help.
    fn hints(&self, ctx: Ctx) -> Vec<(&'static str, &'static str)>;
    /// Apply an action.
    fn act(&mut self, action: Action, ctx: Ctx) -> Step;
    fn draw(&self, frame: &mut Frame, area: Rect, ctx: Ctx, theme: Theme);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Organizations(OrganizationsScreen),
    Organization(OrganizationScreen),
    Pools(PoolsScreen),
    Pool(PoolScreen),
    Grants(GrantsScreen),
    Tokens(TokensScreen),
    Workspaces(WorkspacesScreen),
    Settings(SettingsScreen),
    Runs(RunsScreen),
    Run(RunScreen),
    Jobs(JobsScreen),
}

impl Screen {
    /// The screen's behaviour.
    pub fn view(&self) -> &dyn View {
        match self {
            Screen::Organizations(s) => s,
            Screen::Organization(s) => s,
            Screen::Pools(s) => s,
            Screen::Pool(s) => s,
            Screen::Grants(s) => s,
            Screen::Tokens(s) => s,
            Screen::Workspaces(s) => s,
            Screen::Settings(s) => s,
            Screen::Runs(s) => s,
            Screen::Run(s) => s,
            Screen::Jobs(s) => s,
        }
    }

    pub fn view_mut(&mut self) -> &mut dyn View {
        match self {
            Screen::Organizations(s) => s,
            Screen::Organization(s) => s,
            Screen::Pools(s) => s,
            Screen::Pool(s) => s,
            Screen::Grants(s) => s,
            Screen::Tokens(s) => s,
            Screen::Workspaces(s) => s,
            Screen::Settings(s) => s,
            Screen::Runs(s) => s,
            Screen::Run(s) => s,
            Screen::Jobs(s) => s,
        }
    }

    pub fn crumb(&self) -> String {
        self.view().crumb()
    }
}

/// Apply an answer from otfd to the screen it was asked for (answers for
/// screens no longer shown are dropped); refusals of writes open an error
/// modal with the server's detail.
pub fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    use Loaded::*;
    match loaded {
        l @ (Organizations(_) | OrganizationCreated(_)) => organizations::loaded(app, l),
        l @ (Pools { .. } | PoolCreated { .. }) => pools::loaded(app, l),
        l @ (PoolDetail { .. } | PoolDrained { .. } | AgentDrained { .. } | PoolDeleted { .. }) => {
            pool::loaded(app, l)
        }
        l @ GrantsSaved { .. } => grants::loaded(app, l),
        l @ (Tokens { .. } | TokenCreated { .. } | TokenRevoked { .. }) => tokens::loaded(app, l),
        l @ (Workspaces { .. } | WorkspaceCreated { .. } | SelectorSet { .. }) => {
            workspaces::loaded(app, l)
        }
        l @ ModeSet { .. } => settings::loaded(app, l),
        l @ (Runs { .. } | RunStarted { .. }) => runs::loaded(app, l),
        l @ (RunDetail { .. } | RunActionDone { .. }) => run::loaded(app, l),
        l @ Jobs { .. } => jobs::loaded(app, l),
    }
}
