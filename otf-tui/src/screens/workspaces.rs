//! An organization's workspaces: their mode, pool and agent selector; the
//! way to their runs and settings.

use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::Row;
use ratatui::Frame;

use super::widgets::{pool_name, table, TableSpec};
use super::{Ctx, RunsScreen, Screen, SettingsScreen, Step, View};
use crate::app::update::{clear_error, error, info, refresh, refusal};
use crate::app::{Action, App, Cursor, Effect, InputPurpose, Loaded, Request};
use crate::model::{Pool, Workspace};
use crate::theme::Theme;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspacesScreen {
    pub org: String,
    pub items: Option<Vec<Workspace>>,
    pub pools: Vec<Pool>,
    pub cursor: Cursor,
}

impl View for WorkspacesScreen {
    fn crumb(&self) -> String {
        "workspaces".into()
    }

    fn refresh(&self) -> Option<Request> {
        Some(Request::Workspaces {
            org: self.org.clone(),
        })
    }

    fn key(&self, c: char) -> Option<Action> {
        match c {
            'n' => Some(Action::New),
            'e' | 's' => Some(Action::Edit),
            'l' => Some(Action::Selector),
            _ => None,
        }
    }

    fn hints(&self, _: Ctx) -> Vec<(&'static str, &'static str)> {
        vec![
            ("Enter", "runs"),
            ("e", "settings"),
            ("l", "agent labels"),
            ("n", "new"),
        ]
    }

    fn act(&mut self, action: Action, _: Ctx) -> Step {
        let selected = self
            .items
            .as_ref()
            .and_then(|i| i.get(self.cursor.selected));
        match (action, selected) {
            (Action::Up, _) => self.cursor.up(),
            (Action::Down, _) => self.cursor.down(self.items.as_ref().map_or(0, Vec::len)),
            (Action::New, _) => {
                return Step::Input {
                    purpose: InputPurpose::NewWorkspace {
                        org: self.org.clone(),
                    },
                    value: String::new(),
                }
            }
            (Action::Enter, Some(w)) => {
                return Step::Push(Box::new(Screen::Runs(RunsScreen {
                    workspace: w.clone(),
                    items: None,
                    cursor: Cursor::default(),
                })))
            }
            (Action::Edit, Some(w)) => {
                let s = SettingsScreen::of(w.clone(), self.pools.clone());
                return Step::Push(Box::new(Screen::Settings(s)));
            }
            (Action::Selector, Some(w)) => {
                return Step::Input {
                    purpose: InputPurpose::AgentSelector {
                        workspace: w.id.clone(),
                    },
                    value: w.agent_selector.clone(),
                }
            }
            _ => {}
        }
        Step::Nothing
    }

    fn draw(&self, frame: &mut Frame, area: Rect, _: Ctx, theme: Theme) {
        let rows = self.items.as_ref().map(|ws| {
            ws.iter()
                .map(|w| {
                    Row::new(vec![
                        w.name.clone(),
                        w.execution_mode.as_str().to_string(),
                        pool_name(w.pool.as_deref(), &self.pools),
                        w.agent_selector.clone(),
                    ])
                })
                .collect()
        });
        let title = format!("Workspaces of {}", self.org);
        let spec = TableSpec {
            title: &title,
            header: &["NAME", "MODE", "AGENT POOL", "AGENT LABELS"],
            widths: &[
                Constraint::Fill(1),
                Constraint::Length(10),
                Constraint::Fill(1),
                Constraint::Fill(1),
            ],
            empty: "No workspaces yet: press n to create one.",
        };
        table(frame, area, theme, spec, rows, &self.cursor);
    }
}

pub(super) fn loaded(app: &mut App, loaded: Loaded) -> Vec<Effect> {
    match loaded {
        Loaded::Workspaces { org, result } => {
            if let Screen::Workspaces(s) = app.screen_mut() {
                if s.org == org {
                    match result {
                        Ok((w, p)) => {
                            s.cursor.clamp(w.len());
                            s.items = Some(w);
                            s.pools = p;
                            clear_error(app);
                        }
                        Err(e) => error(app, e),
                    }
                }
            }
        }
        Loaded::WorkspaceCreated { org: _, result } => match result {
            Ok(w) => {
                info(app, format!("created workspace {}", w.name));
                if let Screen::Workspaces(s) = app.screen_mut() {
                    let list = s.items.get_or_insert_with(Vec::new);
                    list.push(w);
                    s.cursor.selected = list.len() - 1;
                }
                return refresh(app);
            }
            Err(e) => refusal(app, "The workspace was not created", e),
        },
        Loaded::SelectorSet {
            workspace: _,
            result,
        } => match result {
            Ok(w) => {
                let what = match w.agent_selector.as_str() {
                    "" => "any agent of its pool".to_string(),
                    s => format!("agents with labels {s}"),
                };
                info(app, format!("{}: runs go to {what}", w.name));
                return refresh(app);
            }
            Err(e) => refusal(app, "The agent selector was not changed", e),
        },
        _ => {}
    }
    vec![]
}
