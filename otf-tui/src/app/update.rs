//! `update(state, action) -> effects`: what every action does to the state
//! and which requests it needs. Pure: no I/O, no clock, no drawing. What an
//! action means on a screen is the screen's own (`crate::screens`); here
//! are what every screen shares: navigation, modals, messages.

use super::{Action, App, Confirmed, Effect, Flash, InputPurpose, Modal, Request, Screen};
use crate::client::RunAction;
use crate::screens::{Ctx, Step};

fn fetch(r: Request) -> Vec<Effect> {
    vec![Effect::Fetch(r)]
}

pub(crate) fn refresh(app: &App) -> Vec<Effect> {
    app.screen().view().refresh().map(fetch).unwrap_or_default()
}

pub(crate) fn push(app: &mut App, screen: Screen) -> Vec<Effect> {
    app.stack.push(screen);
    app.flash = None;
    refresh(app)
}

pub(crate) fn info(app: &mut App, text: impl Into<String>) {
    app.flash = Some(Flash {
        text: text.into(),
        error: false,
    });
}

pub(crate) fn error(app: &mut App, text: impl std::fmt::Display) {
    app.flash = Some(Flash {
        text: text.to_string(),
        error: true,
    });
}

pub(crate) fn refusal(app: &mut App, title: &str, detail: impl std::fmt::Display) {
    app.flash = None;
    app.modal = Some(Modal::Error {
        title: title.to_string(),
        detail: detail.to_string(),
    });
}

/// A refresh worked: an earlier refresh failure no longer holds.
pub(crate) fn clear_error(app: &mut App) {
    if app.flash.as_ref().is_some_and(|f| f.error) {
        app.flash = None;
    }
}

impl App {
    /// What screens know of the rest.
    pub fn ctx(&self) -> Ctx {
        Ctx {
            now: self.now,
            local_files: self.local_files,
        }
    }
}

/// Apply `action` to `app`; the requests it needs.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    match action {
        Action::Quit => {
            app.quit = true;
            vec![]
        }
        Action::Tick(now) => {
            app.now = now;
            refresh(app)
        }
        Action::Loaded(loaded) => crate::screens::loaded(app, *loaded),
        action if app.modal.is_some() => modal(app, action),
        Action::Help => {
            app.modal = Some(Modal::Help);
            vec![]
        }
        Action::Back => {
            if app.stack.len() > 1 {
                app.stack.pop();
                app.flash = None;
                refresh(app)
            } else {
                app.quit = true;
                vec![]
            }
        }
        Action::Refresh => refresh(app),
        action => screen_action(app, action),
    }
}

/// Keys while a modal is open.
fn modal(app: &mut App, action: Action) -> Vec<Effect> {
    let Some(m) = app.modal.take() else {
        return vec![];
    };
    match (m, action) {
        (Modal::Input { purpose, mut value }, Action::Char(c)) => {
            value.push(c);
            app.modal = Some(Modal::Input { purpose, value });
            vec![]
        }
        (Modal::Input { purpose, mut value }, Action::Backspace) => {
            value.pop();
            app.modal = Some(Modal::Input { purpose, value });
            vec![]
        }
        (Modal::Input { purpose, value }, Action::Submit) => submit(app, purpose, value),
        (Modal::Confirm { on_yes, .. }, Action::Yes) => confirmed(app, on_yes),
        (_, Action::Dismiss | Action::Submit) => vec![],
        (m, _) => {
            app.modal = Some(m);
            vec![]
        }
    }
}

fn submit(app: &mut App, purpose: InputPurpose, value: String) -> Vec<Effect> {
    let value = value.trim().to_string();
    if let InputPurpose::AgentSelector { workspace, .. } = &purpose {
        // Checked here by the same rule otfd applies; empty clears it.
        return match value.parse::<otf_core::labels::Labels>() {
            Ok(labels) => {
                info(app, "saving…");
                fetch(Request::SetSelector {
                    workspace: workspace.clone(),
                    selector: labels.to_string(),
                })
            }
            Err(e) => {
                error(app, e.to_string());
                app.modal = Some(Modal::Input { purpose, value });
                vec![]
            }
        };
    }
    if value.is_empty() {
        // Keep asking: every input here is required.
        error(app, format!("{} is required", purpose.prompt()));
        app.modal = Some(Modal::Input { purpose, value });
        return vec![];
    }
    info(app, "working…");
    fetch(match purpose {
        InputPurpose::NewOrganization => Request::CreateOrganization { name: value },
        InputPurpose::NewWorkspace { org } => Request::CreateWorkspace { org, name: value },
        InputPurpose::NewPool { org } => Request::CreatePool { org, name: value },
        InputPurpose::NewToken { pool } => Request::CreateToken {
            pool,
            description: value,
        },
        InputPurpose::RunDirectory { workspace } => Request::StartRun {
            workspace,
            dir: value,
        },
        InputPurpose::AgentSelector { .. } => return vec![],
    })
}

fn confirmed(app: &mut App, what: Confirmed) -> Vec<Effect> {
    info(app, "working…");
    fetch(match what {
        Confirmed::DeletePool { id } => Request::DeletePool { id },
        Confirmed::RevokeToken { pool, id } => Request::RevokeToken { pool, id },
        Confirmed::RunAction { run, action } => Request::RunAction { run, action },
    })
}

/// An action on the screen shown, and what it asks of the TUI.
fn screen_action(app: &mut App, action: Action) -> Vec<Effect> {
    let ctx = app.ctx();
    match app.screen_mut().view_mut().act(action, ctx) {
        Step::Nothing => vec![],
        Step::Push(screen) => push(app, *screen),
        Step::Input { purpose, value } => {
            app.modal = Some(Modal::Input { purpose, value });
            vec![]
        }
        Step::Confirm { question, on_yes } => {
            app.modal = Some(Modal::Confirm { question, on_yes });
            vec![]
        }
        Step::Fetch(r) => fetch(r),
        Step::Save(r) => {
            info(app, "saving…");
            fetch(r)
        }
        Step::Error(text) => {
            error(app, text);
            vec![]
        }
    }
}

pub fn action_verb(a: RunAction) -> &'static str {
    match a {
        RunAction::Apply => "confirm and apply",
        RunAction::Discard => "discard",
        RunAction::Cancel => "cancel",
        RunAction::ForceCancel => "force-cancel",
    }
}
