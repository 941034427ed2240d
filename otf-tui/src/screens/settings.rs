//! A workspace's execution mode: rows remote, local, agent, then one row
//! per pool.

use ratatui::layout::Rect;
use ratatui::widgets::Row;
use ratatui::Frame;

use super::widgets::{choices, radio, scope};
use super::{Ctx, Screen, Step, View};
use crate::app::update::{info, refresh, refusal};
use crate::app::{Action, App, Cursor, Effect, Loaded, Request};
use crate::model::{ExecutionModeKind, Pool, Workspace};
use crate::theme::Theme;

/// Rows of the settings screen: three modes, then the pools.
const MODES: [ExecutionModeKind; 3] = [
    ExecutionModeKind::Remote,
    ExecutionModeKind::Local,
    ExecutionModeKind::Agent,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsScreen {
    pub workspace: Workspace,
    pub pools: Vec<Pool>,
    pub mode: ExecutionModeKind,
    pub pool: Option<String>,
    pub cursor: Cursor,
}

impl SettingsScreen {
    /// The settings of `workspace`, its current mode selected.
    pub fn of(workspace: Workspace, pools: Vec<Pool>) -> SettingsScreen {
        let mode = workspace.execution_mode;
        let pool = workspace.pool.clone();
        let selected = MODES.iter().position(|m| *m == mode).unwrap_or(0);
        SettingsScreen {
            workspace,
            pools,
            mode,
            pool,
            cursor: Cursor { selected },
        }
    }

    fn choose(&mut self) {
        if let Some(m) = MODES.get(self.cursor.selected) {
            self.mode = *m;
            if *m == ExecutionModeKind::Agent && self.pool.is_none() {
                self.pool = self.pools.first().map(|p| p.id.clone());
            }
        } else if let Some(p) = self.pools.get(self.cursor.selected - MODES.len()) {
            self.mode = ExecutionModeKind::Agent;
            self.pool = Some(p.id.clone());
        }
    }
}

impl View for SettingsScreen {
    fn crumb(&self) -> String {
        format!("{} settings", self.workspace.name)
    }

    fn refresh(&self) -> Option<Request> {
        None
    }

    fn key(&self, c: char) -> Option<Action> {
        match c {
            ' ' => Some(Action::Toggle),
            's' => Some(Action::Save),
            _ => None,
        }
    }

    fn hints(&self, _: Ctx) -> Vec<(&'static str, &'static str)> {
        vec![("Space", "choose"), ("s", "save"), ("Esc", "cancel")]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        match action {
            Action::Up => self.cursor.up(),
            Action::Down => self.cursor.down(MODES.len() + self.pools.len()),
            Action::Toggle | Action::Enter => self.choose(),
            Action::Save => {
                return Step::Save(Request::SetMode {
                    workspace: self.workspace.id.clone(),
                    mode: self.mode,
                    pool: (self.mode == ExecutionModeKind::Agent)
                        .then(|| self.pool.clone())
                        .flatten(),
                })
            }
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, _: Ctx, theme: Theme) {
        let mode = self.mode;
        let mut rows = vec![
            Row::new(vec![format!(
                "{} remote: runs execute on the server",
                radio(mode == ExecutionModeKind::Remote)
            )]),
            Row::new(vec![format!(
                "{} local: the CLI runs terraform, state only",
                radio(mode == ExecutionModeKind::Local)
            )]),
            Row::new(vec![format!(
                "{} agent: runs execute on an agent pool:",
                radio(mode == ExecutionModeKind::Agent)
            )]),
        ];
        for p in &self.pools {
            let on = mode == ExecutionModeKind::Agent && self.pool.as_deref() == Some(&p.id);
            let style = if mode == ExecutionModeKind::Agent {
                Default::default()
            } else {
                theme.dim()
            };
            rows.push(
                Row::new(vec![format!("    {} {} ({})", radio(on), p.name, scope(p))]).style(style),
            );
        }
        if self.pools.is_empty() {
            rows.push(
                Row::new(vec!["    (no agent pools in this organization)".to_string()])
                    .style(theme.dim()),
            );
        }
        let title = format!("Execution mode of {} (s saves)", self.workspace.name);
        choices(frame, area, theme, &title, "MODE", rows, &self.cursor);
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    let Loaded::ModeSet { workspace, result } = loaded else {
        return vec![];
    };
    match result {
        Ok(w) => {
            if matches!(app.screen(), Screen::Settings(s) if s.workspace.id == workspace) {
                app.stack.pop();
            }
            if let Screen::Runs(s) = app.screen_mut() {
                s.workspace = w.clone();
            }
            info(
                app,
                format!("{}: execution mode {}", w.name, w.execution_mode),
            );
            refresh(app)
        }
        Err(e) => {
            refusal(app, "The execution mode was not changed", e);
            vec![]
        }
    }
}
